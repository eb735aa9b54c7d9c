"""The sidecar never reaches the internet on its own. The real `dspy-bridge serve` (a worker
process, LM calls through both engines) runs with every proxy variable pointing at a local
listener that counts connections; only the local fake provider is exempt (NO_PROXY). LiteLLM's
and DSPy's model price list fetches would go through the proxy: none may arrive."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2
from tests.fakes.openai_server import FakeOpenAI
from tests.integration.rpc import sv
from tests.process import server_process

KEY_ENV = "NO_INTERNET_TEST_API_KEY"


class CountingProxy:
    """Accepts connections on 127.0.0.1, counts them and closes them at once."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="counting-proxy")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[CountingProxy]:
    # The child must not inherit the setting from this test process: the sidecar sets it.
    monkeypatch.delenv("LITELLM_LOCAL_MODEL_COST_MAP", raising=False)
    with CountingProxy() as counting:
        yield counting


def test_lm_calls_on_both_engines_reach_nothing_but_the_provider(proxy: CountingProxy) -> None:
    env = {KEY_ENV: "sk-no-internet-0123456789", "NO_PROXY": "127.0.0.1,localhost"}
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy"):
        env[name] = proxy.url
    with (
        FakeOpenAI() as provider,
        server_process("--workers", "1", "--lm-allowed-api-bases", provider.url, env=env) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = pb_grpc.BridgeServiceStub(channel)
        sid = stub.CreateSession(pb.CreateSessionRequest()).session.session_id
        for engine in ("litellm", "native"):
            lm = lm_pb2.LMConfig(
                model="openai/fake-model",
                api_base=provider.url,
                api_key_env=KEY_ENV,
                options={"engine": engine},
            )
            stub.CreateModule(
                pb.CreateModuleRequest(
                    session_id=sid,
                    module_id=engine,
                    module_type="Predict",
                    signature=module_pb2.Signature(text="question -> answer"),
                    lm=lm,
                )
            )
            reply = stub.Execute(
                pb.ExecuteRequest(session_id=sid, module_id=engine, inputs={"question": sv("hi")})
            )
            assert reply.usage.lm_calls == 1  # priced from the bundled list, not a download
        assert len(provider.requests) == 2
        server.terminate()
    assert proxy.connections == 0
