"""DSPy's documented deployment, as the baseline for the pool suite: FastAPI + uvicorn +
`dspy.asyncify` serving a ChainOfThought (https://dspy.ai/tutorials/deployment/), with the same
`OfflineLM` the bridge uses so both sides do the same DSPy work per call.

`python -m bench.fastapi_baseline <port> [latency_ms]` serves it; `baseline_server()` starts it
as a child and yields its URL.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dspy
import httpx
from fastapi import FastAPI
from pydantic import BaseModel

from dspy_bridge.runtime.lm.offline import OfflineLM


class Question(BaseModel):
    text: str


def make_app(latency_ms: float = 0.0, api_base: str = "") -> FastAPI:
    """The tutorial's app: one program, configured globally, run through `dspy.asyncify`;
    with `api_base`, `dspy.LM` (DSPy's default engine) against that OpenAI-compatible provider
    instead of the offline LM."""
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm: dspy.BaseLM = (
        dspy.LM("openai/bench-model", api_base=api_base, api_key="bench", cache=False)
        if api_base
        else OfflineLM(latency_ms=latency_ms)
    )
    dspy.configure(lm=lm, async_max_workers=4)
    program = dspy.asyncify(dspy.ChainOfThought("question -> answer"))
    app = FastAPI(title="DSPy Program API")

    @app.post("/predict")
    async def predict(question: Question) -> dict[str, Any]:
        result = await program(question=question.text)
        return {"status": "success", "data": result.toDict()}

    return app


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def baseline_server(
    latency_ms: float = 0.0, api_base: str = "", pids: list[int] | None = None
) -> Iterator[str]:
    """Starts uvicorn (one process, as documented) in a child; yields its base URL (its pid
    into `pids`, to read its CPU time)."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.fastapi_baseline", str(port), str(latency_ms), api_base],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )
    if pids is not None:
        pids.append(proc.pid)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:  # polling a child's port: no event exists across processes
            try:
                httpx.post(f"{url}/predict", json={"text": "warm up"}, timeout=5).raise_for_status()
                break
            except httpx.HTTPError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the FastAPI baseline did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.kill()
        proc.wait()


def main(argv: list[str]) -> None:
    import uvicorn

    app = make_app(float(argv[1]) if len(argv) > 1 else 0.0, argv[2] if len(argv) > 2 else "")
    uvicorn.run(app, host="127.0.0.1", port=int(argv[0]), log_level="warning", access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
