"""Shared helpers for pool tests: a module, an execute request, an LM with latency."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import grpc
from google.protobuf import struct_pb2

from dspy_bridge.pool import WorkerPool
from dspy_bridge.transport.server import RunningServer, start_server
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2, value_pb2
from tests.conftest import test_settings

Stub = pb_grpc.BridgeServiceStub
QA = module_pb2.Signature(text="question -> answer")


def slow_lm(latency_ms: int) -> lm_pb2.LMConfig:
    return lm_pb2.LMConfig(model="offline", options={"latency_ms": str(latency_ms)})


async def session_with_module(
    stub: Stub, latency_ms: int = 0, module_type: str = "ChainOfThought", sid: str = ""
) -> str:
    """A new session holding module `qa`; returns the session id."""
    session = await stub.CreateSession(pb.CreateSessionRequest(session_id=sid))
    sid = session.session.session_id
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="qa",
            module_type=module_type,
            signature=QA,
            lm=slow_lm(latency_ms) if latency_ms else None,
        )
    )
    return sid


async def create_react_agent(stub: Stub, sid: str, tool: str) -> None:
    """The ReAct module `agent` of `sid`, whose one tool is `tool`, at most 2 iterations."""
    config = struct_pb2.Struct()
    config.update({"tools": [tool], "max_iters": 2})
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="agent",
            module_type="ReAct",
            signature=QA,
            config=config,
        )
    )


def execute_request(
    sid: str, question: str = "What is 2+2?", timeout_ms: int = 0
) -> pb.ExecuteRequest:
    return pb.ExecuteRequest(
        session_id=sid,
        module_id="qa",
        inputs={"question": value_pb2.Value(string_value=question)},
        options=module_pb2.ExecuteOptions(timeout_ms=timeout_ms),
    )


@contextlib.asynccontextmanager
async def pooled(**overrides: object) -> AsyncIterator[tuple[RunningServer, WorkerPool, Stub]]:
    """An in-test server whose executions run in real worker processes."""
    settings: dict[str, object] = {"workers": 1, **overrides}
    running = await start_server(test_settings(**settings))
    assert isinstance(running.executor, WorkerPool)
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            yield running, running.executor, pb_grpc.BridgeServiceStub(channel)
    finally:
        await running.stop(grace=0)


async def in_flight(pool: WorkerPool, n: int, within: float = 20.0) -> None:
    """Waits (on pool state changes, not sleeps) until exactly `n` calls run in workers."""
    await pool.wait_for(lambda: pool.stats()["in_flight"] == n, within)
