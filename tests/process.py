"""Runs the real `dspy-bridge serve` in a child process for fault tests (kill -9, SIGTERM)."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, Any


class ServerProcess:
    """A sidecar child process. Its JSON log lines are read on a thread and queued."""

    def __init__(
        self, *args: str, env: dict[str, str] | None = None, stdin_pipe: bool = False
    ) -> None:
        full_env = {**os.environ, "DSPY_BRIDGE_LOG_FORMAT": "json", **(env or {})}
        full_env.pop("OPENAI_API_KEY", None)
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dspy_bridge",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--lm",
                "offline",
                *args,
            ],
            # A pipe the test can close, as a parent that dies closes its child's stdin.
            stdin=subprocess.PIPE if stdin_pipe else None,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            env=full_env,
            text=True,
        )
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.raw: list[str] = []
        assert self.proc.stderr is not None
        self._pump_thread = threading.Thread(
            target=self._pump, args=(self.proc.stderr,), daemon=True
        )
        self._pump_thread.start()
        #: The `serving` log event (port, store, event loop).
        # A bound, not an expectation: a start imports DSPy (seconds) and may share 2 cores.
        self.serving = self.wait_for("serving", timeout=180)
        self.target = f"127.0.0.1:{self.serving['port']}"

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self.raw.append(line)
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                continue

    def wait_for(self, event: str, timeout: float) -> dict[str, Any]:
        """Blocks until a log event with this name arrives (or the process dies)."""
        while True:
            try:
                item = self.events.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no {event!r} log event; stderr:\n{''.join(self.raw)}"
                ) from None
            if item.get("event") == event:
                return item

    def all_output(self, timeout: float = 60) -> list[str]:
        """Every stderr line, once the process has exited and its stderr is read to the end."""
        self.proc.wait(timeout=timeout)
        self._pump_thread.join(timeout=timeout)
        assert not self._pump_thread.is_alive(), "stderr still open after exit"
        return list(self.raw)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def failed_start(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Runs `dspy-bridge serve` with settings that must stop it at start; returns once it
    exited (a start that does not fail hits the timeout instead of hanging the test run)."""
    full_env = {**os.environ, "DSPY_BRIDGE_LOG_FORMAT": "json", **(env or {})}
    command = [sys.executable, "-m", "dspy_bridge", "serve", "--host", "127.0.0.1"]
    return subprocess.run(
        [*command, "--workers", "0", "--lm", "offline", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=300,
    )


@contextmanager
def server_process(
    *args: str, env: dict[str, str] | None = None, stdin_pipe: bool = False
) -> Iterator[ServerProcess]:
    server = ServerProcess(*args, env=env, stdin_pipe=stdin_pipe)
    try:
        yield server
    finally:
        if server.proc.poll() is None:
            server.kill()
