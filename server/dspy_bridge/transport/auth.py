"""Who is calling: bearer tokens (`--auth-token`, `--auth-tokens-file`) and client certificates
(mutual TLS), and the caller's name (its *principal*), which owns the sessions it creates.

- **Tokens.** A call carries `authorization: Bearer <token>` metadata (any letter case of
  `Bearer`). The SHA-256 digest of the offered token is compared in constant time with every
  configured one, so neither a token's length nor which token matched shows in the timing.
  `--auth-token` is the principal `default`; `--auth-tokens-file` names one principal per token.
- **Client certificates.** Without tokens, under mutual TLS, the caller is named by its
  certificate's identities as gRPC reports them (every subject alternative name, sorted and
  joined with commas; the common name when there is none): two certificates are the same
  caller only if they name exactly the same identities.
- Without either, callers are anonymous (principal None) and sessions have no owner.

The check runs in the per-RPC wrapper (`instrument.py`) rather than in a `grpc.aio`
interceptor, for the same reason the wrapper exists: an interceptor costs ~0.15 ms per call.
Health and reflection are left open: orchestrators' gRPC probes cannot send metadata, and
reflection describes a public contract.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from grpc.aio import ServicerContext

from dspy_bridge.config import Settings, setting_label
from dspy_bridge.errors import Reason, StartupError, unauthenticated

_HEADER = "authorization"
_SCHEME = "bearer"
DEFAULT_PRINCIPAL = "default"
_PRINCIPAL = re.compile(r"[A-Za-z0-9_.@:\-]{1,128}")
_TOKEN = re.compile(r"[\x21-\x7e]+")

#: The principal of the call being served when sessions are owned per caller (None: they are
#: not — no authentication, or one shared `--auth-token`).
CALLER: ContextVar[str | None] = ContextVar("dspy_bridge_caller", default=None)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


#: How start-up errors name the tokens-file setting.
_FILE = setting_label("auth_tokens_file")


def read_tokens_file(path: str) -> dict[str, str]:
    """`principal token` per line (blank lines and `#` comments skipped) -> {principal: token}.
    Raises `StartupError` naming the line of anything malformed or repeated."""
    try:
        text = Path(path).read_text()
    except OSError as exc:
        raise StartupError(f"{_FILE}: cannot read {path}: {exc.strerror or exc}") from None
    tokens: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{_FILE}: {path} line {number}"
        if len(parts) != 2 or not _PRINCIPAL.fullmatch(parts[0]) or not _TOKEN.fullmatch(parts[1]):
            raise StartupError(f"{where}: expected `principal token` (a name, then a token)")
        principal, token = parts
        if principal in tokens:
            raise StartupError(f"{where}: principal {principal!r} is listed twice")
        if token in tokens.values():
            raise StartupError(f"{where}: this token is already another principal's")
        tokens[principal] = token
    if not tokens:
        raise StartupError(f"{_FILE}: {path} lists no token")
    return tokens


class Authenticator:
    """Names the caller of each call, or refuses it (UNAUTHENTICATED `AUTH_REQUIRED` without a
    token, `AUTH_INVALID` with an unknown one)."""

    def __init__(
        self, tokens: Mapping[str, str], client_certificates: bool = False, owners: bool = True
    ) -> None:
        """`tokens` maps principal -> token; `client_certificates`: without tokens, name callers
        by their (verified) certificate; `owners`: sessions belong to the caller that made
        them (false for one shared token, which names no one in particular)."""
        if any(not token for token in tokens.values()):
            raise ValueError("an empty token would let every call in")
        if not tokens and not client_certificates:
            raise ValueError("no token and no client certificates: nothing to authenticate")
        self._digests = [(_digest(token), principal) for principal, token in tokens.items()]
        self._client_certificates = client_certificates
        self.owners = owners

    @classmethod
    def from_settings(cls, settings: Settings) -> Authenticator | None:
        """The server's authenticator; None when it authenticates no one."""
        tokens: dict[str, str] = {}
        if settings.auth_tokens_file:
            tokens = read_tokens_file(settings.auth_tokens_file)
        if settings.auth_token is not None:
            if DEFAULT_PRINCIPAL in tokens:
                raise StartupError(
                    f"{_FILE} names a principal {DEFAULT_PRINCIPAL!r}, which is "
                    f"{setting_label('auth_token')}'s: rename it or drop that token"
                )
            tokens[DEFAULT_PRINCIPAL] = settings.auth_token.get_secret_value()
        if not tokens and not settings.tls_client_ca_file:
            return None
        named = bool(settings.auth_tokens_file) or not tokens  # a file, or certificates
        return cls(tokens, client_certificates=bool(settings.tls_client_ca_file), owners=named)

    def principal(self, context: ServicerContext[Any, Any]) -> str:
        """The caller's name; raises UNAUTHENTICATED when it cannot be established."""
        if self._digests:
            return self._from_token(context)
        identities = context.peer_identities() or []
        if not identities:
            raise unauthenticated(
                Reason.AUTH_REQUIRED, "the client certificate names no identity (SAN or CN)"
            )
        return ",".join(sorted(bytes(i).decode(errors="replace") for i in identities))

    def _from_token(self, context: ServicerContext[Any, Any]) -> str:
        for key, value in context.invocation_metadata() or ():
            if key != _HEADER:
                continue
            scheme, _, credential = str(value).partition(" ")
            offered = _digest(credential.strip())
            found = None
            for digest, principal in self._digests:  # every one, so timing tells nothing
                if hmac.compare_digest(offered, digest):
                    found = principal
            if scheme.lower() == _SCHEME and found is not None:
                return found
            raise unauthenticated(
                Reason.AUTH_INVALID, "the bearer token in `authorization` is not valid"
            )
        raise unauthenticated(
            Reason.AUTH_REQUIRED,
            "this sidecar requires `authorization: Bearer <token>` metadata on every call",
        )
