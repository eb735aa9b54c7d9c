"""A worker process: runs executions sent by the front on its own `InProcessExecutor`.

Started as `python -m dspy_bridge.pool <fd> <log_level> <log_format>` with one end of a
socketpair. Every execution is its own asyncio task, so one worker runs many at once (the LM
calls are awaited; sync-only modules run in threads inside the executor). The worker keeps the
module records it was sent, keyed by (session, module, version, create_time), so the front sends
a big `state` once per worker, not once per call; when it has dropped one it answers `miss` and
the front resends it.

The worker never outlives the front: end of stream on its socket cancels everything and exits.
SIGINT is ignored (a terminal's Ctrl-C reaches the whole process group; the front decides when
workers stop, draining them first).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections import OrderedDict
from typing import Any

import grpc

from dspy_bridge import tracing
from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.heap import DEFAULT_YOUNG_THRESHOLD, settle_heap, young_threshold
from dspy_bridge.loop import EventLoopName, run
from dspy_bridge.model import ModuleRecord
from dspy_bridge.pool.host_channel import WorkerHostChannel
from dspy_bridge.pool.protocol import HANDED_OVER_NS, Message, RecordKey, encode, read_message
from dspy_bridge.runtime.executor import (
    ExecutionRequest,
    InProcessExecutor,
    ResultEvent,
)

RECORDS_KEPT = 1024
RSS_EVERY_SECONDS = 0.5


def rss_bytes(pid: int | str = "self") -> int:
    """Resident memory of a process from /proc (0 where /proc is missing)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _internal(exc: BaseException) -> BridgeError:
    return BridgeError(
        grpc.StatusCode.INTERNAL, Reason.INTERNAL, f"internal error: {type(exc).__name__}"
    )


class Worker:
    """The worker's side of the protocol (see `dspy_bridge.pool.protocol`)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.host = WorkerHostChannel(self.send)
        self.executor = InProcessExecutor(host=self.host)
        self.records: OrderedDict[RecordKey, ModuleRecord] = OrderedDict()
        self.tasks: dict[int, asyncio.Task[None]] = {}
        self.idle = asyncio.Event()
        self.idle.set()
        self._rss_sent = 0.0

    def send(self, message: Message) -> None:
        if not self.writer.is_closing():
            self.writer.write(encode(message))

    def _record(self, key: RecordKey, record: ModuleRecord | None) -> ModuleRecord | None:
        if record is not None:
            self.records[key] = record
            while len(self.records) > RECORDS_KEPT:
                self.records.popitem(last=False)
            return record
        record = self.records.get(key)
        if record is not None:
            self.records.move_to_end(key)
        return record

    async def run(self) -> None:
        loop = type(asyncio.get_running_loop()).__module__.split(".")[0]  # uvloop or asyncio
        self.send(("ready", os.getpid(), loop, young_threshold()))
        while True:
            try:
                message = await read_message(self.reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                for task in list(self.tasks.values()):  # the front is gone: nobody to answer
                    task.cancel()
                self.host.front_gone()
                return
            kind = message[0]
            if kind in ("host_reply", "host_error"):
                self.host.answered(message)
            elif kind == "exec":
                self._start(*message[1:])
            elif kind == "cancel":
                running = self.tasks.get(message[1])
                if running is not None:
                    running.cancel()
            elif kind == "forget":
                self.executor.forget_session(message[1])
                for key in [k for k in self.records if k[0] == message[1]]:
                    del self.records[key]
            elif kind == "drain":
                await self.idle.wait()
                await self.writer.drain()
                return

    def _start(
        self,
        call_id: int,
        stream: bool,
        key: RecordKey,
        record: ModuleRecord | None,
        fields: dict[str, Any],
    ) -> None:
        known = self._record(key, record)
        if known is None:
            self.send(("miss", call_id))
            return
        handed_over_ns = fields.pop(HANDED_OVER_NS, 0)
        request = ExecutionRequest(record=known, **fields)
        self.idle.clear()
        task = asyncio.create_task(self._call(call_id, stream, request, handed_over_ns))
        self.tasks[call_id] = task
        task.add_done_callback(lambda done: self._finished(call_id, done))

    def _finished(self, call_id: int, task: asyncio.Task[None]) -> None:
        """Every call ends here, however it ended. A task cancelled before its first step (the
        `cancel` was read right after the `exec`) never runs `_call` at all, so neither its
        `except` nor its `finally`: the answer and the bookkeeping live in this callback, else
        the front would hold the call's slot forever."""
        if task.cancelled():
            self.send(("cancelled", call_id))
        del self.tasks[call_id]
        if not self.tasks:
            self.idle.set()
        now = time.monotonic()
        if now - self._rss_sent >= RSS_EVERY_SECONDS:
            self._rss_sent = now
            self.send(("rss", rss_bytes()))

    async def _call(
        self, call_id: int, stream: bool, request: ExecutionRequest, handed_over_ns: int = 0
    ) -> None:
        if handed_over_ns:  # tracing is on: the wait since the front handed the call over
            attributes = {"process.pid": os.getpid()}
            tracing.elapsed_span(
                "worker queue wait", handed_over_ns, request.trace_parent, attributes
            )
        try:
            if stream:
                async for event in self.executor.execute_stream(request):
                    if isinstance(event, ResultEvent):
                        self.send(("result", call_id, event.result))
                    else:
                        self.send(("event", call_id, event))
            else:
                result = await self.executor.execute(request)
                self.send(("result", call_id, result))
        except BridgeError as exc:
            self.send(("error", call_id, exc))
        except Exception as exc:  # e.g. an output that does not pickle; never kill the worker
            self.send(("error", call_id, _internal(exc)))


async def serve(fd: int, gc_young_threshold: int = DEFAULT_YOUNG_THRESHOLD) -> None:
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    worker = Worker(reader, writer)
    settle_heap(gc_young_threshold)  # DSPy is imported: freeze what start-up left (heap.py)
    try:
        await worker.run()
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


def main(argv: list[str]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from dspy_bridge.log import configure_logging

    level = argv[1] if len(argv) > 1 else "warning"
    fmt = argv[2] if len(argv) > 2 else "json"
    event_loop: EventLoopName = "auto"
    if len(argv) > 3 and argv[3] in ("uvloop", "asyncio"):
        event_loop = "uvloop" if argv[3] == "uvloop" else "asyncio"
    gc_young_threshold = int(argv[4]) if len(argv) > 4 else DEFAULT_YOUNG_THRESHOLD
    configure_logging(level, "console" if fmt == "console" else "json")
    tracing.configure_tracing()  # from the environment the front passed on
    try:
        run(serve(int(argv[0]), gc_young_threshold), event_loop)
    finally:
        tracing.shutdown_tracing()  # export the last spans before the process ends
