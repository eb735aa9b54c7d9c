"""A WatchVariables call holds a subscription in the hub only while it lives: one cancelled at
any point (even before its first event, while its headers are being sent) gives it back:
otherwise it stays in the hub, offered every later change, until its session ends."""

from __future__ import annotations

import asyncio

import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc

Stub = pb_grpc.BridgeServiceStub


async def _no_watchers_left(server: RunningServer) -> int:
    """The hub's watcher count once it stops falling (cancelled handlers unwind async)."""
    for _ in range(500):  # bounded; each round waits for a real RPC, not a guess
        count = server.hub.watcher_count()
        if count == 0:
            return 0
        await asyncio.sleep(0.01)
    return server.hub.watcher_count()


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
async def test_cancelled_watches_free_their_subscriptions(
    stub: Stub, server: RunningServer
) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    for round_ in range(10):
        # 50 watches at once, cancelled together as soon as one is live: some land while
        # their handler waits to send its headers, before the event generator ever started.
        calls = [
            stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, include_initial=True))
            for _ in range(50)
        ]
        await calls[round_].initial_metadata()
        for call in calls:
            call.cancel()
        await stub.Ping(pb.PingRequest())
    assert await _no_watchers_left(server) == 0
