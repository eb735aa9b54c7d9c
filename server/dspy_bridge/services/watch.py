"""Fan-out of variable changes to watchers, without letting a slow watcher block writers.

Writers call `WatchHub.publish` after a change is committed, under the session's write lock,
so each watcher's queue is in commit (hence version) order. A queue that fills up is emptied
and the watcher flagged: its reader sends one resync with the current values instead of the
versions it missed, then carries on — never a silent gap, never a blocked writer.

Positions: the hub numbers each session's changes and keeps the last `KEPT_CHANGES`, so a
watcher that reconnects with the position (resume token) of the last event it got continues
right after it; when the changes in between are no longer kept (or the token is from another
server, an earlier run or an earlier session under the same id) it starts with a resync. A
token is `<epoch>.<seq>`: the epoch is random per session per hub. The shared store's feed
(`store_feed.RedisWatchHub`) gives the same guarantees across replicas.
"""

from __future__ import annotations

import asyncio
import enum
import re
import secrets
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, replace

from dspy_bridge.errors import Reason, invalid_argument
from dspy_bridge.model import Variable

#: Changes kept per session for resumed watches (at most the watch queue size).
KEPT_CHANGES = 256
#: Longest resume token a request may carry.
MAX_TOKEN_CHARS = 256
_TOKEN = re.compile(r"^([0-9a-f]{1,32})\.([0-9]{1,19})(?:\.([0-9]{1,20}-[0-9]{1,20}))?$")


class ChangeKind(enum.Enum):
    """Mirrors `dspy_bridge.v1.VariableChangeKind`."""

    INITIAL = 1
    REGISTERED = 2
    UPDATED = 3
    DELETED = 4


@dataclass(frozen=True)
class Position:
    """Where a watcher stands in a session's changes: after change number `seq` of the session
    incarnation `epoch` (and, in the shared store, after stream entry `entry`)."""

    epoch: str
    seq: int
    entry: str = ""

    @property
    def token(self) -> str:
        base = f"{self.epoch}.{self.seq}"
        return f"{base}.{self.entry}" if self.entry else base

    @classmethod
    def parse(cls, token: str) -> Position:
        """INVALID_ARGUMENT (field `resume_token`) unless `token` is one this server makes."""
        found = _TOKEN.match(token) if len(token) <= MAX_TOKEN_CHARS else None
        if found is None:
            raise invalid_argument(
                Reason.INVALID_REQUEST,
                "resume_token is not a token from a WatchVariables event",
                "resume_token",
            )
        return cls(found[1], int(found[2]), found[3] or "")


@dataclass(frozen=True)
class Change:
    """One committed change to one variable; `position` is the session's position after it."""

    kind: ChangeKind
    variable: Variable
    reason: str = ""
    position: Position | None = None


@dataclass(frozen=True)
class Lagged:
    """The watcher fell behind; `skipped` changes were dropped from its queue. A resync at
    `position` covers them."""

    skipped: int
    position: Position | None = None


@dataclass(frozen=True)
class Ended:
    """The session is gone (`deleted` or `expired`)."""

    reason: str


WatchItem = Change | Lagged | Ended


class Watcher:
    """One subscriber's bounded queue. `ids` None means every variable of the session.
    `position` is where the watcher stood when it subscribed (what INITIAL events carry)."""

    def __init__(
        self,
        session_id: str,
        ids: frozenset[str] | None,
        capacity: int,
        position: Position | None = None,
    ) -> None:
        self.session_id = session_id
        self.ids = ids
        self.position = position
        self._capacity = capacity
        self._queue: deque[Change] = deque()
        self._skipped = 0
        self._skipped_at: Position | None = None
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
            self._skipped_at = change.position
        else:
            self._queue.append(change)
        self._ready.set()

    def lag(self, skipped: int, position: Position | None) -> None:
        """Starts with a resync (a resumed watch whose changes are no longer kept)."""
        self._skipped += max(skipped, 1)
        self._skipped_at = position
        self._ready.set()

    def end(self, reason: str) -> None:
        self._ended = reason
        self._ready.set()

    async def get(self) -> WatchItem:
        """The next item: a pending resync first, then queued changes, then the end."""
        while True:
            if self._skipped:
                skipped, self._skipped = self._skipped, 0
                return Lagged(skipped, self._skipped_at)
            if self._queue:
                return self._queue.popleft()
            if self._ended is not None:
                return Ended(self._ended)
            self._ready.clear()
            await self._ready.wait()


SHUTDOWN = "shutdown"


@dataclass
class _Log:
    """A session's change numbering and its last changes (for resumed watches)."""

    epoch: str
    seq: int
    kept: deque[Change]


class WatchHub:
    """Registry of watchers per session, and each session's recent changes (see module doc)."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._by_session: dict[str, set[Watcher]] = {}
        self._logs: dict[str, _Log] = {}
        self._closed = False

    def _log(self, session_id: str) -> _Log:
        log = self._logs.get(session_id)
        if log is None:
            log = _Log(secrets.token_hex(8), 0, deque(maxlen=min(self._capacity, KEPT_CHANGES)))
            self._logs[session_id] = log
        return log

    async def subscribe(
        self, session_id: str, ids: Iterable[str] | None, resume: Position | None = None
    ) -> Watcher:
        """A watcher of the session from now on, or right after `resume` (see module doc)."""
        log = self._log(session_id)
        now = Position(log.epoch, log.seq)
        watcher = Watcher(session_id, None if ids is None else frozenset(ids), self._capacity, now)
        if self._closed:
            watcher.end(SHUTDOWN)
            return watcher
        if resume is not None:
            self._replay(log, watcher, resume)
        self._by_session.setdefault(session_id, set()).add(watcher)
        return watcher

    @staticmethod
    def _replay(log: _Log, watcher: Watcher, resume: Position) -> None:
        """Queues the kept changes after `resume`, or a resync when some are gone."""
        now = Position(log.epoch, log.seq)
        if resume.epoch != log.epoch or resume.seq > log.seq:
            watcher.lag(0, now)  # another server's, an earlier run's or session's token
            return
        oldest = log.kept[0].position.seq if log.kept and log.kept[0].position else log.seq + 1
        if resume.seq + 1 < oldest:
            watcher.lag(oldest - resume.seq - 1, now)
            return
        for change in log.kept:
            if (
                change.position
                and change.position.seq > resume.seq
                and watcher.wants(change.variable)
            ):
                watcher.offer(change)

    def unsubscribe(self, watcher: Watcher) -> None:
        watchers = self._by_session.get(watcher.session_id)
        if watchers is not None:
            watchers.discard(watcher)
            if not watchers:
                del self._by_session[watcher.session_id]

    def publish(self, session_id: str, change: Change) -> None:
        """Numbers a committed change, keeps it for resumed watches and offers it to watchers."""
        log = self._log(session_id)
        log.seq += 1
        change = replace(change, position=Position(log.epoch, log.seq))
        log.kept.append(change)
        for watcher in self._by_session.get(session_id, ()):
            if watcher.wants(change.variable):
                watcher.offer(change)

    def end_session(self, session_id: str, reason: str) -> None:
        self._logs.pop(session_id, None)
        for watcher in self._by_session.pop(session_id, set()):
            watcher.end(reason)

    def shutdown(self) -> None:
        """Ends every stream (server stopping): watchers must not hold the drain open."""
        self._closed = True
        for session_id in list(self._by_session):
            self.end_session(session_id, SHUTDOWN)

    def watcher_count(self) -> int:
        return sum(len(w) for w in self._by_session.values())
