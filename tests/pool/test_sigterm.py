"""SIGTERM to the real server process with executions in flight in its workers: intake stops,
the calls finish (drain within the grace period), the process and its workers exit cleanly."""

from __future__ import annotations

import os
import time
from concurrent.futures import Future
from typing import Any

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from tests.pool.helpers import QA, execute_request, slow_lm
from tests.process import server_process

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]  # server + workers start


def _until(predicate: Any, within: float) -> None:
    """Polls a condition in another process, where no event exists to wait on (bounded)."""
    deadline = time.monotonic() + within
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


def _children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    with open(f"/proc/{pid}/stat") as f:  # a zombie of a dead parent counts as gone
        return f.read().split()[2] == "Z"


def test_sigterm_drains_calls_in_flight_in_workers() -> None:
    with (
        server_process("--workers", "2", "--grace-seconds", "20") as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = pb_grpc.BridgeServiceStub(channel)
        sid = stub.CreateSession(pb.CreateSessionRequest()).session.session_id
        stub.CreateModule(
            pb.CreateModuleRequest(
                session_id=sid,
                module_id="qa",
                module_type="ChainOfThought",
                signature=QA,
                lm=slow_lm(1500),
            )
        )
        workers = _children(server.proc.pid)
        assert len(workers) == 2
        calls: list[Future[pb.ExecuteResponse]] = [
            stub.Execute.future(execute_request(sid, f"q{i}")) for i in range(6)
        ]

        def in_flight() -> int:
            info: pb.GetServerInfoResponse = stub.GetServerInfo(pb.GetServerInfoRequest())
            return info.pool.in_flight

        _until(lambda: in_flight() == 6, 60)
        code = server.terminate()
        assert code == 0
        for call in calls:  # every call in flight at SIGTERM finished normally
            assert call.result(timeout=30).outputs["answer"].string_value
        _until(lambda: all(_gone(pid) for pid in workers), 30)
