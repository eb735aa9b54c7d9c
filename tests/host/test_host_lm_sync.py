"""A host LM called by a sync-only module (Refine runs in a thread, it has no async path),
through a real sidecar with a worker process: the thread's call runs on the worker's event
loop, is answered by the host, and ends with the execution when it is cancelled."""

from __future__ import annotations

import asyncio

import pytest
from google.protobuf import struct_pb2

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2
from tests.host.raw_host import RawHost, answer_all, hello
from tests.integration.rpc import sv

# Host LMs run on DSPy's engine API: none of DSPy's deprecations (BaseLM.forward) may fire.
pytestmark = pytest.mark.filterwarnings("error::DeprecationWarning:dspy.*")

ANSWER = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"


@pytest.fixture(params=[0, 1], ids=["in-process", "worker"])
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, object]:
    return {"workers": request.param}


async def _refine(stub: pb_grpc.BridgeServiceStub, sid: str) -> None:
    config = struct_pb2.Struct()
    config.update({"N": 1})
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="refined",
            module_type="Refine",
            signature=module_pb2.Signature(text="question -> answer"),
            config=config,
            lm=lm_pb2.LMConfig(model="host:mine"),
        )
    )


async def test_a_sync_only_module_is_answered_by_a_host_lm(
    stub: pb_grpc.BridgeServiceStub,
) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    async with RawHost(stub, hello(sid, lms=["mine"])) as host:
        answering = asyncio.create_task(answer_all(host, lms=lambda _: ANSWER))
        await _refine(stub, sid)
        result = await stub.Execute(
            pb.ExecuteRequest(
                session_id=sid, module_id="refined", inputs={"question": sv("Capital of France?")}
            )
        )
        answering.cancel()
    assert result.outputs["answer"].string_value == "Paris"
    assert result.usage.lm_calls >= 1


async def test_cancelling_a_sync_only_module_cancels_its_host_lm_call(
    stub: pb_grpc.BridgeServiceStub,
) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    async with RawHost(stub, hello(sid, lms=["mine"])) as host:
        await _refine(stub, sid)
        execution = stub.Execute(
            pb.ExecuteRequest(session_id=sid, module_id="refined", inputs={"question": sv("?")})
        )
        call_id = (await host.read()).lm_call.call_id
        assert call_id
        execution.cancel()
        assert (await host.read()).cancel.call_id == call_id
