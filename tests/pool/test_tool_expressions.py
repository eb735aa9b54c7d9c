"""The server's own tools run inside a worker's event loop, on arguments the LM chose — which a
host steers (demos in an imported state, its own LM). A calculator expression that would keep
the worker busy for hours (`round(1, -10**12)` asks for 10**(10**12)) is refused as the tool's
error observation at once, so the worker stays free for every other session's executions."""

from __future__ import annotations

import json

import pytest

from dspy_bridge.transport.convert import value_from_proto
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import module_pb2, value_pb2
from tests.pool.helpers import create_react_agent, pooled

pytestmark = pytest.mark.slow

HOURS_OF_WORK = "round(1, -10**12)"


async def test_a_calculator_expression_with_a_huge_rounding_is_refused_at_once() -> None:
    async with pooled(workers=1) as (_, _pool, stub):
        sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
        await create_react_agent(stub, sid, "calculator")
        exported = await stub.ExportModuleState(
            pb.ExportModuleStateRequest(session_id=sid, module_id="agent")
        )
        state = json.loads(exported.state_json)
        question = "What is the rounded number?"
        state["react"]["demos"] = [  # steers the offline LM into this very tool call
            {
                "question": question,
                "trajectory": "",
                "next_thought": "I should compute it.",
                "next_tool_name": "calculator",
                "next_tool_args": {"expression": HOURS_OF_WORK},
            }
        ]
        await stub.ImportModuleState(
            pb.ImportModuleStateRequest(
                session_id=sid, module_id="agent", state_json=json.dumps(state)
            )
        )
        result = await stub.Execute(
            pb.ExecuteRequest(
                session_id=sid,
                module_id="agent",
                inputs={"question": value_pb2.Value(string_value=question)},
                options=module_pb2.ExecuteOptions(timeout_ms=30_000),
            )
        )
    trajectory = value_from_proto(result.outputs["trajectory"])
    assert isinstance(trajectory, dict)
    assert trajectory["tool_name_0"] == "calculator"
    assert trajectory["observation_0"].startswith("Error: cannot evaluate"), trajectory
