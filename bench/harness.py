"""Shared bench plumbing: child servers, closed-loop load, latency statistics."""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


@dataclass
class LoadResult:
    calls: int
    errors: int
    seconds: float
    latencies_ms: list[float]

    @property
    def throughput(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]

    def summary(self) -> dict[str, float]:
        return {
            "throughput_per_s": round(self.throughput, 1),
            "p50_ms": round(self.pct(50), 3),
            "p99_ms": round(self.pct(99), 3),
            "calls": self.calls,
            "errors": self.errors,
        }


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, from /proc (clock ticks)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def closed_loop(
    call: Callable[[], Awaitable[object]], *, concurrency: int, seconds: float, warmup: float = 0.5
) -> LoadResult:
    """`concurrency` callers each issue calls back to back for `seconds` after a warm-up."""
    latencies: list[float] = []
    errors = 0
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def caller() -> None:
        nonlocal errors
        while True:
            t0 = time.perf_counter()
            if t0 >= stop_at:
                return
            try:
                await call()
            except Exception:
                errors += 1
                continue
            if t0 >= measure_from:
                latencies.append((time.perf_counter() - t0) * 1000)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    return LoadResult(len(latencies), errors, seconds, latencies)


async def fixed_rate(
    call: Callable[[], Awaitable[object]],
    *,
    rate: float,
    max_outstanding: int,
    seconds: float,
    warmup: float = 0.5,
) -> LoadResult:
    """Calls started at a fixed `rate` per second (at most `max_outstanding` at once; a start
    that finds them all busy is skipped) for `seconds` after a warm-up. Unlike `closed_loop`,
    the load does not depend on how fast the server answers, so two servers given the same rate
    do the same work, and their CPU per call compares costs without the feedback of one getting
    more of the machine (serving more calls per wake-up, hence spending less per call)."""
    latencies: list[float] = []
    errors = 0
    slots = asyncio.Semaphore(max_outstanding)
    running: set[asyncio.Task[None]] = set()
    start = time.perf_counter()
    measure_from = start + warmup
    stop_at = measure_from + seconds

    async def one(t0: float) -> None:
        nonlocal errors
        try:
            await call()
        except Exception:
            errors += 1
            return
        finally:
            slots.release()
        if t0 >= measure_from and time.perf_counter() <= stop_at:
            latencies.append((time.perf_counter() - t0) * 1000)

    n = 0
    while True:
        due = start + n / rate
        if due >= stop_at:
            break
        n += 1
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        if slots.locked():
            continue
        await slots.acquire()
        task = asyncio.create_task(one(time.perf_counter()))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)
    return LoadResult(len(latencies), errors, seconds, latencies)


@contextmanager
def echo_server() -> Iterator[str]:
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen([sys.executable, "-m", "bench.echo_server", str(port_file)])
        try:
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("echo server did not start")
                time.sleep(0.05)  # polling a child's file, not synchronising tests
            yield f"127.0.0.1:{port_file.read_text()}"
        finally:
            proc.kill()
            proc.wait()


@contextmanager
def bridge_server(
    *args: str, env: dict[str, str] | None = None, pids: list[int] | None = None
) -> Iterator[tuple[str, float]]:
    """Starts `dspy-bridge serve`; yields (target, seconds from spawn to SERVING). The server's
    pid is appended to `pids` when given (to read its CPU time)."""
    full_env = {
        **os.environ,
        "DSPY_BRIDGE_LOG_FORMAT": "json",
        "DSPY_BRIDGE_LOG_LEVEL": "info",
        **(env or {}),
    }
    full_env.pop("OPENAI_API_KEY", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dspy_bridge", "serve", "--host", "127.0.0.1", "--port", "0", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=full_env,
        text=True,
    )
    assert proc.stderr is not None
    if pids is not None:
        pids.append(proc.pid)
    try:
        for line in proc.stderr:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "serving":
                cold = time.perf_counter() - t0
                # Keep draining stderr so the child never blocks on a full pipe.
                import threading

                threading.Thread(
                    target=lambda: [None for _ in proc.stderr or ()], daemon=True
                ).start()
                yield f"127.0.0.1:{event['port']}", cold
                return
        raise RuntimeError("bridge server exited before serving")
    finally:
        proc.kill()
        proc.wait()


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")
