"""The worker pool: an `Executor` that runs executions in worker processes.

Why processes: DSPy execution (prompt formatting, parsing, LM client code) holds the GIL, so one
process tops out at one core; N workers give N cores while the front process only does gRPC,
validation and the store. Why this shape:

- **Slots and affinity.** There are `workers` slots; a session's calls go to the slot its id
  hashes to, so its programs stay cached in one worker. A slot that is much busier than the
  least busy one (by `AFFINITY_SLACK` calls) or has no live worker spills to another: any
  worker can serve any session, because the front sends the module record (spec + state) with
  the request and a worker builds what it lacks. A worker keeps the records it was sent, so the
  front sends a record once per worker (a `miss` answer makes it resend).
- **Backpressure.** Each worker runs up to `worker_concurrency` executions at once; beyond that
  calls wait in the slot's FIFO, up to `worker_queue_size`; beyond that RESOURCE_EXHAUSTED
  `QUEUE_FULL` with a `retry_after_ms` hint.
- **Deadlines and cancels** travel with the call: the remaining timeout is sent with the
  request (the worker's executor cancels the LM call at it) and a cancelled caller sends
  `cancel`, which cancels the task (and its LM call) in the worker.
- **Faults.** A worker that dies fails its in-flight calls with UNAVAILABLE `WORKER_LOST`
  (`retryable=true`: the front never stores anything from an execution, so nothing is lost) and
  is replaced; a slot whose workers keep dying waits exponentially longer between starts. A
  worker that is wedged (silent past a call's deadline and a cancel) is killed, and so replaced.
- **Recycling.** After `worker_max_requests` calls or above `worker_max_rss_mb`, a worker's
  successor starts while the worker keeps taking calls; once the successor is ready it takes
  the calls and the old worker finishes what it has, then exits. A slot has at most one start
  under way at a time, whatever dies meanwhile.
- **Drain.** `close()` refuses new calls (UNAVAILABLE `DRAINING`), waits up to the grace period
  for calls in flight, then stops the workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import sys
import time
import zlib
from collections import OrderedDict, deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc

from dspy_bridge import tracing
from dspy_bridge.errors import BridgeError, Reason, resource_exhausted
from dspy_bridge.heap import DEFAULT_YOUNG_THRESHOLD
from dspy_bridge.log import get_logger
from dspy_bridge.observability import POOL_QUEUE_DEPTH, WORKER_RESTARTS
from dspy_bridge.pool.host_channel import FrontHostCalls
from dspy_bridge.pool.protocol import (
    HANDED_OVER_NS,
    Message,
    RecordKey,
    encode,
    read_message,
    record_key,
)
from dspy_bridge.pool.worker import RECORDS_KEPT
from dspy_bridge.runtime.executor import (
    ExecutionEvent,
    ExecutionRequest,
    ExecutionResult,
    ResultEvent,
    deadline_exceeded,
)
from dspy_bridge.runtime.host_calls import HostCaller

log = get_logger(__name__)

AFFINITY_SLACK = 8
# A worker that answers nothing by this long after a call's timeout is treated as hung for that
# call (the caller gets DEADLINE_EXCEEDED and the worker a cancel); still silent this long after
# the cancel, it is killed and replaced (`_kill_if_unresponsive`).
DEADLINE_MARGIN_S = 5.0


@dataclass
class PoolConfig:
    """What the pool needs from Settings (kept separate so tests and benches build it)."""

    workers: int
    concurrency: int = 512
    queue_size: int = 1024
    max_requests: int = 0
    max_rss_mb: int = 0
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    start_timeout_seconds: float = 60.0
    grace_seconds: float = 10.0
    log_level: str = "warning"
    log_format: str = "json"
    event_loop: str = "auto"
    gc_young_threshold: int = DEFAULT_YOUNG_THRESHOLD


def restart_delay(failures: int, base: float, cap: float) -> float:
    """Seconds before starting a slot's next worker after `failures` deaths in a row: the
    first restart is immediate, then base, 2·base, 4·base, ... up to `cap`."""
    if failures <= 1:
        return 0.0
    return float(min(cap, base * 2 ** (failures - 2)))


def worker_lost(pid: int, how: str) -> BridgeError:
    return BridgeError(
        grpc.StatusCode.UNAVAILABLE,
        Reason.WORKER_LOST,
        f"worker process {pid} {how} while running this execution; nothing was stored, "
        "it is safe to retry",
        {"retryable": "true", "worker_pid": str(pid)},
    )


def draining() -> BridgeError:
    return BridgeError(
        grpc.StatusCode.UNAVAILABLE,
        Reason.DRAINING,
        "the server is shutting down and takes no new executions",
        {"retryable": "true"},
    )


@dataclass(eq=False)
class _Call:
    id: int
    stream: bool
    key: RecordKey
    request: ExecutionRequest
    fields: dict[str, Any]
    inbox: asyncio.Queue[Message] = field(default_factory=asyncio.Queue)
    started: float = field(default_factory=time.perf_counter)
    cancelled: bool = False


class _Handle:
    """One worker process and the calls it is running."""

    def __init__(
        self,
        proc: asyncio.subprocess.Process,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.proc = proc
        self.pid = proc.pid
        self.reader = reader
        self.writer = writer
        self.in_flight: dict[int, _Call] = {}
        self.known: OrderedDict[RecordKey, None] = OrderedDict()
        self.served = 0
        self.rss = 0
        self.ready = False
        # Recycling: `replaced` once its successor is starting (it keeps serving until the
        # successor is ready), `retiring` once calls no longer come to it.
        self.replaced = False
        self.retiring = False
        self.dead = False
        self.started = time.monotonic()
        #: The host calls its executions make (`host:` tools), run on the front's hub.
        self.host_calls: FrontHostCalls | None = None

    def send(self, message: Message) -> None:
        if not self.dead and not self.writer.is_closing():
            self.writer.write(encode(message))

    def remember(self, key: RecordKey) -> bool:
        """Marks `key` as sent; True when it was already known (so the record can stay home)."""
        if key in self.known:
            self.known.move_to_end(key)
            return True
        self.known[key] = None
        while len(self.known) > RECORDS_KEPT:
            self.known.popitem(last=False)
        return False


@dataclass(eq=False)
class _Slot:
    index: int
    current: _Handle | None = None
    # A recycled worker's replacement while it starts; it becomes `current` when ready.
    successor: _Handle | None = None
    waiters: deque[asyncio.Future[None]] = field(default_factory=deque)
    failures: int = 0
    # The start under way (backoff, then spawn), and the worker it spawned once it has one.
    starting: asyncio.Task[None] | None = None
    starting_handle: _Handle | None = None

    def usable(self, concurrency: int) -> bool:
        h = self.current
        return h is not None and h.ready and len(h.in_flight) < concurrency

    @property
    def load(self) -> int:
        h = self.current
        return (len(h.in_flight) if h is not None else 0) + len(self.waiters)


class WorkerPool:
    """`Executor` over worker processes. `await start()` before use; `close()` drains."""

    def __init__(
        self,
        config: PoolConfig,
        *,
        worker_command: Callable[[int], list[str]] | None = None,
        host: HostCaller | None = None,
    ) -> None:
        """`worker_command(fd)` gives the argv of a worker (tests substitute a crashing one);
        `host` answers the `host:` calls of executions (the front's hub)."""
        if config.workers < 1:
            raise ValueError("a pool needs at least one worker")
        self.config = config
        self._host = host
        self._command = worker_command or self._default_command
        self._slots = [_Slot(i) for i in range(config.workers)]
        self._handles: set[_Handle] = set()
        self._procs: set[asyncio.subprocess.Process] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._ids = itertools.count(1)
        self._closing = False
        self._changed = asyncio.Condition()
        self._idle = asyncio.Event()
        self._idle.set()
        self._watchers = 0
        self.restarts = 0
        self.crashes = 0
        self.recycled = 0
        self._latency_ms = 50.0  # moving average, for the retry hint

    def _default_command(self, fd: int) -> list[str]:
        c = self.config
        return [
            sys.executable,
            "-m",
            "dspy_bridge.pool",
            str(fd),
            c.log_level,
            c.log_format,
            c.event_loop,
            str(c.gc_young_threshold),
        ]

    # -- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Starts every worker and returns once all are ready (or have failed and are
        restarting), so SERVING means executions run without paying a worker's start."""
        await asyncio.gather(*(self._spawn(slot) for slot in self._slots))

    async def _spawn(self, slot: _Slot, successor: bool = False) -> None:
        """Starts a worker for `slot` and waits until it is ready (or failed). A `successor`
        takes over from the slot's current worker only once ready."""
        parent, child = socket.socketpair()
        try:
            proc = await asyncio.create_subprocess_exec(
                *self._command(child.fileno()),
                pass_fds=(child.fileno(),),
                stdin=asyncio.subprocess.DEVNULL,
            )
        finally:
            child.close()
        self._procs.add(proc)
        proc_done = asyncio.ensure_future(proc.wait())
        proc_done.add_done_callback(lambda _: self._procs.discard(proc))
        self._tasks.add(proc_done)
        proc_done.add_done_callback(self._tasks.discard)
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        handle = _Handle(proc, reader, writer)
        handle.host_calls = FrontHostCalls(self._host, handle.send)
        self._handles.add(handle)
        if slot.starting is asyncio.current_task():
            slot.starting_handle = handle
        displaced = slot.successor if successor else slot.current
        if displaced is not None:  # one start per slot makes this unreachable; never leak one
            log.warning("worker displaced", pid=displaced.pid, slot=slot.index)
            displaced.retiring = True
            displaced.send(("drain",))
        if successor:
            slot.successor = handle
        else:
            slot.current = handle
        self._background(self._read(slot, handle))
        try:
            async with asyncio.timeout(self.config.start_timeout_seconds):
                async with self._changed:
                    await self._changed.wait_for(lambda: handle.ready or handle.dead)
        except TimeoutError:
            log.error("worker did not start", pid=handle.pid, slot=slot.index)
            with contextlib.suppress(ProcessLookupError):
                proc.kill()

    def _background(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def wait_for(self, predicate: Callable[[], bool], within: float) -> None:
        """Waits until `predicate()` holds, re-checked on every pool state change (worker
        ready or gone, call finished). For tests and operators; raises TimeoutError."""
        self._watchers += 1
        try:
            async with asyncio.timeout(within):
                async with self._changed:
                    await self._changed.wait_for(predicate)
        finally:
            self._watchers -= 1

    async def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        try:
            async with asyncio.timeout(self.config.grace_seconds):
                await self._idle.wait()
        except TimeoutError:
            log.warning("pool drain timed out", in_flight=self.stats()["in_flight"])
        starting = [s.starting for s in self._slots if s.starting is not None]
        for task in starting:
            task.cancel()
        await asyncio.gather(*starting, return_exceptions=True)
        for slot in self._slots:
            for waiter in slot.waiters:
                if not waiter.done():
                    waiter.set_exception(draining())
        for handle in list(self._handles):
            handle.retiring = True
            handle.send(("drain",))
        procs = list(self._procs)  # every worker not yet reaped, retiring ones included
        try:
            async with asyncio.timeout(max(1.0, self.config.grace_seconds)):
                await asyncio.gather(*(p.wait() for p in procs))
        except TimeoutError:
            for proc in procs:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
            await asyncio.gather(*(p.wait() for p in procs))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        POOL_QUEUE_DEPTH.set(0)

    # -- reading a worker -------------------------------------------------------------------

    async def _read(self, slot: _Slot, handle: _Handle) -> None:
        try:
            while True:
                message = await read_message(handle.reader)
                self._on_message(slot, handle, message)
        except (asyncio.IncompleteReadError, ConnectionError, OSError):
            pass
        await self._gone(slot, handle)

    def _on_message(self, slot: _Slot, handle: _Handle, message: Message) -> None:
        kind = message[0]
        if kind in ("host", "host_cancel"):
            assert handle.host_calls is not None
            handle.host_calls.on_message(message)
        elif kind == "event":
            call = handle.in_flight.get(message[1])
            if call is not None:
                call.inbox.put_nowait(message)
        elif kind in ("result", "error", "cancelled"):
            call = handle.in_flight.pop(message[1], None)
            if call is None:
                return
            call.inbox.put_nowait(message)
            if kind == "result":
                elapsed = (time.perf_counter() - call.started) * 1000
                self._latency_ms += (elapsed - self._latency_ms) * 0.05
                if handle is slot.current and not handle.replaced:
                    # A recycled worker's results say nothing of whether its successors start.
                    slot.failures = 0
            self._released(slot, handle)
        elif kind == "miss":
            call = handle.in_flight.get(message[1])
            if call is not None and call.cancelled:  # nothing runs in the worker: it is over
                del handle.in_flight[call.id]
                call.inbox.put_nowait(("cancelled", call.id))
                self._released(slot, handle)
            elif call is not None:
                handle.known.pop(call.key, None)
                handle.remember(call.key)
                record = call.request.record
                handle.send(("exec", call.id, call.stream, call.key, record, call.fields))
        elif kind == "ready":
            handle.ready = True
            loop = message[2] if len(message) > 2 else None
            threshold = message[3] if len(message) > 3 else None
            log.info(
                "worker ready",
                pid=handle.pid,
                slot=slot.index,
                event_loop=loop,
                gc_young_threshold=threshold,
            )
            if handle is slot.successor:
                self._take_over(slot, handle)
            self._wake(slot, all_=True)
            self._background(self._notify())
        elif kind == "rss":
            handle.rss = int(message[1])
            limit = self.config.max_rss_mb << 20
            if limit and handle.rss > limit and not handle.replaced:
                log.info("recycling worker", pid=handle.pid, rss_mb=handle.rss >> 20)
                self._recycle(slot, handle)

    def _released(self, slot: _Slot, handle: _Handle) -> None:
        if handle is slot.current:
            self._wake(slot)
        if handle.retiring and not handle.in_flight:
            handle.send(("drain",))
        self._update_idle()

    def _wake(self, slot: _Slot, all_: bool = False) -> None:
        while slot.waiters:
            waiter = slot.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                if not all_:
                    return

    async def _gone(self, slot: _Slot, handle: _Handle) -> None:
        handle.dead = True
        handle.writer.close()
        if handle.host_calls is not None:
            handle.host_calls.worker_gone()
        try:
            async with asyncio.timeout(5):
                code = await handle.proc.wait()
        except TimeoutError:
            code = None
        killed = code is not None and code < 0
        how = f"was killed by signal {-(code or 0)}" if killed else f"exited ({code})"
        for call in handle.in_flight.values():
            call.inbox.put_nowait(("error", call.id, worker_lost(handle.pid, how)))
        lost = len(handle.in_flight)
        handle.in_flight.clear()
        self._handles.discard(handle)
        if handle is slot.current or handle is slot.successor:
            was_successor = handle is slot.successor
            if was_successor:
                slot.successor = None
            else:
                slot.current = None
            if not self._closing:
                slot.failures += 1
                self.crashes += 1
                delay = restart_delay(
                    slot.failures, self.config.backoff_seconds, self.config.backoff_max_seconds
                )
                log.warning(
                    "worker lost", pid=handle.pid, how=how, in_flight=lost, restart_in_s=delay
                )
                if slot.successor is not None or self._start_pending(slot, gone=handle):
                    pass  # a replacement is on its way (maybe in its backoff): it takes over
                elif was_successor and slot.current is not None:
                    self._replace(slot, delay, successor=True)  # the old worker serves meanwhile
                else:
                    self._replace(slot, delay)
        self._update_idle()
        await self._notify()

    def _start_pending(self, slot: _Slot, gone: _Handle | None = None) -> bool:
        """Whether a start for `slot` is under way, not counting one whose worker is `gone`."""
        task = slot.starting
        return (
            task is not None
            and not task.done()
            and (gone is None or slot.starting_handle is not gone)
        )

    def _replace(self, slot: _Slot, delay: float, successor: bool = False) -> None:
        async def later() -> None:
            if delay:
                await asyncio.sleep(delay)  # backoff for a crash-looping slot, not a sync
            if self._closing:
                return
            self.restarts += 1
            WORKER_RESTARTS.inc()
            await self._spawn(slot, successor)

        slot.starting_handle = None
        slot.starting = asyncio.create_task(later())
        self._tasks.add(slot.starting)
        slot.starting.add_done_callback(self._tasks.discard)

    def _recycle(self, slot: _Slot, handle: _Handle) -> None:
        """Starts `handle`'s replacement; `handle` keeps taking calls until the replacement is
        ready (so no call waits for a worker to start), then finishes its calls and exits."""
        if handle.replaced or self._closing:
            return
        handle.replaced = True
        self.recycled += 1
        if slot.current is handle and slot.successor is None and not self._start_pending(slot):
            self._replace(slot, 0.0, successor=True)

    def _take_over(self, slot: _Slot, successor: _Handle) -> None:
        """A recycled worker's successor is ready: calls go to it, the old worker drains."""
        old = slot.current
        slot.current, slot.successor = successor, None
        if old is not None:
            old.retiring = True
            if not old.in_flight:
                old.send(("drain",))

    # -- dispatch ---------------------------------------------------------------------------

    def _choose(self, session_id: str) -> _Slot:
        conc, limit = self.config.concurrency, self.config.queue_size
        preferred = self._slots[zlib.crc32(session_id.encode()) % len(self._slots)]
        live = [s for s in self._slots if s.current is not None and s.current.ready]
        if not live:
            live = self._slots
        least = min(live, key=lambda s: s.load)
        near = preferred in live and preferred.load <= least.load + AFFINITY_SLACK
        if near and (preferred.usable(conc) or len(preferred.waiters) < limit):
            return preferred
        if least.usable(conc) or len(least.waiters) < limit:
            return least
        raise self._queue_full()

    def _queue_full(self) -> BridgeError:
        waiting = sum(len(s.waiters) for s in self._slots)
        capacity = max(1, self.config.concurrency * len(self._slots))
        hint = int(min(10_000, max(10, self._latency_ms * max(1.0, waiting / capacity))))
        return resource_exhausted(
            Reason.QUEUE_FULL,
            f"all {len(self._slots)} workers are busy and their queues are full "
            f"({waiting} calls waiting); retry after {hint} ms",
            retry_after_ms=str(hint),
            queue_depth=str(waiting),
        )

    async def _acquire(self, slot: _Slot) -> _Handle:
        conc = self.config.concurrency
        first = True
        while not (slot.usable(conc) and (not first or not slot.waiters)):
            if self._closing:
                raise draining()
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if first:
                slot.waiters.append(waiter)
            else:  # woken but beaten to the capacity: keep the place at the head
                slot.waiters.appendleft(waiter)
            first = False
            self._update_idle()
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake(slot)  # pass the turn on
                with contextlib.suppress(ValueError):
                    slot.waiters.remove(waiter)
                self._update_idle()
                raise
        handle = slot.current
        assert handle is not None
        return handle

    async def _submit(self, req: ExecutionRequest, stream: bool) -> tuple[_Slot, _Call]:
        if self._closing:
            raise draining()
        slot = self._choose(req.record.session_id)
        t0 = time.perf_counter()
        with tracing.span("queue wait"):
            if req.timeout_ms > 0:
                try:
                    async with asyncio.timeout(req.timeout_ms / 1000):
                        handle = await self._acquire(slot)
                except TimeoutError:
                    raise deadline_exceeded(req.timeout_ms) from None
            else:
                handle = await self._acquire(slot)
        timeout_ms = req.timeout_ms
        if timeout_ms > 0:
            timeout_ms = max(1, timeout_ms - int((time.perf_counter() - t0) * 1000))
        fields = {
            "lm": req.lm,
            "inputs": req.inputs,
            "params": req.params,
            "timeout_ms": timeout_ms,
            "include_trace": req.include_trace,
            "host_tools": req.host_tools,
            "trace_parent": tracing.carrier(),  # the worker's spans join the caller's trace
        }
        if tracing.enabled():  # the worker's `worker queue wait` span starts now
            fields[HANDED_OVER_NS] = time.time_ns()
        call = _Call(next(self._ids), stream, record_key(req.record), req, fields)
        handle.in_flight[call.id] = call
        self._update_idle()
        record = None if handle.remember(call.key) else req.record
        handle.send(("exec", call.id, stream, call.key, record, fields))
        handle.served += 1
        if self.config.max_requests and handle.served >= self.config.max_requests:
            log.info("recycling worker", pid=handle.pid, served=handle.served)
            self._recycle(slot, handle)
        return slot, call

    def _cancel(self, slot: _Slot, call: _Call) -> None:
        """Asks the worker to cancel; the call leaves `in_flight` when the worker confirms."""
        call.cancelled = True
        for handle in self._handles:
            if call.id in handle.in_flight:
                handle.send(("cancel", call.id))
                break
        if self._watchers:
            self._background(self._notify())

    async def _next(self, slot: _Slot, call: _Call) -> Message:
        timeout = call.fields["timeout_ms"]
        if timeout <= 0:
            return await call.inbox.get()
        try:
            async with asyncio.timeout(timeout / 1000 + DEADLINE_MARGIN_S):
                return await call.inbox.get()
        except TimeoutError:
            self._cancel(slot, call)
            self._background(self._kill_if_unresponsive(call))
            raise deadline_exceeded(call.request.timeout_ms) from None

    async def _kill_if_unresponsive(self, call: _Call) -> None:
        """A worker whose event loop runs ends every call at its deadline (its executor's own
        timeout) and confirms a cancel at once. One silent `DEADLINE_MARGIN_S` past a deadline
        and then as long again after the cancel is wedged (code stuck without yielding: a tool,
        a parser), and so is every other call on it: it is killed, those calls fail
        WORKER_LOST (retryable) and a new worker takes its slot."""
        await asyncio.sleep(DEADLINE_MARGIN_S)  # a timer in the server, not a guess in a test
        for handle in list(self._handles):
            if call.id in handle.in_flight and not handle.dead:
                log.error(
                    "worker unresponsive past a deadline and a cancel; killing it",
                    pid=handle.pid,
                    in_flight=len(handle.in_flight),
                )
                with contextlib.suppress(ProcessLookupError):
                    handle.proc.kill()

    async def execute(self, req: ExecutionRequest) -> ExecutionResult:
        slot, call = await self._submit(req, False)
        try:
            message = await self._next(slot, call)
        except asyncio.CancelledError:
            self._cancel(slot, call)
            raise
        if message[0] == "result":
            result: ExecutionResult = message[2]
            return result
        if message[0] == "error":
            raise message[2]
        raise asyncio.CancelledError  # "cancelled" without a cancel from here: treat as one

    async def execute_stream(self, req: ExecutionRequest) -> AsyncGenerator[ExecutionEvent, None]:
        slot, call = await self._submit(req, True)
        finished = False
        try:
            while True:
                message = await self._next(slot, call)
                kind = message[0]
                if kind == "event":
                    yield message[2]
                elif kind == "result":
                    finished = True
                    yield ResultEvent(message[2])
                    return
                elif kind == "error":
                    finished = True
                    raise message[2]
                else:
                    finished = True
                    raise asyncio.CancelledError
        finally:
            if not finished:
                self._cancel(slot, call)

    def forget_session(self, session_id: str) -> None:
        for handle in self._handles:
            handle.send(("forget", session_id))
            for key in [k for k in handle.known if k[0] == session_id]:
                del handle.known[key]

    # -- facts ------------------------------------------------------------------------------

    def _update_idle(self) -> None:
        """After any change in calls waiting or running: metrics, the idle event, watchers."""
        waiting = sum(len(s.waiters) for s in self._slots)
        POOL_QUEUE_DEPTH.set(waiting)
        if waiting or any(h.in_flight for h in self._handles):
            self._idle.clear()
        else:
            self._idle.set()
        if self._watchers:  # a task per change only while someone waits on the pool
            self._background(self._notify())

    def pids(self) -> list[int]:
        """PIDs of the workers taking calls now (slot order; retiring ones excluded)."""
        return [s.current.pid for s in self._slots if s.current is not None and s.current.ready]

    def stats(self) -> dict[str, int]:
        return {
            "workers": len(self._slots),
            "workers_alive": len(self.pids()),
            "restarts": self.restarts,
            "crashes": self.crashes,
            "recycled": self.recycled,
            "queue_depth": sum(len(s.waiters) for s in self._slots),
            "in_flight": sum(len(h.in_flight) for h in self._handles),
            "rss_bytes": sum(h.rss for h in self._handles),
        }
