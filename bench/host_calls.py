"""Host callbacks (issue 11): a host tool's round trip as a worker process sees it, against a
bare grpc.aio bidirectional echo round trip, side by side in one run.

Four processes, as in production: the measuring "worker" (`bench.host_peers caller host`, which
sends calls with the worker's own `WorkerHostChannel` over a socket), the front (this process:
the sidecar's server with its `HostHub`, serving that socket with `FrontHostCalls`, exactly
as the pool does), and the host (`bench.host_peers host`, the Python client's `serve` with an
async tool). The baseline is two processes: a bare bidi echo server and a caller writing and
reading one small message per round trip on one stream. Both callers run the same schedule:
sequential round trips (p50/p99), then 8,000 calls with 64 in flight, then 1,000 at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from dspy_bridge.config import Settings
from dspy_bridge.log import configure_logging
from dspy_bridge.loop import run as run_loop
from dspy_bridge.pool.host_channel import FrontHostCalls
from dspy_bridge.pool.protocol import encode, read_message
from dspy_bridge.transport.server import start_server
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc

PEERS = [sys.executable, "-m", "bench.host_peers"]


def _figures(proc: subprocess.Popen[str]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=600)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"caller failed ({proc.returncode})")
    figures: dict[str, Any] = json.loads(lines[-1])
    return figures


def _echo_baseline() -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        server = subprocess.Popen([*PEERS, "echo-server", str(port_file)])
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("echo server did not start")
                time.sleep(0.05)  # polling a child's file, not synchronising tests
            target = f"127.0.0.1:{port_file.read_text()}"
            caller = subprocess.Popen(
                [*PEERS, "caller", "echo", target], stdout=subprocess.PIPE, text=True
            )
            return _figures(caller)
        finally:
            server.kill()
            server.wait()


async def _host_path() -> dict[str, Any]:
    settings = Settings(
        host="127.0.0.1", port=0, workers=0, lm="offline", log_level="warning", log_format="json"
    )  # type: ignore[call-arg]
    running = await start_server(settings)
    hub = running.hosts
    assert hub is not None
    host: subprocess.Popen[str] | None = None
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            stub = pb_grpc.BridgeServiceStub(channel)
            session = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
        host = subprocess.Popen(  # noqa: ASYNC220 - started once, not on a hot path
            [*PEERS, "host", running.target, session], stdout=subprocess.PIPE, text=True
        )
        await hub.wait_connections(session, lambda n: n >= 1, within=120)
        front, worker = socket.socketpair()
        reader, writer = await asyncio.open_unix_connection(sock=front)
        calls = FrontHostCalls(hub, lambda message: writer.write(encode(message)))

        async def serve_worker() -> None:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                while True:
                    calls.on_message(await read_message(reader))

        serving = asyncio.create_task(serve_worker())
        caller = subprocess.Popen(  # noqa: ASYNC220 - started once, not on a hot path
            [*PEERS, "caller", "host", str(worker.fileno()), session],
            stdout=subprocess.PIPE,
            text=True,
            pass_fds=(worker.fileno(),),
        )
        worker.close()
        figures = await asyncio.to_thread(_figures, caller)
        serving.cancel()
        writer.close()
        return figures
    finally:
        if host is not None:
            host.kill()
            host.wait()
        await running.stop(grace=0)


def run() -> dict[str, Any]:
    echo = _echo_baseline()
    configure_logging("warning", "json")
    hosted = run_loop(_host_path())  # the sidecar's own event loop (uvloop when installed)
    p50_gap = hosted["sequential"]["p50_ms"] - echo["sequential"]["p50_ms"]
    return {
        "echo_bidi": echo,
        "host_tool_from_worker": hosted,
        "p50_over_echo_ms": round(p50_gap, 3),
        "targets": {
            "p50_within_echo_plus_1ms": p50_gap <= 1.0,
            "in_flight_64_at_least_2000_per_s": hosted["in_flight_64"]["per_s"] >= 2000
            and hosted["in_flight_64"]["errors"] == 0,
            "1000_at_once_all_complete": hosted["at_once_1000"]["completed"] == 1000,
        },
    }
