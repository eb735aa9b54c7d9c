"""A worker's way to its session's host: `host:` calls travel worker → front → host and back
on the worker's own socket (the front's `HostHub` holds the host streams).

The worker side, `WorkerHostChannel`, is the worker executor's `HostCaller`: it numbers each
call, sends `("host", id, session_id, request, timeout_s)` and waits for `("host_reply", id,
reply)` or `("host_error", id, BridgeError)`. A call whose execution is cancelled sends
`("host_cancel", id)`, which cancels the front's hub call (and so sends `cancel` to the host).
The front side, `FrontHostCalls`, runs each call on the hub as a task of its own and answers
on the worker's socket. Both ends are one pickled tuple per message on the existing socket, so
a round trip adds two local socket hops to the host's own (see docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable

from dspy_bridge.errors import BridgeError
from dspy_bridge.pool.protocol import Message
from dspy_bridge.runtime.host_calls import (
    HostCaller,
    HostReply,
    HostRequest,
    host_disconnected,
    kind_of,
)


class WorkerHostChannel:
    """`HostCaller` inside a worker process (module docstring)."""

    def __init__(self, send: Callable[[Message], None]) -> None:
        self._send = send
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[HostReply]] = {}

    async def call_host(
        self, session_id: str, request: HostRequest, timeout_s: float | None
    ) -> HostReply:
        call_id = next(self._ids)
        future: asyncio.Future[HostReply] = asyncio.get_running_loop().create_future()
        self._waiting[call_id] = future
        self._send(("host", call_id, session_id, request, timeout_s))
        try:
            return await future
        except asyncio.CancelledError:
            self._send(("host_cancel", call_id))
            raise
        finally:
            self._waiting.pop(call_id, None)

    def answered(self, message: Message) -> None:
        """A `host_reply` or `host_error` from the front."""
        future = self._waiting.get(message[1])
        if future is None or future.done():
            return
        if message[0] == "host_reply":
            future.set_result(message[2])
        else:
            future.set_exception(message[2])

    def front_gone(self) -> None:
        for future in self._waiting.values():
            if not future.done():
                future.cancel()


class FrontHostCalls:
    """The front's side for one worker: runs the worker's host calls on `host` (None: no hub,
    every call is HOST_DISCONNECTED) and answers through `send`."""

    def __init__(self, host: HostCaller | None, send: Callable[[Message], None]) -> None:
        self._host = host
        self._send = send
        self._tasks: dict[int, asyncio.Task[None]] = {}

    def on_message(self, message: Message) -> None:
        if message[0] == "host":
            _, call_id, session_id, request, timeout_s = message
            task = asyncio.create_task(self._run(call_id, session_id, request, timeout_s))
            self._tasks[call_id] = task
            task.add_done_callback(lambda _: self._tasks.pop(call_id, None))
        else:  # host_cancel
            running = self._tasks.get(message[1])
            if running is not None:
                running.cancel()

    async def _run(
        self, call_id: int, session_id: str, request: HostRequest, timeout_s: float | None
    ) -> None:
        try:
            if self._host is None:
                kind, name = kind_of(request)
                raise host_disconnected(kind, name)
            reply = await self._host.call_host(session_id, request, timeout_s)
        except asyncio.CancelledError:
            return  # the worker's execution is gone; it expects no answer
        except BridgeError as exc:
            self._send(("host_error", call_id, exc))
            return
        self._send(("host_reply", call_id, reply))

    def worker_gone(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
