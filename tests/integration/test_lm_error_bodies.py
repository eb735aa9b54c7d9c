"""A provider's response body never reaches a host, and the key never reaches the log: against
the real `dspy-bridge serve` with a worker process and a provider that echoes the key back
(plainly, reversed, hex- and base64-encoded) or answers with another service's private page."""

from __future__ import annotations

import base64
import json
from typing import Any, cast

import grpc

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2
from tests.fakes.openai_server import (
    LOCAL_SERVICE,
    LOCAL_SERVICE_PAGE,
    UNAUTHORIZED,
    UNAUTHORIZED_ENCODED,
    Behaviour,
    FakeOpenAI,
)
from tests.integration.rpc import RichError, rich_error, sv
from tests.process import server_process

KEY_ENV = "ERROR_BODY_TEST_API_KEY"
SECRET = "sk-bodytest-Zq8Xr2Lm5Np7Vt1Ws4Yu"


def _key_forms() -> list[str]:
    raw = f"Bearer {SECRET}".encode()
    return [
        SECRET,
        SECRET[::-1],
        SECRET.encode().hex(),
        base64.b64encode(raw).decode()[12:-4],  # the part that is only the key's
    ]


def _fail(stub: pb_grpc.BridgeServiceStub, sid: str) -> RichError:
    request = pb.ExecuteRequest(
        session_id=sid,
        module_id="qa",
        inputs={"question": sv("hi")},
        options=module_pb2.ExecuteOptions(include_trace=True),
    )
    try:
        stub.Execute(request)
    except grpc.RpcError as err:
        return rich_error(cast(Any, err))
    raise AssertionError("the call succeeded")


def test_hosts_get_status_reason_and_our_words_and_the_log_gets_no_key() -> None:
    cases: list[tuple[Behaviour, grpc.StatusCode, str, str]] = [
        (
            UNAUTHORIZED,
            grpc.StatusCode.FAILED_PRECONDITION,
            "LM_AUTH_FAILED",
            "the LM provider rejected the credentials (HTTP 401)",
        ),
        (
            UNAUTHORIZED_ENCODED,
            grpc.StatusCode.FAILED_PRECONDITION,
            "LM_AUTH_FAILED",
            "the LM provider rejected the credentials (HTTP 401)",
        ),
        (
            LOCAL_SERVICE,
            grpc.StatusCode.FAILED_PRECONDITION,
            "LM_AUTH_FAILED",
            "the LM provider rejected the credentials (HTTP 403)",
        ),
    ]
    with (
        FakeOpenAI() as provider,
        server_process(
            "--workers",
            "1",
            "--lm-allowed-api-bases",
            provider.url,
            env={KEY_ENV: SECRET, "DSPY_BRIDGE_LOG_LEVEL": "info"},
        ) as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = pb_grpc.BridgeServiceStub(channel)
        sid = stub.CreateSession(pb.CreateSessionRequest()).session.session_id
        lm = lm_pb2.LMConfig(model="openai/fake-model", api_base=provider.url, api_key_env=KEY_ENV)
        stub.ConfigureLM(pb.ConfigureLMRequest(session_id=sid, lm=lm))
        stub.CreateModule(
            pb.CreateModuleRequest(
                session_id=sid,
                module_id="qa",
                module_type="Predict",
                signature=module_pb2.Signature(text="question -> answer"),
            )
        )
        for behaviour, code, reason, message in cases:
            provider.enqueue(behaviour)
            err = _fail(stub, sid)
            assert (err.code, err.reason, err.message) == (code, reason, message)
            shown = err.message + json.dumps(err.metadata)
            for secret in [*_key_forms(), LOCAL_SERVICE_PAGE, "hunter2", "Incorrect API key"]:
                assert secret not in shown
            assert err.metadata["http_status"] == message[-4:-1]
            logged = server.wait_for("lm call failed", timeout=60)
            assert logged["reason"] == reason
        assert len(provider.requests) == len(cases)
        # What the provider said is in the operator's log, without the key in any form.
        log = "".join(server.raw)
        assert "rejected; hex" in log
        for form in _key_forms():
            assert form not in log
