"""Regular expressions a host supplies (a STRING variable's `pattern`, the `regex` metric),
compiled with RE2 instead of Python's `re`.

Why RE2: Python's `re` backtracks, so a pattern like `^(a+)+$` against 30 characters takes
seconds and a longer value takes years, all of it holding the GIL. RE2 matches in time linear in
the text (pattern size times text length at worst), never backtracks, and releases the GIL while it
matches. Bounds that keep even the worst case small:

- a pattern is at most `MAX_PATTERN_CHARS` characters and compiles to at most
  `MAX_PROGRAM_SIZE` RE2 instructions (else INVALID_ARGUMENT: "too complex");
- matching asks only *whether* the text matches (`never_capture`), which lets RE2 use its DFA
  (about 100 times faster than capturing; measured 0.16 s against 20 s on 8 MB);
- each compiled pattern may use at most `MAX_MEM_BYTES` (program and DFA cache; RE2's default
  is 8 MiB, which times the cached patterns would let hosts claim gigabytes); a DFA that runs
  out falls back to RE2's NFA, still linear (measured no slower on the worst patterns);
- RE2's own error log (e.g. "DFA out of memory", a plain-text line on stderr) is off.

Callers in the front run matches on long text off the event loop (`services.offload`).

RE2 syntax differs from Python's: no backreferences (`\\1`) or look-around (`(?=`, `(?<=`),
`\\z` instead of `\\Z` for the end of the text, and `\\d`, `\\w`, `\\s`, `\\b` are ASCII-only.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import re2

__all__ = [
    "MAX_PATTERN_CHARS",
    "MAX_PROGRAM_SIZE",
    "HostPattern",
    "PatternError",
    "compile_pattern",
]

MAX_PATTERN_CHARS = 1_024  # as the request limit on `VariableConstraints.pattern`
# 500 instructions match 1 MB in about 7 s at worst (RE2's NFA, measured on the bench machine);
# ordinary patterns are far smaller (an e-mail pattern is 18, a UUID pattern 72).
MAX_PROGRAM_SIZE = 500
MAX_MEM_BYTES = 256 << 10
# Compiled patterns kept (each at most MAX_MEM_BYTES).
CACHED_PATTERNS = 256
RE2_SYNTAX_HINT = (
    "patterns use RE2 syntax: no backreferences or look-around, \\z (not \\Z) for the end"
)


class PatternError(ValueError):
    """A pattern that does not compile or is too big; the message says why (no traceback)."""


@dataclass(frozen=True)
class HostPattern:
    """A compiled host pattern; answers only whether a text matches."""

    pattern: str
    ignore_case: bool
    _regexp: re2._Regexp

    def fullmatch(self, text: str) -> bool:
        return self._regexp.fullmatch(text) is not None

    def search(self, text: str) -> bool:
        return self._regexp.search(text) is not None

    def __reduce__(self) -> tuple[object, tuple[str, bool]]:
        # Jobs send metrics to their processes by pickle: rebuild from the source text.
        return compile_pattern, (self.pattern, self.ignore_case)


@functools.lru_cache(maxsize=CACHED_PATTERNS)
def compile_pattern(pattern: str, ignore_case: bool = False) -> HostPattern:
    """The compiled pattern; raises `PatternError` with RE2's reason when it is not usable."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise PatternError(f"is {len(pattern)} characters long; the limit is {MAX_PATTERN_CHARS}")
    options = re2.Options()
    options.never_capture = True
    options.log_errors = False
    options.max_mem = MAX_MEM_BYTES
    options.case_sensitive = not ignore_case
    try:
        regexp = re2.compile(pattern, options)
    except re2.error as exc:
        raise PatternError(
            f"is not a valid regular expression: {_reason(exc)} ({RE2_SYNTAX_HINT})"
        ) from None
    size = regexp._regexp.ProgramSize()
    if size > MAX_PROGRAM_SIZE:
        raise PatternError(
            f"is too complex: it compiles to {size} RE2 instructions; the limit is "
            f"{MAX_PROGRAM_SIZE}"
        )
    return HostPattern(pattern, ignore_case, regexp)


def _reason(exc: re2.error) -> str:
    """RE2's message (the binding gives it as bytes)."""
    reason = exc.args[0] if exc.args else ""
    if isinstance(reason, bytes):
        return reason.decode("utf-8", "replace")
    return str(reason)
