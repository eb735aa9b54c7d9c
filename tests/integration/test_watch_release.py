"""A WatchVariables call holds a subscription in the hub only while it lives: one cancelled at
any point (even before its first event, while its headers are being sent) gives it back:
otherwise it stays in the hub, offered every later change, until its session ends."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import value_pb2, variable_pb2

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


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_cancelled_delete_still_ends_the_sessions_watches(stub: Stub) -> None:
    """On SQLite a delete under way when its caller cancels still commits on the store's
    thread: what follows it (ending the session's watches, dropping its host connections and
    cached programs) must run too, or those watches wait forever on a session that is gone."""
    for round_ in range(30):
        sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
        watch = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid))
        await watch.initial_metadata()  # subscribed
        delete = stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid))
        for _ in range(round_ % 6):  # cancel at a different moment each round
            await asyncio.sleep(0.0005)
        delete.cancel()
        try:
            session = await stub.GetSession(pb.GetSessionRequest(session_id=sid))
        except grpc.aio.AioRpcError as err:
            assert err.code() == grpc.StatusCode.NOT_FOUND
        else:  # the cancel came first: nothing was deleted
            assert session.session.session_id == sid
            await stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid))
        async with asyncio.timeout(20):  # ends at once; a hang is the defect
            event = await watch.read()
        assert event.WhichOneof("event") == "session_ended"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_cancelled_write_that_commits_reaches_the_watchers(stub: Stub) -> None:
    """On SQLite a write under way when its caller cancels still commits: its change must still
    be published, or watchers see a version jump with no resync (a silent gap)."""
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid,
            name="n",
            type=variable_pb2.VARIABLE_TYPE_INTEGER,
            initial_value=value_pb2.Value(int_value=0),
        )
    )
    watch = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, names=["n"]))
    await watch.initial_metadata()  # subscribed
    for round_ in range(40):
        update = stub.UpdateVariable(
            pb.UpdateVariableRequest(
                session_id=sid, name="n", value=value_pb2.Value(int_value=round_)
            )
        )
        for _ in range(round_ % 8):  # cancel at a different moment each round
            await asyncio.sleep(0.0002)
        update.cancel()
    last = await stub.UpdateVariable(
        pb.UpdateVariableRequest(session_id=sid, name="n", value=value_pb2.Value(int_value=-1))
    )
    final = last.variable.version
    seen = [1]
    async with asyncio.timeout(30):
        while seen[-1] < final:
            event = await watch.read()
            assert event.WhichOneof("event") == "change", event
            seen.append(event.change.variable.version)
    watch.cancel()
    assert seen == list(range(1, final + 1))
