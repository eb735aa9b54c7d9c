"""Watches across replicas: each watcher reads its session's change stream in Redis.

The Redis store's scripts append every committed change to the session's stream in the same
atomic step as the write (see `store.redis_scripts`), numbered by a per-session `seq`. A watcher
on any replica reads that stream (XREAD BLOCK) from its own position, so it sees every change
made through any replica, in commit order — hence version order per variable. A gap in `seq`
(the stream was trimmed past the watcher, which fell behind by more than the kept length) or a
resume token of another session incarnation turns into one resync, never a silent loss.

Redis failing while a watcher reads ends the stream with UNAVAILABLE `STORE_UNAVAILABLE`; the
host reconnects (to any replica) with its last resume token and misses nothing that is still
kept. `publish` is a no-op here: the write itself published the change.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from typing import Any

import grpc
from redis.exceptions import RedisError

from dspy_bridge.errors import BridgeError, session_not_found
from dspy_bridge.services.watch import (
    SHUTDOWN,
    Change,
    ChangeKind,
    Position,
    Watcher,
    WatchHub,
    WatchItem,
)
from dspy_bridge.store import redis_scripts as lua
from dspy_bridge.store.redis import RedisStore, unavailable_from, variable_from_fields

#: How long one blocking read waits before the watcher checks its session still exists
#: (below the client's socket timeout, so a healthy wait never looks like a failure).
_BLOCK_MS = 2000
_KINDS = {
    "registered": ChangeKind.REGISTERED,
    "updated": ChangeKind.UPDATED,
    "deleted": ChangeKind.DELETED,
}


class RedisWatcher(Watcher):
    """A watcher fed from the session's stream, from `start` on."""

    def __init__(
        self,
        store: RedisStore,
        session_id: str,
        ids: frozenset[str] | None,
        capacity: int,
        start: Position,
    ) -> None:
        super().__init__(session_id, ids, capacity, start)
        self._store = store
        self._key = store.events_key(session_id)
        self._epoch = start.epoch
        self._seq = start.seq
        self._entry = start.entry
        self._count = max(1, min(capacity, 512))
        self._stopped = asyncio.Event()

    def end(self, reason: str) -> None:
        super().end(reason)
        self._stopped.set()

    async def get(self) -> WatchItem:
        while True:
            if self._has_items():
                return await super().get()
            await self._fill()

    def _has_items(self) -> bool:
        return bool(self._skipped or self._queue or self._ended is not None)

    async def _fill(self) -> None:
        """Reads the next entries (or waits up to `_BLOCK_MS`), or returns when ended."""
        read = asyncio.ensure_future(self._read())
        stopped = asyncio.ensure_future(self._stopped.wait())
        try:
            await asyncio.wait({read, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (read, stopped):
                if not task.done():
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
        if not read.done() or read.cancelled():
            return  # ended meanwhile
        entries = read.result()  # raises UNAVAILABLE when Redis failed
        if not entries:
            await self._check_session()
        for entry_id, fields in entries:
            self._take(entry_id, fields)

    async def _read(self) -> list[tuple[str, dict[str, str]]]:
        try:
            reply: Any = await self._store.client.xread(
                {self._key: self._entry}, count=self._count, block=_BLOCK_MS
            )
        except (RedisError, OSError) as exc:
            raise unavailable_from(exc) from None
        if not reply:
            return []
        return list(reply[0][1])

    async def _check_session(self) -> None:
        """Ends the watch when the session is gone or was made anew (its end already read or
        expired with the old stream)."""
        try:
            epoch = await self._store.session_epoch(self.session_id)
        except BridgeError as exc:
            if exc.code != grpc.StatusCode.NOT_FOUND:
                raise
            epoch = ""
        if epoch != self._epoch:
            self.end("deleted")

    def _take(self, entry_id: str, fields: dict[str, str]) -> None:
        epoch, seq = fields.get("e", ""), int(fields.get("q", "0"))
        position = Position(epoch, seq, entry_id)
        self._entry = entry_id
        if epoch != self._epoch:
            self.end("deleted")  # the session was deleted and made anew under the same id
            return
        gap = seq - self._seq - 1
        self._seq = seq
        kind = fields.get("k", "")
        if kind == "ended":
            self.end(fields.get("r") or "deleted")
            return
        if gap > 0:  # trimmed before this watcher read them: a resync covers them and this one
            self.lag(gap + 1, position)
            return
        variable = variable_from_fields(
            fields["meta"], fields["value"], fields["version"], fields["ut"], fields["src"]
        )
        if self.wants(variable):
            self.offer(Change(_KINDS[kind], variable, fields.get("r", ""), position))


class RedisWatchHub(WatchHub):
    """`WatchHub` over the Redis store's per-session streams (see module docstring)."""

    def __init__(self, store: RedisStore, capacity: int) -> None:
        super().__init__(capacity)
        self._store = store

    async def subscribe(
        self, session_id: str, ids: Iterable[str] | None, resume: Position | None = None
    ) -> Watcher:
        reply = await self._store.run_script(lua.WATCH_POSITION, session_id)
        if reply[0] != "ok":
            raise session_not_found(session_id)
        now = Position(str(reply[1]), int(reply[2]), str(reply[3]))
        start = now
        lagged = False
        if resume is not None:
            if resume.epoch == now.epoch and resume.entry and resume.seq <= now.seq:
                start = resume
            else:
                lagged = True  # another incarnation's or server's token: resync
        wanted = None if ids is None else frozenset(ids)
        watcher = RedisWatcher(self._store, session_id, wanted, self._capacity, start)
        watcher.position = now if resume is None else start
        if lagged:
            watcher.lag(0, now)
        if self._closed:
            watcher.end(SHUTDOWN)
            return watcher
        self._by_session.setdefault(session_id, set()).add(watcher)
        return watcher

    def publish(self, session_id: str, change: Change) -> None:
        """Nothing to do: the store's write appended the change to the session's stream."""

    def end_session(self, session_id: str, reason: str) -> None:
        """Ends this replica's watchers at once (others read the end from the stream)."""
        for watcher in self._by_session.pop(session_id, set()):
            watcher.end(reason)
