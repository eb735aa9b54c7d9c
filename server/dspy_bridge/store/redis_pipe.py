"""One lean Redis connection for the store's hot reads, its replies matched to requests in order.

Every Execute on a replica reads Redis once (its execution view, `redis_views`), and with owners
every RPC about a session reads that session's owner. Through redis-py's client, each such read
cost the replica about 0.15 ms of CPU in the scale-out bench, more than the read itself: the
client takes a connection from its pool (an asyncio lock, a readiness check of the socket,
observability counters) and gives it back, wraps the command in its retry and timeout layers
and reads the reply through a stream reader, several loop hops per command. That made an
Execute on Redis cost ~16 % more CPU than on the memory store.

Here a read is one `hiredis.pack_command`, one transport write and one future, resolved by the
protocol as soon as hiredis parses the reply. Reads are pipelined: any number are in flight on
the one connection at once, and Redis answers a connection's commands in the order they came,
so the n-th reply belongs to the n-th pending read.

The connection is opened with the settings redis-py derived from the store URL (host, port,
TLS context for `rediss://`, user, password, database), so it reaches the same server the same
way as the rest of the store. Failures surface as redis-py's exceptions, which the store maps
(`STORE_UNAVAILABLE` for a lost or silent connection):

- the connection lost or closed: every pending read fails with `ConnectionError`;
- no reply within `timeout` seconds: the connection is closed (the replies behind the missing
  one could no longer be matched), and every pending read fails with `TimeoutError`;
- a connection idle for `max_idle` seconds is replaced before it is used again rather than
  trusted (a firewall may have dropped it without a word), as redis-py's health check does;
- the next read after a failure opens a new connection.

Nothing is ever resent here: a caller decides what may be retried.
"""

from __future__ import annotations

import asyncio
import collections
from typing import Any, cast

import hiredis
from redis.asyncio.connection import Connection, SSLConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

#: Seconds a connection may sit idle before it is replaced rather than trusted.
MAX_IDLE_S = 30.0


class _Link(asyncio.Protocol):
    """One open connection: its pending reads in the order they were sent."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._loop = asyncio.get_running_loop()
        self._reader = hiredis.Reader(encoding="utf-8", replyError=ResponseError)
        #: (deadline, future) of each read sent and not answered yet, oldest first.
        self._pending: collections.deque[tuple[float, asyncio.Future[Any]]] = collections.deque()
        self._transport: asyncio.Transport | None = None
        #: One timer for all pending reads, set for the oldest one's deadline.
        self._watchdog: asyncio.TimerHandle | None = None
        self.closed = False
        self.last_used = self._loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport (uvloop's does not subclass asyncio.Transport: no isinstance).
        self._transport = cast(asyncio.Transport, transport)

    def send(self, args: tuple[str | int, ...]) -> asyncio.Future[Any]:
        """Sends one command; the future gets its reply (an error reply as its exception)."""
        if self.closed or self._transport is None:
            raise RedisConnectionError("connection closed")
        future = self._loop.create_future()
        self.last_used = now = self._loop.time()
        self._pending.append((now + self._timeout, future))
        # hiredis's stub types the argument as a 1-tuple; it takes any number of parts.
        self._transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]
        if self._watchdog is None:
            self._watchdog = self._loop.call_at(now + self._timeout, self._check_deadline)
        return future

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        self.last_used = self._loop.time()
        while True:
            try:
                reply = self._reader.gets()
            except hiredis.ProtocolError as exc:  # the stream cannot be followed any more
                self.fail(RedisConnectionError(f"protocol error: {exc}"))
                return
            if reply is False:  # no complete reply buffered yet
                return
            if not self._pending:
                self.fail(RedisConnectionError("a reply nobody asked for"))
                return
            _, future = self._pending.popleft()
            if future.done():  # its caller was cancelled: the reply only keeps the order
                continue
            if isinstance(reply, ResponseError):
                future.set_exception(reply)
            else:
                future.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        self.fail(RedisConnectionError("connection lost"))

    def _check_deadline(self) -> None:
        self._watchdog = None
        if not self._pending:
            return
        deadline = self._pending[0][0]
        if self._loop.time() >= deadline:
            self.fail(RedisTimeoutError(f"no reply within {self._timeout} s"))
        else:
            self._watchdog = self._loop.call_at(deadline, self._check_deadline)

    def fail(self, error: Exception) -> None:
        """Closes the connection; every pending read raises `error` (a copy each)."""
        self.closed = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        pending, self._pending = self._pending, collections.deque()
        for _, future in pending:
            if not future.done():
                future.set_exception(type(error)(*error.args))
        if self._transport is not None:
            self._transport.close()


class RedisPipe:
    """Pipelined commands on one connection, opened on first use and after any failure."""

    def __init__(
        self, settings: Connection, *, timeout: float, max_idle: float = MAX_IDLE_S
    ) -> None:
        """`settings`: a redis-py connection (never connected here) whose host, port, TLS
        context, credentials and database this pipe connects with; `timeout`: seconds to
        connect, and for each reply."""
        self._settings = settings
        self._timeout = timeout
        self._max_idle = max_idle
        self._link: _Link | None = None
        self._opening = asyncio.Lock()

    async def call(self, *args: str | int) -> Any:
        """One command's reply. Raises redis-py's `ConnectionError` / `TimeoutError` when the
        connection fails and `ResponseError` for an error reply."""
        link = self._link
        if link is None or link.closed or self._stale(link):
            link = await self._open()
        return await link.send(args)

    def _stale(self, link: _Link) -> bool:
        return asyncio.get_running_loop().time() - link.last_used > self._max_idle

    async def _open(self) -> _Link:
        async with self._opening:  # the reads that find no connection share the next one
            link = self._link
            if link is not None and not link.closed and not self._stale(link):
                return link
            if link is not None:
                link.fail(RedisConnectionError("replaced"))
            self._link = None
            link = await self._connect()
            self._link = link
            return link

    async def _connect(self) -> _Link:
        s = self._settings
        ssl = s.ssl_context.get() if isinstance(s, SSLConnection) else None
        loop = asyncio.get_running_loop()
        link: _Link | None = None
        try:
            async with asyncio.timeout(self._timeout):
                _, link = await loop.create_connection(
                    lambda: _Link(self._timeout), s.host, s.port, ssl=ssl
                )
                if s.password:  # the same handshake redis-py makes for these settings
                    user = (s.username,) if s.username else ()
                    await link.send(("AUTH", *user, s.password))
                if s.db:
                    await link.send(("SELECT", s.db))
        except BaseException as exc:
            if link is not None:  # refused credentials or database: not left half open
                link.fail(RedisConnectionError("handshake failed"))
            if isinstance(exc, TimeoutError):
                raise RedisTimeoutError(f"no connection within {self._timeout} s") from None
            if isinstance(exc, (OSError, ResponseError)):  # as redis-py's AuthenticationError
                raise RedisConnectionError(type(exc).__name__) from None
            raise
        return link

    async def close(self) -> None:
        """Closes the connection; pending reads fail with `ConnectionError`."""
        link, self._link = self._link, None
        if link is not None:
            link.fail(RedisConnectionError("closed"))
