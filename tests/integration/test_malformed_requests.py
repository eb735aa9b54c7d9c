"""Request bytes that are not a valid message: INVALID_ARGUMENT `INVALID_REQUEST` with a field
violation on `request` (not UNKNOWN "Unexpected DecodeError"), after authentication, and in the
log one structured line per second at most (never a traceback). Sent as raw bytes through a
generic channel call with identity serializers."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from dspy_bridge.transport.decode import LOG_EVERY_SECONDS
from dspy_bridge.transport.server import RunningServer, start_server
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from tests.conftest import test_settings
from tests.integration.rpc import expect_error
from tests.process import server_process

SERVICE = "/dspy_bridge.v1.BridgeService/"
# A field-1 string whose length runs past the end, then a truncated varint: no message parses.
GARBAGE = [b"\x0a\xff\xff\xff\x0f", b"\xff" * 64, b"\x0a\x05ab", b"\x08\x80\x80\x80"]


def raw_unary(channel: grpc.aio.Channel, rpc: str) -> grpc.aio.UnaryUnaryMultiCallable:
    return channel.unary_unary(SERVICE + rpc)  # no serializers: bytes in, bytes out


def raw_stream(channel: grpc.aio.Channel, rpc: str) -> grpc.aio.UnaryStreamMultiCallable:
    return channel.unary_stream(SERVICE + rpc)


async def test_malformed_bytes_are_invalid_argument_and_change_nothing(
    server: RunningServer,
) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        for rpc in ("CreateSession", "UpdateVariable", "Execute", "Evaluate"):
            for garbage in GARBAGE:
                rich = await expect_error(
                    raw_unary(channel, rpc)(garbage),
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "INVALID_REQUEST",
                )
                assert rich.fields == ["request"] and "not a valid" in rich.message, rich

        async def first(rpc: str) -> bytes:
            reply: bytes = await raw_stream(channel, rpc)(GARBAGE[0]).read()
            return reply

        for rpc in ("ExecuteStream", "WatchVariables"):
            rich = await expect_error(
                first(rpc), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"
            )
            assert rich.fields == ["request"]
        stub = pb_grpc.BridgeServiceStub(channel)
        listed = await stub.ListSessions(pb.ListSessionsRequest())
        assert list(listed.sessions) == []  # nothing was created
        # The same bytes, well-formed, work.
        good = pb.CreateSessionRequest(session_id="ok").SerializeToString()
        assert pb.CreateSessionResponse.FromString(await raw_unary(channel, "CreateSession")(good))


async def test_malformed_bytes_from_an_unauthenticated_caller_are_unauthenticated() -> None:
    running = await start_server(test_settings(auth_token="s3cret-token-for-tests"))
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            await expect_error(
                raw_unary(channel, "CreateSession")(GARBAGE[0]),
                grpc.StatusCode.UNAUTHENTICATED,
                "AUTH_REQUIRED",
            )
            await expect_error(
                raw_unary(channel, "CreateSession")(
                    GARBAGE[0], metadata=(("authorization", "Bearer s3cret-token-for-tests"),)
                ),
                grpc.StatusCode.INVALID_ARGUMENT,
                "INVALID_REQUEST",
            )
    finally:
        await running.stop(grace=0)


@pytest.mark.slow
def test_a_flood_of_malformed_bytes_logs_rate_limited_json_lines() -> None:
    n = 200
    with server_process("--workers", "0", "--log-level", "info") as process:
        began = time.monotonic()
        with grpc.insecure_channel(process.target) as channel:
            call = channel.unary_unary(SERVICE + "CreateSession")
            for _ in range(n):
                with pytest.raises(grpc.RpcError) as caught:
                    call(GARBAGE[1], timeout=30)
                assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        elapsed = time.monotonic() - began
        process.terminate()
        lines = process.all_output()
    events = [json.loads(line) for line in lines]  # every line is JSON: no traceback
    malformed = [e for e in events if e.get("event") == "malformed request"]
    assert 1 <= len(malformed) <= elapsed / LOG_EVERY_SECONDS + 2, (len(malformed), elapsed)
    assert malformed[0]["rpc"] == "CreateSession" and malformed[0]["bytes"] == 64
    assert sum(1 + e["suppressed"] for e in malformed) <= n
    assert not any("Traceback" in line or "Unexpected" in line for line in lines)
