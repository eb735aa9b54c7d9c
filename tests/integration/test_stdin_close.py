"""`exit_on_stdin_close`: a sidecar run as a child drains and exits once its stdin closes, as it
does when the parent (an Elixir VM running it as a port program) dies, even from SIGKILL."""

from __future__ import annotations

import os
import subprocess
import sys

import grpc

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from tests.process import server_process


def test_stdin_closed_drains_and_exits_cleanly() -> None:
    with server_process("--workers", "0", "--exit-on-stdin-close", stdin_pipe=True) as server:
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.BridgeServiceStub(channel)
            assert stub.Ping(pb.PingRequest(message="up")).message == "up"
        assert server.proc.stdin is not None
        server.proc.stdin.close()
        assert server.proc.wait(timeout=120) == 0
        events = [line for line in server.all_output() if '"event"' in line]
        assert any('"stdin_closed"' in line for line in events)
        assert any('"stopped"' in line for line in events)


def test_a_dead_parent_stops_it_even_with_its_output_gone() -> None:
    """The parent held stdin and the output pipe: both close at once, as when a VM is killed.
    The drain's log lines must not fail on the broken pipe; the setting comes from the env."""
    env = {**os.environ, "DSPY_BRIDGE_LOG_FORMAT": "json", "DSPY_BRIDGE_EXIT_ON_STDIN_CLOSE": "1"}
    env.pop("OPENAI_API_KEY", None)
    command = [sys.executable, "-m", "dspy_bridge", "serve", "--host", "127.0.0.1", "--port", "0"]
    proc = subprocess.Popen(
        [*command, "--workers", "1", "--lm", "offline"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        # Bounded by the process: its output ends if it dies before serving.
        for line in proc.stdout:
            if b'"event": "serving"' in line:
                break
        else:
            raise AssertionError(f"exited before serving: {proc.wait(timeout=30)}")
        proc.stdin.close()
        proc.stdout.close()
        assert proc.wait(timeout=120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
