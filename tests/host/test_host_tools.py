"""Host tools in ReAct through real channels: a host connected over `Connect` lends a tool; a
ReAct module (driven by the offline LM) calls it from a worker process (and in-process with
`--workers 0`); the trajectory holds the call and the host's answer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import module_pb2
from tests.host.raw_host import RawHost, answer_tools, hello, tool
from tests.integration.rpc import expect_error, sv

SID = "agents"
ORDER_TOOL = tool(
    "lookup_order",
    {"order_id": {"type": "string", "description": "the order number"}},
    description="Where an order is.",
)


@pytest.fixture(params=[0, 1], ids=["in-process", "worker"])
def settings_overrides(request: pytest.FixtureRequest) -> dict[str, object]:
    return {"workers": request.param}


def _config(*tools: str) -> struct_pb2.Struct:
    config = struct_pb2.Struct()
    json_format.ParseDict({"tools": list(tools), "max_iters": 3}, config)
    return config


async def _react(stub: pb_grpc.BridgeServiceStub, *tools: str) -> None:
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=SID,
            module_id="agent",
            module_type="ReAct",
            signature=module_pb2.Signature(text="order_id -> answer"),
            config=_config(*tools),
        )
    )


@pytest.fixture
async def session(stub: pb_grpc.BridgeServiceStub) -> AsyncIterator[str]:
    await stub.CreateSession(pb.CreateSessionRequest(session_id=SID))
    yield SID


def _trajectory(result: pb.ExecuteResponse) -> dict[str, Any]:
    value = result.outputs["trajectory"]
    assert value.WhichOneof("kind") == "json_value", value
    trajectory: dict[str, Any] = json_format.MessageToDict(value.json_value)
    return trajectory


def _orders(tool_name: str, arguments: dict[str, Any]) -> Any:
    assert tool_name == "lookup_order"
    if arguments.get("order_id") == "99":
        return LookupError("order 99 does not exist")
    return f"order {arguments['order_id']} shipped on Monday"


async def test_a_react_trajectory_holds_the_host_tool_call_and_its_result(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    async with RawHost(stub, hello(session, [ORDER_TOOL])) as host:
        answering = asyncio.create_task(answer_tools(host, _orders))
        await _react(stub, "host:lookup_order")
        result = await stub.Execute(
            pb.ExecuteRequest(session_id=SID, module_id="agent", inputs={"order_id": sv("42")})
        )
        answering.cancel()
    trajectory = _trajectory(result)
    assert trajectory["tool_name_0"] == "host:lookup_order"
    assert trajectory["tool_args_0"] == {"order_id": "42"}
    assert trajectory["observation_0"] == "order 42 shipped on Monday"
    assert result.outputs["answer"].string_value == "order 42 shipped on Monday"


async def test_a_host_error_is_an_observation_the_agent_sees(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    async with RawHost(stub, hello(session, [ORDER_TOOL])) as host:
        answering = asyncio.create_task(answer_tools(host, _orders))
        await _react(stub, "host:lookup_order")
        result = await stub.Execute(
            pb.ExecuteRequest(session_id=SID, module_id="agent", inputs={"order_id": sv("99")})
        )
        answering.cancel()
    trajectory = _trajectory(result)
    assert trajectory["observation_0"] == "Error from host:lookup_order: order 99 does not exist"


async def test_the_lm_sees_the_hosts_parameter_names_types_and_descriptions(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    async with RawHost(stub, hello(session, [ORDER_TOOL])) as host:
        answering = asyncio.create_task(answer_tools(host, _orders))
        await _react(stub, "host:lookup_order")
        result = await stub.Execute(
            pb.ExecuteRequest(
                session_id=SID,
                module_id="agent",
                inputs={"order_id": sv("7")},
                options=module_pb2.ExecuteOptions(include_trace=True),
            )
        )
        answering.cancel()
    system = result.trace[0].messages[0]["content"]
    assert "host:lookup_order, whose description is <desc>Where an order is.</desc>" in system
    arguments = system.split("host:lookup_order, whose", 1)[1].split("It takes arguments ", 1)[1]
    assert arguments.startswith("{'order_id': {")
    assert "'type': 'string'" in arguments and "'description': 'the order number'" in arguments


async def test_a_tool_past_its_deadline_is_a_timeout_observation(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    slow = tool("lookup_order", {"order_id": {"type": "string"}}, timeout_ms=300)
    async with RawHost(stub, hello(session, [slow])):  # connected, never answers
        await _react(stub, "host:lookup_order")
        result = await stub.Execute(
            pb.ExecuteRequest(session_id=SID, module_id="agent", inputs={"order_id": sv("1")})
        )
    observation = _trajectory(result)["observation_0"]
    assert observation.startswith("Error: the tool host:lookup_order timed out")


async def test_a_disconnected_host_fails_the_execution_unavailable(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    async with RawHost(stub, hello(session, [ORDER_TOOL])):
        await _react(stub, "host:lookup_order")
    assert server.hosts is not None
    await server.hosts.wait_disconnected(session, within=10)
    error = await expect_error(
        stub.Execute(
            pb.ExecuteRequest(session_id=SID, module_id="agent", inputs={"order_id": sv("1")})
        ),
        grpc.StatusCode.UNAVAILABLE,
        "HOST_DISCONNECTED",
    )
    assert error.metadata["retryable"] == "true"


async def test_a_host_leaving_mid_execution_fails_it_unavailable(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    async with RawHost(stub, hello(session, [ORDER_TOOL])) as host:
        await _react(stub, "host:lookup_order")
        execution = stub.Execute(
            pb.ExecuteRequest(session_id=SID, module_id="agent", inputs={"order_id": sv("1")})
        )
        await host.read()  # the tool call arrived; the host leaves instead of answering
        await host.close()
        await expect_error(execution, grpc.StatusCode.UNAVAILABLE, "HOST_DISCONNECTED")


async def test_cancelling_the_execution_sends_cancel_to_the_host(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    async with RawHost(stub, hello(session, [ORDER_TOOL])) as host:
        await _react(stub, "host:lookup_order")
        execution = stub.Execute(
            pb.ExecuteRequest(session_id=SID, module_id="agent", inputs={"order_id": sv("1")})
        )
        call_id = (await host.read()).tool_call.call_id
        execution.cancel()
        assert (await host.read()).cancel.call_id == call_id


async def test_an_unknown_host_tool_at_create_module_names_what_is_connected(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    async with RawHost(stub, hello(session, [ORDER_TOOL])):
        error = await expect_error(
            _react(stub, "host:refund"),
            grpc.StatusCode.FAILED_PRECONDITION,
            "HOST_TOOL_UNAVAILABLE",
        )
    assert "host:refund" in error.message and "host:lookup_order" in error.message
    assert error.metadata["connected"] == "host:lookup_order"


async def test_a_sessions_host_tools_are_invisible_to_another_session(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    await stub.CreateSession(pb.CreateSessionRequest(session_id="other"))
    async with RawHost(stub, hello(session, [ORDER_TOOL])):
        error = await expect_error(
            stub.CreateModule(
                pb.CreateModuleRequest(
                    session_id="other",
                    module_type="ReAct",
                    signature=module_pb2.Signature(text="order_id -> answer"),
                    config=_config("host:lookup_order"),
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "HOST_TOOL_UNAVAILABLE",
        )
    assert error.metadata["connected"] == "none"
