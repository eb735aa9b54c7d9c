"""A job process's way to its session's host: `host:` metric and LM calls travel job process →
front → host and back on the job's own pipe (the front's `HostHub` holds the host streams).

The pipe is duplex. The job side, `JobHostChannel`, is the process's `SyncHostCaller` (DSPy's
optimizers call metrics and LMs from threads): each call is sent as
`{"type": "host_call", "id", "session_id", "request", "timeout_s"}` and the calling thread waits
for `{"type": "host_reply", "id", "reply"}` or `{"type": "host_error", "id", "error"}`, which a
reader thread takes off the pipe. Sends from any thread (progress, calls) share one lock.

The front side is `JobManager` (it reads the pipe already): it runs each call on the hub and
answers; when the host is gone past `host_reconnect_wait_seconds` it fails the whole job
UNAVAILABLE `HOST_DISCONNECTED` and stops the process.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import Future
from multiprocessing.connection import Connection
from typing import Any

from dspy_bridge.errors import BridgeError
from dspy_bridge.runtime.host_calls import HostReply, HostRequest, host_disconnected, kind_of

#: Every send on a job's pipe holds this lock (progress from DSPy's threads, host calls).
SEND_LOCK = threading.Lock()


def send(conn: Connection, message: dict[str, Any]) -> None:
    """Sends to the front; when nobody listens any more (the job was cancelled, the server
    stopped) the job has no reason to go on, so the process ends quietly."""
    try:
        with SEND_LOCK:
            conn.send(message)
    except OSError:
        os._exit(1)


class JobHostChannel:
    """`SyncHostCaller` inside a job process (module docstring)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn
        self._ids = itertools.count(1)
        self._waiting: dict[int, Future[HostReply]] = {}
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._read, daemon=True, name="host-replies").start()

    def call_host_sync(
        self, session_id: str, request: HostRequest, timeout_s: float | None
    ) -> HostReply:
        future: Future[HostReply] = Future()
        with self._lock:
            if self._closed:
                kind, name = kind_of(request)
                raise host_disconnected(kind, name)
            call_id = next(self._ids)
            self._waiting[call_id] = future
        send(
            self._conn,
            {
                "type": "host_call",
                "id": call_id,
                "session_id": session_id,
                "request": request,
                "timeout_s": timeout_s,
            },
        )
        try:
            return future.result()
        finally:
            with self._lock:
                self._waiting.pop(call_id, None)

    def _read(self) -> None:
        while True:
            try:
                message = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._waiting.get(message.get("id", 0))
            if future is None or future.done():
                continue
            if message.get("type") == "host_reply":
                future.set_result(message["reply"])
            else:
                error = message.get("error")
                future.set_exception(
                    error if isinstance(error, BridgeError) else RuntimeError(str(error))
                )
        with self._lock:  # the front is gone: nobody will answer
            self._closed = True
            waiting = list(self._waiting.values())
        for future in waiting:
            if not future.done():
                future.set_exception(RuntimeError("the server is gone"))
