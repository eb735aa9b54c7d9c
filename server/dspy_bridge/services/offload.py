"""CPU work whose size a host controls runs off the event loop.

Why: one RPC must never stall the others. Checking a long STRING value against its variable's
`pattern` is linear (RE2, see `model.patterns`) but can still take a while for a megabyte value,
and RE2 releases the GIL while it matches, so a thread keeps the event loop serving. The
threads are this module's own (two of them, shared by every caller), not asyncio's default
executor, so many such checks queue here instead of starving the store's and DSPy's
`to_thread` calls. Short values (the usual case) are checked inline: a thread hop would cost
more than the check.

The same threads turn large requests' values from protobuf into Python (`convert_sized`) and
pages of stored values back into protobuf (`off_loop`): converting 16 MB of JSON values is pure
Python over millions of nodes, seconds of CPU, and on the event loop it froze every other
caller's RPCs for that long. In a thread it still holds the GIL, but the loop gets it back every
switch interval (5 ms) and keeps serving.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from dspy_bridge.model import PyValue
from dspy_bridge.model.validation import coerce_value, validate_constraints
from dspy_bridge.model.variable import Constraints, VariableType

__all__ = [
    "INLINE_CONVERT_BYTES",
    "INLINE_PATTERN_CHARS",
    "coerce_value_off_loop",
    "convert_sized",
    "off_loop",
    "validate_constraints_off_loop",
]

# Up to this many characters in all are matched inline (microseconds with any allowed pattern).
INLINE_PATTERN_CHARS = 256

# Requests up to this many serialized bytes have their values converted inline (well under a
# millisecond); a larger one is converted in a thread.
INLINE_CONVERT_BYTES = 64 << 10

_THREADS = ThreadPoolExecutor(max_workers=2, thread_name_prefix="host-patterns")

T = TypeVar("T")


async def _in_thread(fn: functools.partial[T]) -> T:
    return await asyncio.get_running_loop().run_in_executor(_THREADS, fn)


async def coerce_value_off_loop(
    type_: VariableType, constraints: Constraints, value: PyValue, field: str
) -> PyValue:
    """`coerce_value`, in a thread when a pattern would be matched against a long string."""
    call = functools.partial(coerce_value, type_, constraints, value, field)
    if constraints.pattern and isinstance(value, str) and len(value) > INLINE_PATTERN_CHARS:
        return await _in_thread(call)
    return call()


async def validate_constraints_off_loop(type_: VariableType, constraints: Constraints) -> None:
    """`validate_constraints`, in a thread when the choices are matched against a pattern and
    are long in all."""
    call = functools.partial(validate_constraints, type_, constraints)
    if constraints.pattern and sum(map(len, constraints.choices)) > INLINE_PATTERN_CHARS:
        await _in_thread(call)
    else:
        call()


async def convert_sized(request_bytes: int, convert: Callable[[], T]) -> T:
    """`convert()` (a request's values into Python), in a thread when the request is larger than
    `INLINE_CONVERT_BYTES` serialized."""
    if request_bytes > INLINE_CONVERT_BYTES:
        return await off_loop(convert)
    return convert()


async def off_loop(work: Callable[[], T]) -> T:
    """`work()` on this module's threads (for work whose size is not known up front, such as a
    page of stored values: up to a message's worth)."""
    return await _in_thread(functools.partial(work))
