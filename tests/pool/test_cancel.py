"""A cancelled call frees its pool slot on every path: Execute, ExecuteBatch and ExecuteStream,
cancelled while queued in the front, before the worker has started it, mid-LM call and while a
host tool call is pending. Each
test ends by waiting (on pool state changes, bounded) until nothing is in flight or queued, then
runs one more execution to show the capacity is back."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Iterator

import grpc
import pytest

from dspy_bridge.pool import WorkerPool
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import value_pb2
from tests.host.raw_host import RawHost, hello, tool
from tests.pool.helpers import (
    Stub,
    create_react_agent,
    execute_request,
    in_flight,
    pooled,
    session_with_module,
)

pytestmark = pytest.mark.slow

# The repro: one worker, 4 calls at a time, 8 waiting.
SMALL_POOL = {"workers": 1, "worker_concurrency": 4, "worker_queue_size": 8}
# Generous bounds: these are deadlines for events on a loaded 2-core machine, not expectations.
DRAIN_WITHIN = 60.0


def stream_request(sid: str, question: str = "hi") -> pb.ExecuteStreamRequest:
    return pb.ExecuteStreamRequest(
        session_id=sid, module_id="qa", inputs={"question": value_pb2.Value(string_value=question)}
    )


def batch_request(sid: str, n: int) -> pb.ExecuteBatchRequest:
    return pb.ExecuteBatchRequest(
        session_id=sid,
        module_id="qa",
        items=[
            pb.ExecuteBatchItem(inputs={"question": value_pb2.Value(string_value=f"q{i}")})
            for i in range(n)
        ],
        max_concurrency=n,
    )


async def drained(pool: WorkerPool) -> None:
    """Nothing runs in a worker and nothing waits for one."""
    await pool.wait_for(
        lambda: pool.stats()["in_flight"] == 0 and pool.stats()["queue_depth"] == 0,
        DRAIN_WITHIN,
    )


async def still_serves(stub: Stub, pool: WorkerPool) -> None:
    """Every slot is free again: as many calls as the worker runs at once all run now."""
    sid = await session_with_module(stub)
    calls = [stub.Execute(execute_request(sid)) for _ in range(pool.config.concurrency)]
    for response in await asyncio.gather(*calls):
        assert response.outputs["answer"].string_value


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    """The worker process is frozen (SIGSTOP): what the front sends it waits in its socket."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def cancels_sent(pool: WorkerPool, n: int) -> bool:
    """`n` calls are in a worker and the front has asked it to cancel every one of them."""
    calls = [c for h in pool._handles for c in h.in_flight.values()]
    return len(calls) == n and all(c.cancelled for c in calls)


async def test_cancel_before_the_worker_starts_the_call_frees_the_slot() -> None:
    """The worker reads `exec` and `cancel` together, so the call's task is cancelled before
    its first step: it must still answer `cancelled` (this leaked the slot for good)."""
    async with pooled(**SMALL_POOL) as (_, pool, stub):
        sid = await session_with_module(stub, latency_ms=60_000)
        with stopped(pool.pids()[0]):
            unary = stub.Execute(execute_request(sid))
            stream = stub.ExecuteStream(stream_request(sid))
            batch = stub.ExecuteBatch(batch_request(sid, 2))
            await in_flight(pool, 4, within=DRAIN_WITHIN)
            for call in (unary, stream, batch):
                call.cancel()
            await pool.wait_for(lambda: cancels_sent(pool, 4), DRAIN_WITHIN)
        await drained(pool)
        await still_serves(stub, pool)


async def test_cancel_while_queued_in_the_front_frees_the_place() -> None:
    async with pooled(**SMALL_POOL) as (_, pool, stub):
        sid = await session_with_module(stub, latency_ms=60_000)
        running = [stub.ExecuteStream(stream_request(sid)) for _ in range(4)]
        await in_flight(pool, 4, within=DRAIN_WITHIN)
        queued: list[grpc.aio.Call] = [
            stub.Execute(execute_request(sid)),
            stub.ExecuteStream(stream_request(sid)),
            stub.ExecuteBatch(batch_request(sid, 3)),
        ]
        await pool.wait_for(lambda: pool.stats()["queue_depth"] == 5, DRAIN_WITHIN)
        for call in queued:
            call.cancel()
        await pool.wait_for(lambda: pool.stats()["queue_depth"] == 0, DRAIN_WITHIN)
        for call in running:
            call.cancel()
        await drained(pool)
        await still_serves(stub, pool)


async def test_cancel_mid_lm_call_frees_the_slot() -> None:
    """Rounds of the issue's repro, cancelled on events instead of timers: streams after
    their first status message (the LM call is under way), unary calls and batches once they
    run in the worker, and the calls still queued behind them."""
    async with pooled(**SMALL_POOL) as (_, pool, stub):
        sid = await session_with_module(stub, latency_ms=60_000)
        for _ in range(3):
            streams = [stub.ExecuteStream(stream_request(sid)) for _ in range(2)]
            for stream in streams:
                assert (await stream.read()).WhichOneof("event") == "status"
            unary = stub.Execute(execute_request(sid))
            batch = stub.ExecuteBatch(batch_request(sid, 1))
            await in_flight(pool, 4, within=DRAIN_WITHIN)
            waiting = [stub.ExecuteStream(stream_request(sid)) for _ in range(8)]
            await pool.wait_for(lambda: pool.stats()["queue_depth"] == 8, DRAIN_WITHIN)
            for call in [*streams, unary, batch, *waiting]:
                call.cancel()
            await drained(pool)
        await still_serves(stub, pool)


async def test_cancel_during_a_host_tool_call_frees_the_slot() -> None:
    """A ReAct module in a worker waits on a tool of a connected host that never answers:
    cancelling the execution (unary and stream) frees the worker's slot and tells the host."""
    async with pooled(**SMALL_POOL) as (_, pool, stub):
        sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
        async with RawHost(stub, hello(sid, [tool("lookup")])) as host:
            await create_react_agent(stub, sid, "host:lookup")
            request = {"question": value_pb2.Value(string_value="where is it?")}
            unary = stub.Execute(
                pb.ExecuteRequest(session_id=sid, module_id="agent", inputs=request)
            )
            stream = stub.ExecuteStream(
                pb.ExecuteStreamRequest(session_id=sid, module_id="agent", inputs=request)
            )
            calls = {(await host.read()).tool_call.call_id for _ in range(2)}
            await in_flight(pool, 2, within=DRAIN_WITHIN)
            unary.cancel()
            stream.cancel()
            cancelled = {(await host.read()).cancel.call_id for _ in range(2)}
            assert cancelled == calls
            await drained(pool)
        await still_serves(stub, pool)


async def test_a_worker_dying_during_a_host_tool_call_fails_it_and_tells_the_host() -> None:
    """The worker running the ReAct module is killed while its host tool call waits: the
    execution fails UNAVAILABLE WORKER_LOST, the host gets `cancel`, the hub holds nothing for
    it, and the pool serves again."""
    async with pooled(**SMALL_POOL) as (server, pool, stub):
        sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
        async with RawHost(stub, hello(sid, [tool("lookup")])) as host:
            await create_react_agent(stub, sid, "host:lookup")
            request = {"question": value_pb2.Value(string_value="where is it?")}
            unary = stub.Execute(
                pb.ExecuteRequest(session_id=sid, module_id="agent", inputs=request)
            )
            call_id = (await host.read()).tool_call.call_id
            [pid] = pool.pids()
            os.kill(pid, signal.SIGKILL)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await unary
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "WORKER_LOST" in str(caught.value.trailing_metadata())
            assert (await host.read()).cancel.call_id == call_id
            assert server.hosts is not None
            assert not any(c.pending for c in server.hosts._connections(sid))
            await drained(pool)
            await pool.wait_for(lambda: len(pool.pids()) == 1, DRAIN_WITHIN)
        await still_serves(stub, pool)
