"""Pool fault cases against real worker processes, each ending with its documented status and
nothing stored lost: worker SIGKILL under load, an LM hanging past the deadline, client cancels
(unary and streaming), queue overflow, recycling (requests, RSS), crash-loop backoff."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time

import grpc
import pytest

from dspy_bridge.pool import PoolConfig, WorkerPool, restart_delay
from dspy_bridge.pool import pool as pool_module
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import value_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.integration.rpc import expect_error, rich_error
from tests.pool.helpers import execute_request, in_flight, pooled, session_with_module

pytestmark = pytest.mark.slow


async def test_worker_sigkill_under_load_fails_only_its_calls_and_recovers() -> None:
    async with pooled(workers=2) as (_, pool, stub):
        sids = [await session_with_module(stub, latency_ms=1500) for _ in range(8)]
        await stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sids[0],
                name="n",
                type=vpb.VARIABLE_TYPE_INTEGER,
                initial_value=value_pb2.Value(int_value=7),
            )
        )
        calls = [asyncio.ensure_future(stub.Execute(execute_request(s))) for s in sids * 2]
        await in_flight(pool, len(calls))
        victim = pool.pids()[0]
        os.kill(victim, signal.SIGKILL)
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        lost = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        assert lost and len(lost) < len(calls)  # only the killed worker's calls failed
        for err in lost:
            rich = rich_error(err)
            assert (rich.code, rich.reason) == (grpc.StatusCode.UNAVAILABLE, "WORKER_LOST")
            assert rich.metadata["retryable"] == "true"
        await pool.wait_for(lambda: pool.stats()["workers_alive"] == 2, 30)
        assert victim not in pool.pids()
        info = await stub.GetServerInfo(pb.GetServerInfoRequest())
        assert (info.pool.workers, info.pool.workers_alive, info.pool.restarts) == (2, 2, 1)
        # every session, including those that lost calls, works again
        await asyncio.gather(*(stub.Execute(execute_request(sid)) for sid in sids))
        var = await stub.GetVariable(pb.GetVariableRequest(session_id=sids[0], name="n"))
        assert var.variable.value.int_value == 7
        module = await stub.GetModule(pb.GetModuleRequest(session_id=sids[0], module_id="qa"))
        assert module.module.version == 1


async def test_lm_hanging_past_the_deadline_is_cancelled_in_the_worker() -> None:
    async with pooled() as (_, pool, stub):
        sid = await session_with_module(stub, latency_ms=60_000)
        started = time.perf_counter()
        await expect_error(
            stub.Execute(execute_request(sid, timeout_ms=300)),
            grpc.StatusCode.DEADLINE_EXCEEDED,
            "DEADLINE_EXCEEDED",
        )
        await in_flight(pool, 0, within=60)
        # The gRPC deadline alone (no timeout_ms) also reaches the worker's LM call.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Execute(execute_request(sid), timeout=0.5)
        assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        await in_flight(pool, 0, within=60)
        assert time.perf_counter() - started < 45  # nothing waited for the 60 s LM
        assert pool.stats()["workers_alive"] == 1


async def test_client_cancel_cancels_the_worker_call() -> None:
    async with pooled() as (_, pool, stub):
        sid = await session_with_module(stub, latency_ms=60_000)
        call = stub.Execute(execute_request(sid))
        await in_flight(pool, 1)
        call.cancel()
        await in_flight(pool, 0, within=60)  # the worker confirmed the cancel
        stream = stub.ExecuteStream(
            pb.ExecuteStreamRequest(
                session_id=sid,
                module_id="qa",
                inputs={"question": value_pb2.Value(string_value="hi")},
            )
        )
        first = await stream.read()
        assert first.WhichOneof("event") == "status"
        stream.cancel()
        await in_flight(pool, 0, within=60)


async def test_stream_through_the_pool_and_record_resend_on_miss() -> None:
    async with pooled() as (_, pool, stub):
        sid = await session_with_module(stub)
        kinds = [
            r.WhichOneof("event")
            async for r in stub.ExecuteStream(
                pb.ExecuteStreamRequest(
                    session_id=sid,
                    module_id="qa",
                    inputs={"question": value_pb2.Value(string_value="hi")},
                )
            )
        ]
        assert kinds[0] == "status" and "chunk" in kinds and kinds[-1] == "result"
        # The worker drops its copy of the record behind the front's back: it answers
        # `miss` and the front resends the record.
        for handle in pool._handles:
            handle.send(("forget", sid))
        result = await stub.Execute(execute_request(sid))
        assert result.outputs["answer"].string_value


async def test_queue_overflow_is_resource_exhausted_with_retry_hint() -> None:
    async with pooled(worker_concurrency=1, worker_queue_size=1) as (_, pool, stub):
        sid = await session_with_module(stub, latency_ms=600)
        running = [asyncio.ensure_future(stub.Execute(execute_request(sid))) for _ in range(2)]
        await pool.wait_for(lambda: pool.stats()["queue_depth"] == 1, 20)
        info = await stub.GetServerInfo(pb.GetServerInfoRequest())
        assert (info.pool.in_flight, info.pool.queue_depth) == (1, 1)
        rich = await expect_error(
            stub.Execute(execute_request(sid)), grpc.StatusCode.RESOURCE_EXHAUSTED, "QUEUE_FULL"
        )
        assert int(rich.metadata["retry_after_ms"]) > 0
        for response in await asyncio.gather(*running):  # the accepted calls all finish
            assert response.outputs["answer"].string_value


async def test_recycling_after_n_requests_fails_nothing_in_flight() -> None:
    async with pooled(worker_max_requests=3) as (_, pool, stub):
        sid = await session_with_module(stub, latency_ms=300)
        first = pool.pids()[0]
        results = await asyncio.gather(*(stub.Execute(execute_request(sid)) for _ in range(6)))
        assert all(r.outputs["answer"].string_value for r in results)
        assert pool.stats()["recycled"] >= 1 and pool.stats()["crashes"] == 0
        await pool.wait_for(lambda: bool(pool.pids()) and first not in pool.pids(), 30)
        assert pool.stats()["workers_alive"] == 1


async def test_recycling_above_rss_limit_replaces_the_worker() -> None:
    async with pooled(worker_max_rss_mb=1) as (_, pool, stub):  # any worker is above 1 MB
        sid = await session_with_module(stub)
        first = pool.pids()[0]
        assert (await stub.Execute(execute_request(sid))).outputs["answer"].string_value
        await pool.wait_for(lambda: pool.stats()["recycled"] >= 1, 20)
        await pool.wait_for(lambda: bool(pool.pids()) and first not in pool.pids(), 30)
        assert (await stub.Execute(execute_request(sid))).outputs["answer"].string_value
        assert pool.stats()["crashes"] == 0


def test_restart_delay_grows_exponentially_to_a_cap() -> None:
    delays = [restart_delay(n, 0.5, 4.0) for n in range(1, 8)]
    assert delays == [0.0, 0.5, 1.0, 2.0, 4.0, 4.0, 4.0]


async def test_crash_looping_worker_backs_off() -> None:
    config = PoolConfig(workers=1, backoff_seconds=0.2, backoff_max_seconds=1.0)
    pool = WorkerPool(
        config, worker_command=lambda fd: [sys.executable, "-c", "raise SystemExit(3)"]
    )
    started = time.monotonic()
    await pool.start()
    try:
        await pool.wait_for(lambda: pool.crashes >= 4, 20)
        # deaths 2, 3 and 4 waited 0, 0.2 and 0.4 s: the loop is not hot
        assert time.monotonic() - started >= 0.6
        assert pool.stats()["workers_alive"] == 0
    finally:
        await pool.close()


async def test_a_wedged_worker_is_killed_and_replaced(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that stops answering (SIGSTOP stands in for an event loop stuck in C code) is
    killed once it lets a call pass its deadline and a cancel, and a new worker serves."""
    monkeypatch.setattr(pool_module, "DEADLINE_MARGIN_S", 0.5)
    async with pooled() as (_, pool, stub):
        sid = await session_with_module(stub)
        [wedged] = pool.pids()
        os.kill(wedged, signal.SIGSTOP)
        try:
            await expect_error(
                stub.Execute(execute_request(sid, timeout_ms=300)),
                grpc.StatusCode.DEADLINE_EXCEEDED,
                "DEADLINE_EXCEEDED",
            )
            await pool.wait_for(lambda: pool.pids() not in ([], [wedged]), within=60)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(wedged, signal.SIGCONT)
        response = await stub.Execute(execute_request(sid))
        assert response.outputs["answer"].string_value
        assert pool.stats()["crashes"] == 1
