"""Helpers for the job tests: a session with a module of the shipped task, datasets as protos,
waiting for jobs, and scoring a module on the held-out examples through real RPCs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from google.protobuf import struct_pb2

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2, lm_pb2, module_pb2, value_pb2
from tests.jobs.task import HELD_OUT, SIGNATURE, TRAINSET

Stub = pb_grpc.BridgeServiceStub
Rows = Sequence[tuple[dict[str, Any], dict[str, Any]]]
TERMINAL = {
    job_pb2.JOB_STATUS_SUCCEEDED,
    job_pb2.JOB_STATUS_FAILED,
    job_pb2.JOB_STATUS_CANCELLED,
    job_pb2.JOB_STATUS_INTERRUPTED,
}


def sv(text: str) -> value_pb2.Value:
    return value_pb2.Value(string_value=text)


def examples(rows: Rows) -> list[job_pb2.Example]:
    return [
        job_pb2.Example(
            inputs={k: sv(v) for k, v in inputs.items()},
            labels={k: sv(v) for k, v in labels.items()},
        )
        for inputs, labels in rows
    ]


def struct(data: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(data)
    return out


async def setup(stub: Stub, *, latency_ms: int = 0, module_id: str = "clf") -> str:
    """A session with module `clf` (Predict, `text -> topic`); returns the session id."""
    sid: str = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    options = {"latency_ms": str(latency_ms)} if latency_ms else {}
    await stub.ConfigureLM(
        pb.ConfigureLMRequest(session_id=sid, lm=lm_pb2.LMConfig(model="offline", options=options))
    )
    await add_module(stub, sid, module_id)
    return sid


async def add_module(stub: Stub, sid: str, module_id: str) -> None:
    """Adds a module of the shipped task to a session."""
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id=module_id,
            module_type="Predict",
            signature=module_pb2.Signature(
                text=SIGNATURE, instructions="Classify the text's topic."
            ),
        )
    )


async def slow_session(stub: Stub, who: tuple[tuple[str, str], ...]) -> str:
    """A session with the job module whose offline LM answers slowly, created as `who`."""
    sid = (await stub.CreateSession(pb.CreateSessionRequest(), metadata=who)).session.session_id
    await stub.ConfigureLM(
        pb.ConfigureLMRequest(
            session_id=sid, lm=lm_pb2.LMConfig(model="offline", options={"latency_ms": "5000"})
        ),
        metadata=who,
    )
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="clf",
            module_type="Predict",
            signature=module_pb2.Signature(text=SIGNATURE),
        ),
        metadata=who,
    )
    return sid


def start_request(
    sid: str,
    optimizer: str,
    config: dict[str, Any] | None = None,
    *,
    trainset: Rows = TRAINSET,
    valset: Rows = HELD_OUT,
    metric: str = "exact_match",
    apply: bool = False,
    module_id: str = "clf",
) -> pb.StartOptimizationRequest:
    return pb.StartOptimizationRequest(
        session_id=sid,
        module_id=module_id,
        optimizer=optimizer,
        config=struct(config or {}),
        trainset=examples(trainset),
        valset=examples(valset),
        metric=job_pb2.MetricSpec(name=metric),
        apply=apply,
    )


async def start_host_scored_job(stub: Stub, sid: str) -> str:
    """A small LabeledFewShot job scored by the host metric `host:quality`; its job id."""
    request = start_request(
        sid,
        "LabeledFewShot",
        {"k": 2},
        trainset=TRAINSET[:4],
        valset=HELD_OUT[:3],
        metric="host:quality",
    )
    return (await stub.StartOptimization(request)).job.job_id


async def get_job(stub: Stub, sid: str, job_id: str) -> job_pb2.Job:
    request = pb.GetOptimizationRequest(session_id=sid, job_id=job_id)
    job: job_pb2.Job = (await stub.GetOptimization(request)).job
    return job


async def wait_done(stub: Stub, sid: str, job_id: str, wait_s: float = 90) -> job_pb2.Job:
    """The job once terminal, waited for on its WatchOptimization stream (no polling)."""
    request = pb.WatchOptimizationRequest(session_id=sid, job_id=job_id)
    async with asyncio.timeout(wait_s):
        async for update in stub.WatchOptimization(request):
            if update.job.status in TERMINAL:
                return update.job
    return await get_job(stub, sid, job_id)


async def held_out_score(stub: Stub, sid: str, module_id: str = "clf") -> float:
    """The share of held-out examples the module's current version labels right."""
    items = [pb.ExecuteBatchItem(inputs={k: sv(v) for k, v in i.items()}) for i, _ in HELD_OUT]
    out = await stub.ExecuteBatch(
        pb.ExecuteBatchRequest(session_id=sid, module_id=module_id, items=items)
    )
    right = sum(
        r.outputs["topic"].string_value == labels["topic"]
        for r, (_, labels) in zip(out.results, HELD_OUT, strict=True)
    )
    return float(right) / len(HELD_OUT)
