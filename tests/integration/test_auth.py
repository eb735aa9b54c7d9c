"""Bearer-token authentication (`--auth-token`) through a real channel: every BridgeService
call (unary and streaming) needs the token, a refused call changes nothing, health and
reflection stay open, and the Python client sends the token as metadata."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from dspy_bridge.cli import main
from dspy_bridge.config import Settings
from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client import AsyncBridgeClient, UnauthenticatedError
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from tests.integration.rpc import expect_error

TOKEN = "s3cret-token.with_chars~1"
GOOD = (("authorization", f"Bearer {TOKEN}"),)


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"auth_token": TOKEN}


async def test_calls_without_the_token_are_refused_and_change_nothing(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub
) -> None:
    missing = await expect_error(
        stub.CreateSession(pb.CreateSessionRequest(session_id="nope")),
        grpc.StatusCode.UNAUTHENTICATED,
        "AUTH_REQUIRED",
    )
    assert "Bearer" in missing.message
    for wrong in ("Bearer not-it", f"Basic {TOKEN}", TOKEN, f"Bearer {TOKEN}x"):
        await expect_error(
            stub.CreateSession(
                pb.CreateSessionRequest(session_id="nope"), metadata=(("authorization", wrong),)
            ),
            grpc.StatusCode.UNAUTHENTICATED,
            "AUTH_INVALID",
        )
    listed = await stub.ListSessions(pb.ListSessionsRequest(), metadata=GOOD)
    assert list(listed.sessions) == []


async def test_the_token_lets_calls_through_in_any_scheme_case(
    stub: pb_grpc.BridgeServiceStub,
) -> None:
    created = await stub.CreateSession(pb.CreateSessionRequest(session_id="s1"), metadata=GOOD)
    assert created.session.session_id == "s1"
    lower = (("authorization", f"bearer {TOKEN}"),)
    got = await stub.GetSession(pb.GetSessionRequest(session_id="s1"), metadata=lower)
    assert got.session.session_id == "s1"


async def test_streams_need_the_token_too(stub: pb_grpc.BridgeServiceStub) -> None:
    await stub.CreateSession(pb.CreateSessionRequest(session_id="s1"), metadata=GOOD)
    call = stub.WatchVariables(pb.WatchVariablesRequest(session_id="s1"))

    async def first() -> object:
        return await call.read()

    await expect_error(asyncio.wait_for(first(), 10), grpc.StatusCode.UNAUTHENTICATED)


async def test_health_and_reflection_stay_open(server: RunningServer) -> None:
    async with grpc.aio.insecure_channel(server.target) as channel:
        reply = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest())
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        ask = reflection_pb2.ServerReflectionRequest(list_services="")
        async for answer in reflection.ServerReflectionInfo(iter([ask])):
            names = {s.name for s in answer.list_services_response.service}
            assert "dspy_bridge.v1.BridgeService" in names
            break


async def test_the_python_client_sends_the_token(server: RunningServer) -> None:
    bearer = {"authorization": f"Bearer {TOKEN}"}
    async with AsyncBridgeClient(server.target, metadata=bearer) as client:
        session = await client.create_session()
        assert (await client.session(session.session_id).get()).session_id == session.session_id
    async with AsyncBridgeClient(server.target) as client:
        with pytest.raises(UnauthenticatedError) as raised:
            await client.create_session()
    assert raised.value.reason == "AUTH_REQUIRED"


@pytest.mark.parametrize("bad", [" padded", "two words", "tab\there", "ünïcode"])
def test_a_token_that_cannot_travel_as_metadata_is_refused_at_start(bad: str) -> None:
    with pytest.raises(ValueError, match="printable ASCII"):
        Settings(auth_token=bad)  # type: ignore[arg-type]


def test_an_empty_token_means_no_authentication() -> None:
    assert Settings(auth_token="").auth_token is None  # type: ignore[arg-type]


def test_the_token_never_shows_in_the_settings_repr() -> None:
    assert TOKEN not in repr(Settings(auth_token=TOKEN))  # type: ignore[arg-type]


def test_a_refused_token_is_not_echoed_by_the_command_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--auth-token", "leaky secret"])
    assert exited.value.code == 2
    message = capsys.readouterr().err
    assert "--auth-token (DSPY_BRIDGE_AUTH_TOKEN)" in message and "printable ASCII" in message
    assert "leaky" not in message
