"""Sessions through a real channel: lifecycle, ids, paging, TTL expiry, limits."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2
from tests.integration.rpc import expect_error, fv

Stub = pb_grpc.BridgeServiceStub


async def test_ping_and_server_info(stub: Stub) -> None:
    pong = await stub.Ping(pb.PingRequest(message="hello"))
    assert pong.message == "hello" and pong.version and pong.server_time.seconds > 0
    info = await stub.GetServerInfo(pb.GetServerInfoRequest())
    assert info.store_backend == "memory"
    assert info.default_lm_model == "offline"
    assert variable_pb2.VARIABLE_TYPE_TENSOR in info.variable_types
    assert info.limits.max_sessions > 0


async def test_session_lifecycle(stub: Stub) -> None:
    created = (await stub.CreateSession(pb.CreateSessionRequest(metadata={"app": "t"}))).session
    assert created.session_id.startswith("ses_") and len(created.session_id) >= 32
    assert created.metadata["app"] == "t"
    got = (await stub.GetSession(pb.GetSessionRequest(session_id=created.session_id))).session
    assert got.session_id == created.session_id
    beat = (await stub.Heartbeat(pb.HeartbeatRequest(session_id=created.session_id))).session
    assert beat.expire_time.ToNanoseconds() >= created.expire_time.ToNanoseconds()
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=created.session_id))
    await expect_error(
        stub.GetSession(pb.GetSessionRequest(session_id=created.session_id)),
        grpc.StatusCode.NOT_FOUND,
        "SESSION_NOT_FOUND",
    )


async def test_session_ids_are_unguessable_and_chosen_ids_are_unique(stub: Stub) -> None:
    ids = {
        (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id for _ in range(20)
    }
    assert len(ids) == 20
    await stub.CreateSession(pb.CreateSessionRequest(session_id="mine"))
    err = await expect_error(
        stub.CreateSession(pb.CreateSessionRequest(session_id="mine")),
        grpc.StatusCode.ALREADY_EXISTS,
        "SESSION_ALREADY_EXISTS",
    )
    assert "mine" in err.message


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.CreateSessionRequest(session_id="bad id!"), "session_id"),
        (pb.CreateSessionRequest(ttl_seconds=-1), "ttl_seconds"),
    ],
)
async def test_bad_session_requests(
    stub: Stub, request_: pb.CreateSessionRequest, field: str
) -> None:
    err = await expect_error(stub.CreateSession(request_), grpc.StatusCode.INVALID_ARGUMENT)
    assert err.fields == [field]
    listed = await stub.ListSessions(pb.ListSessionsRequest())
    assert not listed.sessions


async def test_list_sessions_pages(stub: Stub) -> None:
    for i in range(5):
        await stub.CreateSession(pb.CreateSessionRequest(session_id=f"s{i}"))
    seen, token = [], ""
    while True:
        page = await stub.ListSessions(pb.ListSessionsRequest(page_size=2, page_token=token))
        seen += [s.session_id for s in page.sessions]
        token = page.next_page_token
        if not token:
            break
    assert seen == [f"s{i}" for i in range(5)]
    await expect_error(
        stub.ListSessions(pb.ListSessionsRequest(page_token="garbage")),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    )


async def test_unknown_session(stub: Stub) -> None:
    for call in (
        stub.GetSession(pb.GetSessionRequest(session_id="nope")),
        stub.DeleteSession(pb.DeleteSessionRequest(session_id="nope")),
        stub.Heartbeat(pb.HeartbeatRequest(session_id="nope")),
        stub.GetVariable(pb.GetVariableRequest(session_id="nope", name="x")),
    ):
        await expect_error(call, grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")


@pytest.mark.parametrize("settings_overrides", [{"expiry_interval_seconds": 0.05}])
async def test_ttl_expiry_removes_the_session_and_ends_watches(stub: Stub) -> None:
    session = (await stub.CreateSession(pb.CreateSessionRequest(ttl_seconds=1))).session
    sid = session.session_id
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid, name="t", type=variable_pb2.VARIABLE_TYPE_FLOAT, initial_value=fv(0.5)
        )
    )
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid))
    # Wait on the stream's own end event, bounded so a bug fails instead of hanging.
    events = await asyncio.wait_for(_collect(stream), timeout=10)
    assert events[-1].WhichOneof("event") == "session_ended"
    assert events[-1].session_ended.reason == "expired"
    await expect_error(
        stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="t")),
        grpc.StatusCode.NOT_FOUND,
        "SESSION_NOT_FOUND",
    )


async def _collect(stream: grpc.aio.UnaryStreamCall) -> list[pb.WatchVariablesResponse]:
    return [event async for event in stream]


@pytest.mark.parametrize(
    "settings_overrides", [{"max_sessions": 2, "max_variables_per_session": 1}]
)
async def test_limits(stub: Stub) -> None:
    await stub.CreateSession(pb.CreateSessionRequest(session_id="a"))
    await stub.CreateSession(pb.CreateSessionRequest(session_id="b"))
    await expect_error(
        stub.CreateSession(pb.CreateSessionRequest(session_id="c")),
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "SESSION_LIMIT",
    )
    reg = pb.RegisterVariableRequest(
        session_id="a", name="x", type=variable_pb2.VARIABLE_TYPE_FLOAT, initial_value=fv(1)
    )
    await stub.RegisterVariable(reg)
    reg.name = "y"
    await expect_error(
        stub.RegisterVariable(reg), grpc.StatusCode.RESOURCE_EXHAUSTED, "VARIABLE_LIMIT"
    )
