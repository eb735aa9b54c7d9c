"""`ExecutionViews.read` (`SharedReads`): Executes of one module share reads, never one sent
before they came; the views are bounded."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from dspy_bridge.errors import BridgeError, session_not_found
from dspy_bridge.model import ModuleRecord, Session
from dspy_bridge.store.redis_views import ExecutionView, ExecutionViews, ViewKey, ViewRead

KEY: ViewKey = ("s1", "qa", 0)


def a_view(n: int) -> ExecutionView:
    session = Session(session_id="s1", create_time=1.0)
    record = ModuleRecord("s1", "qa", n, {"signature": "q -> a"}, None, 1.0, 1.0)
    return ExecutionView((f"e{n}", str(n), "0"), session, record, [])


class GatedReader:
    """A reader whose reads each wait for a release; counts the reads sent."""

    def __init__(self) -> None:
        self.sent = 0
        self.gates: list[asyncio.Event] = []
        self.started = asyncio.Event()

    async def __call__(self, key: ViewKey) -> ViewRead:
        self.sent += 1
        n = self.sent
        gate = asyncio.Event()
        self.gates.append(gate)
        self.started.set()
        await gate.wait()
        return a_view(n), None

    async def next_read(self) -> asyncio.Event:
        """The gate of the next read once it has been sent."""
        await self.started.wait()
        self.started.clear()
        return self.gates[-1]


async def test_calls_arriving_during_a_read_share_the_next_one_not_that_one() -> None:
    views, reader = ExecutionViews(), GatedReader()
    first = asyncio.create_task(views.read(KEY, reader))
    gate_1 = await reader.next_read()
    # Arrive while read 1 is on its way: they must not get read 1 (sent before they came).
    later = [asyncio.create_task(views.read(KEY, reader)) for _ in range(5)]
    await asyncio.sleep(0)  # let them join
    gate_1.set()
    assert (await first)[0].record.version == 1
    gate_2 = await reader.next_read()
    gate_2.set()
    assert [(await t)[0].record.version for t in later] == [2] * 5
    assert reader.sent == 2  # six calls, two reads


async def test_a_cancelled_caller_leaves_the_shared_read_to_the_others() -> None:
    views, reader = ExecutionViews(), GatedReader()
    first = asyncio.create_task(views.read(KEY, reader))
    gate_1 = await reader.next_read()  # the first caller's own read (nothing was in flight)
    leaver = asyncio.create_task(views.read(KEY, reader))
    stayer = asyncio.create_task(views.read(KEY, reader))
    await asyncio.sleep(0)  # both join the next read
    gate_1.set()
    gate_2 = await reader.next_read()
    leaver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await leaver
    gate_2.set()
    assert (await stayer)[0].record.version == 2
    assert (await first)[0].record.version == 1


async def test_a_cancelled_caller_of_its_own_read_leaves_the_next_one_to_the_others() -> None:
    """A call that found nothing in flight reads at once; cancelled, it takes only its own read
    with it, and who arrived meanwhile still gets the next one."""
    views, reader = ExecutionViews(), GatedReader()
    alone = asyncio.create_task(views.read(KEY, reader))
    await reader.next_read()
    later = asyncio.create_task(views.read(KEY, reader))
    await asyncio.sleep(0)  # joins the next read, which waits for the one in flight
    alone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await alone
    gate_2 = await reader.next_read()
    gate_2.set()
    assert (await later)[0].record.version == 2
    assert reader.sent == 2


async def test_every_caller_of_a_failed_read_raises_its_own_error() -> None:
    views = ExecutionViews()
    release = asyncio.Event()

    async def gone(key: ViewKey) -> ViewRead:
        await release.wait()
        raise session_not_found(key[0])

    calls = [asyncio.create_task(views.read(KEY, gone)) for _ in range(3)]
    await asyncio.sleep(0)
    release.set()
    errors = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(e, BridgeError) for e in errors)
    assert len({id(e) for e in errors}) == 3
    assert {(e.code, e.reason) for e in errors if isinstance(e, BridgeError)} == {
        (grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    }


async def test_views_are_bounded_and_dropped_with_their_session() -> None:
    views = ExecutionViews(limit=2)
    for n, key in enumerate([("s1", "a", 0), ("s1", "b", 0), ("s2", "a", 0)]):
        views.put(key, a_view(n))
    assert len(views) == 2 and views.get(("s1", "a", 0)) is None
    views.drop_session("s2")
    assert len(views) == 1 and views.get(("s1", "b", 0)) is not None
