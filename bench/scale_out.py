"""Issue-13 suite: the Redis store against the memory store, side by side in one run.

One real redis-server (AOF; once with `appendfsync always` as in the compose file, once with
`everysec`) and three sidecars: one on `memory://`, two replicas on the same Redis. Each round
loads memory and Redis *at the same time*, each side's 32 callers in a process of their own, so
other work on the machine weighs on both alike; the median of the per-round ratios is reported,
with the serving processes' CPU time per call (the sidecar, plus redis-server on the Redis
side), the cost behind each ratio:

- UpdateVariable throughput at 32 callers (Redis replica vs the memory sidecar);
- Execute throughput at 32 callers (a Predict module with a bound variable, offline LM; an
  execution reads the store but never writes it);
- Execute at the same fixed rate on both sides (`BENCH_EXECUTE_RATE`, 250 /s): the server CPU
  per Execute at equal work, the cost without the closed loop's feedback (a side that gets more
  of the machine serves more calls per wake-up and so spends less per call);
- update → watch delivery across replicas: an updater writes through replica A, 10 watchers
  read on replica B (p50/p99), next to the same measure on the memory sidecar;
- the store calls behind Execute and UpdateVariable, made in process by 32 callers on each
  store (`bench/store_calls.py`): the replica's own CPU per call, steadier than throughput.

`BENCH_ROUNDS` (3), `BENCH_SECONDS` (3 per measure), `BENCH_APPENDFSYNC` (`always,everysec`)
and `BENCH_EXECUTE_RATE` (250) shorten, lengthen or reshape a run.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import grpc

from bench.execute import QUESTION, _bridge_setup
from bench.harness import bridge_server, closed_loop, cpu_seconds, fixed_rate, median
from bench.store_calls import store_calls
from bench.variables import watch_latency
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import value_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.redis_server import RedisServer

CONCURRENCY = 32
WATCHERS = 10
#: `closed_loop`'s warm-up before it measures.
WARMUP_S = 0.5
# Shorter or longer runs: rounds, seconds per measure, and which AOF settings to measure.
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "3"))
FSYNCS = os.environ.get("BENCH_APPENDFSYNC", "always,everysec").split(",")
#: Executes per second on each side in the equal-load measure (well below either's ceiling).
EXECUTE_RATE = float(os.environ.get("BENCH_EXECUTE_RATE", "250"))


async def _start_at(when: float) -> None:
    """Waits until `when` (wall clock): both sides' load starts at the same moment."""
    await asyncio.sleep(max(0.0, when - time.time()))


async def _updates(target: str, seconds: float, start_at: float = 0.0) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
        await stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid,
                name="temperature",
                type=vpb.VARIABLE_TYPE_FLOAT,
                initial_value=value_pb2.Value(float_value=0.5),
                constraints=vpb.VariableConstraints(min=0, max=2),
            )
        )
        counter = iter(range(10**9))

        def update() -> Any:
            x = (next(counter) % 200) / 100
            return stub.UpdateVariable(
                pb.UpdateVariableRequest(
                    session_id=sid, name="temperature", value=value_pb2.Value(float_value=x)
                )
            )

        await _start_at(start_at)
        result = await closed_loop(update, concurrency=CONCURRENCY, seconds=seconds)
    return result.summary()


async def _executes(
    target: str, seconds: float, start_at: float = 0.0, rate: float = 0.0
) -> dict[str, float]:
    """32 callers back to back, or with `rate` Executes started per second (at most 32 at once)."""
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        sid, module_id = await _bridge_setup(stub, "Predict")
        request = pb.ExecuteRequest(
            session_id=sid,
            module_id=module_id,
            inputs={"question": value_pb2.Value(string_value=QUESTION)},
        )
        await _start_at(start_at)
        if rate:
            result = await fixed_rate(
                lambda: stub.Execute(request),
                rate=rate,
                max_outstanding=CONCURRENCY,
                seconds=seconds,
                warmup=WARMUP_S,
            )
        else:
            result = await closed_loop(
                lambda: stub.Execute(request), concurrency=CONCURRENCY, seconds=seconds
            )
    return result.summary()


async def _executes_at_rate(target: str, seconds: float, start_at: float = 0.0) -> dict[str, float]:
    return await _executes(target, seconds, start_at, rate=EXECUTE_RATE)


async def _delivery(writer: str, reader: str, updates: int) -> dict[str, float]:
    """Update → watch delivery across replicas: written through `writer`, watched on `reader`."""
    return await watch_latency(writer, WATCHERS, updates, reader=reader)


def run(rounds: int = ROUNDS, seconds: float = SECONDS) -> dict[str, Any]:
    """Redis with `appendfsync always` (nothing acknowledged is lost: every write waits for
    the disk) and with `everysec` (up to a second lost on a power cut), each side by side with
    memory (`BENCH_APPENDFSYNC=always` measures one)."""
    return {f"appendfsync_{mode}": _run_with(mode, rounds, seconds) for mode in FSYNCS}


_MEASURES = {"update": _updates, "execute": _executes, "execute_at_rate": _executes_at_rate}
#: Seconds from submitting both sides' loads to their common start (a child's setup fits).
_LEAD_S = 2.0


def _load_in_child(what: str, target: str, seconds: float, start_at: float) -> dict[str, float]:
    return asyncio.run(_MEASURES[what](target, seconds, start_at))


def _together(
    pool: ProcessPoolExecutor, what: str, sides: dict[str, tuple[str, list[int]]], seconds: float
) -> dict[str, dict[str, float]]:
    """`what` on every side at the same time, each side's 32 callers in a process of its own,
    with the CPU time each side's serving processes (the sidecar, and redis-server for the
    Redis side) spent per call. Both sides share the same moments of the machine, so load from
    other work weighs on both alike: the ratio compares what a call costs each side."""
    start_at = time.time() + _LEAD_S
    futures = {
        side: pool.submit(_load_in_child, what, target, seconds, start_at)
        for side, (target, _) in sides.items()
    }
    time.sleep(max(0.0, start_at + WARMUP_S - time.time()))
    before = {side: sum(cpu_seconds(pid) for pid in pids) for side, (_, pids) in sides.items()}
    time.sleep(max(0.0, start_at + WARMUP_S + seconds - time.time()))
    results = {side: future.result() for side, future in futures.items()}
    for side, (_, pids) in sides.items():
        spent = sum(cpu_seconds(pid) for pid in pids) - before[side]
        calls = max(results[side]["calls"], 1)
        results[side]["server_cpu_ms_per_call"] = round(1000 * spent / calls, 3)
    return results


def _run_with(appendfsync: str, rounds: int, seconds: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    memory_pid: list[int] = []
    redis_pids: list[int] = []
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis", appendfsync=appendfsync)
        redis.start()
        assert redis.proc is not None
        redis_pids.append(redis.proc.pid)
        url = f"{redis.url}?key_prefix=bench"
        try:
            with (
                bridge_server("--workers", "0", "--store", "memory://", pids=memory_pid) as (
                    memory,
                    _,
                ),
                bridge_server("--workers", "0", "--store", url, pids=redis_pids) as (replica_a, _),
                bridge_server("--workers", "0", "--store", url) as (replica_b, _),
            ):
                sides = {"memory": (memory, memory_pid), "redis": (replica_a, redis_pids)}
                spawn = multiprocessing.get_context("spawn")
                with ProcessPoolExecutor(max_workers=2, mp_context=spawn) as pool:
                    for _ in range(rounds):
                        row: dict[str, Any] = {}
                        for what in _MEASURES:
                            both = _together(pool, what, sides, seconds)
                            for side, result in both.items():
                                row[f"{what}_{side}"] = result
                        rows.append(row)
                watch_memory = asyncio.run(_delivery(memory, memory, updates=500))
                watch_across = asyncio.run(_delivery(replica_a, replica_b, updates=500))
            calls = store_calls(f"{redis.url}?key_prefix=bench-calls")
        finally:
            redis.kill()

    def ratio(a: str, b: str, field: str = "throughput_per_s") -> float:
        return round(median([r[a][field] / r[b][field] for r in rows]), 3)

    def cpu(side: str) -> float:
        return round(median([r[side]["server_cpu_ms_per_call"] for r in rows]), 3)

    return {
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "rounds": rows,
        "update_redis_vs_memory": ratio("update_redis", "update_memory"),
        "execute_redis_vs_memory": ratio("execute_redis", "execute_memory"),
        # Server CPU per call (median of the rounds) and memory's over Redis's: the cost side
        # of the same ratios, steadier than throughput when other work shares the machine.
        "server_cpu_ms_per_call": {
            key: cpu(key)
            for key in (
                "update_memory",
                "update_redis",
                "execute_memory",
                "execute_redis",
                "execute_at_rate_memory",
                "execute_at_rate_redis",
            )
        },
        "update_cpu_memory_over_redis": ratio(
            "update_memory", "update_redis", "server_cpu_ms_per_call"
        ),
        "execute_cpu_memory_over_redis": ratio(
            "execute_memory", "execute_redis", "server_cpu_ms_per_call"
        ),
        # The same at an equal fixed rate on both sides: what an Execute costs each, at equal work.
        "execute_at_rate_per_s": EXECUTE_RATE,
        "execute_at_rate_cpu_redis_over_memory": ratio(
            "execute_at_rate_redis", "execute_at_rate_memory", "server_cpu_ms_per_call"
        ),
        # The replica's own cost of the store, in process (bench/store_calls.py).
        "store_calls_32_callers": calls,
        "watch_memory_same_server": watch_memory,
        "watch_redis_across_replicas": watch_across,
        "targets": {
            "update_redis_vs_memory": ">= 0.5",
            "watch_across_replicas_p99_ms": "<= 10",
            "execute_redis_vs_memory": ">= 0.9",
        },
    }
