"""The real LM path through a worker process: the real `dspy-bridge serve` with one worker, a
client over gRPC, and the local OpenAI-compatible fake as the provider.

- A host cancelling an Execute or ExecuteStream while its LM call is under way closes the
  worker's connection to the provider (the fake sees the client go), and frees the call's slot.
- A provider failing mid-stream (the connection reset), after output already went to the
  host, is not retried (the host could not take the streamed text back): one request, and the
  host gets the mapped error. On DSPy's native engine only: through LiteLLM a reset stream
  ends like a finished one (no error is raised at all; see docs/lm.md).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2
from tests.fakes import openai_server as fakes
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.rpc import rich_error, sv
from tests.process import server_process

KEY_ENV = "WORKER_PATH_TEST_API_KEY"
ENGINES = ["native", "litellm"]
pytestmark = [
    # Raised by pydantic while LiteLLM builds its own types; nothing to do with these tests.
    pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier:UserWarning"),
]


@pytest.fixture
def sidecar() -> Iterator[tuple[pb_grpc.BridgeServiceStub, FakeOpenAI]]:
    with (
        FakeOpenAI() as provider,
        server_process(
            "--workers",
            "1",
            "--lm-allowed-api-bases",
            provider.url,
            env={KEY_ENV: "sk-worker-path-0123456789"},
        ) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        yield pb_grpc.BridgeServiceStub(channel), provider


def _module(
    stub: pb_grpc.BridgeServiceStub, provider: FakeOpenAI, engine: str, **options: str
) -> str:
    sid = str(stub.CreateSession(pb.CreateSessionRequest()).session.session_id)
    lm = lm_pb2.LMConfig(
        model="openai/fake-model",
        api_base=provider.url,
        api_key_env=KEY_ENV,
        options={"engine": engine, **options},
    )
    stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="qa",
            module_type="Predict",
            signature=module_pb2.Signature(text="question -> answer"),
            lm=lm,
        )
    )
    return sid


def _request(sid: str) -> pb.ExecuteRequest:
    return pb.ExecuteRequest(
        session_id=sid, module_id="qa", inputs={"question": sv("What does a sidecar do?")}
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_a_cancelled_call_closes_the_provider_connection_in_the_worker(
    sidecar: tuple[pb_grpc.BridgeServiceStub, FakeOpenAI], engine: str
) -> None:
    stub, provider = sidecar
    sid = _module(stub, provider, engine, num_retries="0")
    provider.default = fakes.HANG

    unary = stub.Execute.future(_request(sid))
    provider.wait_for_requests(1, timeout=120)  # the worker's LM call reached the provider
    unary.cancel()
    provider.wait_for_disconnects(1, timeout=60)

    stream = stub.ExecuteStream(_request(sid))
    provider.wait_for_requests(2, timeout=60)
    stream.cancel()
    provider.wait_for_disconnects(2, timeout=60)

    # Both slots are free again: the next call runs and answers.
    provider.default = fakes.ANSWER
    response = stub.Execute(_request(sid), timeout=120)
    assert response.outputs["answer"].string_value
    info = stub.GetServerInfo(pb.GetServerInfoRequest())
    assert info.pool.in_flight == 0


@pytest.mark.parametrize("engine", ["native"])
def test_no_retry_once_streamed_output_reached_the_host(
    sidecar: tuple[pb_grpc.BridgeServiceStub, FakeOpenAI], engine: str
) -> None:
    stub, provider = sidecar
    # Retries allowed, and quick: only the streamed output may stop them.
    sid = _module(stub, provider, engine, num_retries="3", retry_backoff_ms="1")
    answer = "[[ ## answer ## ]]\n" + " ".join(f"word{i}" for i in range(80))
    provider.enqueue(fakes.broken_stream(answer))

    events = stub.ExecuteStream(_request(sid), timeout=120)
    chunks: list[str] = []
    with pytest.raises(grpc.RpcError) as caught:
        for event in events:
            if event.WhichOneof("event") == "chunk" and event.chunk.field == "answer":
                chunks.append(event.chunk.text)
                provider.break_streams.set()  # output reached the host: now the provider fails
    assert chunks, "no output was streamed before the failure"
    err = rich_error(cast(Any, caught.value))
    assert (err.code, err.reason) == (grpc.StatusCode.UNAVAILABLE, "LM_UNAVAILABLE")
    assert len(provider.requests) == 1  # not retried
