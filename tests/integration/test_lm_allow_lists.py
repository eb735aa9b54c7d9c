"""The LM trust boundary through a real channel: a host may name only the endpoints and key
variables the operator allows, and ConfigureLM checks exactly what CreateModule checks. Every
refusal is a precise status and changes nothing; no request reaches the provider."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dspy_bridge.config import Settings
from dspy_bridge.runtime.lm.policy import LMPolicy, parse_api_base
from dspy_bridge.transport.server import RunningServer, start_server
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.conftest import test_settings
from tests.fakes.openai_server import RATE_LIMITED, FakeOpenAI
from tests.integration.rpc import expect_error, sv

Stub = pb_grpc.BridgeServiceStub
KEY_ENV = "ALLOWLIST_TEST_API_KEY"
PERMISSION_DENIED = grpc.StatusCode.PERMISSION_DENIED
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture
def provider() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def settings_overrides(provider: FakeOpenAI) -> dict[str, object]:
    # The operator allows exactly the fake provider's /v1 endpoint.
    return {"lm_allowed_api_bases": provider.url}


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> str:
    value = "sk-allowlist-0123456789abcdef"
    monkeypatch.setenv(KEY_ENV, value)
    return value


def _lm(api_base: str = "", api_key_env: str = "", **options: str) -> lm_pb2.LMConfig:
    return lm_pb2.LMConfig(
        model="openai/fake-model", api_base=api_base, api_key_env=api_key_env, options=options
    )


async def _session(stub: Stub) -> str:
    return (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id


async def _configure(stub: Stub, sid: str, lm: lm_pb2.LMConfig) -> pb.ConfigureLMResponse:
    return await stub.ConfigureLM(pb.ConfigureLMRequest(session_id=sid, lm=lm))


def _create(sid: str, lm: lm_pb2.LMConfig | None = None, **kw: object) -> pb.CreateModuleRequest:
    return pb.CreateModuleRequest(
        session_id=sid,
        module_id="qa",
        module_type="Predict",
        signature=module_pb2.Signature(text="question -> answer"),
        lm=lm,
        **kw,  # type: ignore[arg-type]
    )


async def _refused_everywhere(
    stub: Stub, lm: lm_pb2.LMConfig, code: grpc.StatusCode, reason: str, field: str
) -> None:
    """ConfigureLM and CreateModule refuse `lm` alike, and neither stores anything."""
    sid = await _session(stub)
    for call in (_configure(stub, sid, lm), stub.CreateModule(_create(sid, lm))):
        err = await expect_error(call, code, reason)
        assert err.fields == [field], err
    session = (await stub.GetSession(pb.GetSessionRequest(session_id=sid))).session
    assert not session.HasField("lm")
    assert not (await stub.ListModules(pb.ListModulesRequest(session_id=sid))).modules


async def test_endpoints_outside_the_allow_list_are_permission_denied(
    stub: Stub, provider: FakeOpenAI
) -> None:
    port = provider.port
    for api_base in (
        f"http://127.0.0.1:{port}/v1evil",  # not below /v1 on a segment boundary
        f"http://127.0.0.1:{port}/",  # above the allowed path
        f"http://127.0.0.1:{port + 1}/v1",  # another port
        f"https://127.0.0.1:{port}/v1",  # another scheme
        f"http://localhost:{port}/v1",  # another host name, even if it resolves the same
        "https://api.example.com/v1",
    ):
        await _refused_everywhere(
            stub, _lm(api_base), PERMISSION_DENIED, "LM_API_BASE_NOT_ALLOWED", "lm.api_base"
        )
    assert provider.requests == []


async def test_malformed_endpoints_are_invalid_argument(stub: Stub, provider: FakeOpenAI) -> None:
    port = provider.port
    for api_base in (
        "file:///etc/passwd",
        "gopher://127.0.0.1:70/",
        f"http://127.0.0.1:{port}@evil.example/v1",  # user info: the host is evil.example
        f"http://evil.example#@127.0.0.1:{port}/v1",
        f"http://127.0.0.1:{port}/v1/../admin",
        f"http://127.0.0.1:{port}/v1/%2e%2e/admin",
        f"http://127.0.0.1:{port}/v1?redirect=http://evil.example",
        f"http://127.0.0.1:{port}\\@evil.example/v1",
        "http://" + "a" * 3000 + ".example/v1",
    ):
        await _refused_everywhere(
            stub, _lm(api_base), INVALID_ARGUMENT, "INVALID_REQUEST", "lm.api_base"
        )
    assert provider.requests == []


async def test_key_variables_outside_the_allow_list_are_permission_denied(stub: Stub) -> None:
    for name in ("DSPY_BRIDGE_AUTH_TOKEN", "dspy_bridge_auth_token", "HOME", "AWS_SECRET"):
        await _refused_everywhere(
            stub,
            _lm(api_key_env=name),
            PERMISSION_DENIED,
            "LM_KEY_ENV_NOT_ALLOWED",
            "lm.api_key_env",
        )


async def test_configure_lm_checks_what_create_module_checks(stub: Stub) -> None:
    for options, field in (
        ({"temperature": "nan"}, "lm.options.temperature"),
        ({"max_tokens": "-1"}, "lm.options.max_tokens"),
        ({"stop": "x" * 2_000}, "lm.options.stop"),  # longer than an LM option may be
        ({"temprature": "0.5"}, "lm.options.temprature"),
    ):
        await _refused_everywhere(stub, _lm(**options), INVALID_ARGUMENT, "INVALID_REQUEST", field)
    # 2 MB: the request limits refuse it before the LM check (its field path is their own).
    huge = _lm(stop="x" * (2 << 20))
    await _refused_everywhere(stub, huge, INVALID_ARGUMENT, "INVALID_REQUEST", "lm.options['stop']")
    for model in ("openai/", "openai/http://evil.example/v1", "open ai/x", "openai/gpt%2e4"):
        lm = lm_pb2.LMConfig(model=model)
        await _refused_everywhere(stub, lm, INVALID_ARGUMENT, "INVALID_REQUEST", "lm.model")


async def test_an_allowed_endpoint_and_key_variable_work(
    stub: Stub, provider: FakeOpenAI, key: str
) -> None:
    sid = await _session(stub)
    await _configure(stub, sid, _lm(provider.url + "/", KEY_ENV))  # trailing slash: same path
    await stub.CreateModule(_create(sid))
    reply = await stub.Execute(
        pb.ExecuteRequest(session_id=sid, module_id="qa", inputs={"question": sv("hi")})
    )
    assert reply.outputs["answer"].string_value
    (request,) = provider.requests
    assert request.headers["authorization"] == f"Bearer {key}"


async def test_a_bound_model_cannot_smuggle_an_endpoint(stub: Stub, provider: FakeOpenAI) -> None:
    sid = await _session(stub)
    await _configure(stub, sid, _lm(provider.url, KEY_ENV))
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid, name="m", type=vpb.VARIABLE_TYPE_STRING, initial_value=sv("gpt-x")
        )
    )
    await stub.CreateModule(_create(sid, variable_bindings={"model": "m"}))
    err = await expect_error(
        stub.Execute(
            pb.ExecuteRequest(
                session_id=sid,
                module_id="qa",
                inputs={"question": sv("hi")},
                variable_overrides={"m": sv("openai/http://evil.example/v1")},
            )
        ),
        INVALID_ARGUMENT,
        "INVALID_REQUEST",
    )
    assert err.fields == ["variable_bindings.model"]
    assert provider.requests == []


async def test_a_stored_lm_the_operator_no_longer_allows_is_refused_at_execute(
    provider: FakeOpenAI, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'bridge.db'}"
    first = await start_server(test_settings(store=store, lm_allowed_api_bases=provider.url))
    try:
        async with grpc.aio.insecure_channel(first.target) as channel:
            stub = Stub(channel)
            await stub.CreateSession(pb.CreateSessionRequest(session_id="s"))
            await stub.CreateModule(_create("s", _lm(provider.url, KEY_ENV)))
    finally:
        await first.stop(grace=0)
    second = await start_server(test_settings(store=store))  # the endpoint is no longer listed
    try:
        async with grpc.aio.insecure_channel(second.target) as channel:
            stub = Stub(channel)
            execute = pb.ExecuteRequest(
                session_id="s", module_id="qa", inputs={"question": sv("hi")}
            )
            await expect_error(stub.Execute(execute), PERMISSION_DENIED, "LM_API_BASE_NOT_ALLOWED")
    finally:
        await second.stop(grace=0)
    assert provider.requests == []


def test_allow_list_entries_match_as_documented() -> None:
    policy = LMPolicy.build(["HTTPS://Gw.Example.:443/v1/"], ["*_API_KEY", "CORP_LLM_*_TOKEN"])
    admitted = [
        "https://gw.example/v1",
        "https://GW.EXAMPLE:443/v1/chat",
        "https://gw.example./v1",
    ]
    refused = ["https://gw.example/v10", "https://gw.example:8443/v1", "http://gw.example/v1"]
    for url in admitted:
        assert policy.api_base_allowed(parse_api_base(url)), url
    for url in refused:
        assert not policy.api_base_allowed(parse_api_base(url)), url
    assert policy.key_env_allowed("OPENAI_API_KEY")
    assert policy.key_env_allowed("CORP_LLM_EU_TOKEN")
    assert not policy.key_env_allowed("CORP_LLM_TOKEN_X")
    assert not policy.key_env_allowed("OPENAI_API_KEY_OLD")
    assert not LMPolicy.build([], ["*"]).key_env_allowed("DSPY_BRIDGE_AUTH_TOKEN")
    assert not LMPolicy.build([], []).key_env_allowed("OPENAI_API_KEY")


def test_bad_allow_list_settings_are_refused_at_start() -> None:
    with pytest.raises(ValueError, match="allowed api_base"):
        Settings(lm_allowed_api_bases="ftp://files.example")
    with pytest.raises(ValueError, match="allowed key env"):
        Settings(lm_allowed_key_envs="OPENAI-KEY")
    with pytest.raises(ValueError, match="own settings"):
        Settings(lm_api_key_env="DSPY_BRIDGE_AUTH_TOKEN")


async def test_the_operators_default_lm_endpoint_counts_as_listed(
    provider: FakeOpenAI, key: str
) -> None:
    settings = test_settings(
        lm="openai/fake-model", lm_api_base=provider.url, lm_api_key_env=KEY_ENV
    )
    running: RunningServer = await start_server(settings)
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            stub = Stub(channel)
            sid = await _session(stub)
            await stub.CreateModule(_create(sid))  # no lm: the server's default
            await stub.Execute(
                pb.ExecuteRequest(session_id=sid, module_id="qa", inputs={"question": sv("hi")})
            )
    finally:
        await running.stop(grace=0)
    assert len(provider.requests) == 1


async def test_provider_failures_reach_the_host_mapped(
    stub: Stub, provider: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    sid = await _session(stub)
    provider.default = RATE_LIMITED
    await stub.CreateModule(_create(sid, _lm(provider.url, KEY_ENV, num_retries="0")))
    execute = pb.ExecuteRequest(session_id=sid, module_id="qa", inputs={"question": sv("hi")})
    err = await expect_error(
        stub.Execute(execute), grpc.StatusCode.RESOURCE_EXHAUSTED, "LM_RATE_LIMITED"
    )
    assert err.message == "the LM provider rate-limited (HTTP 429)"
    assert err.metadata["retry_after_ms"] == "0"  # the provider's Retry-After
    monkeypatch.delenv("UNSET_API_KEY", raising=False)
    keyless = _create(sid, _lm(api_key_env="UNSET_API_KEY"))
    keyless.module_id = "keyless"
    await stub.CreateModule(keyless)
    err = await expect_error(
        stub.Execute(
            pb.ExecuteRequest(session_id=sid, module_id="keyless", inputs={"question": sv("hi")})
        ),
        grpc.StatusCode.FAILED_PRECONDITION,
        "LM_AUTH_FAILED",
    )
    assert "UNSET_API_KEY" in err.message


async def test_a_stream_reports_exact_usage_and_its_first_chunk_time(
    stub: Stub, provider: FakeOpenAI
) -> None:
    sid = await _session(stub)
    await stub.CreateModule(_create(sid, _lm(provider.url, KEY_ENV)))
    request = pb.ExecuteRequest(session_id=sid, module_id="qa", inputs={"question": sv("hi")})
    events = [event async for event in stub.ExecuteStream(request)]
    assert any(e.HasField("chunk") for e in events)
    result = events[-1].result
    (sent,) = provider.requests
    assert sent.body["stream_options"] == {"include_usage": True}
    prompt = sum(len(str(m["content"]).split()) for m in sent.body["messages"])
    assert (result.usage.lm_calls, result.usage.prompt_tokens) == (1, prompt)
    assert result.usage.completion_tokens > 0
    assert 0 < result.first_chunk_ms <= result.latency_ms
