"""Issue-13 suite: the Redis store against the memory store, side by side in one run.

One real redis-server (AOF; once with `appendfsync always` as in the compose file, once with
`everysec`) and three sidecars:
one on `memory://`, two replicas on the same Redis. Each round measures memory and Redis back
to back with the same load generator, and the median of the per-round ratios is reported:

- UpdateVariable throughput at 32 callers (Redis replica vs the memory sidecar);
- update → watch delivery across replicas: an updater writes through replica A, 10 watchers
  read on replica B (p50/p99), next to the same measure on the memory sidecar;
- Execute throughput at 32 callers (a Predict module with a bound variable, offline LM; an
  execution reads the store but never writes it).
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import grpc

from bench.execute import QUESTION, _bridge_setup
from bench.harness import bridge_server, closed_loop, median
from bench.variables import watch_latency
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import value_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.redis_server import RedisServer

CONCURRENCY = 32
WATCHERS = 10


async def _updates(target: str, seconds: float) -> dict[str, float]:
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

        result = await closed_loop(update, concurrency=CONCURRENCY, seconds=seconds)
    return result.summary()


async def _executes(target: str, seconds: float) -> dict[str, float]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        sid, module_id = await _bridge_setup(stub, "Predict")
        request = pb.ExecuteRequest(
            session_id=sid,
            module_id=module_id,
            inputs={"question": value_pb2.Value(string_value=QUESTION)},
        )
        result = await closed_loop(
            lambda: stub.Execute(request), concurrency=CONCURRENCY, seconds=seconds
        )
    return result.summary()


async def _delivery(writer: str, reader: str, updates: int) -> dict[str, float]:
    """Update → watch delivery across replicas: written through `writer`, watched on `reader`."""
    return await watch_latency(writer, WATCHERS, updates, reader=reader)


def run(rounds: int = 3, seconds: float = 3.0) -> dict[str, Any]:
    """Redis with `appendfsync always` (nothing acknowledged is lost: every write waits for
    the disk) and with `everysec` (up to a second lost on a power cut), each side by side with
    memory."""
    return {
        "appendfsync_always": _run_with("always", rounds, seconds),
        "appendfsync_everysec": _run_with("everysec", rounds, seconds),
    }


def _run_with(appendfsync: str, rounds: int, seconds: float) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        redis = RedisServer(Path(tmp) / "redis", appendfsync=appendfsync)
        redis.start()
        url = f"{redis.url}?key_prefix=bench"
        try:
            with (
                bridge_server("--workers", "0", "--store", "memory://") as (memory, _),
                bridge_server("--workers", "0", "--store", url) as (replica_a, _),
                bridge_server("--workers", "0", "--store", url) as (replica_b, _),
            ):
                for _ in range(rounds):
                    rows.append(
                        {
                            "update_memory": asyncio.run(_updates(memory, seconds)),
                            "update_redis": asyncio.run(_updates(replica_a, seconds)),
                            "execute_memory": asyncio.run(_executes(memory, seconds)),
                            "execute_redis": asyncio.run(_executes(replica_a, seconds)),
                        }
                    )
                watch_memory = asyncio.run(_delivery(memory, memory, updates=500))
                watch_across = asyncio.run(_delivery(replica_a, replica_b, updates=500))
        finally:
            redis.kill()

    def ratio(a: str, b: str) -> float:
        return round(median([r[a]["throughput_per_s"] / r[b]["throughput_per_s"] for r in rows]), 3)

    return {
        "rounds": rows,
        "update_redis_vs_memory": ratio("update_redis", "update_memory"),
        "execute_redis_vs_memory": ratio("execute_redis", "execute_memory"),
        "watch_memory_same_server": watch_memory,
        "watch_redis_across_replicas": watch_across,
        "targets": {
            "update_redis_vs_memory": ">= 0.5",
            "watch_across_replicas_p99_ms": "<= 10",
            "execute_redis_vs_memory": ">= 0.9",
        },
    }
