"""The real sidecar process the hostile-host tests attack, one per test module.

It names two callers (`--auth-tokens-file`): the victim's owner and an attacker. The owner's
channel sets up and reads the victim session; the attacker's channel sends hostile requests
that must never change or reveal it, whatever they are.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from tests.process import ServerProcess, server_process

OWNER_TOKEN = "owner-token"
ATTACKER_TOKEN = "attacker-token"


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _Bearer(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call of a channel."""

    def __init__(self, token: str) -> None:
        self._header = ("authorization", f"Bearer {token}")

    def _with_token(self, details: Any) -> _Details:
        return _Details(
            details.method,
            details.timeout,
            (*(details.metadata or ()), self._header),
            details.credentials,
            details.wait_for_ready,
            details.compression,
        )

    def intercept_unary_unary(self, proceed: Callable[..., Any], details: Any, request: Any) -> Any:
        return proceed(self._with_token(details), request)

    def intercept_unary_stream(
        self, proceed: Callable[..., Any], details: Any, request: Any
    ) -> Any:
        return proceed(self._with_token(details), request)

    def intercept_stream_stream(
        self, proceed: Callable[..., Any], details: Any, requests: Any
    ) -> Any:
        return proceed(self._with_token(details), requests)


@dataclass
class Sidecar:
    process: ServerProcess
    #: The victim's owner: sets the victim up and reads it.
    owner: grpc.Channel
    owner_stub: pb_grpc.BridgeServiceStub
    #: Another caller, with no claim on the victim.
    attacker: grpc.Channel


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    tokens: Path = tmp_path_factory.mktemp("hostile") / "tokens"
    tokens.write_text(f"owner {OWNER_TOKEN}\nattacker {ATTACKER_TOKEN}\n")
    # A small session budget keeps what generated requests may store small.
    with server_process(
        "--workers",
        "0",
        "--auth-tokens-file",
        str(tokens),
        "--max-session-bytes",
        str(8 << 20),
        "--max-running-jobs",
        "1",
        "--max-job-seconds",
        "20",
    ) as process:
        raw_owner = grpc.insecure_channel(process.target)
        raw_attacker = grpc.insecure_channel(process.target)
        owner = grpc.intercept_channel(raw_owner, _Bearer(OWNER_TOKEN))
        attacker = grpc.intercept_channel(raw_attacker, _Bearer(ATTACKER_TOKEN))
        try:
            yield Sidecar(process, owner, pb_grpc.BridgeServiceStub(owner), attacker)
        finally:
            raw_owner.close()
            raw_attacker.close()
