"""Runs jobs in their own processes and keeps their records in the store.

Each job gets a fresh process (multiprocessing `forkserver` context with DSPy preloaded, so a job
starts in a fraction of a second; `spawn` where forkserver is unavailable), so a job never
starves `Execute` of CPU or of the event loop. The front:

- creates the record QUEUED, waits for a free slot (`max_running` jobs at once; a named caller
  holds at most `per_owner_running` of them, so one caller cannot take every slot, and has at
  most `per_owner_jobs` jobs QUEUED or RUNNING — past it, RESOURCE_EXHAUSTED
  `JOB_QUOTA_EXCEEDED`; on a shared store the store also counts them on every replica, in the
  step that creates the record), starts the process and marks the job RUNNING. The slots and a
  caller's share of them are this process's own: it runs its jobs on its own CPUs;
- fails a job that runs longer than `max_seconds` (`JOB_TIMEOUT`) and kills its process, which
  frees its slot;
- reads the process's messages (`child.py`) on a thread and writes progress, the result or the
  error to the store, publishing each new snapshot to `watch()` subscribers;
- on cancel marks the job CANCELLED at once and stops the process (SIGTERM, then SIGKILL after
  `kill_grace` seconds);
- however a job ends (done, failed, cancelled, timed out, its process dead), the `host:` calls
  its process still has in flight are cancelled (the host gets `cancel`);
- on close (server stop) kills every job process and marks the jobs INTERRUPTED; a server that
  died without closing has its jobs marked INTERRUPTED by `store.mark_running_jobs_interrupted`
  at the next start.

Status changes are guarded with `if_status` so that a late message from a process never moves a
job out of a terminal status (a cancelled job stays CANCELLED even if its result arrives).
A job process also exits by itself when the front process that started it is gone.

On a shared store (several replicas, `store.shared`), `run_leases` renews the lease of every job
this replica holds; a job whose lease it lost (cancelled or finished through another replica, or
marked INTERRUPTED after this replica was cut off from the store for a lease) has its process
stopped, so two replicas never run one job. The same loop marks INTERRUPTED the jobs of replicas
that died (their leases lapsed). Watchers re-read the job often, since its snapshots may come
from another replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import multiprocessing.context
import threading
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

import grpc

from dspy_bridge import tracing
from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.jobs.child import job_main
from dspy_bridge.log import get_logger
from dspy_bridge.model import (
    ACTIVE_STATUSES,
    Job,
    JobProgress,
    JobStatus,
    JobUpdate,
)
from dspy_bridge.observability import count_reported_usage
from dspy_bridge.runtime.host_calls import HostRequest, host_disconnected, kind_of
from dspy_bridge.services.clock import Clock, system_clock
from dspy_bridge.services.host_hub import HostHub
from dspy_bridge.store.base import SessionStore
from dspy_bridge.store.quotas import job_quota_exceeded

log = get_logger(__name__)

#: Modules a forkserver imports once, so each job process starts with DSPy loaded.
PRELOAD = ["dspy_bridge.jobs.optimizers", "dspy_bridge.jobs.variable_search"]
#: How often a watcher re-reads a job from the store when no snapshot arrives.
WATCH_POLL_S = 2.0
#: The same on a shared store, where another replica may be the one running the job.
SHARED_WATCH_POLL_S = 0.25
_WATCH_QUEUE = 64

OnSuccess = Callable[[Job], Awaitable[Job]]

_context: multiprocessing.context.BaseContext | None = None


def process_context() -> multiprocessing.context.BaseContext:
    """The multiprocessing context job processes are started with (see module docstring)."""
    global _context
    if _context is None:
        try:
            forkserver = multiprocessing.get_context("forkserver")
            forkserver.set_forkserver_preload(PRELOAD)
            _context = forkserver
        except ValueError:
            _context = multiprocessing.get_context("spawn")
    return _context


@dataclass
class _Handle:
    """A job this manager runs: its process (once started) and whether it was cancelled."""

    session_id: str
    job_id: str
    #: The principal owning the job's session ("" when callers are not named).
    owner: str = ""
    process: multiprocessing.process.BaseProcess | None = None
    cancelled: bool = False
    #: Whether it got its slots; until then it is QUEUED and a cancel ends its task at once.
    admitted: bool = False
    task: asyncio.Task[None] | None = None
    messages: asyncio.Queue[dict[str, Any] | None] = field(default_factory=asyncio.Queue)
    #: Set once the manager is done with the job (it left `running_jobs()`).
    stopped: asyncio.Event = field(default_factory=asyncio.Event)
    #: Its process's `host:` calls in flight on the hub, cancelled when the job ends.
    host_calls: set[asyncio.Task[None]] = field(default_factory=set)


def running_share(max_running: int, per_owner_running: int) -> int:
    """Job slots one named caller may hold: `per_owner_running`, or (0) half of the server's
    `max_running`, rounded up (GetServerInfo reports the same figure)."""
    return per_owner_running or (max(1, max_running) + 1) // 2


class JobManager:
    """Starts, tracks, cancels and publishes jobs (see module docstring)."""

    def __init__(
        self,
        store: SessionStore,
        clock: Clock = system_clock,
        *,
        max_running: int = 2,
        kill_grace: float = 2.0,
        per_owner_running: int = 0,
        per_owner_jobs: int = 0,
        max_seconds: float = 0.0,
        hosts: HostHub | None = None,
    ) -> None:
        """`hosts` answers the `host:` metric and LM calls of job processes."""
        self._hosts = hosts
        self._store = store
        self._clock = clock
        #: Jobs running at once (`--max-running-jobs`); more wait QUEUED.
        self.max_running = max(1, max_running)
        self._slots = asyncio.Semaphore(self.max_running)
        #: Slots one named caller may hold (0: half of max_running, rounded up).
        self.per_owner_running = running_share(self.max_running, per_owner_running)
        self._owner_slots: dict[str, asyncio.Semaphore] = {}
        #: Jobs one caller may have QUEUED or RUNNING (0: no limit).
        self.per_owner_jobs = per_owner_jobs
        #: Wall-clock limit of one job's process (0: none).
        self.max_seconds = max_seconds
        self._kill_grace = kill_grace
        self._handles: dict[str, _Handle] = {}
        self._watchers: dict[str, set[asyncio.Queue[Job]]] = {}
        self._closed = False
        self._watch_poll = SHARED_WATCH_POLL_S if store.shared else WATCH_POLL_S
        self._tasks: set[asyncio.Task[None]] = set()

    # -- starting ---------------------------------------------------------------------------

    async def submit(
        self,
        job: Job,
        runner: str,
        payload: Any,
        on_success: OnSuccess | None = None,
        owner: str = "",
    ) -> Job:
        """Stores `job` (QUEUED) and runs `runner(payload, reporter)` in a new process.
        RESOURCE_EXHAUSTED `JOB_QUOTA_EXCEEDED` (nothing stored) when `owner` has its most jobs
        queued or running already."""
        if self._closed:
            raise BridgeError(
                grpc.StatusCode.UNAVAILABLE, Reason.DRAINING, "the server is shutting down"
            )
        self._check_quota(owner)
        # A shared store counts the caller's active jobs on every replica in the same step.
        created = await self._store.create_job(
            job, owner=owner, max_active_per_owner=self.per_owner_jobs
        )
        handle = _Handle(job.session_id, job.job_id, owner)
        self._handles[job.job_id] = handle
        handle.task = asyncio.create_task(self._run(handle, runner, payload, on_success))
        return created

    async def _run(
        self, handle: _Handle, runner: str, payload: Any, on_success: OnSuccess | None
    ) -> None:
        try:
            async with self._owner_slot(handle.owner), self._slots:
                handle.admitted = True
                if handle.cancelled or self._closed:
                    return
                await self._execute_within_limit(handle, runner, payload, on_success)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug here must not leave the job RUNNING forever
            log.exception("job supervision failed", job_id=handle.job_id)
            await self._finish(
                handle,
                JobStatus.FAILED,
                error=_error(grpc.StatusCode.INTERNAL, Reason.INTERNAL, f"internal error: {exc}"),
            )
        finally:
            self._stop_process(handle, wait=False)
            for call in handle.host_calls:  # the host gets `cancel`; nobody awaits the answer
                call.cancel()
            self._handles.pop(handle.job_id, None)
            handle.stopped.set()

    def _check_quota(self, owner: str) -> None:
        if self.per_owner_jobs <= 0:
            return
        active = sum(1 for h in self._handles.values() if h.owner == owner)
        if active >= self.per_owner_jobs:
            raise job_quota_exceeded(active, self.per_owner_jobs)

    def _owner_slot(self, owner: str) -> contextlib.AbstractAsyncContextManager[Any]:
        """The named caller's share of the slots; callers that are not named share them all."""
        if not owner:
            return contextlib.nullcontext()
        slot = self._owner_slots.get(owner)
        if slot is None:
            slot = self._owner_slots[owner] = asyncio.Semaphore(self.per_owner_running)
        return slot

    async def _execute_within_limit(
        self, handle: _Handle, runner: str, payload: Any, on_success: OnSuccess | None
    ) -> None:
        """`_execute`, failed with JOB_TIMEOUT (its process killed) past `max_seconds`."""
        if self.max_seconds <= 0:
            await self._execute(handle, runner, payload, on_success)
            return
        try:
            async with asyncio.timeout(self.max_seconds):
                await self._execute(handle, runner, payload, on_success)
        except TimeoutError:
            handle.cancelled = True  # a late message must not move the job on
            self._stop_process(handle, wait=False)
            log.warning("job timed out", job_id=handle.job_id, seconds=self.max_seconds)
            await self._finish(
                handle,
                JobStatus.FAILED,
                error=_error(
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    Reason.JOB_TIMEOUT,
                    f"the job ran longer than the server's limit of {self.max_seconds:g} "
                    "seconds (--max-job-seconds) and was stopped; lower its budget "
                    "(trials, candidates, metric calls) or the dataset size",
                ),
            )

    async def _execute(
        self, handle: _Handle, runner: str, payload: Any, on_success: OnSuccess | None
    ) -> None:
        ctx = process_context()
        parent, child = ctx.Pipe(duplex=True)  # duplex: host calls are answered on it
        process = ctx.Process(  # type: ignore[attr-defined]
            target=job_main,
            # The trace context: the job's spans join the trace of the call that started it.
            args=(runner, payload, child, tracing.carrier()),
            name=f"job-{handle.job_id}",
        )
        process.daemon = True
        await self._start_process(handle, process)
        child.close()
        if handle.cancelled:  # cancelled while the process was starting
            self._stop_process(handle, wait=False)
            parent.close()
            return
        running = await self._update(
            handle,
            JobUpdate(
                status=JobStatus.RUNNING,
                start_time=self._clock(),
                progress=JobProgress("starting", message=f"job process {process.pid} started"),
            ),
            if_status={JobStatus.QUEUED},
        )
        if running is None:
            self._stop_process(handle, wait=False)
            parent.close()
            return
        log.info("job started", job_id=handle.job_id, pid=process.pid)
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=_pump, args=(parent, loop, handle.messages), daemon=True, name="job-pipe"
        ).start()
        while True:
            message = await handle.messages.get()
            if message is None:
                break
            count_reported_usage(message.get("usage"))
            kind = message.get("type")
            if kind == "host_call":
                call = self._background(self._host_call(handle, parent, message))
                handle.host_calls.add(call)
                call.add_done_callback(handle.host_calls.discard)
            elif kind == "progress":
                await self._progress(handle, message)
            elif kind == "result":
                await self._succeed(handle, message, on_success)
                return
            elif kind == "error":
                error = _error(
                    _status_code(message.get("code")),
                    str(message.get("reason") or Reason.EXECUTION_FAILED),
                    str(message.get("message") or "the job failed"),
                )
                await self._finish(handle, JobStatus.FAILED, error=error)
                return
        if handle.cancelled or self._closed:
            return
        await asyncio.to_thread(process.join, 5)
        await self._finish(
            handle,
            JobStatus.FAILED,
            error=_error(
                grpc.StatusCode.UNAVAILABLE,
                Reason.WORKER_LOST,
                f"the job process exited (exit code {process.exitcode}) without a result",
            ),
        )

    async def _start_process(self, handle: _Handle, process: Any) -> None:
        """Starts `process` (on a thread: starting one blocks) and records it in `handle`.

        A start cannot be taken back half-way: when the wait is cancelled (the job's time
        limit, a cancel, a server stop) the process starts anyway, and is then stopped as soon
        as it has, instead of running the job unseen to its end."""
        starting = asyncio.ensure_future(asyncio.to_thread(process.start))
        try:
            await asyncio.shield(starting)
        except asyncio.CancelledError:

            def stop_once_started(done: asyncio.Future[None]) -> None:
                if not done.cancelled() and done.exception() is None:
                    handle.process = process
                    self._stop_process(handle, wait=False)

            starting.add_done_callback(stop_once_started)
            raise
        handle.process = process

    def _background(self, coroutine: Any) -> asyncio.Task[None]:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _host_call(self, handle: _Handle, conn: Connection, message: dict[str, Any]) -> None:
        """Runs a job process's `host:` call on the hub and answers on its pipe. A host gone
        past the reconnect wait fails the whole job (never scored without its metric)."""
        call_id = message.get("id")
        request: HostRequest = message["request"]
        session_id = str(message.get("session_id", ""))
        try:
            if self._hosts is None or session_id != handle.session_id:  # only its own session
                raise host_disconnected(*kind_of(request))
            timeout = message.get("timeout_s")
            # A job waits for a dropped host to come back, tools included (an execution does
            # not: its caller retries).
            reply = await self._hosts.call(
                session_id, request, timeout, self._hosts.reconnect_wait_s
            )
            answer: dict[str, Any] = {"type": "host_reply", "id": call_id, "reply": reply}
        except BridgeError as exc:
            answer = {"type": "host_error", "id": call_id, "error": exc}
            if exc.reason == Reason.HOST_DISCONNECTED:
                await self._host_gone(handle, exc)
        with contextlib.suppress(OSError, ValueError):  # the process may be gone already
            conn.send(answer)

    async def _host_gone(self, handle: _Handle, exc: BridgeError) -> None:
        wait = self._hosts.reconnect_wait_s if self._hosts is not None else 0.0
        handle.cancelled = True  # its end is this failure, not a lost process
        await self._finish(
            handle,
            JobStatus.FAILED,
            error=_error(
                grpc.StatusCode.UNAVAILABLE,
                Reason.HOST_DISCONNECTED,
                f"{exc.message}; the job waited {wait:g} s "
                "(host_reconnect_wait_seconds) for a reconnect and stopped",
            ),
        )
        self._stop_process(handle, wait=False)
        handle.messages.put_nowait(None)

    async def _progress(self, handle: _Handle, message: dict[str, Any]) -> None:
        best = message.get("best_score")
        await self._update(
            handle,
            JobUpdate(
                progress=JobProgress(
                    str(message.get("phase", "")),
                    int(message.get("completed", 0)),
                    int(message.get("total", 0)),
                    str(message.get("message", "")),
                ),
                best_score=float(best) if isinstance(best, int | float) else None,
            ),
            if_status={JobStatus.RUNNING},
        )

    async def _succeed(
        self, handle: _Handle, message: dict[str, Any], on_success: OnSuccess | None
    ) -> None:
        result = message.get("result")
        best = message.get("best_score")
        # With apply requested, watchers must not see SUCCEEDED before the result is current:
        # a host that reacts to the terminal snapshot would otherwise run the old version.
        job = await self._finish(
            handle,
            JobStatus.SUCCEEDED,
            result=result if isinstance(result, dict) else {},
            best_score=float(best) if isinstance(best, int | float) else None,
            publish=on_success is None,
        )
        if job is not None and on_success is not None:
            try:
                job = await on_success(job)
            except BridgeError as exc:
                log.warning("applying the job result failed", job_id=job.job_id, error=str(exc))
            self._publish(job)

    async def _finish(
        self,
        handle: _Handle,
        status: JobStatus,
        *,
        error: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        best_score: float | None = None,
        publish: bool = True,
    ) -> Job | None:
        current = await self._peek(handle)
        progress = None
        if current is not None and status is JobStatus.SUCCEEDED:
            progress = JobProgress(
                "done", current.progress.completed, current.progress.total, "finished"
            )
        return await self._update(
            handle,
            JobUpdate(
                status=status,
                error=error,
                result=result,
                best_score=best_score,
                end_time=self._clock(),
                progress=progress,
            ),
            if_status=ACTIVE_STATUSES,
            publish=publish,
        )

    async def _peek(self, handle: _Handle) -> Job | None:
        try:
            return await self._store.get_job(handle.session_id, handle.job_id)
        except BridgeError:
            return None

    async def _update(
        self,
        handle: _Handle,
        update: JobUpdate,
        *,
        if_status: frozenset[JobStatus] | set[JobStatus] | None = None,
        publish: bool = True,
    ) -> Job | None:
        """The job after `update`, published; None when it no longer applies (the job reached
        another status meanwhile, or its session is gone — then the process is stopped)."""
        try:
            job = await self._store.update_job(
                handle.session_id, handle.job_id, update, if_status=if_status
            )
        except BridgeError as exc:
            if exc.code == grpc.StatusCode.NOT_FOUND:
                handle.cancelled = True
                self._stop_process(handle, wait=False)
            return None
        if publish:
            self._publish(job)
        return job

    # -- reading ----------------------------------------------------------------------------

    def _publish(self, job: Job) -> None:
        for queue in list(self._watchers.get(job.job_id, ())):
            if queue.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()  # snapshots: an older one may go
            queue.put_nowait(job)

    def publish(self, job: Job) -> None:
        """Sends a snapshot of a job changed elsewhere (ApplyOptimization) to its watchers."""
        self._publish(job)

    async def watch(self, session_id: str, job_id: str) -> AsyncIterator[Job]:
        """Snapshots of the job, first the current one; ends after a terminal snapshot.
        NOT_FOUND (raised before the first snapshot) for an unknown job."""
        queue: asyncio.Queue[Job] = asyncio.Queue(_WATCH_QUEUE)
        watchers = self._watchers.setdefault(job_id, set())
        watchers.add(queue)
        try:
            job = await self._store.get_job(session_id, job_id)
            yield job
            while not job.status.terminal:
                try:
                    async with asyncio.timeout(self._watch_poll):
                        newer = await queue.get()
                except TimeoutError:
                    newer = await self._store.get_job(session_id, job_id)
                if newer.session_id != session_id:
                    continue
                job = newer
                yield job
        finally:
            watchers.discard(queue)
            if not watchers:
                self._watchers.pop(job_id, None)

    def running_jobs(self) -> list[str]:
        return list(self._handles)

    async def wait_stopped(self, job_id: str, within: float) -> None:
        """Returns once the manager is done with `job_id` (at once if it is not running);
        TimeoutError after `within` seconds. For tests and operators: an event, not a poll."""
        handle = self._handles.get(job_id)
        if handle is not None:
            async with asyncio.timeout(within):
                await handle.stopped.wait()

    def counts(self) -> dict[str, int]:
        """Jobs of this manager by state, `running` (their process started) and `queued`, and
        the open watch streams (`watchers`), for the metrics."""
        running = sum(1 for h in self._handles.values() if h.process is not None)
        return {
            "running": running,
            "queued": len(self._handles) - running,
            "watchers": sum(len(w) for w in self._watchers.values()),
        }

    # -- leases (shared store) -------------------------------------------------------------

    async def run_leases(self, lease_seconds: float) -> None:
        """Until cancelled, three times per lease: renews this replica's job leases and marks
        INTERRUPTED the jobs whose replica is gone (so within 4/3 of a lease of its death). A
        failing store only delays both: a lease this replica could not renew may lapse, and
        then the job is stopped at the next renewal."""
        while True:
            try:
                await self.renew_leases()
                await self.interrupt_orphans()
            except BridgeError as exc:
                log.warning("job lease round failed", error=str(exc))
            await asyncio.sleep(lease_seconds / 3)

    async def renew_leases(self) -> None:
        """Renews the leases of this replica's jobs; stops the jobs whose lease it lost."""
        held = [(h.session_id, h.job_id) for h in self._handles.values() if not h.cancelled]
        for session_id, job_id in await self._store.renew_job_leases(held):
            handle = self._handles.get(job_id)
            if handle is None or handle.session_id != session_id:
                continue
            log.warning("job lease lost; stopping the job here", job_id=job_id)
            handle.cancelled = True
            self._stop_process(handle, wait=False)
            handle.messages.put_nowait(None)
            with contextlib.suppress(BridgeError):
                self._publish(await self._store.get_job(session_id, job_id))

    async def interrupt_orphans(self) -> list[Job]:
        """Marks INTERRUPTED the active jobs of replicas that are gone."""
        marked = await self._store.interrupt_orphaned_jobs(self._clock())
        for job in marked:
            log.warning("job interrupted: its replica is gone", job_id=job.job_id)
            self._publish(job)
        return marked

    # -- stopping ---------------------------------------------------------------------------

    async def cancel(self, session_id: str, job_id: str) -> Job:
        """Marks an active job CANCELLED and stops its process; a finished job is returned
        unchanged. NOT_FOUND for an unknown job."""
        job = await self._store.get_job(session_id, job_id)
        if job.status.terminal:
            return job
        handle = self._handles.get(job_id)
        if handle is not None:
            handle.cancelled = True
            self._drop_if_queued(handle)
        try:
            job = await self._store.update_job(
                session_id,
                job_id,
                JobUpdate(
                    status=JobStatus.CANCELLED,
                    end_time=self._clock(),
                    progress=JobProgress(
                        "cancelled", job.progress.completed, job.progress.total, "cancelled"
                    ),
                ),
                if_status=ACTIVE_STATUSES,
            )
        except BridgeError as exc:
            if exc.reason != Reason.JOB_STATE_CONFLICT:
                raise
            return await self._store.get_job(session_id, job_id)
        self._publish(job)
        if handle is not None:
            self._stop_process(handle, wait=False)
            handle.messages.put_nowait(None)
        log.info("job cancelled", job_id=job_id)
        return job

    async def session_gone(self, session_id: str) -> None:
        """Stops the jobs of a deleted or expired session (their records went with it)."""
        for handle in list(self._handles.values()):
            if handle.session_id == session_id:
                handle.cancelled = True
                self._drop_if_queued(handle)
                self._stop_process(handle, wait=False)
                handle.messages.put_nowait(None)

    @staticmethod
    def _drop_if_queued(handle: _Handle) -> None:
        """A cancelled job still waiting for a slot leaves the queue now, not when a slot frees:
        its place and its caller's quota (`per_owner_jobs`) are free at once."""
        if handle.task is not None and not handle.admitted:
            handle.task.cancel()

    def _stop_process(self, handle: _Handle, *, wait: bool) -> None:
        process = handle.process
        if process is None or process.exitcode is not None:
            return
        with contextlib.suppress(Exception):
            process.terminate()
        grace = self._kill_grace

        def reap() -> None:
            process.join(grace)
            if process.exitcode is None:
                with contextlib.suppress(Exception):
                    process.kill()
                process.join(5)

        if wait:
            reap()
        else:
            threading.Thread(target=reap, daemon=True, name="job-reaper").start()

    async def close(self) -> None:
        """Server stop: kills every job process and marks the jobs INTERRUPTED."""
        self._closed = True
        for task in list(self._tasks):  # host calls of job processes being stopped
            task.cancel()
        handles = list(self._handles.values())
        for handle in handles:
            handle.cancelled = True
            handle.messages.put_nowait(None)
        await asyncio.gather(
            *(asyncio.to_thread(self._stop_process, h, wait=True) for h in handles)
        )
        for handle in handles:
            if handle.task is not None:
                handle.task.cancel()
        for handle in handles:
            if handle.task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await handle.task
        for handle in handles:
            with contextlib.suppress(BridgeError):
                job = await self._store.update_job(
                    handle.session_id,
                    handle.job_id,
                    JobUpdate(status=JobStatus.INTERRUPTED, end_time=self._clock()),
                    if_status=ACTIVE_STATUSES,
                )
                self._publish(job)


def _pump(conn: Connection, loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[Any]) -> None:
    """Forwards a job process's messages to the event loop; None when the pipe closes."""
    try:
        while True:
            try:
                message = conn.recv()
            except (EOFError, OSError):
                break
            loop.call_soon_threadsafe(queue.put_nowait, message)
    finally:
        conn.close()
        with contextlib.suppress(RuntimeError):  # the loop is closed
            loop.call_soon_threadsafe(queue.put_nowait, None)


def _status_code(raw: Any) -> grpc.StatusCode:
    for code in grpc.StatusCode:
        if code.value[0] == raw:
            return code
    return grpc.StatusCode.UNKNOWN


def _error(code: grpc.StatusCode, reason: str, message: str) -> dict[str, Any]:
    return {"code": code.value[0], "reason": reason, "message": message}
