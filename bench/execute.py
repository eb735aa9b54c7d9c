"""Issue-3 suite: Execute over gRPC against the same DSPy module called in-process.

Both sides run the same module type with the same zero-latency offline LM, sequentially (one
call at a time), in alternating blocks so drift on this shared machine hits both sides alike.
The bridge's overhead (gRPC, variable resolution, conversion) is the median over block pairs
of the difference of the two blocks' medians, so slow drift on the machine cancels out. Two
sidecars run side by side, one on uvloop (the default) and one on asyncio's own loop, each
paired with the same in-process block.
The bridge side uses the standard blocking stub: for one caller at a time it is the lowest-
overhead Python gRPC client (the asyncio stub adds ~0.1 ms of event-loop work per call).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import dspy
import grpc

from bench.harness import bridge_server
from dspy_bridge.runtime.lm.offline import OfflineLM
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2, value_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb

SIGNATURE = "question -> answer"
QUESTION = "What does a sidecar process do next to an application?"


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


async def _in_process_block(module: dspy.Module, n: int) -> list[float]:
    lm = OfflineLM()
    out = []
    with dspy.context(lm=lm, temperature=0.7):
        for _ in range(n):
            t0 = time.perf_counter()
            await module.acall(question=QUESTION)
            out.append((time.perf_counter() - t0) * 1000)
    return out


async def _setup(target: str, module_type: str) -> tuple[str, str]:
    async with grpc.aio.insecure_channel(target) as channel:
        return await _bridge_setup(pb_grpc.BridgeServiceStub(channel), module_type)


async def _bridge_setup(stub: pb_grpc.BridgeServiceStub, module_type: str) -> tuple[str, str]:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    await stub.ConfigureLM(
        pb.ConfigureLMRequest(session_id=sid, lm=lm_pb2.LMConfig(model="offline"))
    )
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid,
            name="temperature",
            type=vpb.VARIABLE_TYPE_FLOAT,
            initial_value=value_pb2.Value(float_value=0.7),
            constraints=vpb.VariableConstraints(min=0, max=2),
        )
    )
    module = await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_type=module_type,
            signature=module_pb2.Signature(text=SIGNATURE),
            variable_bindings={"temperature": "temperature"},
        )
    )
    return sid, module.module.module_id


def _bridge_block(stub: Any, request: pb.ExecuteRequest, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        stub.Execute(request)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _bridge_side(
    target: str, module_type: str, channels: list[grpc.Channel]
) -> tuple[Any, pb.ExecuteRequest]:
    sid, module_id = asyncio.run(_setup(target, module_type))
    channel = grpc.insecure_channel(target)
    channels.append(channel)
    stub = pb_grpc.BridgeServiceStub(channel)
    request = pb.ExecuteRequest(
        session_id=sid,
        module_id=module_id,
        inputs={"question": value_pb2.Value(string_value=QUESTION)},
    )
    return stub, request


def _compare(
    targets: dict[str, str], module_type: str, blocks: int, per_block: int
) -> dict[str, Any]:
    """Blocks rotate between in-process and each server (one per event loop)."""
    local = {"Predict": dspy.Predict, "ChainOfThought": dspy.ChainOfThought}[module_type](SIGNATURE)
    channels: list[grpc.Channel] = []
    sides = {loop: _bridge_side(target, module_type, channels) for loop, target in targets.items()}
    for stub, request in sides.values():  # warm-up every side
        _bridge_block(stub, request, 50)
    asyncio.run(_in_process_block(local, 50))
    bridge: dict[str, list[float]] = {loop: [] for loop in sides}
    paired: dict[str, list[float]] = {loop: [] for loop in sides}  # drift between blocks cancels
    inproc: list[float] = []
    for _ in range(blocks):
        i = asyncio.run(_in_process_block(local, per_block))
        inproc += i
        for loop, (stub, request) in sides.items():
            b = _bridge_block(stub, request, per_block)
            paired[loop].append(statistics.median(b) - statistics.median(i))
            bridge[loop] += b
    for channel in channels:
        channel.close()
    row: dict[str, Any] = {
        "module": module_type,
        "calls_each": len(inproc),
        "in_process_p50_ms": round(statistics.median(inproc), 3),
        "in_process_p99_ms": round(_pct(inproc, 99), 3),
    }
    for loop, samples in bridge.items():
        row[loop] = {
            "bridge_p50_ms": round(statistics.median(samples), 3),
            "bridge_p99_ms": round(_pct(samples, 99), 3),
            "p50_overhead_ms": round(statistics.median(paired[loop]), 3),
            "p99_overhead_ms": round(_pct(samples, 99) - _pct(inproc, 99), 3),
        }
    return row


def run(blocks: int = 10, per_block: int = 200) -> dict[str, Any]:
    """The default server (uvloop) is what the target applies to; the same server on asyncio's
    own loop runs alongside to show what the event loop is worth."""
    common = ("--workers", "0", "--lm", "offline")
    with (
        bridge_server(*common, "--event-loop", "uvloop") as (uvloop_target, _),
        bridge_server(*common, "--event-loop", "asyncio") as (asyncio_target, _),
    ):
        targets = {"uvloop": uvloop_target, "asyncio": asyncio_target}
        rows = [
            _compare(targets, module_type, blocks, per_block)
            for module_type in ("Predict", "ChainOfThought")
        ]
    return {"results": rows, "targets": {"p50_overhead_ms (uvloop, the default)": "<= 1"}}
