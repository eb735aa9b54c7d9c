"""Host tools inside optimization jobs, through real channels: the job process builds the ReAct
module with its `host:` tools, DSPy's threads call them through the job's pipe to the front and
the host's stream; each call names the job and the module; a host that leaves for good fails the
job UNAVAILABLE `HOST_DISCONNECTED`."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf import json_format, struct_pb2

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import host_pb2, job_pb2, lm_pb2, module_pb2
from tests.host.raw_host import RawHost, answer_all, hello, tool
from tests.jobs.helpers import Stub, examples, wait_done

ORDER_TOOL = tool("lookup_order", {"order_id": {"type": "string"}}, description="Where it is.")
ORDERS = [({"order_id": str(n)}, {"answer": f"order {n} shipped"}) for n in (11, 12, 13)]


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"workers": 1, "host_reconnect_wait_seconds": 1.0}


async def _session(stub: Stub) -> str:
    sid: str = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    await stub.ConfigureLM(
        pb.ConfigureLMRequest(session_id=sid, lm=lm_pb2.LMConfig(model="offline"))
    )
    return sid


async def _create_agent(stub: Stub, sid: str) -> None:
    """A ReAct agent using the host's tool (the host must be connected)."""
    config = struct_pb2.Struct()
    json_format.ParseDict({"tools": ["host:lookup_order"], "max_iters": 3}, config)
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="agent",
            module_type="ReAct",
            signature=module_pb2.Signature(text="order_id -> answer"),
            config=config,
        )
    )


def _start(sid: str) -> pb.StartOptimizationRequest:
    return pb.StartOptimizationRequest(
        session_id=sid,
        module_id="agent",
        optimizer="LabeledFewShot",
        trainset=examples(ORDERS),
        valset=examples(ORDERS[:2]),
        metric=job_pb2.MetricSpec(name="contains"),
    )


def _shipped(tool_name: str, arguments: dict[str, str]) -> str:
    return f"order {arguments['order_id']} shipped"


async def test_tool_calls_of_an_optimization_name_the_job_and_the_module(stub: Stub) -> None:
    sid = await _session(stub)
    seen: list[host_pb2.ConnectResponse] = []
    async with RawHost(stub, hello(sid, [ORDER_TOOL])) as host:
        answering = asyncio.create_task(answer_all(host, tools=_shipped, seen=seen))
        await _create_agent(stub, sid)
        job = (await stub.StartOptimization(_start(sid))).job
        done = await wait_done(stub, sid, job.job_id, wait_s=180)
        answering.cancel()
    assert done.status == job_pb2.JOB_STATUS_SUCCEEDED, done.error.message
    assert done.module_result.score_before == 1.0  # the host's observations are the answers
    calls = [m.tool_call for m in seen if m.WhichOneof("message") == "tool_call"]
    assert {c.arguments["order_id"] for c in calls} == {"11", "12"}  # scored before and after
    assert all(c.job_id == job.job_id and c.module_id == "agent" for c in calls)


async def test_a_host_gone_for_good_fails_the_job_unavailable(stub: Stub) -> None:
    sid = await _session(stub)
    async with RawHost(stub, hello(sid, [ORDER_TOOL])) as host:
        await _create_agent(stub, sid)
        job = (await stub.StartOptimization(_start(sid))).job
        first = await host.read()
        assert first.tool_call.job_id == job.job_id
        await host.close()  # leaves with the call unanswered, and does not come back
    done = await wait_done(stub, sid, job.job_id, wait_s=180)
    assert done.status == job_pb2.JOB_STATUS_FAILED
    assert done.error.code == 14, done.error  # UNAVAILABLE
    assert "host:lookup_order" in done.error.message and "reconnect" in done.error.message
    assert not done.HasField("module_result")
