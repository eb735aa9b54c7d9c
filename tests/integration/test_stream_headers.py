"""Server streams send their response headers at once, before the first event.

Client libraries that return a stream only once its headers arrive (grpc-elixir's stub, for one)
would otherwise block on a watch until the first change happens. WatchVariables sends them once
it is subscribed, so a client that has the headers cannot miss a later change.
"""

from __future__ import annotations

import asyncio

import grpc

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.integration.rpc import iv

# Generous: the headers need no event, only a scheduled task, even on a loaded machine.
HEADERS_WITHIN_SECONDS = 20.0


async def test_watch_with_no_events_yet_returns_headers_once_subscribed(
    stub: pb_grpc.BridgeServiceStub,
) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid, name="n", type=vpb.VARIABLE_TYPE_INTEGER, initial_value=iv(1)
        )
    )
    # Each round writes right after the headers: the watch must already see that write.
    for version in range(2, 12):
        stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, names=["n"]))
        try:
            metadata = await asyncio.wait_for(stream.initial_metadata(), HEADERS_WITHIN_SECONDS)
            assert metadata is not None
            await stub.UpdateVariable(
                pb.UpdateVariableRequest(session_id=sid, name="n", value=iv(version))
            )
            event = await asyncio.wait_for(stream.read(), HEADERS_WITHIN_SECONDS)
            assert event.change.variable.version == version
        finally:
            stream.cancel()


async def test_whole_session_watch_returns_headers(stub: pb_grpc.BridgeServiceStub) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid))
    try:
        await asyncio.wait_for(stream.initial_metadata(), HEADERS_WITHIN_SECONDS)
        await stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid))
        event = await asyncio.wait_for(stream.read(), HEADERS_WITHIN_SECONDS)
        assert event.session_ended.reason == "deleted"
    finally:
        stream.cancel()


async def test_a_bad_watch_still_fails_before_any_headers(
    stub: pb_grpc.BridgeServiceStub,
) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, names=["ghost"]))
    # A trailers-only answer: the status arrives without response headers of their own.
    code = await asyncio.wait_for(stream.code(), HEADERS_WITHIN_SECONDS)
    assert code == grpc.StatusCode.NOT_FOUND
    assert not await stream.initial_metadata()
