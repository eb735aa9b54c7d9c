"""Issue-12 suite: the Elixir client against the Python client on the same sidecar, in one run.

One sidecar (`--workers 0`, offline zero-latency LM, a `Predict` module with a bound
`temperature` variable, as in the execute suite) serves both clients. Single caller: blocks of
sequential Execute calls alternate between the Python client (`BridgeClient`, blocking) and the
Elixir client (a long-running `mix run clients/elixir/bench/execute.exs` driven over stdin), so
drift on this shared machine hits both alike; the figure is each side's p50 over all blocks and
the median over block pairs of the ratio of block medians. Then 256 concurrent Elixir
processes make calls on one connection; every call must succeed.

Needs `mix` and the Elixir client's hex dependencies in clients/elixir/deps; without them the
suite reports why it did not run.
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from bench.harness import bridge_server
from dspy_bridge_client import BridgeClient

ELIXIR_DIR = Path(__file__).resolve().parent.parent / "clients/elixir"
QUESTION = "What does a sidecar process do next to an application?"
BLOCKS = int(os.environ.get("BENCH_ROUNDS", "10"))
PER_BLOCK = 200
CONCURRENT = 256
CALLS_EACH = int(os.environ.get("BENCH_ELIXIR_CALLS_EACH", "8"))


def _missing() -> str | None:
    if shutil.which("mix") is None:
        return "mix is not installed"
    if not all((ELIXIR_DIR / "deps" / dep).is_dir() for dep in ("grpc", "protobuf", "mint")):
        return "the Elixir client's hex dependencies are not in clients/elixir/deps"
    return None


def _ask(proc: subprocess.Popen[str], command: str) -> str:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(command + "\n")
    proc.stdin.flush()
    return _line(proc.stdout)


def _line(stream: IO[str]) -> str:
    line = stream.readline()
    if not line:
        raise RuntimeError("the Elixir bench driver exited")
    return line.strip()


def _python_block(session: Any, module_id: str, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        session.execute(module_id, question=QUESTION)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _fields(line: str) -> dict[str, str]:
    return dict(part.split("=", 1) for part in line.split(" ") if "=" in part)


def run() -> dict[str, Any]:
    missing = _missing()
    if missing:
        return {"skipped": f"Elixir suite not run: {missing}"}
    # Compile once, outside the measured part (and outside the driver's start).
    subprocess.run(["mix", "compile"], cwd=ELIXIR_DIR, check=True, capture_output=True)
    with (
        bridge_server("--workers", "0", "--lm", "offline") as (target, _cold),
        BridgeClient(target) as client,
    ):
        session = client.create_session()
        session.configure_lm("offline")
        session.register_variable("temperature", "float", 0.7, min=0.0, max=2.0)
        module = session.create_module(
            "Predict", "question -> answer", bindings={"temperature": "temperature"}
        )
        driver = subprocess.Popen(
            ["mix", "run", "bench/execute.exs", target, session.session_id, module.module_id],
            cwd=ELIXIR_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert driver.stdout is not None
            if _line(driver.stdout) != "ready":
                raise RuntimeError("the Elixir bench driver did not start")
            _python_block(session, module.module_id, 50)  # warm-up both sides
            _ask(driver, "serial 50")
            python: list[float] = []
            elixir: list[float] = []
            ratios: list[float] = []
            for _ in range(BLOCKS):
                p = _python_block(session, module.module_id, PER_BLOCK)
                e = [float(x) for x in _ask(driver, f"serial {PER_BLOCK}").split()]
                python += p
                elixir += e
                ratios.append(statistics.median(e) / statistics.median(p))
            concurrent = _fields(_ask(driver, f"concurrent {CONCURRENT} {CALLS_EACH}"))
            _ask_quit(driver)
        finally:
            driver.kill()
            driver.wait()
    return {
        "single_caller": {
            "calls_each": len(python),
            "python_client_p50_ms": round(statistics.median(python), 3),
            "elixir_client_p50_ms": round(statistics.median(elixir), 3),
            "elixir_over_python_p50_ratio": round(statistics.median(ratios), 3),
        },
        "concurrent": {
            "processes": CONCURRENT,
            "calls": int(concurrent["ok"]) + int(concurrent["errors"]),
            "errors": int(concurrent["errors"]),
            "seconds": round(float(concurrent["seconds"]), 2),
            "throughput_per_s": round(
                (int(concurrent["ok"]) + int(concurrent["errors"])) / float(concurrent["seconds"]),
                1,
            ),
            "p50_ms": round(float(concurrent["p50"]), 2),
            "p99_ms": round(float(concurrent["p99"]), 2),
            "first_error": concurrent.get("first_error", "nil"),
        },
    }


def _ask_quit(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("quit\n")
    proc.stdin.flush()
