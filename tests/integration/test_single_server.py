"""One server per sqlite file: a second server on the same file (or a symlink to it) is refused
at start with one line and exit code 2, touching nothing; the lock dies with its process, so a
restart after kill -9 starts normally. Real server processes."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from tests.process import failed_start, server_process

# Each test starts three or four server processes; on a loaded 2-core machine a start can take
# a minute, so the default per-test bound is too tight (each wait inside is bounded).
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _refused(url: str) -> str:
    done = failed_start("--port", "0", "--store", url)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr  # one line: no traceback, no log noise
    assert lines[0].startswith("dspy-bridge: --store (DSPY_BRIDGE_STORE)"), lines[0]
    assert "another dspy-bridge server is using" in lines[0], lines[0]
    return lines[0]


def _create_and_count(target: str, session_id: str) -> int:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        stub.CreateSession(pb.CreateSessionRequest(session_id=session_id), timeout=30)
        return len(stub.ListSessions(pb.ListSessionsRequest(), timeout=30).sessions)


def test_a_second_server_on_the_same_sqlite_file_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "bridge.db"
    alias = tmp_path / "alias.db"
    alias.symlink_to(db)
    with server_process("--store", f"sqlite:///{db}", "--workers", "0") as first:
        assert _create_and_count(first.target, "s1") == 1
        line = _refused(f"sqlite:///{db}")
        assert str(db) in line
        _refused(f"sqlite:///{alias}")  # the same file under another name
        assert first.proc.poll() is None  # the first server is untouched and still serves
        assert _create_and_count(first.target, "s2") == 2
    # Another file next to it is another store: it starts.
    with server_process("--store", f"sqlite:///{tmp_path / 'other.db'}", "--workers", "0") as other:
        assert _create_and_count(other.target, "s1") == 1


def test_a_restart_after_kill_9_is_not_blocked_by_the_lock(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    with server_process("--store", url, "--workers", "1") as crashed:
        assert _create_and_count(crashed.target, "s1") == 1
        crashed.kill()  # SIGKILL: no close, no cleanup; its worker process exits with it
    with server_process("--store", url, "--workers", "0") as restarted:
        assert _create_and_count(restarted.target, "s2") == 2  # s1 survived too
        _refused(url)
        assert restarted.terminate() == 0
    with server_process("--store", url, "--workers", "0") as after_graceful_stop:
        assert _create_and_count(after_graceful_stop.target, "s3") == 3
