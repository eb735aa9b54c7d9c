"""Faults against the real server process: kill -9 with the sqlite store, SIGTERM drain, health."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.integration.rpc import iv
from tests.process import server_process


def test_sqlite_store_survives_kill_9(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with server_process("--store", url, "--workers", "0") as server:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.BridgeServiceStub(channel)
            stub.CreateSession(pb.CreateSessionRequest(session_id="s", ttl_seconds=3600))
            stub.RegisterVariable(
                pb.RegisterVariableRequest(
                    session_id="s", name="n", type=vpb.VARIABLE_TYPE_INTEGER, initial_value=iv(0)
                )
            )
            for i in range(1, 21):
                stub.UpdateVariable(
                    pb.UpdateVariableRequest(
                        session_id="s", name="n", value=iv(i), reason=f"step {i}"
                    )
                )
        server.kill()  # no shutdown hook runs: only what was durable survives
    with (
        server_process("--store", url, "--workers", "0") as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = pb_grpc.BridgeServiceStub(channel)
        var = stub.GetVariable(pb.GetVariableRequest(session_id="s", name="n")).variable
        assert (var.value.int_value, var.version) == (20, 21)
        history = stub.GetVariableHistory(pb.GetVariableHistoryRequest(session_id="s", name="n"))
        assert [e.value.int_value for e in history.entries] == list(range(20, -1, -1))
        assert history.entries[0].reason == "step 20"


def test_sigterm_drains_and_exits_cleanly(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'd.db'}"
    with (
        server_process("--store", store, "--grace-seconds", "5") as server,
        grpc.insecure_channel(server.target) as channel,
    ):
        stub = pb_grpc.BridgeServiceStub(channel)
        sid = stub.CreateSession(pb.CreateSessionRequest()).session.session_id
        stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid, name="n", type=vpb.VARIABLE_TYPE_INTEGER, initial_value=iv(0)
            )
        )
        watch = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, include_initial=True))
        next(watch)  # subscribed
        code = server.terminate()
        assert code == 0
        server.wait_for("stopped", timeout=30)
        # Open streams end at shutdown (retryable) instead of holding the drain open.
        try:
            list(watch)
            raise AssertionError("the watch stream should end with UNAVAILABLE")
        except grpc.RpcError as err:
            assert err.code() == grpc.StatusCode.UNAVAILABLE


def test_health_command() -> None:
    with server_process("--workers", "0") as server:
        done = subprocess.run(
            [sys.executable, "-m", "dspy_bridge", "health", "--target", server.target],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == "SERVING"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dspy_bridge",
            "health",
            "--target",
            "127.0.0.1:1",
            "--timeout",
            "0.5",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
