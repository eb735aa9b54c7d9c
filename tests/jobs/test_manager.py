"""JobManager on its own (memory store): results, progress, failures of every kind, crashes,
cancel, close, and the status guard that keeps terminal jobs terminal."""

from __future__ import annotations

import asyncio
import threading
import time
from multiprocessing.context import ForkServerContext, ForkServerProcess
from typing import Any

import grpc
import pytest

from dspy_bridge.jobs import manager as manager_module
from dspy_bridge.jobs.manager import JobManager
from dspy_bridge.model import Job, JobStatus, Session
from dspy_bridge.store import MemoryStore
from dspy_bridge.transport.server import start_server
from tests.conftest import test_settings

R = "tests.jobs.runners:"


async def _store() -> MemoryStore:
    store = MemoryStore()
    await store.create_session(Session(session_id="s1", create_time=1.0), max_sessions=0)
    return store


def _job(job_id: str) -> Job:
    return Job(job_id=job_id, session_id="s1", module_id="m", optimizer="test", create_time=2.0)


async def _until_done(manager: JobManager, job_id: str) -> list[Job]:
    seen = []
    async with asyncio.timeout(60):
        async for job in manager.watch("s1", job_id):
            seen.append(job)
    return seen


async def _until_running(manager: JobManager, job_id: str) -> None:
    """Waits on the job's own snapshots (bounded) until it runs."""
    async with asyncio.timeout(60):
        async for job in manager.watch("s1", job_id):
            if job.status is JobStatus.RUNNING:
                return
    raise AssertionError(f"job {job_id} ended without running")


async def test_result_progress_and_watch() -> None:
    store = await _store()
    manager = JobManager(store)
    applied: list[str] = []

    async def on_success(job: Job) -> Job:
        applied.append(job.job_id)
        return job

    await manager.submit(_job("j1"), R + "echo", {"x": 1}, on_success)
    seen = await _until_done(manager, "j1")
    final = seen[-1]
    assert final.status is JobStatus.SUCCEEDED
    assert final.result == {"kind": "echo", "payload": {"x": 1}}
    assert final.best_score == 1.0 and final.progress.phase == "done"
    assert any(j.progress.phase == "step" for j in seen)
    assert final.start_time is not None and final.end_time is not None
    assert applied == ["j1"]
    await manager.close()


async def test_progress_bars_in_a_job_hold_no_process_shared_lock() -> None:
    """A killed job cannot release a multiprocessing semaphore, which the resource tracker then
    reports as leaked at shutdown: DSPy's tqdm bars must not create one."""
    store = await _store()
    manager = JobManager(store)
    await manager.submit(_job("bar"), R + "progress_bar", None)
    final = (await _until_done(manager, "bar"))[-1]
    assert final.status is JobStatus.SUCCEEDED, final.error
    assert final.result == {"registered": []}
    await manager.close()


async def test_failures_are_reported_with_their_codes() -> None:
    store = await _store()
    manager = JobManager(store)
    await manager.submit(_job("refuse"), R + "refuse", None)
    await manager.submit(_job("boom"), R + "boom", None)
    await manager.submit(_job("crash"), R + "crash", None)
    refused = (await _until_done(manager, "refuse"))[-1]
    assert refused.status is JobStatus.FAILED
    assert refused.error == {
        "code": grpc.StatusCode.FAILED_PRECONDITION.value[0],
        "reason": "NO_LM_CONFIGURED",
        "message": "no LM here",
    }
    boomed = (await _until_done(manager, "boom"))[-1]
    assert boomed.status is JobStatus.FAILED and boomed.error is not None
    assert "RuntimeError: boom" in boomed.error["message"]
    crashed = (await _until_done(manager, "crash"))[-1]
    assert crashed.status is JobStatus.FAILED and crashed.error is not None
    assert crashed.error["reason"] == "WORKER_LOST" and "exit code 7" in crashed.error["message"]
    await manager.close()


async def test_cancel_and_close() -> None:
    store = await _store()
    manager = JobManager(store, max_running=1, kill_grace=0.5)
    await manager.submit(_job("slow"), R + "sleep", 30)
    await manager.submit(_job("queued"), R + "sleep", 30)
    await _until_running(manager, "slow")
    assert (await store.get_job("s1", "queued")).status is JobStatus.QUEUED
    started = time.monotonic()
    cancelled = await manager.cancel("s1", "queued")
    assert cancelled.status is JobStatus.CANCELLED
    cancelled = await manager.cancel("s1", "slow")
    assert cancelled.status is JobStatus.CANCELLED
    # Both stop well before the 30 s the job would sleep (a bound, generous under load).
    for job_id in ("queued", "slow"):
        await manager.wait_stopped(job_id, within=20)
    assert manager.running_jobs() == []
    assert time.monotonic() - started < 25
    assert (await store.get_job("s1", "slow")).status is JobStatus.CANCELLED

    await manager.submit(_job("last"), R + "sleep", 30)
    await _until_running(manager, "last")
    await manager.close()
    assert (await store.get_job("s1", "last")).status is JobStatus.INTERRUPTED
    assert manager.running_jobs() == []


async def test_the_server_setting_limits_running_jobs() -> None:
    running = await start_server(test_settings(max_running_jobs=3))
    try:
        assert running.jobs is not None and running.jobs.max_running == 3
    finally:
        await running.stop(grace=0)


class _StartsWhenReleased(ForkServerProcess):
    """A job process whose start waits for the test (a slow fork on a busy machine). At module
    level: the forkserver pickles the process object, class by reference."""

    release = threading.Event()
    started: list[ForkServerProcess] = []
    has_started = threading.Event()

    def start(self) -> None:
        self.release.wait(60)  # bounded: the test sets it as soon as the limit has fired
        super().start()
        self.started.append(self)
        self.has_started.set()


async def test_a_limit_reached_while_the_process_starts_still_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The time limit fires while the job's process is being started: the process starts
    anyway, and is stopped once it has instead of running the job unseen (a job that reports
    would die at its first report into the closed pipe; a silent one would run on)."""
    context = manager_module.process_context()
    assert isinstance(context, ForkServerContext)  # Linux: what job processes start with

    class Context:
        Process = _StartsWhenReleased

        def __getattr__(self, name: str) -> Any:
            return getattr(context, name)

    monkeypatch.setattr(manager_module, "process_context", lambda: Context())
    store = await _store()
    manager = JobManager(store, max_seconds=0.2, kill_grace=0.5)
    try:
        await manager.submit(_job("j1"), R + "silent_sleep", 60, None)
        final = (await _until_done(manager, "j1"))[-1]
        assert final.status is JobStatus.FAILED and final.error is not None
        assert final.error["reason"] == "JOB_TIMEOUT"
    finally:
        _StartsWhenReleased.release.set()  # the start completes, after its caller gave up
    assert await asyncio.to_thread(_StartsWhenReleased.has_started.wait, 60)
    (process,) = _StartsWhenReleased.started
    await asyncio.to_thread(process.join, 30)  # well short of the job's minute
    assert process.exitcode is not None and process.exitcode != 0  # stopped, not finished
    await manager.close()
