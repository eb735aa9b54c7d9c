"""A server that cannot start says why and starts nothing: the port is bound before the store
is opened, workers run or jobs left RUNNING by another process are touched."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from dspy_bridge.errors import StartupError
from dspy_bridge.transport.server import start_server
from tests.conftest import test_settings


def _busy_port() -> tuple[socket.socket, int]:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen()
    return holder, holder.getsockname()[1]


async def test_a_busy_port_fails_before_the_store_is_opened(tmp_path: Path) -> None:
    holder, port = _busy_port()
    db = tmp_path / "bridge.db"
    try:
        settings = test_settings(port=port, store=f"sqlite:///{db}")
        with pytest.raises(StartupError, match=f"cannot listen on 127.0.0.1:{port}"):
            await start_server(settings)
    finally:
        holder.close()
    assert not db.exists()  # the store was never opened, so nothing in it was touched


def test_the_command_line_reports_a_busy_port_without_a_traceback() -> None:
    holder, port = _busy_port()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "dspy_bridge", "serve", "--port", str(port), "--workers", "0"],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.close()
    assert done.returncode == 1
    assert f"dspy-bridge: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr
