"""Run as a script with OTEL_TRACES_EXPORTER=console (see test_tracing.py): one ReAct execution,
steered by a demo into calling the calculator, in a process whose tracing is on."""

from __future__ import annotations

import asyncio

from dspy_bridge import tracing
from dspy_bridge.model import ModuleRecord
from dspy_bridge.runtime.executor import ExecutionRequest, InProcessExecutor
from dspy_bridge.runtime.program import build_program
from tests.runtime.module_helpers import OFFLINE, make_record


async def main() -> None:
    record = make_record("ReAct", config={"tools": ["calculator"], "max_iters": 2})
    program = build_program(record)
    program.module.react.demos = [
        {
            "question": "What is 6 times 7?",
            "trajectory": "",
            "next_thought": "I should compute it.",
            "next_tool_name": "calculator",
            "next_tool_args": {"expression": "6*7"},
        }
    ]
    trained = ModuleRecord(
        record.session_id, record.module_id, 2, record.spec, program.module.dump_state(), 1.0, 2.0
    )
    result = await InProcessExecutor().execute(
        ExecutionRequest(trained, OFFLINE, {"question": "What is 6 times 7?"})
    )
    assert result.outputs["trajectory"]["tool_name_0"] == "calculator"


if __name__ == "__main__":
    assert tracing.configure_tracing()
    asyncio.run(main())
    tracing.shutdown_tracing()
