"""LMs from specs, and the real dspy.LM -> LiteLLM -> HTTP path against a local fake provider."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from typing import Any

import dspy
import grpc
import pytest
from dspy.streaming import StreamListener, StreamResponse

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import LMSpec
from dspy_bridge.runtime.lm.errors import lm_error_to_bridge, redact, register_secret
from dspy_bridge.runtime.lm.factory import (
    LM_CACHE_SIZE,
    build_lm,
    clear_lm_cache,
    validate_lm_spec,
)
from dspy_bridge.runtime.lm.offline import OfflineLM
from tests.fakes import openai_server as fakes
from tests.fakes.openai_server import FakeOpenAI

pytestmark = [
    # Raised by pydantic while LiteLLM builds its own types; nothing to do with these tests.
    pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning"),
]

fake_openai = fakes.fake_openai

KEY_ENV = "BRIDGE_TEST_FAKE_API_KEY"
SECRET = "sk-test-5f2c9a7e41b04d3c8e6a1b2c3d4e5f60"
MODEL = "openai/fake-model"


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    clear_lm_cache()
    yield
    clear_lm_cache()


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv(KEY_ENV, SECRET)
    return SECRET


def _spec(server: FakeOpenAI, **options: str) -> LMSpec:
    # No retries (they would sleep) and no DSPy response cache (tests must reach the server).
    base = {"num_retries": "0", "cache": "false"}
    base.update(options)
    return LMSpec(MODEL, api_base=server.url, api_key_env=KEY_ENV, options=base)


def _raises(code: grpc.StatusCode, reason: str, fn: Any, *args: Any, **kwargs: Any) -> BridgeError:
    with pytest.raises(BridgeError) as info:
        fn(*args, **kwargs)
    assert (info.value.code, info.value.reason) == (code, reason), info.value
    return info.value


def _lm_failure(exc_info: pytest.ExceptionInfo[BaseException]) -> BridgeError:
    mapped = lm_error_to_bridge(exc_info.value)
    assert mapped is not None, repr(exc_info.value)
    return mapped


# -- building ----------------------------------------------------------------------------------


def test_no_spec_is_no_lm_configured() -> None:
    err = _raises(grpc.StatusCode.FAILED_PRECONDITION, Reason.NO_LM_CONFIGURED, build_lm, None)
    assert "ConfigureLM" in err.message


def test_offline_spec_builds_the_offline_lm() -> None:
    lm = build_lm(LMSpec("offline", options={"latency_ms": "25", "temperature": "0.7"}))
    assert isinstance(lm, OfflineLM)
    assert lm.latency_ms == 25
    assert lm.kwargs["temperature"] == 0.7


def test_provider_options_are_typed(key: str) -> None:
    spec = LMSpec(
        MODEL,
        api_base="http://127.0.0.1:9/v1",
        api_key_env=KEY_ENV,
        options={
            "temperature": "0.25",
            "max_tokens": "64",
            "top_p": "0.5",
            "num_retries": "2",
            "cache": "false",
            "timeout": "1.5",
            "stop": '["\\n\\n", "END"]',
            "seed": "7",
        },
    )
    lm = build_lm(spec)
    assert isinstance(lm, dspy.LM)
    assert lm.model == MODEL
    assert lm.kwargs["temperature"] == 0.25
    assert lm.kwargs["max_tokens"] == 64
    assert lm.kwargs["top_p"] == 0.5
    assert lm.kwargs["timeout"] == 1.5
    assert lm.kwargs["stop"] == ["\n\n", "END"]
    assert lm.kwargs["seed"] == 7
    assert lm.kwargs["api_base"] == "http://127.0.0.1:9/v1"
    assert lm.num_retries == 0  # DSPy's own loop is off: the sidecar's policy retries
    assert lm.retry_policy.retries == 2
    assert lm.cache is False
    assert lm.engine == "auto"  # DSPy native where it can, LiteLLM otherwise


@pytest.mark.parametrize(
    ("options", "field", "problem"),
    [
        ({"temprature": "0.1"}, "lm.options.temprature", "unknown LM option 'temprature'"),
        ({"temperature": "hot"}, "lm.options.temperature", "must be a number from 0 to 2"),
        ({"temperature": "9"}, "lm.options.temperature", "must be a number from 0 to 2"),
        ({"max_tokens": "1.5"}, "lm.options.max_tokens", "an integer from 1 to 1000000"),
        ({"n": "17"}, "lm.options.n", "an integer from 1 to 16"),
        ({"cache": "maybe"}, "lm.options.cache", "true or false"),
        ({"stop": "[1, 2]"}, "lm.options.stop", "a string or a JSON list of strings"),
        ({"latency_ms": "5"}, "lm.options.latency_ms", "an option of the offline LM only"),
    ],
)
def test_bad_options_are_invalid_argument(
    options: dict[str, str], field: str, problem: str
) -> None:
    spec = LMSpec(MODEL, options=options)
    err = _raises(grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_REQUEST, build_lm, spec)
    assert problem in err.message
    assert [v.field for v in err.violations] == [field]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (LMSpec(""), "lm.model"),
        (LMSpec("openai/ gpt"), "lm.model"),
        (LMSpec("openai/"), "lm.model"),
        (LMSpec(MODEL, api_base="localhost:8000"), "lm.api_base"),
        (LMSpec(MODEL, api_key_env=SECRET), "lm.api_key_env"),
    ],
)
def test_bad_specs_are_refused_before_anything_is_built(spec: LMSpec, field: str) -> None:
    err = _raises(grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_REQUEST, validate_lm_spec, spec)
    assert [v.field for v in err.violations] == [field]
    assert SECRET not in err.message


def test_bound_parameters_override_options(key: str) -> None:
    spec = LMSpec(MODEL, api_key_env=KEY_ENV, options={"temperature": "0.1", "max_tokens": "10"})
    lm = build_lm(spec, {"temperature": 0.9, "n": 2, "stop": ["X"]})
    assert lm.kwargs["temperature"] == 0.9
    assert lm.kwargs["max_tokens"] == 10
    assert lm.kwargs["n"] == 2
    assert lm.kwargs["stop"] == ["X"]


def test_a_bound_model_switches_the_lm(key: str) -> None:
    spec = LMSpec(MODEL, api_key_env=KEY_ENV)
    assert isinstance(build_lm(spec, {"model": "offline"}), OfflineLM)
    other = build_lm(spec, {"model": "openai/other-model"})
    assert other.model == "openai/other-model"
    assert other.kwargs["api_key"] == SECRET
    offline = LMSpec("offline", options={"latency_ms": "5"})
    assert build_lm(offline, {"model": "openai/x"}).model == "openai/x"


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"adapter": "json"}, Reason.UNKNOWN_PARAMETER),
        ({"temperature": "hot"}, Reason.INVALID_REQUEST),
        ({"temperature": True}, Reason.INVALID_REQUEST),
        ({"max_tokens": 0}, Reason.INVALID_REQUEST),
        ({"stop": [1]}, Reason.INVALID_REQUEST),
        ({"model": " "}, Reason.INVALID_REQUEST),
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any], reason: str) -> None:
    _raises(grpc.StatusCode.INVALID_ARGUMENT, reason, build_lm, LMSpec("offline"), params)


def test_built_lms_are_cached_by_spec_and_parameters(key: str) -> None:
    spec = LMSpec(MODEL, api_key_env=KEY_ENV, options={"temperature": "0.1"})
    same = LMSpec(MODEL, api_key_env=KEY_ENV, options={"temperature": "0.1"})
    first = build_lm(spec, {"max_tokens": 5})
    assert build_lm(same, {"max_tokens": 5}) is first
    assert build_lm(spec, {"max_tokens": 6}) is not first
    assert build_lm(spec) is not first
    # A small LRU: old entries go.
    for i in range(LM_CACHE_SIZE):
        build_lm(spec, {"max_tokens": 100 + i})
    assert build_lm(spec, {"max_tokens": 5}) is not first


def test_a_rotated_key_builds_a_new_lm(monkeypatch: pytest.MonkeyPatch, key: str) -> None:
    spec = LMSpec(MODEL, api_key_env=KEY_ENV)
    first = build_lm(spec)
    monkeypatch.setenv(KEY_ENV, SECRET + "-rotated")
    assert build_lm(spec) is not first


def test_a_missing_key_variable_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV, raising=False)
    err = _raises(
        grpc.StatusCode.FAILED_PRECONDITION,
        Reason.LM_AUTH_FAILED,
        build_lm,
        LMSpec(MODEL, api_key_env=KEY_ENV),
    )
    assert KEY_ENV in err.message
    assert err.metadata["api_key_env"] == KEY_ENV
    monkeypatch.setenv(KEY_ENV, "")
    _raises(
        grpc.StatusCode.FAILED_PRECONDITION,
        Reason.LM_AUTH_FAILED,
        build_lm,
        LMSpec(MODEL, api_key_env=KEY_ENV),
    )


# -- keys never leak ----------------------------------------------------------------------------


def test_the_key_is_in_no_repr_str_or_state(key: str) -> None:
    spec = LMSpec(MODEL, api_key_env=KEY_ENV)
    lm = build_lm(spec)
    assert lm.kwargs["api_key"] == SECRET  # it does reach LiteLLM ...
    for text in (repr(lm), str(lm), repr(spec), str(spec), json.dumps(lm.dump_state())):
        assert SECRET not in text  # ... and nowhere else


def test_redact_removes_registered_secrets_and_key_shapes() -> None:
    register_secret("hunter2-registered")
    text = (
        "auth failed for hunter2-registered; Authorization: Bearer abcdefghijklmnop; "
        "key sk-proj-abcdefghijklmnop; api_key='zzzzzzzz'"
    )
    cleaned = redact(text)
    for leaked in ("hunter2-registered", "abcdefghijklmnop", "sk-proj", "zzzzzzzz"):
        assert leaked not in cleaned
    assert cleaned.count("[REDACTED]") == 4


# -- the real path: dspy.LM -> LiteLLM -> HTTP -> fake server -----------------------------------


def test_predict_through_litellm_gets_typed_outputs(fake_openai: FakeOpenAI, key: str) -> None:
    lm = build_lm(_spec(fake_openai, temperature="0.3", max_tokens="200"))
    with dspy.context(lm=lm):
        out = dspy.Predict("question -> answer, confidence: float, tags: list[str]")(
            question="What is the capital of France?"
        )
    assert isinstance(out.answer, str) and "capital" in out.answer
    assert isinstance(out.confidence, float)
    assert isinstance(out.tags, list)

    (request,) = fake_openai.requests
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {SECRET}"
    assert request.body["model"] == "fake-model"
    assert request.body["temperature"] == 0.3
    # DSPy's native engine sends OpenAI's current name for it; LiteLLM the older one.
    assert 200 in (request.body.get("max_completion_tokens"), request.body.get("max_tokens"))
    assert request.body["messages"][0]["role"] == "system"


async def test_async_chain_of_thought_through_litellm(fake_openai: FakeOpenAI, key: str) -> None:
    lm = build_lm(_spec(fake_openai))
    with dspy.context(lm=lm, adapter=dspy.JSONAdapter(), track_usage=True):
        out = await dspy.ChainOfThought("question -> answer, n: int").acall(question="Why?")
    assert isinstance(out.reasoning, str)
    assert isinstance(out.n, int)
    usage = out.get_lm_usage()[MODEL]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0


async def test_streaming_through_litellm(fake_openai: FakeOpenAI, key: str) -> None:
    lm = build_lm(_spec(fake_openai))
    program = dspy.streamify(
        dspy.Predict("question -> answer"),
        stream_listeners=[StreamListener("answer")],
        is_async_program=True,
    )
    chunks: list[str] = []
    final = None
    with dspy.context(lm=lm):
        async for value in program(question="What is the capital of Spain?"):
            if isinstance(value, StreamResponse):
                chunks.append(value.chunk)
            elif isinstance(value, dspy.Prediction):
                final = value
    assert final is not None
    assert len(chunks) > 1
    assert "".join(chunks) == final.answer
    assert fake_openai.requests[0].body["stream"] is True


@pytest.mark.parametrize(
    ("behaviour", "code", "reason"),
    [
        (fakes.RATE_LIMITED, grpc.StatusCode.RESOURCE_EXHAUSTED, Reason.LM_RATE_LIMITED),
        (fakes.UNAUTHORIZED, grpc.StatusCode.FAILED_PRECONDITION, Reason.LM_AUTH_FAILED),
        (
            fakes.CONTEXT_LENGTH,
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.LM_CONTEXT_WINDOW_EXCEEDED,
        ),
        (fakes.BAD_REQUEST, grpc.StatusCode.INVALID_ARGUMENT, Reason.LM_BAD_REQUEST),
        (fakes.MODEL_NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT, Reason.LM_BAD_REQUEST),
        (fakes.SERVER_ERROR, grpc.StatusCode.UNAVAILABLE, Reason.LM_UNAVAILABLE),
        (fakes.UNAVAILABLE, grpc.StatusCode.UNAVAILABLE, Reason.LM_UNAVAILABLE),
    ],
    ids=lambda v: getattr(v, "name", None) or getattr(v, "status", None) or str(v),
)
async def test_provider_failures_map_to_status_codes(
    fake_openai: FakeOpenAI,
    key: str,
    behaviour: fakes.Behaviour,
    code: grpc.StatusCode,
    reason: str,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_openai.default = behaviour
    lm = build_lm(_spec(fake_openai))
    caplog.set_level(logging.DEBUG)
    with dspy.context(lm=lm), pytest.raises(Exception) as info:
        await dspy.Predict("question -> answer").acall(question="hello")
    mapped = _lm_failure(info)
    assert (mapped.code, mapped.reason) == (code, reason), mapped
    assert len(fake_openai.requests) == 1  # no hidden retries
    # The key is never echoed: not in the error, its metadata, the logs, or the console.
    captured = capsys.readouterr()
    for text in (mapped.message, str(mapped), json.dumps(dict(mapped.metadata)), caplog.text):
        assert SECRET not in text
    assert SECRET not in captured.out + captured.err


async def test_the_echoed_key_is_redacted_from_the_message(
    fake_openai: FakeOpenAI, key: str
) -> None:
    fake_openai.default = fakes.UNAUTHORIZED
    with dspy.context(lm=build_lm(_spec(fake_openai))), pytest.raises(Exception) as info:
        await dspy.Predict("question -> answer").acall(question="hello")
    assert SECRET in str(info.value)  # the provider did echo it ...
    mapped = _lm_failure(info)
    # ... the bridge says what happened in its own words, nothing of the provider's body.
    assert mapped.message == "the LM provider rejected the credentials (HTTP 401)"
    assert "Incorrect API key" not in str(mapped) + json.dumps(dict(mapped.metadata))


async def test_a_hanging_provider_times_out(fake_openai: FakeOpenAI, key: str) -> None:
    fake_openai.default = fakes.HANG
    lm = build_lm(_spec(fake_openai, timeout="0.3"))
    with dspy.context(lm=lm), pytest.raises(Exception) as info:
        await dspy.Predict("question -> answer").acall(question="hello")
    mapped = _lm_failure(info)
    assert (mapped.code, mapped.reason) == (grpc.StatusCode.DEADLINE_EXCEEDED, Reason.LM_TIMEOUT)


def test_an_unreachable_provider_is_unavailable(key: str) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    spec = LMSpec(
        MODEL,
        api_base=f"http://127.0.0.1:{port}/v1",
        api_key_env=KEY_ENV,
        options={"num_retries": "0", "cache": "false"},
    )
    with dspy.context(lm=build_lm(spec)), pytest.raises(Exception) as info:
        dspy.Predict("question -> answer")(question="hello")
    mapped = _lm_failure(info)
    assert (mapped.code, mapped.reason) == (grpc.StatusCode.UNAVAILABLE, Reason.LM_UNAVAILABLE)


def test_unparseable_output_is_reported_as_such(fake_openai: FakeOpenAI, key: str) -> None:
    fake_openai.default = fakes.text("I refuse to use your format.")
    with dspy.context(lm=build_lm(_spec(fake_openai))), pytest.raises(Exception) as info:
        dspy.Predict("question -> answer, n: int")(question="hello")
    mapped = _lm_failure(info)
    assert mapped.code == grpc.StatusCode.FAILED_PRECONDITION
    assert mapped.reason == Reason.LM_OUTPUT_UNPARSEABLE
    assert "did not match the signature" in mapped.message
    assert "answer, n" in mapped.message


async def test_retries_follow_the_num_retries_option(fake_openai: FakeOpenAI, key: str) -> None:
    fake_openai.enqueue(fakes.UNAVAILABLE)  # then the default answer
    lm = build_lm(_spec(fake_openai, num_retries="1"))
    with dspy.context(lm=lm):
        out = await dspy.Predict("question -> answer").acall(question="again?")
    assert out.answer
    assert len(fake_openai.requests) == 2


def test_the_fake_server_leaves_no_thread_behind(key: str) -> None:
    with FakeOpenAI() as server:
        server.default = fakes.HANG
        lm = build_lm(_spec(server, timeout="0.2"))
        with dspy.context(lm=lm), pytest.raises(Exception) as info:
            dspy.Predict("question -> answer")(question="hello")
        assert _lm_failure(info).reason == Reason.LM_TIMEOUT
        # The hanging handler is still waiting for the server to stop.
        assert any(t.name.startswith(fakes.THREAD_PREFIX) for t in threading.enumerate())
    assert not [t for t in threading.enumerate() if t.name.startswith(fakes.THREAD_PREFIX)]


# -- mapping exceptions directly ----------------------------------------------------------------


def _litellm_errors() -> list[tuple[BaseException, grpc.StatusCode, str]]:
    import httpx
    import litellm as litellm_module

    litellm: Any = litellm_module  # its exception constructors are loosely typed
    response = httpx.Response(500, request=httpx.Request("POST", "http://x"))
    args: dict[str, Any] = {"message": "boom", "llm_provider": "openai", "model": "fake-model"}
    code = grpc.StatusCode
    return [
        (litellm.RateLimitError(**args), code.RESOURCE_EXHAUSTED, Reason.LM_RATE_LIMITED),
        (litellm.AuthenticationError(**args), code.FAILED_PRECONDITION, Reason.LM_AUTH_FAILED),
        (
            litellm.PermissionDeniedError(**args, response=response),
            code.FAILED_PRECONDITION,
            Reason.LM_AUTH_FAILED,
        ),
        (litellm.Timeout(**args), code.DEADLINE_EXCEEDED, Reason.LM_TIMEOUT),
        (
            litellm.ContextWindowExceededError(**args),
            code.INVALID_ARGUMENT,
            Reason.LM_CONTEXT_WINDOW_EXCEEDED,
        ),
        (litellm.APIConnectionError(**args), code.UNAVAILABLE, Reason.LM_UNAVAILABLE),
        (litellm.ServiceUnavailableError(**args), code.UNAVAILABLE, Reason.LM_UNAVAILABLE),
        (litellm.InternalServerError(**args), code.UNAVAILABLE, Reason.LM_UNAVAILABLE),
        (litellm.BadRequestError(**args), code.INVALID_ARGUMENT, Reason.LM_BAD_REQUEST),
    ]


def test_litellm_exceptions_map_to_status_codes() -> None:
    for exc, code, reason in _litellm_errors():
        mapped = lm_error_to_bridge(exc)
        assert mapped is not None, exc
        assert (mapped.code, mapped.reason) == (code, reason), type(exc).__name__
        assert mapped.metadata["error_type"] == type(exc).__name__


def test_dspy_and_lm15_exceptions_map_to_status_codes() -> None:
    from dspy import lm15
    from dspy.utils import exceptions as ex

    code = grpc.StatusCode
    cases: list[tuple[BaseException, grpc.StatusCode, str]] = [
        (
            ex.LMRateLimitError("slow down", retry_after=3.0),
            code.RESOURCE_EXHAUSTED,
            "LM_RATE_LIMITED",
        ),
        (ex.LMBillingError("pay"), code.RESOURCE_EXHAUSTED, Reason.LM_RATE_LIMITED),
        (ex.LMAuthError("who"), code.FAILED_PRECONDITION, Reason.LM_AUTH_FAILED),
        (ex.LMNotConfiguredError("no key"), code.FAILED_PRECONDITION, Reason.LM_AUTH_FAILED),
        (ex.LMTimeoutError("late"), code.DEADLINE_EXCEEDED, Reason.LM_TIMEOUT),
        (ex.ContextWindowExceededError(), code.INVALID_ARGUMENT, Reason.LM_CONTEXT_WINDOW_EXCEEDED),
        (ex.LMServerError("500"), code.UNAVAILABLE, Reason.LM_UNAVAILABLE),
        (ex.LMTransportError("dns"), code.UNAVAILABLE, Reason.LM_UNAVAILABLE),
        (ex.LMInvalidRequestError("bad"), code.INVALID_ARGUMENT, Reason.LM_BAD_REQUEST),
        (ex.LMUnsupportedModelError("what"), code.INVALID_ARGUMENT, Reason.LM_BAD_REQUEST),
        (ex.LMProviderError("teapot", status=418), code.INVALID_ARGUMENT, Reason.LM_BAD_REQUEST),
        (ex.LMProviderError("odd"), code.UNAVAILABLE, Reason.LM_UNAVAILABLE),
        (lm15.RateLimitError("lm15 slow"), code.RESOURCE_EXHAUSTED, Reason.LM_RATE_LIMITED),
        (lm15.ContextLengthError("long"), code.INVALID_ARGUMENT, Reason.LM_CONTEXT_WINDOW_EXCEEDED),
    ]
    for exc, expected_code, reason in cases:
        mapped = lm_error_to_bridge(exc)
        assert mapped is not None, exc
        assert (mapped.code, mapped.reason) == (expected_code, reason), type(exc).__name__
    rate = lm_error_to_bridge(cases[0][0])
    assert rate is not None and rate.metadata["retry_after_ms"] == "3000"


def test_wrapped_failures_are_found_and_others_are_not_lm_errors() -> None:
    from dspy.utils import exceptions as ex

    inner = ex.LMTimeoutError("late")
    try:
        try:
            raise inner
        except ex.LMTimeoutError as cause:
            raise RuntimeError("module failed") from cause
    except RuntimeError as outer:
        wrapped = outer
    mapped = lm_error_to_bridge(wrapped)
    assert mapped is not None and mapped.reason == Reason.LM_TIMEOUT

    group = ExceptionGroup("task group", [ex.LMAuthError("who")])
    grouped = lm_error_to_bridge(group)
    assert grouped is not None and grouped.reason == Reason.LM_AUTH_FAILED

    assert lm_error_to_bridge(ValueError("a bug")) is None
    # An engine failure DSPy could not classify fails closed, with none of its text.
    unexpected = lm_error_to_bridge(ex.LMUnexpectedError("engine bug: <html>secret</html>"))
    assert unexpected is not None and unexpected.reason == Reason.LM_UNAVAILABLE
    assert "secret" not in unexpected.message
    assert lm_error_to_bridge(ExceptionGroup("two", [ValueError(), KeyError()])) is None


def test_error_messages_carry_no_provider_text(key: str) -> None:
    from dspy.utils import exceptions as ex

    register_secret(SECRET)
    mapped = lm_error_to_bridge(ex.LMAuthError(f"bad key {SECRET}", model=MODEL, status=401))
    assert mapped is not None
    assert mapped.message == "the LM provider rejected the credentials (HTTP 401)"
    # A failure DSPy raises before any request keeps DSPy's own (redacted) explanation.
    local = lm_error_to_bridge(ex.LMNotConfiguredError(f"set OPENAI_API_KEY, not {SECRET}"))
    assert local is not None and "set OPENAI_API_KEY" in local.message
    assert SECRET not in local.message and "[REDACTED]" in local.message


def test_redact_removes_reversed_hex_and_base64_forms_of_a_key() -> None:
    import base64

    secret = "sk-live-0a1b2c3d4e5f6a7b8c9d"
    register_secret(secret)
    for prefix in ("", "x", "xy"):  # every byte alignment inside an encoded text
        encoded = base64.b64encode(f"{prefix}Bearer {secret} more".encode()).decode()
        urlsafe = base64.urlsafe_b64encode(f"{prefix}key={secret}".encode()).decode()
        for text in (encoded, urlsafe):
            assert "[REDACTED]" in redact(f"echo: {text}")
    assert redact(f"reversed {secret[::-1]}") == "reversed [REDACTED]"
    assert redact(f"hex {secret.encode().hex()}") == "hex [REDACTED]"


def test_without_api_key_env_no_key_is_passed() -> None:
    # LiteLLM then uses the provider's own variable (OPENAI_API_KEY), as it always does.
    lm = build_lm(LMSpec(MODEL, options={"cache": "false"}))
    assert "api_key" not in lm.kwargs


def test_host_lms_run_on_dspys_engine_api() -> None:
    """No `BaseLM.forward` (deprecated in DSPy 3.4, gone in 3.5): DSPy's engines answer."""

    from dspy_bridge.runtime.lm.host import AsyncHostEngine, HostEngine, HostLM

    lm = build_lm(LMSpec("host:my_llm", options={"temperature": "0.5"}))
    assert isinstance(lm, HostLM) and isinstance(lm, dspy.LM)
    assert isinstance(lm.engine, HostEngine)
    assert isinstance(lm._async_engine_spec, AsyncHostEngine)
    assert "forward" not in vars(HostLM) and "aforward" not in vars(HostLM)
