"""Fan-out of variable changes to watchers, without letting a slow watcher block writers.

Writers call `WatchHub.publish` after a change is committed, under the session's write lock,
so each watcher's queue is in commit (hence version) order. A queue that fills up is emptied
and the watcher flagged: its reader sends one resync with the current values instead of the
versions it missed, then carries on — never a silent gap, never a blocked writer.
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass

from dspy_bridge.model import Variable


class ChangeKind(enum.Enum):
    """Mirrors `dspy_bridge.v1.VariableChangeKind`."""

    INITIAL = 1
    REGISTERED = 2
    UPDATED = 3
    DELETED = 4


@dataclass(frozen=True)
class Change:
    """One committed change to one variable."""

    kind: ChangeKind
    variable: Variable
    reason: str = ""


@dataclass(frozen=True)
class Lagged:
    """The watcher fell behind; `skipped` changes were dropped from its queue."""

    skipped: int


@dataclass(frozen=True)
class Ended:
    """The session is gone (`deleted` or `expired`)."""

    reason: str


WatchItem = Change | Lagged | Ended


class Watcher:
    """One subscriber's bounded queue. `ids` None means every variable of the session."""

    def __init__(self, session_id: str, ids: frozenset[str] | None, capacity: int) -> None:
        self.session_id = session_id
        self.ids = ids
        self._capacity = capacity
        self._queue: deque[Change] = deque()
        self._skipped = 0
        self._ended: str | None = None
        self._ready = asyncio.Event()

    def wants(self, variable: Variable) -> bool:
        return self.ids is None or variable.id in self.ids

    def offer(self, change: Change) -> None:
        """Never blocks: a full queue is dropped and replaced by a pending resync."""
        if len(self._queue) >= self._capacity:
            self._skipped += len(self._queue)
            self._queue.clear()
        if self._skipped:
            self._skipped += 1  # changes after an overflow are covered by the resync too
        else:
            self._queue.append(change)
        self._ready.set()

    def end(self, reason: str) -> None:
        self._ended = reason
        self._ready.set()

    async def get(self) -> WatchItem:
        """The next item: a pending resync first, then queued changes, then the end."""
        while True:
            if self._skipped:
                skipped, self._skipped = self._skipped, 0
                return Lagged(skipped)
            if self._queue:
                return self._queue.popleft()
            if self._ended is not None:
                return Ended(self._ended)
            self._ready.clear()
            await self._ready.wait()


SHUTDOWN = "shutdown"


class WatchHub:
    """Registry of watchers per session."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._by_session: dict[str, set[Watcher]] = {}
        self._closed = False

    def subscribe(self, session_id: str, ids: Iterable[str] | None) -> Watcher:
        watcher = Watcher(session_id, None if ids is None else frozenset(ids), self._capacity)
        if self._closed:
            watcher.end(SHUTDOWN)
        else:
            self._by_session.setdefault(session_id, set()).add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        watchers = self._by_session.get(watcher.session_id)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._by_session[watcher.session_id]

    def publish(self, session_id: str, change: Change) -> None:
        for watcher in self._by_session.get(session_id, ()):
            if watcher.wants(change.variable):
                watcher.offer(change)

    def end_session(self, session_id: str, reason: str) -> None:
        for watcher in self._by_session.pop(session_id, set()):
            watcher.end(reason)

    def shutdown(self) -> None:
        """Ends every stream (server stopping): watchers must not hold the drain open."""
        self._closed = True
        for session_id in list(self._by_session):
            self.end_session(session_id, SHUTDOWN)

    def watcher_count(self) -> int:
        return sum(len(w) for w in self._by_session.values())
