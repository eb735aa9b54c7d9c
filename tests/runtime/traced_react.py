"""Run as a script with OTEL_TRACES_EXPORTER=console (see test_tracing.py): one ReAct execution,
steered by a demo into calling the calculator, in a process whose tracing is on."""

from __future__ import annotations

import asyncio

from dspy_bridge import tracing
from dspy_bridge.runtime.executor import ExecutionRequest, InProcessExecutor
from tests.runtime.module_helpers import OFFLINE, calculator_react_record


async def main() -> None:
    trained = calculator_react_record()
    result = await InProcessExecutor().execute(
        ExecutionRequest(trained, OFFLINE, {"question": "What is 6 times 7?"})
    )
    assert result.outputs["trajectory"]["tool_name_0"] == "calculator"


if __name__ == "__main__":
    assert tracing.configure_tracing()
    asyncio.run(main())
    tracing.shutdown_tracing()
