"""A host's answers to calls that do not exist cost it nothing to send: the server ignores them
and logs at most one line a second (counting the rest), so a host cannot flood the log."""

from __future__ import annotations

import json
import time

import grpc
import pytest

from dspy_bridge.services.host_hub import IGNORED_LOG_EVERY_S
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import host_pb2
from tests.host.raw_host import hello
from tests.process import server_process

ANSWERS = 2_000


@pytest.mark.slow
def test_answers_to_unknown_calls_log_rate_limited_lines() -> None:
    with server_process("--workers", "0", "--log-level", "info") as process:
        began = time.monotonic()
        with grpc.insecure_channel(process.target) as channel:
            stub = pb_grpc.BridgeServiceStub(channel)
            sid = stub.CreateSession(pb.CreateSessionRequest()).session.session_id

            def host() -> object:
                yield hello(sid, metrics=["quality"])
                for i in range(ANSWERS):
                    yield host_pb2.ConnectRequest(
                        metric_result=host_pb2.HostMetricResult(call_id=f"bogus-{i}", score=1.0)
                    )

            # The server ends the stream once it has read every answer (the host's side ended).
            replies = list(stub.Connect(host(), timeout=120))
        elapsed = time.monotonic() - began
        assert [r.WhichOneof("message") for r in replies] == ["welcome"]
        process.terminate()
        lines = process.all_output()
    events = [json.loads(line) for line in lines]
    ignored = [e for e in events if str(e.get("event", "")).startswith("host answer ignored")]
    assert 1 <= len(ignored) <= elapsed / IGNORED_LOG_EVERY_S + 2, (len(ignored), elapsed)
    assert sum(1 + e["suppressed"] for e in ignored) <= ANSWERS
