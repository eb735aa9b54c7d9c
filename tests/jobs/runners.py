"""Job runners for the JobManager tests; they run inside job processes."""

from __future__ import annotations

import os
import time
from typing import Any

import grpc

from dspy_bridge.errors import BridgeError
from dspy_bridge.jobs.child import Reporter


def echo(payload: Any, reporter: Reporter) -> dict[str, Any]:
    for i in range(3):
        reporter.progress("step", i + 1, 3, f"step {i + 1}", best_score=i / 2)
    return {"kind": "echo", "payload": payload}


def crash(payload: Any, reporter: Reporter) -> dict[str, Any]:
    reporter.progress("about to crash")
    os._exit(7)


def refuse(payload: Any, reporter: Reporter) -> dict[str, Any]:
    raise BridgeError(grpc.StatusCode.FAILED_PRECONDITION, "NO_LM_CONFIGURED", "no LM here")


def boom(payload: Any, reporter: Reporter) -> dict[str, Any]:
    raise RuntimeError("boom")


def sleep(payload: Any, reporter: Reporter) -> dict[str, Any]:
    reporter.progress("sleeping")
    time.sleep(float(payload))
    return {}


def silent_sleep(payload: Any, reporter: Reporter) -> dict[str, Any]:
    """Sleeps without a word: a job deep in work that reports nothing for a while."""
    time.sleep(float(payload))
    return {}


def progress_bar(payload: Any, reporter: Reporter) -> dict[str, Any]:
    """Draws a tqdm bar as DSPy's Evaluate does; reports the named semaphores this process
    registered with multiprocessing's resource tracker meanwhile."""
    from multiprocessing import resource_tracker

    import tqdm

    registered: list[str] = []
    original = resource_tracker.register

    def register(name: str, rtype: str) -> None:
        registered.append(rtype)
        original(name, rtype)

    resource_tracker.register = register
    try:
        for _ in tqdm.tqdm(range(3), disable=False):
            pass
    finally:
        resource_tracker.register = original
    return {"registered": registered}
