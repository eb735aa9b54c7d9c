"""The LM response cache through a real sidecar with a worker process: off unless a session
opts in (`LMConfig` option `cache=true`), and then an answer is reused only for the same caller
with the same LM identity (model, endpoint, key variable and key, options)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2
from tests.fakes.openai_server import UNAUTHORIZED, FakeOpenAI
from tests.integration.rpc import expect_error, sv

Stub = pb_grpc.BridgeServiceStub
Metadata = tuple[tuple[str, str], ...]
ANA: Metadata = (("authorization", "Bearer ana-token"),)
BO: Metadata = (("authorization", "Bearer bo-token"),)
KEY_ENV = "CACHE_TEST_API_KEY"
OTHER_KEY_ENV = "CACHE_TEST_OTHER_API_KEY"


@pytest.fixture
def provider() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as fake:
        yield fake


@pytest.fixture
def settings_overrides(provider: FakeOpenAI, tmp_path: Path) -> dict[str, object]:
    tokens = tmp_path / "tokens"
    tokens.write_text("ana ana-token\nbo bo-token\n")
    return {
        "workers": 1,  # the cache lives in the worker: the principal must travel there
        "auth_tokens_file": str(tokens),
        "lm_allowed_api_bases": provider.url,
    }


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-cache-test-valid-0123456789")
    monkeypatch.setenv(OTHER_KEY_ENV, "sk-cache-test-revoked-9876543210")


def _lm(api_base: str, key_env: str = KEY_ENV, **options: str) -> lm_pb2.LMConfig:
    options.setdefault("temperature", "1.0")
    return lm_pb2.LMConfig(
        model="openai/fake-model", api_base=api_base, api_key_env=key_env, options=options
    )


async def _module(stub: Stub, who: Metadata, lm: lm_pb2.LMConfig) -> str:
    sid = (await stub.CreateSession(pb.CreateSessionRequest(), metadata=who)).session.session_id
    await stub.ConfigureLM(pb.ConfigureLMRequest(session_id=sid, lm=lm), metadata=who)
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="qa",
            module_type="Predict",
            signature=module_pb2.Signature(text="question -> answer"),
        ),
        metadata=who,
    )
    return sid


def _execute(stub: Stub, sid: str, who: Metadata) -> grpc.aio.UnaryUnaryCall:  # type: ignore[type-arg]
    request = pb.ExecuteRequest(
        session_id=sid, module_id="qa", inputs={"question": sv("What is the capital of France?")}
    )
    return stub.Execute(request, metadata=who)


async def test_off_by_default_and_reused_for_the_same_caller_once_opted_in(
    stub: Stub, provider: FakeOpenAI
) -> None:
    # Two tests in one: each sidecar start pays a worker and LiteLLM's import.
    plain = await _module(stub, ANA, _lm(provider.url))
    await _execute(stub, plain, ANA)
    await _execute(stub, plain, ANA)
    assert len(provider.requests) == 2  # off by default: every call asks the provider

    lm = _lm(provider.url, cache="true")
    sid = await _module(stub, ANA, lm)
    first = await _execute(stub, sid, ANA)
    second = await _execute(stub, sid, ANA)
    assert len(provider.requests) == 3
    assert second.outputs == first.outputs
    # The same caller's other session with the same LM shares the answers (documented).
    other = await _module(stub, ANA, lm)
    await _execute(stub, other, ANA)
    assert len(provider.requests) == 3


async def test_cached_answers_never_cross_callers_keys_or_endpoints(
    stub: Stub, provider: FakeOpenAI
) -> None:
    anas = await _module(stub, ANA, _lm(provider.url, cache="true"))
    await _execute(stub, anas, ANA)
    assert len(provider.requests) == 1

    # Another caller with the very same LM configuration asks the provider itself.
    bos = await _module(stub, BO, _lm(provider.url, cache="true"))
    await _execute(stub, bos, BO)
    assert len(provider.requests) == 2

    # The same caller with another (revoked) key gets the provider's refusal, not an answer
    # paid for with the valid key.
    provider.enqueue(UNAUTHORIZED)
    revoked = await _module(stub, ANA, _lm(provider.url, OTHER_KEY_ENV, cache="true"))
    await expect_error(
        _execute(stub, revoked, ANA), grpc.StatusCode.FAILED_PRECONDITION, "LM_AUTH_FAILED"
    )
    assert len(provider.requests) == 3

    # Another endpoint (here another spelling of it) or other options: another identity.
    elsewhere = await _module(stub, ANA, _lm(provider.url + "/", cache="true"))
    await _execute(stub, elsewhere, ANA)
    hotter = await _module(stub, ANA, _lm(provider.url, cache="true", temperature="0.7"))
    await _execute(stub, hotter, ANA)
    assert len(provider.requests) == 5
