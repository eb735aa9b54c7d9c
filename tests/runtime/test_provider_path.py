"""The real provider path — executor -> `ProviderLM` -> DSPy's native engine or LiteLLM -> HTTP
-> a local OpenAI-compatible fake — on both engines: typed outputs, ChainOfThought, streaming
with exact usage and time to first chunk, every failure's mapping, the sidecar's retry policy,
and a cancel closing the provider connection."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import LMSpec
from dspy_bridge.runtime.executor import (
    ChunkEvent,
    ExecutionRequest,
    ExecutionResult,
    InProcessExecutor,
    ResultEvent,
)
from dspy_bridge.runtime.lm.factory import build_lm
from dspy_bridge.runtime.lm.provider import engine_of
from tests.fakes import openai_server as fakes
from tests.fakes.openai_server import Behaviour, FakeOpenAI
from tests.runtime.module_helpers import make_record, provider_spec

ENGINES = ["native", "litellm"]
pytestmark = [
    pytest.mark.parametrize("engine", ENGINES),
    # Raised by pydantic while LiteLLM builds its own types; nothing to do with these tests.
    pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning"),
]


def _rate_limited(seconds: str) -> Behaviour:
    return Behaviour("error", 429, fakes.RATE_LIMITED.body, {"retry-after": seconds})


async def _run(
    spec: LMSpec, module: str = "Predict", signature: str = "question -> answer", **kw: Any
) -> ExecutionResult:
    record = make_record(module, signature=signature)
    request = ExecutionRequest(record, spec, {"question": "What is the capital of France?"}, **kw)
    return await InProcessExecutor().execute(request)


async def _fails(spec: LMSpec, **kw: Any) -> BridgeError:
    with pytest.raises(BridgeError) as caught:
        await _run(spec, **kw)
    return caught.value


def test_the_engine_option_picks_the_engine(provider: FakeOpenAI, engine: str) -> None:
    assert engine_of(build_lm(provider_spec(provider, engine))) == engine
    # `auto` takes DSPy's native engine for an OpenAI-compatible endpoint.
    assert engine_of(build_lm(provider_spec(provider, "auto"))) == "native"


async def test_typed_outputs_and_chain_of_thought(provider: FakeOpenAI, engine: str) -> None:
    typed = await _run(
        provider_spec(provider, engine),
        signature="question -> answer, confidence: float, tags: list[str]",
    )
    assert isinstance(typed.outputs["confidence"], float)
    assert isinstance(typed.outputs["tags"], list)
    cot = await _run(provider_spec(provider, engine), module="ChainOfThought")
    assert set(cot.outputs) == {"reasoning", "answer"}
    assert cot.usage.lm_calls == 1 and cot.usage.prompt_tokens > 0
    assert len(provider.requests) == 2


async def test_streaming_reports_exact_usage_and_time_to_first_chunk(
    provider: FakeOpenAI, engine: str
) -> None:
    record = make_record("Predict")
    spec = provider_spec(provider, engine)
    request = ExecutionRequest(record, spec, {"question": "What is DSPy?"})
    chunks: list[ChunkEvent] = []
    result: ExecutionResult | None = None
    async for event in InProcessExecutor().execute_stream(request):
        if isinstance(event, ChunkEvent):
            chunks.append(event)
        elif isinstance(event, ResultEvent):
            result = event.result
    assert result is not None and chunks
    (sent,) = provider.requests
    assert sent.body["stream"] is True
    assert sent.body["stream_options"] == {"include_usage": True}
    # The fake counts words, as its usage chunk reports them: the result has exactly those.
    prompt = sum(len(str(m["content"]).split()) for m in sent.body["messages"])
    assert result.usage.lm_calls == 1
    assert result.usage.prompt_tokens == prompt
    assert result.usage.completion_tokens > 0
    assert 0 < result.first_chunk_ms <= result.latency_ms


@pytest.mark.parametrize(
    ("behaviour", "code", "reason"),
    [
        (fakes.RATE_LIMITED, grpc.StatusCode.RESOURCE_EXHAUSTED, Reason.LM_RATE_LIMITED),
        (fakes.SERVER_ERROR, grpc.StatusCode.UNAVAILABLE, Reason.LM_UNAVAILABLE),
        (fakes.UNAUTHORIZED, grpc.StatusCode.FAILED_PRECONDITION, Reason.LM_AUTH_FAILED),
        (fakes.MALFORMED, grpc.StatusCode.UNAVAILABLE, Reason.LM_UNAVAILABLE),
        (fakes.CONTEXT_LENGTH, grpc.StatusCode.INVALID_ARGUMENT, Reason.LM_CONTEXT_WINDOW_EXCEEDED),
        (fakes.BAD_REQUEST, grpc.StatusCode.INVALID_ARGUMENT, Reason.LM_BAD_REQUEST),
    ],
)
async def test_failures_map_alike_on_both_engines(
    provider: FakeOpenAI, engine: str, behaviour: Behaviour, code: grpc.StatusCode, reason: str
) -> None:
    provider.default = behaviour
    err = await _fails(provider_spec(provider, engine))
    assert (err.code, err.reason) == (code, reason), err
    assert len(provider.requests) == 1


async def test_a_hanging_provider_is_a_timeout(provider: FakeOpenAI, engine: str) -> None:
    provider.default = fakes.HANG
    err = await _fails(provider_spec(provider, engine, timeout="0.3"))
    assert (err.code, err.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, Reason.LM_TIMEOUT)


async def test_unparseable_output_comes_back_raw_when_the_trace_is_asked_for(
    provider: FakeOpenAI, engine: str
) -> None:
    provider.default = fakes.text("I refuse to use your format. " * 200)
    err = await _fails(provider_spec(provider, engine), include_trace=True)
    assert err.reason == Reason.LM_OUTPUT_UNPARSEABLE
    assert "the raw output is in the error's raw_output detail (first 2048)" in err.message
    assert err.metadata["raw_output"].startswith("I refuse to use your format.")
    assert len(err.metadata["raw_output"]) == 2048
    assert int(err.metadata["raw_output_chars"]) > 2048
    quiet = await _fails(provider_spec(provider, engine))
    assert "set include_trace to receive the raw output" in quiet.message
    assert "raw_output" not in quiet.metadata


async def test_retries_honour_retry_after_and_back_off(provider: FakeOpenAI, engine: str) -> None:
    provider.enqueue(_rate_limited("0"), fakes.SERVER_ERROR)
    result = await _run(provider_spec(provider, engine, num_retries="2", retry_backoff_ms="1"))
    assert result.outputs["answer"]
    assert len(provider.requests) == 3  # 429, 500, then the answer: one call, three attempts


async def test_refusals_are_never_retried(provider: FakeOpenAI, engine: str) -> None:
    provider.default = fakes.UNAUTHORIZED
    await _fails(provider_spec(provider, engine, num_retries="3", retry_backoff_ms="1"))
    assert len(provider.requests) == 1


async def test_a_retry_after_beyond_the_deadline_is_rate_limited_at_once(
    provider: FakeOpenAI, engine: str
) -> None:
    provider.default = _rate_limited("7")
    err = await _fails(provider_spec(provider, engine, num_retries="3"), timeout_ms=5_000)
    # Not DEADLINE_EXCEEDED after 5 s of waiting: the host learns it was rate-limited, and for
    # how long, at the first refusal.
    assert (err.code, err.reason) == (grpc.StatusCode.RESOURCE_EXHAUSTED, Reason.LM_RATE_LIMITED)
    assert err.metadata["retry_after_ms"] == "7000"
    assert len(provider.requests) == 1


async def test_a_cancel_closes_the_provider_connection(provider: FakeOpenAI, engine: str) -> None:
    provider.default = fakes.HANG
    task = asyncio.create_task(_run(provider_spec(provider, engine)))
    await asyncio.to_thread(provider.wait_for_requests, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.to_thread(provider.wait_for_disconnects, 1)
