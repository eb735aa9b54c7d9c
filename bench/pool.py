"""Issue-4 suite: pooled execution.

(a) Execute of ChainOfThought with a zero-latency offline LM, 32 concurrent callers: the bridge
    (default workers = CPU count) against DSPy's documented FastAPI + uvicorn + asyncify
    deployment of the same module and LM, each driven from this process (grpc.aio stub vs
    httpx.AsyncClient), in alternating rounds in the same run (median round reported).
(b) offline LM with latency_ms=200: throughput and p99 at 100, 500, 1000 concurrent executions
    against the ideal concurrency / latency.
(c) throughput (as in a) against workers 0, 1, 2, 4, cold start to SERVING, and the latency of
    a single caller (its difference from workers=0 is the cost of the hop to a worker).
(d) what the event loop is worth under load: the default server (uvloop) and the same server on
    asyncio's own loop, side by side in alternating rounds, at 32 callers with the zero-latency
    LM and at 1000 concurrent executions with latency_ms=200.
"""

from __future__ import annotations

import asyncio
import itertools
import os
from typing import Any

import grpc
import httpx

from bench.fastapi_baseline import baseline_server
from bench.harness import bridge_server, closed_loop
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2, value_pb2

CALLERS = 32
SECONDS = float(os.environ.get("BENCH_SECONDS", "4"))
SESSIONS = 64
LEVELS = (100, 500, 1000)
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
LATENCY_MS = 200


async def _bridge_load(target: str, concurrency: int, latency_ms: int = 0) -> dict[str, float]:
    """Closed loop of Execute over SESSIONS sessions (a host's many users), unique questions."""
    options = [("grpc.max_concurrent_streams", 10_000)]
    async with grpc.aio.insecure_channel(target, options=options) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        lm = lm_pb2.LMConfig(model="offline", options={"latency_ms": str(latency_ms)})
        sids = []
        for _ in range(SESSIONS):
            sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
            await stub.CreateModule(
                pb.CreateModuleRequest(
                    session_id=sid,
                    module_id="cot",
                    module_type="ChainOfThought",
                    signature=module_pb2.Signature(text="question -> answer"),
                    lm=lm,
                )
            )
            sids.append(sid)
        counter = itertools.count()

        def call() -> Any:
            n = next(counter)
            return stub.Execute(
                pb.ExecuteRequest(
                    session_id=sids[n % SESSIONS],
                    module_id="cot",
                    inputs={"question": value_pb2.Value(string_value=f"What is {n} + 1?")},
                )
            )

        result = await closed_loop(call, concurrency=concurrency, seconds=SECONDS, warmup=1.0)
    return result.summary()


async def _fastapi_load(url: str, concurrency: int) -> dict[str, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        counter = itertools.count()

        async def call() -> None:
            r = await client.post("/predict", json={"text": f"What is {next(counter)} + 1?"})
            r.raise_for_status()

        result = await closed_loop(call, concurrency=concurrency, seconds=SECONDS, warmup=1.0)
    return result.summary()


def _versus_fastapi() -> dict[str, Any]:
    """Both servers up at once (an idle one costs nothing); rounds alternate bridge and
    FastAPI and the ratio is taken per round, so a noisy neighbour slowing one round slows
    both sides of it. The median round is reported."""
    rounds: list[dict[str, Any]] = []
    with bridge_server("--lm", "offline") as (target, _), baseline_server() as url:
        for _ in range(ROUNDS):
            bridge = asyncio.run(_bridge_load(target, CALLERS))
            fastapi = asyncio.run(_fastapi_load(url, CALLERS))
            ratio = bridge["throughput_per_s"] / max(fastapi["throughput_per_s"], 1e-9)
            rounds.append(
                {"bridge": bridge, "fastapi_uvicorn_asyncify": fastapi, "ratio": round(ratio, 2)}
            )
    middle = sorted(rounds, key=lambda r: float(r["ratio"]))[len(rounds) // 2]
    return {
        "callers": CALLERS,
        **middle,
        "throughput_ratio": middle["ratio"],
        "round_ratios": [r["ratio"] for r in rounds],
        "target_ratio": 3.0,
    }


def _latency_levels(cpu_bound: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with bridge_server("--lm", "offline") as (target, _):
        for level in LEVELS:
            figures = asyncio.run(_bridge_load(target, level, LATENCY_MS))
            ideal = level / (LATENCY_MS / 1000)
            goal = 0.8 * min(ideal, cpu_bound)
            figures["ideal_per_s"] = ideal
            figures["target_per_s"] = round(goal, 1)
            figures["met"] = figures["throughput_per_s"] >= goal and figures["errors"] == 0
            out[str(level)] = figures
    return out


def _scaling() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for workers in (0, 1, 2, 4):
        with bridge_server("--lm", "offline", "--workers", str(workers)) as (target, cold):
            figures = asyncio.run(_bridge_load(target, CALLERS))
            figures["cold_start_to_serving_s"] = round(cold, 2)
            # One caller: the per-call cost of the hop to a worker (IPC, pickling) shows as
            # the difference from workers=0.
            single = asyncio.run(_bridge_load(target, 1))
            figures["single_caller_p50_ms"] = single["p50_ms"]
            out[str(workers)] = figures
    return out


def _event_loops() -> dict[str, Any]:
    """Both servers up at once; each round measures uvloop then asyncio at each load, and the
    ratio is taken per round (median round reported)."""
    loads = {"32_callers_zero_latency": (CALLERS, 0), "1000_concurrent_200ms": (1000, LATENCY_MS)}
    rounds: list[dict[str, Any]] = []
    with (
        bridge_server("--lm", "offline", "--event-loop", "uvloop") as (uvloop_target, _),
        bridge_server("--lm", "offline", "--event-loop", "asyncio") as (asyncio_target, _),
    ):
        for _ in range(ROUNDS):
            one: dict[str, Any] = {}
            for name, (concurrency, latency_ms) in loads.items():
                fast = asyncio.run(_bridge_load(uvloop_target, concurrency, latency_ms))
                slow = asyncio.run(_bridge_load(asyncio_target, concurrency, latency_ms))
                ratio = fast["throughput_per_s"] / max(slow["throughput_per_s"], 1e-9)
                one[name] = {"uvloop": fast, "asyncio": slow, "ratio": round(ratio, 2)}
            rounds.append(one)
    out: dict[str, Any] = {}
    for name in loads:
        by_ratio = sorted((r[name] for r in rounds), key=lambda m: float(m["ratio"]))
        out[name] = {
            **by_ratio[len(by_ratio) // 2],
            "round_ratios": [r[name]["ratio"] for r in rounds],
        }
    return out


def run() -> dict[str, Any]:
    a = _versus_fastapi()
    b = _latency_levels(a["bridge"]["throughput_per_s"])
    c = _scaling()
    d = _event_loops()
    return {
        "seconds_per_measurement": SECONDS,
        "a_execute_vs_fastapi": a,
        "b_latency_200ms": b,
        "c_workers": c,
        "d_event_loop": d,
    }
