"""The watch pipeline without gRPC: a consumer that stops reading never blocks writers and,
when it reads again, gets one resync and then every later version, in order."""

from __future__ import annotations

import pytest

from dspy_bridge.config import Settings
from dspy_bridge.model import Constraints, VariableType
from dspy_bridge.services.sessions import SessionService
from dspy_bridge.services.variables import Resync, SessionGone, VariableService, WriteRequest
from dspy_bridge.services.watch import Change, ChangeKind, WatchHub
from dspy_bridge.store.memory import MemoryStore


@pytest.fixture
def services() -> tuple[SessionService, VariableService]:
    settings = Settings(watch_queue_size=8, session_ttl_seconds=0)
    store = MemoryStore()
    hub = WatchHub(settings.watch_queue_size)
    return SessionService(store, hub, settings), VariableService(store, hub, settings)


async def test_slow_consumer_gets_resync_then_every_later_version(
    services: tuple[SessionService, VariableService],
) -> None:
    sessions, variables = services
    sid = (await sessions.create("", {}, 0)).session_id
    await variables.register(sid, "n", VariableType.INTEGER, 0, Constraints())
    events = await variables.watch(sid, ["n"], include_initial=True)
    first = await anext(events)
    assert isinstance(first, Change) and first.kind is ChangeKind.INITIAL
    for i in range(1, 101):  # the consumer is not reading; writers must not block
        await variables.update(sid, WriteRequest("n", i))
    resync = await anext(events)
    assert isinstance(resync, Resync) and resync.skipped > 0
    assert resync.variables[0].version == 101
    for i in range(101, 104):
        await variables.update(sid, WriteRequest("n", i))
    versions = []
    for _ in range(3):
        change = await anext(events)
        assert isinstance(change, Change)
        versions.append(change.variable.version)
    assert versions == [102, 103, 104]
    await sessions.delete(sid)
    assert await anext(events) == SessionGone("deleted")
