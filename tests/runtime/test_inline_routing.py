"""DSPy's native async engine routes on the loop once a provider's client is built
(runtime/lm/inline_routing.py): the first call per model takes DSPy's thread hop, later calls,
unary and streamed, route on the loop and answer the same."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from dspy.clients import execution

from dspy_bridge.runtime.executor import (
    ExecutionRequest,
    InProcessExecutor,
    ResultEvent,
    configure_runtime,
)
from dspy_bridge.runtime.lm.inline_routing import InlineRoutingEngine
from tests.fakes.openai_server import FakeOpenAI
from tests.runtime.module_helpers import make_record, provider_spec


@pytest.fixture
def routing_threads(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The thread each routing of a call ran on, in order."""
    threads: list[int] = []
    original = InlineRoutingEngine._target

    def recorded(self: InlineRoutingEngine, request: Any, **kw: Any) -> Any:
        threads.append(threading.get_ident())
        return original(self, request, **kw)

    monkeypatch.setattr(InlineRoutingEngine, "_target", recorded)
    return threads


def _request(fake: FakeOpenAI, question: str) -> ExecutionRequest:
    spec = provider_spec(fake, "native")
    return ExecutionRequest(make_record("Predict"), spec, {"question": question})


def test_the_serving_setup_makes_dspy_build_the_inline_engine() -> None:
    configure_runtime()
    assert execution.AsyncLM15Engine is InlineRoutingEngine


async def test_calls_after_the_first_route_on_the_loop(
    provider: FakeOpenAI, routing_threads: list[int]
) -> None:
    executor = InProcessExecutor()
    loop_thread = threading.get_ident()
    answers = [await executor.execute(_request(provider, f"Question {i}?")) for i in range(3)]
    assert all(a.outputs["answer"] for a in answers)
    assert len(provider.requests) == 3
    first, *later = routing_threads
    assert first != loop_thread  # the client was built off the loop, as DSPy builds it
    assert later == [loop_thread, loop_thread]

    results = [
        event.result
        async for event in executor.execute_stream(_request(provider, "And streamed?"))
        if isinstance(event, ResultEvent)
    ]
    assert results and results[0].outputs["answer"]
    assert results[0].usage.completion_tokens > 0
    assert routing_threads[-1] == loop_thread  # a stream routes on the loop too
