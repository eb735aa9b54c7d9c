"""Typed variables: registration, validated writes with optimistic concurrency, history,
rollback and watch streams.

Writes to one session are serialized by a per-session lock held across the store commit and
the publish to watchers, so watchers see changes in version order.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import secrets
import weakref
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass
from typing import TypeVar

import grpc

from dspy_bridge.config import Settings
from dspy_bridge.errors import BridgeError, Reason, failed_precondition, invalid_argument, not_found
from dspy_bridge.model import (
    Constraints,
    HistoryEntry,
    PyValue,
    Variable,
    VariableType,
    VariableWrite,
)
from dspy_bridge.model.validation import check_value_size, validate_name
from dspy_bridge.observability import WATCHERS
from dspy_bridge.services.clock import Clock, system_clock
from dspy_bridge.services.offload import coerce_value_off_loop, validate_constraints_off_loop
from dspy_bridge.services.watch import (
    SHUTDOWN,
    Change,
    ChangeKind,
    Ended,
    Lagged,
    Position,
    Watcher,
    WatchHub,
)
from dspy_bridge.store.base import SessionStore
from dspy_bridge.to_the_end import to_the_end

T = TypeVar("T")

DEFAULT_SOURCE = "host"
#: Variables whose id, type and constraints one replica keeps for writes (shared stores).
_MAX_SHAPES = 10_000


@dataclass(frozen=True)
class WriteRequest:
    """One requested write, before validation."""

    name: str
    value: PyValue
    expected_version: int | None = None


@dataclass(frozen=True)
class Resync:
    """Current state of every watched variable, sent after a watcher fell behind (or resumed
    from a position whose changes are no longer kept); `position` covers it."""

    variables: list[Variable]
    skipped: int
    position: Position | None = None


@dataclass(frozen=True)
class SessionGone:
    reason: str


WatchEvent = Change | Resync | SessionGone


class WatchStream(AsyncIterator[WatchEvent]):
    """A watch's events. `aclose()` ends the subscription even if no event was ever read: a
    call cancelled between subscribing and its first event (while sending its headers) never
    starts the generator, so the generator's own `finally` would not run and the watcher would
    stay in the hub, offered every later change, until the session ends."""

    def __init__(
        self, events: AsyncGenerator[WatchEvent, None], watcher: Watcher, hub: WatchHub
    ) -> None:
        self._events = events
        self._watcher = watcher
        self._hub = hub

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> WatchEvent:
        return await anext(self._events)

    async def aclose(self) -> None:
        await self._events.aclose()
        self._hub.unsubscribe(self._watcher)  # idempotent: the generator may have done it


class VariableService:
    def __init__(
        self,
        store: SessionStore,
        hub: WatchHub,
        settings: Settings,
        clock: Clock = system_clock,
    ) -> None:
        self._store = store
        self._hub = hub
        self._settings = settings
        self._clock = clock
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        #: (session id, name or id) -> the variable as last read (shared stores; see `_shape`).
        self._shapes: OrderedDict[tuple[str, str], Variable] = OrderedDict()

    def _lock(self, session_id: str) -> contextlib.AbstractAsyncContextManager[object]:
        """Serializes a session's writes with their publish, so watchers get them in order. A
        shared store orders changes itself (its write and its stream entry are one step), so
        its writes run concurrently: Redis then groups their disk syncs."""
        if self._store.shared:
            return contextlib.nullcontext()
        lock = self._locks.get(session_id)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[session_id] = lock
        return lock

    # -- registration and lookup ------------------------------------------------------------

    async def register(
        self,
        session_id: str,
        name: str,
        type_: VariableType,
        initial_value: PyValue,
        constraints: Constraints,
        description: str = "",
        metadata: dict[str, str] | None = None,
    ) -> Variable:
        validate_name(name)
        await validate_constraints_off_loop(type_, constraints)
        value = await coerce_value_off_loop(type_, constraints, initial_value, "initial_value")
        check_value_size(value, self._settings.max_value_bytes, "initial_value")
        now = self._clock()
        variable = Variable(
            id=f"var_{secrets.token_hex(8)}",
            session_id=session_id,
            name=name,
            type=type_,
            value=value,
            constraints=constraints,
            description=description,
            metadata=dict(metadata or {}),
            version=1,
            create_time=now,
            update_time=now,
            source=DEFAULT_SOURCE,
        )
        return await self._to_the_end(self._create(variable))

    async def _create(self, variable: Variable) -> Variable:
        async with self._lock(variable.session_id):
            created = await self._store.create_variable(
                variable, max_variables=self._settings.max_variables_per_session
            )
            self._hub.publish(variable.session_id, Change(ChangeKind.REGISTERED, created))
        return created

    async def _to_the_end(self, step: Awaitable[T]) -> T:
        """A store write and the publish of its change, run to the end even when the caller is
        cancelled: a write that commits anyway but is never published is a gap no watcher can
        see (no resync covers it)."""
        if not self._store.commits_after_cancel:
            return await step
        return await to_the_end(step)

    async def get(self, session_id: str, name: str) -> Variable:
        return await self._store.get_variable(session_id, name)

    async def list_matching(self, session_id: str, pattern: str = "") -> list[Variable]:
        variables = await self._store.list_variables(session_id)
        if not pattern:
            return variables
        return [v for v in variables if fnmatch.fnmatchcase(v.name, pattern)]

    async def delete(self, session_id: str, name: str) -> None:
        variable = await self._store.get_variable(session_id, name)
        for module in await self._store.list_modules(session_id):
            bound = module.spec.get("variable_bindings", {})
            if variable.name in bound.values() or variable.id in bound.values():
                raise failed_precondition(
                    Reason.VARIABLE_IN_USE,
                    f"variable {variable.name!r} is bound by module {module.module_id!r}; "
                    "delete the module first",
                    variable=variable.name,
                    module_id=module.module_id,
                )
        await self._to_the_end(self._delete(session_id, variable.id))

    async def _delete(self, session_id: str, variable_id: str) -> None:
        async with self._lock(session_id):
            gone = await self._store.delete_variable(session_id, variable_id)
            self._hub.publish(session_id, Change(ChangeKind.DELETED, gone))

    # -- writes -----------------------------------------------------------------------------

    async def _validated(
        self, session_id: str, req: WriteRequest, source: str, reason: str, *, shape: bool = False
    ) -> VariableWrite:
        """The write checked against the variable's type and constraints. With `shape`, those
        may come from `_shapes` (see there)."""
        if shape and self._store.shared:
            variable = await self._shape(session_id, req.name)
        else:
            variable = await self._store.get_variable(session_id, req.name)
        value = await coerce_value_off_loop(variable.type, variable.constraints, req.value, "value")
        check_value_size(value, self._settings.max_value_bytes, "value")
        return VariableWrite(
            variable.id, value, source or DEFAULT_SOURCE, reason, req.expected_version
        )

    async def _shape(self, session_id: str, name: str) -> Variable:
        """A variable's id, type and constraints, from this replica's cache when it has them.

        On a shared store each UpdateVariable would otherwise read the variable from Redis
        before writing it. What is cached never changes for a variable id (ids are random, never
        reused); a variable deleted and registered again under the same name has a new id, so a
        write through a stale entry fails NOT_FOUND in the store, changes nothing, and `update`
        drops the entry and retries once from a fresh read."""
        key = (session_id, name)
        hit = self._shapes.get(key)
        if hit is not None:
            self._shapes.move_to_end(key)
            return hit
        variable = await self._store.get_variable(session_id, name)
        self._shapes[key] = variable
        if len(self._shapes) > _MAX_SHAPES:
            self._shapes.popitem(last=False)
        return variable

    async def _commit(
        self, session_id: str, writes: Sequence[VariableWrite], reason: str
    ) -> list[Variable]:
        return await self._to_the_end(self._write(session_id, writes, reason))

    async def _write(
        self, session_id: str, writes: Sequence[VariableWrite], reason: str
    ) -> list[Variable]:
        async with self._lock(session_id):
            updated = await self._store.write_variables(session_id, writes, now=self._clock())
            for variable in updated:
                self._hub.publish(session_id, Change(ChangeKind.UPDATED, variable, reason))
        return updated

    async def update(
        self,
        session_id: str,
        req: WriteRequest,
        source: str = "",
        reason: str = "",
    ) -> Variable:
        write = await self._validated(session_id, req, source, reason, shape=True)
        try:
            (variable,) = await self._commit(session_id, [write], reason)
        except BridgeError as err:
            if not (self._store.shared and err.reason == Reason.VARIABLE_NOT_FOUND):
                raise
            self._shapes.pop((session_id, req.name), None)  # stale: read afresh, once
            write = await self._validated(session_id, req, source, reason)
            (variable,) = await self._commit(session_id, [write], reason)
        return variable

    async def batch_update(
        self,
        session_id: str,
        requests: Sequence[WriteRequest],
        *,
        atomic: bool,
        source: str = "",
        reason: str = "",
    ) -> list[Variable | BridgeError]:
        """Atomic: all written or the first error raised. Otherwise one outcome per write."""
        if not requests:
            raise invalid_argument(Reason.INVALID_REQUEST, "writes must not be empty", "writes")
        seen: set[str] = set()
        validated: list[VariableWrite | BridgeError] = []
        for i, req in enumerate(requests):
            try:
                write = await self._validated(session_id, req, source, reason)
                if write.variable_id in seen:
                    raise invalid_argument(
                        Reason.INVALID_REQUEST,
                        f"variable {req.name!r} appears more than once",
                        "name",
                    )
                seen.add(write.variable_id)
                validated.append(write)
            except BridgeError as err:
                if atomic or err.reason == Reason.SESSION_NOT_FOUND:
                    raise err.at(f"writes[{i}]") from None
                validated.append(err.at(f"writes[{i}]"))
        if atomic:
            writes = [w for w in validated if isinstance(w, VariableWrite)]
            return list(await self._commit(session_id, writes, reason))
        outcomes: list[Variable | BridgeError] = []
        for i, item in enumerate(validated):
            if isinstance(item, BridgeError):
                outcomes.append(item)
                continue
            try:
                (variable,) = await self._commit(session_id, [item], reason)
                outcomes.append(variable)
            except BridgeError as err:
                outcomes.append(err.at(f"writes[{i}]"))
        return outcomes

    # -- history ----------------------------------------------------------------------------

    async def history(self, session_id: str, name: str, limit: int) -> list[HistoryEntry]:
        if limit < 0:
            raise invalid_argument(Reason.INVALID_REQUEST, "limit must not be negative", "limit")
        variable = await self._store.get_variable(session_id, name)
        return await self._store.variable_history(session_id, variable.id, limit=limit)

    async def rollback(
        self,
        session_id: str,
        name: str,
        target_version: int,
        expected_version: int | None = None,
        source: str = "",
        reason: str = "",
    ) -> Variable:
        if target_version < 1:
            raise invalid_argument(
                Reason.INVALID_REQUEST, "target_version must be at least 1", "target_version"
            )
        variable = await self._store.get_variable(session_id, name)
        history = await self._store.variable_history(session_id, variable.id, limit=0)
        entry = next((h for h in history if h.version == target_version), None)
        if entry is None:
            raise not_found(
                Reason.VERSION_NOT_FOUND,
                f"variable {variable.name!r} has no version {target_version} in its history "
                f"(current version {variable.version}, {len(history)} kept)",
                variable=variable.name,
                target_version=str(target_version),
            )
        why = reason or f"rollback to version {target_version}"
        write = VariableWrite(
            variable.id, entry.value, source or DEFAULT_SOURCE, why, expected_version
        )
        (updated,) = await self._commit(session_id, [write], why)
        return updated

    # -- watch ------------------------------------------------------------------------------

    async def watch(
        self,
        session_id: str,
        names: Sequence[str],
        include_initial: bool,
        *,
        resume_token: str = "",
    ) -> WatchStream:
        """Validates the request, then returns the event stream (so errors surface before it);
        the caller must `aclose()` it. With `resume_token`, the stream continues right after
        the event that carried it."""
        resume = Position.parse(resume_token) if resume_token else None
        await self._store.get_session(session_id)
        wanted = [await self._store.get_variable(session_id, n) for n in names]
        ids = [v.id for v in wanted] if names else None
        watcher = await self._hub.subscribe(session_id, ids, resume)
        initial: list[Variable] = []
        try:
            if include_initial:
                # Read after subscribing: a change racing with this read is then either in the
                # snapshot or in the queue, and the version filter below drops the duplicate.
                initial = await self._current(session_id, watcher.ids)
        except BaseException:  # refused or cancelled: the subscription must not outlive it
            self._hub.unsubscribe(watcher)
            raise
        return WatchStream(self._stream(session_id, watcher, initial), watcher, self._hub)

    async def _current(self, session_id: str, ids: frozenset[str] | None) -> list[Variable]:
        variables = await self._store.list_variables(session_id)
        return [v for v in variables if ids is None or v.id in ids]

    async def _stream(
        self, session_id: str, watcher: Watcher, initial: list[Variable]
    ) -> AsyncGenerator[WatchEvent, None]:
        last_sent: dict[str, int] = {}
        WATCHERS.inc()
        try:
            for variable in initial:
                last_sent[variable.id] = variable.version
                yield Change(ChangeKind.INITIAL, variable, position=watcher.position)
            while True:
                item = await watcher.get()
                if isinstance(item, Ended):
                    if item.reason == SHUTDOWN:
                        raise BridgeError(
                            grpc.StatusCode.UNAVAILABLE,
                            Reason.DRAINING,
                            "the server is shutting down; reconnect (to any replica) and "
                            "watch again with the last resume_token to resume",
                        )
                    yield SessionGone(item.reason)
                    return
                if isinstance(item, Lagged):
                    try:
                        current = await self._current(session_id, watcher.ids)
                    except BridgeError:
                        continue  # session gone: the Ended item follows
                    last_sent = {v.id: v.version for v in current}
                    yield Resync(current, item.skipped, item.position or watcher.position)
                    continue
                variable = item.variable
                if item.kind is not ChangeKind.DELETED:
                    if variable.version <= last_sent.get(variable.id, 0):
                        continue  # already covered by the initial snapshot or a resync
                    last_sent[variable.id] = variable.version
                else:
                    last_sent.pop(variable.id, None)
                yield item
        finally:
            WATCHERS.dec()
            self._hub.unsubscribe(watcher)
