"""A per-session byte budget around any store: what one session may keep, history included.

`BudgetedStore` wraps a `SessionStore` and counts, per session, the bytes it keeps:

- every variable's name, description, metadata and constraints, and every *kept* history entry
  (value, source, reason) — the store keeps the last `history_limit` versions, and so does the
  count, so a variable written a thousand times costs its kept versions, not one value;
- every module version's spec and DSPy state (serialized JSON);
- every job record's config and metric, plus a fixed overhead;
- the session's own metadata.

A write that would take the session past `max_bytes` fails RESOURCE_EXHAUSTED
`SESSION_BUDGET_EXCEEDED` (with `limit`, `used` and `needed` in the metadata) and changes
nothing. The count starts from the session's stored contents the first time a session from an
earlier run is written to (one read of its variables, history, modules and jobs), and is
dropped with the session. A write and its count are one step that runs to its end even when the
caller is cancelled (`_to_the_end`): a store whose write is under way commits it anyway (SQLite
finishes its transaction on its thread), and a commit the count missed would let a host that
cancels its writes keep far more than the budget. Deleting a large session also asks the C
allocator to hand its freed memory back to the OS (glibc's `malloc_trim`), so a deleted
session's bytes do not stay resident.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import json
import weakref
from collections import deque
from collections.abc import Awaitable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dspy_bridge.errors import BridgeError, Reason, resource_exhausted
from dspy_bridge.model import (
    HistoryEntry,
    Job,
    JobStatus,
    JobUpdate,
    LMSpec,
    ModuleRecord,
    PyValue,
    Session,
    Variable,
    VariableWrite,
)
from dspy_bridge.model.validation import value_size
from dspy_bridge.store.base import SessionStore

__all__ = ["BudgetedStore"]

#: Bytes counted for a record's fixed fields (ids, times, version numbers) on top of its texts.
RECORD_OVERHEAD = 256
#: Bytes counted for a job record beyond its config and metric (progress, times, its result's
#: summary); a job's result is the server's output and is not refused.
JOB_OVERHEAD = 1_024
#: Freed bytes past which a session delete asks the allocator to return memory to the OS.
_TRIM_AFTER_BYTES = 8 << 20

T = TypeVar("T")


def _outcome_read(task: asyncio.Future[Any]) -> None:
    """Marks a step's outcome as read: a cancelled caller never reads it."""
    if not task.cancelled():
        task.exception()


def _json_size(data: Any) -> int:
    if not data:
        return 0
    return len(json.dumps(data, separators=(",", ":"), default=str).encode("utf-8", "replace"))


def _texts_size(*texts: str) -> int:
    return sum(len(t.encode("utf-8", "replace")) for t in texts)


def _entry_size(value: PyValue, source: str, reason: str) -> int:
    return value_size(value) + _texts_size(source, reason) + 32


def _variable_size(v: Variable) -> int:
    meta = sum(_texts_size(k, x) for k, x in v.metadata.items())
    return (
        RECORD_OVERHEAD
        + _texts_size(v.name, v.description)
        + meta
        + _json_size(v.constraints.to_dict())
    )


def _module_size(record: ModuleRecord) -> int:
    return RECORD_OVERHEAD + _json_size(record.spec) + _json_size(record.state)


def _job_size(job: Job) -> int:
    return JOB_OVERHEAD + _json_size(job.config) + _json_size(job.metric)


@dataclass
class _Usage:
    """What one session keeps, in bytes, kept per item so deletes and trims give bytes back."""

    base: int = 0  # the session record and its metadata
    variables: dict[str, int] = field(default_factory=dict)  # id -> record bytes
    history: dict[str, deque[int]] = field(default_factory=dict)  # id -> kept entry bytes
    history_bytes: dict[str, int] = field(default_factory=dict)
    modules: dict[str, int] = field(default_factory=dict)  # module_id -> all its versions
    jobs: int = 0

    def total(self) -> int:
        return (
            self.base
            + sum(self.variables.values())
            + sum(self.history_bytes.values())
            + sum(self.modules.values())
            + self.jobs
        )


class BudgetedStore(SessionStore):
    """`inner` with a per-session byte budget (see module docstring); 0 = no budget."""

    def __init__(self, inner: SessionStore, *, max_bytes: int, history_limit: int) -> None:
        self._inner = inner
        self.backend = inner.backend
        self.shared = inner.shared
        self._max = max_bytes
        self._keep = history_limit or None
        self._usage: dict[str, _Usage] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        # The memory store's methods never yield the loop, so no cancel can fall between its
        # write and the count: its writes skip the extra task.
        self._writes_yield = inner.backend != "memory"

    @property
    def inner(self) -> SessionStore:
        return self._inner

    def used_bytes(self, session_id: str) -> int | None:
        """The bytes counted for a session, or None when it has not been counted yet."""
        usage = self._usage.get(session_id)
        return None if usage is None else usage.total()

    # -- accounting -------------------------------------------------------------------------

    async def _to_the_end(self, step: Awaitable[T]) -> T:
        """`step` (a write and its count) run to its end even if the caller is cancelled."""
        if not self._writes_yield:
            return await step
        task = asyncio.ensure_future(step)
        task.add_done_callback(_outcome_read)
        return await asyncio.shield(task)

    def _lock(self, session_id: str) -> contextlib.AbstractAsyncContextManager[object]:
        # A shared store: other replicas write too, so this count is this replica's view and a
        # lock here would only serialize this replica's writes (and their disk syncs) for nothing.
        if self.shared:
            return contextlib.nullcontext()
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    async def _counted(self, session_id: str) -> _Usage:
        usage = self._usage.get(session_id)
        if usage is None:
            usage = await self._count(session_id)
            self._usage[session_id] = usage
        return usage

    async def _count(self, session_id: str) -> _Usage:
        """The usage of a session stored by an earlier run (or another server)."""
        session = await self._inner.get_session(session_id)
        usage = _Usage(base=_session_size(session))
        for variable in await self._inner.list_variables(session_id):
            usage.variables[variable.id] = _variable_size(variable)
            entries = await self._inner.variable_history(session_id, variable.id, limit=0)
            sizes = deque(
                (_entry_size(e.value, e.source, e.reason) for e in reversed(entries)),
                maxlen=self._keep,
            )
            usage.history[variable.id] = sizes
            usage.history_bytes[variable.id] = sum(sizes)
        for module in await self._inner.list_modules(session_id):
            total = 0
            for version in range(1, module.version + 1):
                try:
                    total += _module_size(
                        await self._inner.get_module(session_id, module.module_id, version)
                    )
                except BridgeError:
                    continue
            usage.modules[module.module_id] = total
        usage.jobs = sum(_job_size(j) for j in await self._inner.list_jobs(session_id))
        return usage

    def _admit(self, session_id: str, usage: _Usage, needed: int) -> None:
        if self._max <= 0 or needed <= 0:
            return
        used = usage.total()
        if used + needed > self._max:
            raise resource_exhausted(
                Reason.SESSION_BUDGET_EXCEEDED,
                f"session {session_id!r} keeps {used:,} bytes; this write needs {needed:,} more "
                f"and the per-session budget is {self._max:,} bytes (--max-session-bytes). "
                "Delete variables, modules or the session, or write smaller values",
                limit=str(self._max),
                used=str(used),
                needed=str(needed),
            )

    def _add_entry(self, usage: _Usage, variable_id: str, size: int) -> None:
        sizes = usage.history.setdefault(variable_id, deque(maxlen=self._keep))
        dropped = sizes[0] if sizes.maxlen is not None and len(sizes) == sizes.maxlen else 0
        sizes.append(size)
        usage.history_bytes[variable_id] = usage.history_bytes.get(variable_id, 0) + size - dropped

    def _growth(self, usage: _Usage, variable_id: str, size: int) -> int:
        """Bytes a new history entry adds once the oldest kept one (if full) is dropped."""
        sizes = usage.history.get(variable_id)
        if sizes is not None and sizes.maxlen is not None and len(sizes) == sizes.maxlen:
            return size - sizes[0]
        return size

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(self, session: Session, *, max_sessions: int) -> Session:
        created = await self._inner.create_session(session, max_sessions=max_sessions)
        self._usage[created.session_id] = _Usage(base=_session_size(created))
        return created

    async def get_session(self, session_id: str) -> Session:
        return await self._inner.get_session(session_id)

    async def list_sessions(
        self, *, offset: int, limit: int, visible_to: str | None = None
    ) -> list[Session]:
        return await self._inner.list_sessions(offset=offset, limit=limit, visible_to=visible_to)

    async def count_sessions(self) -> int:
        return await self._inner.count_sessions()

    async def delete_session(self, session_id: str, reason: str = "deleted") -> None:
        await self._to_the_end(self._delete_session(session_id, reason))

    async def _delete_session(self, session_id: str, reason: str) -> None:
        await self._inner.delete_session(session_id, reason)
        usage = self._usage.pop(session_id, None)
        if usage is not None and usage.total() >= _TRIM_AFTER_BYTES:
            _return_freed_memory()

    async def set_session_expiry(self, session_id: str, expire_time: float | None) -> Session:
        return await self._inner.set_session_expiry(session_id, expire_time)

    async def set_session_lm(self, session_id: str, lm: LMSpec | None) -> Session:
        return await self._inner.set_session_lm(session_id, lm)

    async def expired_sessions(self, now: float) -> list[str]:
        return await self._inner.expired_sessions(now)

    # -- variables --------------------------------------------------------------------------

    async def create_variable(self, variable: Variable, *, max_variables: int) -> Variable:
        return await self._to_the_end(self._create_variable(variable, max_variables))

    async def _create_variable(self, variable: Variable, max_variables: int) -> Variable:
        sid = variable.session_id
        async with self._lock(sid):
            usage = await self._counted(sid)
            record = _variable_size(variable)
            entry = _entry_size(variable.value, variable.source, "")
            self._admit(sid, usage, record + entry)
            created = await self._inner.create_variable(variable, max_variables=max_variables)
            usage.variables[created.id] = record
            usage.history.pop(created.id, None)
            usage.history_bytes.pop(created.id, None)
            self._add_entry(usage, created.id, entry)
        return created

    async def get_variable(self, session_id: str, name_or_id: str) -> Variable:
        return await self._inner.get_variable(session_id, name_or_id)

    async def list_variables(self, session_id: str) -> list[Variable]:
        return await self._inner.list_variables(session_id)

    async def delete_variable(self, session_id: str, variable_id: str) -> Variable:
        return await self._to_the_end(self._delete_variable(session_id, variable_id))

    async def _delete_variable(self, session_id: str, variable_id: str) -> Variable:
        async with self._lock(session_id):
            gone = await self._inner.delete_variable(session_id, variable_id)
            usage = self._usage.get(session_id)
            if usage is not None:
                usage.variables.pop(gone.id, None)
                usage.history.pop(gone.id, None)
                usage.history_bytes.pop(gone.id, None)
        return gone

    async def write_variables(
        self, session_id: str, writes: Sequence[VariableWrite], *, now: float
    ) -> list[Variable]:
        return await self._to_the_end(self._write_variables(session_id, writes, now))

    async def _write_variables(
        self, session_id: str, writes: Sequence[VariableWrite], now: float
    ) -> list[Variable]:
        async with self._lock(session_id):
            usage = await self._counted(session_id)
            sizes = [_entry_size(w.value, w.source, w.reason) for w in writes]
            needed = sum(
                self._growth(usage, w.variable_id, size)
                for w, size in zip(writes, sizes, strict=True)
            )
            self._admit(session_id, usage, needed)
            updated = await self._inner.write_variables(session_id, writes, now=now)
            for write, size in zip(writes, sizes, strict=True):
                self._add_entry(usage, write.variable_id, size)
        return updated

    async def variable_history(
        self, session_id: str, variable_id: str, *, limit: int
    ) -> list[HistoryEntry]:
        return await self._inner.variable_history(session_id, variable_id, limit=limit)

    # -- modules ----------------------------------------------------------------------------

    async def create_module(self, record: ModuleRecord) -> ModuleRecord:
        return await self._to_the_end(self._create_module(record))

    async def _create_module(self, record: ModuleRecord) -> ModuleRecord:
        sid = record.session_id
        async with self._lock(sid):
            usage = await self._counted(sid)
            size = _module_size(record)
            self._admit(sid, usage, size)
            created = await self._inner.create_module(record)
            usage.modules[created.module_id] = size
        return created

    async def get_module(self, session_id: str, module_id: str, version: int = 0) -> ModuleRecord:
        return await self._inner.get_module(session_id, module_id, version)

    async def list_modules(self, session_id: str) -> list[ModuleRecord]:
        return await self._inner.list_modules(session_id)

    async def execution_view(
        self, session_id: str, module_id: str, version: int = 0
    ) -> tuple[Session, ModuleRecord, list[Variable]]:
        return await self._inner.execution_view(session_id, module_id, version)

    async def put_module_version(
        self, record: ModuleRecord, *, expected_version: int
    ) -> ModuleRecord:
        return await self._to_the_end(self._put_module_version(record, expected_version))

    async def _put_module_version(
        self, record: ModuleRecord, expected_version: int
    ) -> ModuleRecord:
        sid = record.session_id
        async with self._lock(sid):
            usage = await self._counted(sid)
            size = _module_size(record)
            self._admit(sid, usage, size)
            stored = await self._inner.put_module_version(record, expected_version=expected_version)
            usage.modules[stored.module_id] = usage.modules.get(stored.module_id, 0) + size
        return stored

    async def delete_module(self, session_id: str, module_id: str) -> None:
        await self._to_the_end(self._delete_module(session_id, module_id))

    async def _delete_module(self, session_id: str, module_id: str) -> None:
        async with self._lock(session_id):
            await self._inner.delete_module(session_id, module_id)
            usage = self._usage.get(session_id)
            if usage is not None:
                usage.modules.pop(module_id, None)

    # -- jobs -------------------------------------------------------------------------------

    async def create_job(self, job: Job) -> Job:
        return await self._to_the_end(self._create_job(job))

    async def _create_job(self, job: Job) -> Job:
        sid = job.session_id
        async with self._lock(sid):
            usage = await self._counted(sid)
            size = _job_size(job)
            self._admit(sid, usage, size)
            created = await self._inner.create_job(job)
            usage.jobs += size
        return created

    async def get_job(self, session_id: str, job_id: str) -> Job:
        return await self._inner.get_job(session_id, job_id)

    async def update_job(
        self,
        session_id: str,
        job_id: str,
        update: JobUpdate,
        *,
        if_status: Collection[JobStatus] | None = None,
    ) -> Job:
        return await self._inner.update_job(session_id, job_id, update, if_status=if_status)

    async def list_jobs(
        self, session_id: str, *, module_id: str = "", offset: int = 0, limit: int = 0
    ) -> list[Job]:
        return await self._inner.list_jobs(
            session_id, module_id=module_id, offset=offset, limit=limit
        )

    async def mark_running_jobs_interrupted(self, now: float) -> list[Job]:
        return await self._inner.mark_running_jobs_interrupted(now)

    async def renew_job_leases(self, jobs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        return await self._inner.renew_job_leases(jobs)

    async def interrupt_orphaned_jobs(self, now: float) -> list[Job]:
        return await self._inner.interrupt_orphaned_jobs(now)

    # -- lifecycle --------------------------------------------------------------------------

    async def close(self) -> None:
        await self._inner.close()


def _session_size(session: Session) -> int:
    return RECORD_OVERHEAD + sum(_texts_size(k, v) for k, v in session.metadata.items())


def _return_freed_memory() -> None:
    """glibc keeps freed heap pages mapped; `malloc_trim(0)` gives them back (no-op elsewhere)."""
    name = ctypes.util.find_library("c")
    if not name:
        return
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):
        return
    trim(0)
