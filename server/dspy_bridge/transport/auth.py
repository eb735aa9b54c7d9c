"""Bearer-token authentication of BridgeService calls (`--auth-token`).

A call carries `authorization: Bearer <token>` metadata (any letter case of `Bearer`); the
SHA-256 digests of the tokens are compared in constant time, so not even the token's length
shows in the timing. The check runs in the per-RPC wrapper (`instrument.py`)
rather than in a `grpc.aio` interceptor, for the same reason the wrapper exists: an interceptor
costs ~0.15 ms per call. Health and reflection are left open: orchestrators' gRPC probes cannot
send metadata, and reflection describes a public contract.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from grpc.aio import ServicerContext

from dspy_bridge.errors import Reason, unauthenticated

_HEADER = "authorization"
_SCHEME = "bearer"


class BearerAuth:
    """Checks the bearer token of each call; raises UNAUTHENTICATED `AUTH_REQUIRED` when the
    call has none and `AUTH_INVALID` when it is not the configured one."""

    def __init__(self, token: str) -> None:
        if not token:
            raise ValueError("an empty token would let every call in")
        self._digest = hashlib.sha256(token.encode()).digest()

    def check(self, context: ServicerContext[Any, Any]) -> None:
        for key, value in context.invocation_metadata() or ():
            if key != _HEADER:
                continue
            scheme, _, credential = str(value).partition(" ")
            offered = hashlib.sha256(credential.strip().encode()).digest()
            if scheme.lower() == _SCHEME and hmac.compare_digest(offered, self._digest):
                return
            raise unauthenticated(
                Reason.AUTH_INVALID, "the bearer token in `authorization` is not valid"
            )
        raise unauthenticated(
            Reason.AUTH_REQUIRED,
            "this sidecar requires `authorization: Bearer <token>` metadata on every call",
        )
