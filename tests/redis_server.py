"""A real `redis-server` (Debian's package) on a free loopback port, for the tests.

One server per test session (the `redis_server` fixture in tests/conftest.py); tests keep apart
through key prefixes. AOF is on with `appendfsync always`, the setting under which no
acknowledged write is lost, so durability tests can stop and restart the same server on the
same port and data directory. Readiness is the server's own "Ready to accept connections" line,
never a sleep.
"""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

READY = "Ready to accept connections"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found is None:
        raise RuntimeError(
            "redis-server is not installed: `make test` installs it (apt-get install redis-server)"
        )
    return found


class RedisServer:
    """A redis-server child process; `stop`/`kill` and `start` again keep port and data."""

    def __init__(
        self,
        data_dir: Path,
        port: int | None = None,
        appendfsync: str = "always",
        extra_args: Sequence[str] = (),
    ) -> None:
        """`appendfsync`: `always` (the default: nothing acknowledged lost), `everysec`, `no`;
        `extra_args`: more redis-server options (a password, TLS ports and files)."""
        self.data_dir = data_dir
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[str] | None = None
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 30.0) -> None:
        """Starts the server and returns once it accepts connections (data loaded)."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.lines = queue.Queue()
        self.proc = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--appendonly",
                "yes",
                "--appendfsync",
                self.appendfsync,
                "--save",
                "",
                "--daemonize",
                "no",
                "--protected-mode",
                "yes",
                "--loglevel",
                "notice",
                *self.extra_args,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
        )
        assert self.proc.stdout is not None
        # Each process's pump feeds that start's queue: a killed process's end of output,
        # read late, must not look like the restarted one exiting.
        threading.Thread(
            target=self._pump, args=(self.proc.stdout, self.lines), daemon=True
        ).start()
        while True:
            try:
                line = self.lines.get(timeout=timeout)
            except queue.Empty:
                self.kill()
                raise RuntimeError(f"redis-server did not start:\n{''.join(self.output)}") from None
            if READY in line:
                return
            if line == "":  # the process ended
                raise RuntimeError(f"redis-server exited:\n{''.join(self.output)}")

    def _pump(self, stream: IO[str], lines: queue.Queue[str]) -> None:
        for line in stream:
            self.output.append(line)
            lines.put(line)
        lines.put("")

    def kill(self) -> None:
        """SIGKILL: only what was fsynced survives (all acknowledged writes, with AOF always)."""
        self._signal(signal.SIGKILL)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown."""
        self._signal(signal.SIGTERM)

    def pause(self) -> None:
        """SIGSTOP: the server keeps its connections but answers nothing until `resume`."""
        assert self.proc is not None and self.proc.poll() is None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def _signal(self, sig: int) -> None:
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, sig)
        proc.wait(timeout=30)


@contextmanager
def started_redis(
    data_dir: Path, appendfsync: str = "always", extra_args: Sequence[str] = ()
) -> Iterator[RedisServer]:
    """A redis-server of its own for one test (to stop, pause or configure), killed at the end."""
    server = RedisServer(data_dir, appendfsync=appendfsync, extra_args=extra_args)
    server.start()
    try:
        yield server
    finally:
        server.kill()
