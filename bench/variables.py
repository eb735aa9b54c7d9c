"""Issue-2 suite: GetVariable / UpdateVariable against a bare echo, and update→watch latency.

Each round measures the echo service and the bridge back to back with the same load
generator; ratios are taken per round and the median reported, so a noisy neighbour that
slows one round slows both sides of it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import grpc

from bench.echo_server import METHOD
from bench.harness import bridge_server, closed_loop, echo_server, median
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import value_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb

CONCURRENCY = 32


async def _echo_load(target: str, seconds: float) -> dict[str, float]:
    payload = pb.UpdateVariableRequest(
        session_id="ses_" + "0" * 32, name="temperature", value=value_pb2.Value(float_value=0.5)
    ).SerializeToString()  # same size on the wire as the bridge's request
    async with grpc.aio.insecure_channel(target) as channel:
        echo = channel.unary_unary(METHOD)
        result = await closed_loop(lambda: echo(payload), concurrency=CONCURRENCY, seconds=seconds)
    return result.summary()


async def _bridge_load(target: str, seconds: float) -> dict[str, dict[str, float]]:
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
        get_req = pb.GetVariableRequest(session_id=sid, name="temperature")
        get = await closed_loop(
            lambda: stub.GetVariable(get_req), concurrency=CONCURRENCY, seconds=seconds
        )
        counter = iter(range(10**9))

        def update() -> Any:
            x = (next(counter) % 200) / 100
            return stub.UpdateVariable(
                pb.UpdateVariableRequest(
                    session_id=sid, name="temperature", value=value_pb2.Value(float_value=x)
                )
            )

        upd = await closed_loop(update, concurrency=CONCURRENCY, seconds=seconds)
    return {"get": get.summary(), "update": upd.summary()}


async def watch_latency(
    writer: str, watchers: int, updates: int, reader: str | None = None
) -> dict[str, float]:
    """An updater writes its monotonic clock into a variable through `writer`; watchers on
    `reader` (the same server unless given: another replica) measure arrival. One machine, so
    one clock."""
    async with (
        grpc.aio.insecure_channel(writer) as wchan,
        grpc.aio.insecure_channel(reader or writer) as rchan,
    ):
        stub, rstub = pb_grpc.BridgeServiceStub(wchan), pb_grpc.BridgeServiceStub(rchan)
        sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
        await stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid,
                name="clock",
                type=vpb.VARIABLE_TYPE_INTEGER,
                initial_value=value_pb2.Value(int_value=0),
            )
        )
        streams = [
            rstub.WatchVariables(
                pb.WatchVariablesRequest(session_id=sid, names=["clock"], include_initial=True)
            )
            for _ in range(watchers)
        ]
        for s in streams:
            await s.read()  # INITIAL: subscribed
        delays: list[float] = []

        async def watch(stream: Any) -> None:
            for _ in range(updates):
                event = await stream.read()
                delays.append((time.monotonic_ns() - event.change.variable.value.int_value) / 1e6)

        tasks = [asyncio.create_task(watch(s)) for s in streams]
        for _ in range(updates):
            await stub.UpdateVariable(
                pb.UpdateVariableRequest(
                    session_id=sid,
                    name="clock",
                    value=value_pb2.Value(int_value=time.monotonic_ns()),
                )
            )
            await asyncio.sleep(0.002)  # paced: this measures delivery latency, not saturation
        await asyncio.gather(*tasks)
        for s in streams:
            s.cancel()
    delays.sort()
    return {
        "watchers": watchers,
        "updates": updates,
        "p50_ms": round(delays[len(delays) // 2], 3),
        "p99_ms": round(delays[int(len(delays) * 0.99)], 3),
        "max_ms": round(delays[-1], 3),
    }


def run(rounds: int = 3, seconds: float = 3.0) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    with echo_server() as echo_target, bridge_server("--workers", "0") as (target, _):
        for _ in range(rounds):
            echo = asyncio.run(_echo_load(echo_target, seconds))
            bridge = asyncio.run(_bridge_load(target, seconds))
            rows.append({"echo": echo, **bridge})
        watch = asyncio.run(watch_latency(target, watchers=10, updates=500))
    update_ratio = median(
        [r["update"]["throughput_per_s"] / r["echo"]["throughput_per_s"] for r in rows]
    )
    get_ratio = median([r["get"]["throughput_per_s"] / r["echo"]["throughput_per_s"] for r in rows])
    return {
        "rounds": rows,
        "update_vs_echo": round(update_ratio, 3),
        "get_vs_echo": round(get_ratio, 3),
        "watch": watch,
        "targets": {"update_vs_echo": ">= 0.5", "watch_p99_ms": "<= 5"},
    }
