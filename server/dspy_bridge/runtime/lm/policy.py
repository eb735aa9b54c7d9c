"""Which LM endpoints and key variables a host may name: the operator's allow-lists.

An `LMConfig` from a host says where the server sends a prompt (`api_base`) and which of the
server's environment variables holds the key it sends along (`api_key_env`; without one, DSPy
and LiteLLM read the provider's usual variable, e.g. `OPENAI_API_KEY`). Unchecked, that is an
exfiltration path: any URL plus any variable name (`DSPY_BRIDGE_AUTH_TOKEN`) ships the secret
to the host's own server. `LMPolicy` is the operator's answer:

- `api_base`: empty (the provider's default endpoint) is always allowed; anything else must
  match an entry of `--lm-allowed-api-bases` (default: none). An entry matches a URL with the
  same scheme, the same host (compared lower-case, trailing dot removed), the same port (the
  scheme's default filled in when absent, so `https://gw` and `https://gw:443` are one) and a
  path equal to the entry's path or below it on a `/` boundary (`/v1` admits `/v1` and
  `/v1/chat`, never `/v1evil`). URLs with user info (`http://allowed@evil`), a query, a
  fragment, backslashes, percent escapes, `.`/`..` segments, control characters or non-ASCII
  hosts are refused outright, as are schemes other than http and https: nothing is left for a
  URL parser and an HTTP client to read differently.
- `api_key_env`: must match a pattern of `--lm-allowed-key-envs` (default `*_API_KEY`; `*` is
  the only wildcard; an empty list allows none). Names of the server's own settings
  (`DSPY_BRIDGE_*`, in any case) are refused whatever the list says.
- The operator's own default LM (`--lm-api-base`, `--lm-api-key-env`) counts as listed.

A URL that cannot be parsed, or a scheme that is not http(s), is INVALID_ARGUMENT (the request
is malformed whatever the configuration); a well-formed URL or name the list does not allow is
PERMISSION_DENIED (`LM_API_BASE_NOT_ALLOWED`, `LM_KEY_ENV_NOT_ALLOWED`): the request is fine,
this server's operator does not permit it, and retrying will not help until they do. Both name
the field (`lm.api_base`, `lm.api_key_env`) in a BadRequest violation.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

import grpc

from dspy_bridge.errors import BridgeError, FieldViolation, Reason, invalid_argument

__all__ = [
    "DEFAULT_ALLOWED_KEY_ENVS",
    "MAX_API_BASE_CHARS",
    "ApiBase",
    "LMPolicy",
    "parse_api_base",
    "split_list",
]

DEFAULT_ALLOWED_KEY_ENVS = "*_API_KEY"
MAX_API_BASE_CHARS = 2048
_SERVER_SETTINGS_PREFIX = "DSPY_BRIDGE_"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# What a host name may hold: DNS labels, an IPv4 address, or a bracketed IPv6 literal.
_HOST_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*\Z")
_IPV6_RE = re.compile(r"\[[0-9a-f:.]+\]\Z")
# Path characters an endpoint needs; `%` (escapes) and `\` are left out on purpose.
_PATH_RE = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@/-]*\Z")
_KEY_PATTERN_RE = re.compile(r"[A-Za-z0-9_*]{1,128}\Z")


@dataclass(frozen=True)
class ApiBase:
    """A normalized http(s) endpoint: what an allow-list entry and a host's URL compare as."""

    scheme: str
    host: str
    port: int
    path: str  # no trailing slash; "" for the root

    def admits(self, other: ApiBase) -> bool:
        """`other` is this endpoint or below it (on a path-segment boundary)."""
        if (self.scheme, self.host, self.port) != (other.scheme, other.host, other.port):
            return False
        return other.path == self.path or other.path.startswith(self.path + "/")

    def __str__(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}{self.path}"


# Every Execute checks its LM's endpoint (in the front, and again where the LM is built): the
# answer is a pure function of the string, and an ApiBase cannot change. Refusals are not kept.
@functools.lru_cache(maxsize=256)
def parse_api_base(url: str) -> ApiBase:
    """`url` normalized; ValueError saying what is wrong with it (never repeating it)."""
    if len(url) > MAX_API_BASE_CHARS:
        raise ValueError(f"must be at most {MAX_API_BASE_CHARS} characters")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in url):
        raise ValueError("must be printable ASCII without spaces")
    if "\\" in url or "%" in url:
        raise ValueError("must not contain backslashes or percent escapes")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ValueError("is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("must be an http:// or https:// URL")
    if "@" in parts.netloc:
        raise ValueError("must not contain user info (user@host)")
    if parts.query or parts.fragment or url.endswith(("?", "#")):
        raise ValueError("must not have a query or a fragment")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise ValueError("must name a host")
    host = f"[{host}]" if ":" in host else host
    if not (_HOST_RE.match(host) or _IPV6_RE.match(host)):
        raise ValueError("has an invalid host name")
    path = parts.path
    if not _PATH_RE.match(path) or any(seg in (".", "..") for seg in path.split("/")):
        raise ValueError("has an invalid path (no '.' or '..' segments)")
    return ApiBase(scheme, host, port or _DEFAULT_PORTS[scheme], path.rstrip("/"))


def split_list(text: str) -> list[str]:
    """A comma-separated setting as its non-empty entries."""
    return [item.strip() for item in text.split(",") if item.strip()]


def _glob_match(pattern: str, name: str) -> bool:
    """`*` matches any run of characters; linear in len(name) per pattern piece, no regex."""
    pieces = pattern.split("*")
    if len(pieces) == 1:
        return name == pattern
    first, last = pieces[0], pieces[-1]
    if not name.startswith(first) or not name[len(first) :].endswith(last):
        return False
    if len(first) + len(last) > len(name):
        return False
    position = len(first)
    end = len(name) - len(last)
    for middle in pieces[1:-1]:
        found = name.find(middle, position, end)
        if found < 0:
            return False
        position = found + len(middle)
    return True


def _server_setting(name: str) -> bool:
    return name.upper().startswith(_SERVER_SETTINGS_PREFIX)


@dataclass(frozen=True)
class LMPolicy:
    """The operator's allow-lists (see the module docstring); immutable, built at start."""

    api_bases: tuple[ApiBase, ...] = ()
    key_env_patterns: tuple[str, ...] = (DEFAULT_ALLOWED_KEY_ENVS,)
    key_envs: frozenset[str] = frozenset()  # exact names allowed besides the patterns

    @classmethod
    def build(
        cls,
        allowed_api_bases: Iterable[str] = (),
        allowed_key_envs: Iterable[str] = (DEFAULT_ALLOWED_KEY_ENVS,),
        default_api_base: str = "",
        default_key_env: str = "",
    ) -> LMPolicy:
        """From the settings' entries; ValueError naming a bad entry (operator input)."""
        bases: list[ApiBase] = []
        for entry in [*allowed_api_bases, *([default_api_base] if default_api_base else [])]:
            try:
                bases.append(parse_api_base(entry))
            except ValueError as exc:
                raise ValueError(f"allowed api_base {entry!r} {exc}") from None
        patterns = tuple(allowed_key_envs)
        for pattern in patterns:
            if not _KEY_PATTERN_RE.match(pattern):
                raise ValueError(
                    f"allowed key env {pattern!r} must be letters, digits, '_' and '*' only"
                )
        return cls(tuple(bases), patterns, frozenset([default_key_env] if default_key_env else []))

    def api_base_allowed(self, base: ApiBase) -> bool:
        return any(entry.admits(base) for entry in self.api_bases)

    def key_env_allowed(self, name: str) -> bool:
        if _server_setting(name):
            return False
        return name in self.key_envs or any(_glob_match(p, name) for p in self.key_env_patterns)

    def check(self, api_base: str, api_key_env: str, prefix: str = "lm") -> None:
        """INVALID_ARGUMENT for a malformed `api_base`, PERMISSION_DENIED for one (or a key
        variable) the operator did not allow. Checks only; changes nothing."""
        if api_base:
            where = f"{prefix}.api_base"
            try:
                base = parse_api_base(api_base)
            except ValueError as exc:
                raise invalid_argument(Reason.INVALID_REQUEST, f"{where} {exc}", where) from None
            if not self.api_base_allowed(base):
                raise _denied(
                    Reason.LM_API_BASE_NOT_ALLOWED,
                    where,
                    f"{where}: this server does not allow LM calls to {base}; its operator "
                    "lists the endpoints hosts may use in --lm-allowed-api-bases (leave api_base "
                    "empty for the provider's default endpoint)",
                )
        if api_key_env and not self.key_env_allowed(api_key_env):
            where = f"{prefix}.api_key_env"
            why = (
                "names one of the server's own settings"
                if _server_setting(api_key_env)
                else "is not a variable this server's operator allows (--lm-allowed-key-envs)"
            )
            raise _denied(Reason.LM_KEY_ENV_NOT_ALLOWED, where, f"{where}: {api_key_env!r} {why}")


def _denied(reason: str, where: str, message: str) -> BridgeError:
    violations: Sequence[FieldViolation] = (FieldViolation(where, message),)
    return BridgeError(grpc.StatusCode.PERMISSION_DENIED, reason, message, {}, violations)
