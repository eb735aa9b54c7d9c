"""Issue-3 suite: Execute over gRPC against the same DSPy module called in-process.

Both sides run the same module type with the same zero-latency offline LM, sequentially (one
call at a time), in alternating blocks so drift on this shared machine hits both sides alike.
The bridge's overhead (gRPC, variable resolution, conversion) is the median over block pairs
of the difference of the two blocks' medians, so slow drift on the machine cancels out.
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


def _bridge_block(stub: Any, sid: str, module_id: str, n: int) -> list[float]:
    request = pb.ExecuteRequest(
        session_id=sid,
        module_id=module_id,
        inputs={"question": value_pb2.Value(string_value=QUESTION)},
    )
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        stub.Execute(request)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _compare(target: str, module_type: str, blocks: int, per_block: int) -> dict[str, Any]:
    local = {"Predict": dspy.Predict, "ChainOfThought": dspy.ChainOfThought}[module_type](SIGNATURE)
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        sid, module_id = asyncio.run(_setup(target, module_type))
        _bridge_block(stub, sid, module_id, 50)  # warm-up both sides
        asyncio.run(_in_process_block(local, 50))
        bridge: list[float] = []
        inproc: list[float] = []
        paired: list[float] = []  # per block pair: drift between blocks cancels out
        for _ in range(blocks):
            b = _bridge_block(stub, sid, module_id, per_block)
            i = asyncio.run(_in_process_block(local, per_block))
            paired.append(statistics.median(b) - statistics.median(i))
            bridge += b
            inproc += i
    return {
        "module": module_type,
        "calls_each": len(bridge),
        "in_process_p50_ms": round(statistics.median(inproc), 3),
        "in_process_p99_ms": round(_pct(inproc, 99), 3),
        "bridge_p50_ms": round(statistics.median(bridge), 3),
        "bridge_p99_ms": round(_pct(bridge, 99), 3),
        "p50_overhead_ms": round(statistics.median(paired), 3),
        "p50_difference_of_medians_ms": round(
            statistics.median(bridge) - statistics.median(inproc), 3
        ),
        "p99_overhead_ms": round(_pct(bridge, 99) - _pct(inproc, 99), 3),
    }


def run(blocks: int = 10, per_block: int = 200) -> dict[str, Any]:
    with bridge_server("--workers", "0", "--lm", "offline") as (target, _):
        rows = [
            _compare(target, module_type, blocks, per_block)
            for module_type in ("Predict", "ChainOfThought")
        ]
    return {"results": rows, "targets": {"p50_overhead_ms": "<= 1"}}
