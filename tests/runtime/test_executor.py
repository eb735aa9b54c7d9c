"""InProcessExecutor: isolation of concurrent calls, deadlines, cancellation, usage, trace,
streaming, caching and error mapping."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import dspy
import grpc
import pytest

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import LMSpec
from dspy_bridge.runtime.executor import (
    ChunkEvent,
    ExecutionRequest,
    InProcessExecutor,
    ResultEvent,
    StatusEvent,
)
from dspy_bridge.runtime.lm.offline import AsyncOfflineEngine, OfflineEngine, OfflineLM
from tests.fakes.openai_server import HANG, RATE_LIMITED, FakeOpenAI
from tests.runtime.module_helpers import (
    OFFLINE,
    calculator_react_record,
    make_record,
    offline_factory,
)


class Probe:
    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = 0
        self.finished = 0


class ProbeEngine(AsyncOfflineEngine):
    """The offline async engine, reporting when a call starts and whether it was cancelled.
    Shared by the copies the executor makes of the LM per execution."""

    def __init__(self, sync: OfflineEngine) -> None:
        super().__init__(sync)
        self.probe = Probe()

    async def complete(self, request: Any) -> Any:
        self.probe.started.set()
        try:
            response = await super().complete(request)
        except asyncio.CancelledError:
            self.probe.cancelled += 1
            raise
        self.probe.finished += 1
        return response

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        self.probe.started.set()
        try:
            async for event in super().stream(request):
                yield event
        except (asyncio.CancelledError, GeneratorExit):
            self.probe.cancelled += 1
            raise
        self.probe.finished += 1


class ProbeLM(OfflineLM):
    def __init__(self, latency_ms: float = 0.0, **kwargs: Any) -> None:
        sync = OfflineEngine(latency_ms)
        super().__init__(engine=sync, async_engine=ProbeEngine(sync), **kwargs)

    @property
    def probe(self) -> Probe:
        engine: ProbeEngine = self._async_engine_spec
        return engine.probe


class FailingEngine(AsyncOfflineEngine):
    async def complete(self, request: Any) -> Any:
        raise RuntimeError("the provider exploded")


class FailingLM(OfflineLM):
    def __init__(self) -> None:
        sync = OfflineEngine()
        super().__init__(engine=sync, async_engine=FailingEngine(sync))


def executor_with(lm: dspy.BaseLM) -> InProcessExecutor:
    return InProcessExecutor(lm_factory=lambda spec, params: lm)


def request(record: Any, inputs: dict[str, Any] | None = None, **kw: Any) -> ExecutionRequest:
    return ExecutionRequest(record, OFFLINE, inputs or {"question": "What is DSPy?"}, **kw)


async def test_usage_and_latency() -> None:
    executor = InProcessExecutor()
    result = await executor.execute(request(make_record("ChainOfThought")))
    assert result.usage.lm_calls == 1
    assert result.usage.prompt_tokens > 0
    assert result.usage.completion_tokens > 0
    assert result.usage.cost_usd == 0.0
    assert result.latency_ms > 0
    assert result.trace == []


async def test_trace_has_messages_completions_and_options() -> None:
    executor = InProcessExecutor()
    record = make_record("Predict")
    result = await executor.execute(
        request(record, params={"temperature": 0.25, "max_tokens": 99}, include_trace=True)
    )
    (call,) = result.trace
    assert call["model"] == "offline"
    roles = [m["role"] for m in call["messages"]]
    assert roles[0] == "system" and roles[-1] == "user"
    assert "What is DSPy?" in call["messages"][-1]["content"]
    assert "[[ ## answer ## ]]" in call["completions"][0]
    assert call["options"]["temperature"] == 0.25
    assert call["options"]["max_tokens"] == 99


async def test_concurrent_executions_keep_their_own_parameters() -> None:
    """Same cached program, overlapping calls, different LM/adapter/instructions: no leaks."""
    executor = InProcessExecutor(lm_factory=offline_factory)
    record = make_record("Predict")
    lm = LMSpec("offline", options={"latency_ms": "30"})
    variants = [
        {"model": "model-a", "adapter": "json", "instructions": "Answer as a pirate."},
        {"model": "model-b", "adapter": "chat", "instructions": "Answer as a poet."},
        {"model": "model-c", "adapter": "xml", "temperature": 0.9},
    ] * 4

    async def one(params: dict[str, Any]) -> Any:
        req = ExecutionRequest(record, lm, {"question": "q"}, params, include_trace=True)
        return params, await executor.execute(req)

    results = await asyncio.gather(*(one(p) for p in variants))
    markers = {"json": "JSON object", "chat": "[[ ## completed ## ]]", "xml": "<answer>"}
    for params, result in results:
        (call,) = result.trace
        system = call["messages"][0]["content"]
        assert call["model"] == params["model"]
        assert markers[params["adapter"]] in system
        if "instructions" in params:
            assert params["instructions"] in system
        else:
            assert "pirate" not in system and "poet" not in system
    assert executor.stats()["programs_cached"] == 3  # instructions shape the program; the rest not
    assert executor.stats()["in_flight"] == 0


async def test_deadline_cancels_the_lm_call() -> None:
    lm = ProbeLM(latency_ms=5_000)
    executor = executor_with(lm)
    with pytest.raises(BridgeError) as caught:
        await executor.execute(request(make_record("Predict"), timeout_ms=50))
    assert caught.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert caught.value.reason == Reason.DEADLINE_EXCEEDED
    assert lm.probe.cancelled == 1 and lm.probe.finished == 0
    assert executor.stats()["in_flight"] == 0


async def test_cancelling_the_caller_cancels_the_lm_call() -> None:
    lm = ProbeLM(latency_ms=5_000)
    executor = executor_with(lm)
    task = asyncio.create_task(executor.execute(request(make_record("ChainOfThought"))))
    await lm.probe.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert lm.probe.cancelled == 1 and lm.probe.finished == 0


async def test_sync_module_runs_in_a_thread_with_its_context() -> None:
    executor = InProcessExecutor(lm_factory=offline_factory)
    record = make_record("Refine", config={"N": 2})
    result = await executor.execute(
        request(record, params={"model": "thread-model"}, include_trace=True)
    )
    assert result.outputs["answer"]
    assert {c["model"] for c in result.trace} == {"thread-model"}


async def test_an_engine_failure_is_lm_unavailable_without_its_text() -> None:
    executor = executor_with(FailingLM())
    with pytest.raises(BridgeError) as caught:
        await executor.execute(request(make_record("Predict")))
    err = caught.value
    # DSPy wraps an engine's unknown failure (LMUnexpectedError): it fails closed, with none of
    # the engine's text (which, for a real provider, could be its response body).
    assert (err.code, err.reason) == (grpc.StatusCode.UNAVAILABLE, Reason.LM_UNAVAILABLE)
    assert "exploded" not in err.message and "Traceback" not in err.message
    assert executor.stats()["failures"] == 1


async def test_programs_are_cached_per_version_and_structure() -> None:
    executor = InProcessExecutor(lm_factory=offline_factory)
    record = make_record("Predict")
    first = executor.program(record, {"temperature": 0.1})
    assert executor.program(record, {"temperature": 0.9}) is first  # LM params: same program
    assert executor.program(record, {"module_type": "ChainOfThought"}) is not first
    newer = make_record("Predict", module_id=record.module_id, version=2)
    assert executor.program(newer, {}) is not first
    executor.forget_session(record.session_id)
    assert executor.stats()["programs_cached"] == 0


async def test_stream_yields_chunks_status_and_result() -> None:
    executor = InProcessExecutor()
    record = make_record("ChainOfThought")
    events = [e async for e in executor.execute_stream(request(record))]
    chunks = [e for e in events if isinstance(e, ChunkEvent)]
    statuses = [e for e in events if isinstance(e, StatusEvent)]
    assert isinstance(events[-1], ResultEvent)
    result = events[-1].result
    assert {c.field for c in chunks} == {"reasoning", "answer"}
    for name in ("reasoning", "answer"):
        text = "".join(c.text for c in chunks if c.field == name)
        assert text.strip() == result.outputs[name]
        assert [c.last for c in chunks if c.field == name][-1] is True
    assert any("Calling LM" in s.message for s in statuses)
    plain = await executor.execute(request(record))
    assert plain.outputs == result.outputs


async def test_stream_of_a_module_without_a_final_predictor_still_ends_with_the_result() -> None:
    executor = InProcessExecutor()
    events = [e async for e in executor.execute_stream(request(make_record("BestOfN")))]
    assert isinstance(events[-1], ResultEvent)
    assert events[-1].result.outputs["answer"]


async def test_closing_a_stream_cancels_the_lm_call() -> None:
    lm = ProbeLM()
    executor = executor_with(lm)
    stream = executor.execute_stream(request(make_record("Predict")))
    first = None
    async for event in stream:
        if isinstance(event, ChunkEvent):
            first = event
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert first is not None
    assert lm.probe.finished == 0
    assert lm.probe.cancelled == 1


async def test_stream_errors_surface_as_bridge_errors() -> None:
    lm = ProbeLM(latency_ms=5_000)
    executor = executor_with(lm)
    with pytest.raises(BridgeError) as caught:
        async for _ in executor.execute_stream(request(make_record("Predict"), timeout_ms=30)):
            pass
    assert caught.value.reason == Reason.DEADLINE_EXCEEDED
    assert lm.probe.cancelled == 1


# -- the real dspy.LM -> LiteLLM -> HTTP path, against the local fake provider ----------------


def provider(server: FakeOpenAI, **options: str) -> LMSpec:
    return LMSpec(
        "openai/fake-model",
        api_base=server.url,
        api_key_env="FAKE_OPENAI_KEY",
        options={"num_retries": "0", **options},
    )


@pytest.fixture
def fake_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_OPENAI_KEY", "sk-test-0123456789")


@pytest.mark.usefixtures("fake_key")
async def test_provider_path_usage_and_trace() -> None:
    with FakeOpenAI() as server:
        executor = InProcessExecutor()
        req = ExecutionRequest(
            make_record("ChainOfThought"),
            provider(server),
            {"question": "What is DSPy?"},
            {"temperature": 0.3},
            include_trace=True,
        )
        result = await executor.execute(req)
    assert set(result.outputs) == {"reasoning", "answer"}
    assert result.usage.lm_calls == 1
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    (call,) = result.trace
    assert call["model"] == "openai/fake-model"
    assert call["options"]["temperature"] == 0.3
    assert "api_key" not in call["options"]
    assert server.requests[0].body["temperature"] == 0.3


@pytest.mark.usefixtures("fake_key")
async def test_provider_failure_maps_to_its_status() -> None:
    with FakeOpenAI() as server:
        server.default = RATE_LIMITED
        executor = InProcessExecutor()
        with pytest.raises(BridgeError) as caught:
            await executor.execute(
                ExecutionRequest(make_record("Predict"), provider(server), {"question": "q"})
            )
    assert caught.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert caught.value.reason == Reason.LM_RATE_LIMITED


@pytest.mark.usefixtures("fake_key")
async def test_deadline_cuts_a_hanging_provider() -> None:
    with FakeOpenAI() as server:
        server.default = HANG
        executor = InProcessExecutor()
        with pytest.raises(BridgeError) as caught:
            await executor.execute(
                ExecutionRequest(
                    make_record("Predict"), provider(server), {"question": "q"}, timeout_ms=300
                )
            )
    assert caught.value.reason == Reason.DEADLINE_EXCEEDED


async def test_react_calls_server_tools_and_streams_tool_status() -> None:
    """Demos steer the offline LM into calling the calculator: the observation is the tool's
    real result, and the stream reports the tool call."""
    trained = calculator_react_record()
    executor = InProcessExecutor()
    events = [
        e
        async for e in executor.execute_stream(request(trained, {"question": "What is 6 times 7?"}))
    ]
    result = events[-1]
    assert isinstance(result, ResultEvent)
    trajectory = result.result.outputs["trajectory"]
    assert trajectory["tool_name_0"] == "calculator"
    assert trajectory["observation_0"] == "42"
    statuses = [e.message for e in events if isinstance(e, StatusEvent)]
    assert "Calling tool calculator..." in statuses
    assert "Tool calculator finished" in statuses
    assert statuses.count("Calling LM offline...") == result.result.usage.lm_calls
