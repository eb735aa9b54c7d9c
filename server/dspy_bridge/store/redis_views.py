"""Execution views a Redis replica keeps between Executes, checked against Redis on every use.

An Execute reads the session, one module version and the session's variables. Parsing all of
that from Redis on every call costs a replica as much CPU as the execution's own bookkeeping, so
the replica keeps the parsed view with its *stamp* — the session's `epoch` (new at each create),
`seq` (bumped by every variable change) and `gen` (bumped by every module or LM change), read in
the same atomic script as the view. The next Execute sends the stamp in its one round trip; the
script answers `same` (and the current expiry) when nothing the view holds changed, and the
whole view otherwise. So a change made through any replica, a deleted or re-created session,
is seen by the very next Execute on every replica: nothing here can be stale, only unused.

Executes of the same module that arrive while a read of it is on its way share the next read
(`shared_reads`): one round trip for all of them instead of one each, and each of them still
gets a read sent after it arrived, so none can miss a change acknowledged before it.

Callers get copies (`record_copies`), as from the memory store, so nothing they do to a record
changes the kept view. The views are bounded (least recently used dropped first) and hold only
what an Execute of that session already read after its owner check.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from dspy_bridge.model import ModuleRecord, Session, Variable
from dspy_bridge.store.record_copies import copy_module, copy_session, copy_variable
from dspy_bridge.store.shared_reads import SharedReads

#: Views one replica keeps (one per session, module and requested version).
MAX_VIEWS = 1024

#: (session id, module id, requested version: 0 for the current one).
ViewKey = tuple[str, str, int]
#: What a read gives: the view and the session's expiry as read then.
ViewRead = tuple["ExecutionView", float | None]


@dataclass(frozen=True)
class ExecutionView:
    """What one Execute read, with the session's stamp (`epoch`, `seq`, `gen`) at that read."""

    stamp: tuple[str, str, str]
    session: Session
    record: ModuleRecord
    variables: list[Variable]

    def copy(self, *, expire_time: float | None) -> tuple[Session, ModuleRecord, list[Variable]]:
        """Caller-owned copies, with the session's expiry as read now."""
        return (
            copy_session(self.session, expire_time=expire_time),
            copy_module(self.record),
            [copy_variable(v) for v in self.variables],
        )


class ExecutionViews:
    """The views, least recently used first; at most `limit`."""

    def __init__(self, limit: int = MAX_VIEWS) -> None:
        self._limit = limit
        self._views: OrderedDict[ViewKey, ExecutionView] = OrderedDict()
        self._reads: SharedReads[ViewKey, ViewRead] = SharedReads()

    async def read(
        self, key: ViewKey, reader: Callable[[ViewKey], Awaitable[ViewRead]]
    ) -> ViewRead:
        """`reader(key)`, shared with the other Executes of the same module (`SharedReads`)."""
        return await self._reads.read(key, reader)

    def get(self, key: ViewKey) -> ExecutionView | None:
        view = self._views.get(key)
        if view is not None:
            self._views.move_to_end(key)
        return view

    def put(self, key: ViewKey, view: ExecutionView) -> None:
        self._views[key] = view
        self._views.move_to_end(key)
        while len(self._views) > self._limit:
            self._views.popitem(last=False)

    def drop(self, key: ViewKey) -> None:
        self._views.pop(key, None)

    def drop_session(self, session_id: str) -> None:
        """Frees the views of a session deleted through this replica (they could not be used
        again anyway: a new incarnation has a new epoch)."""
        for key in [k for k in self._views if k[0] == session_id]:
            del self._views[key]

    def __len__(self) -> int:
        return len(self._views)
