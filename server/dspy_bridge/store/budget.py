"""A per-session byte budget kept in this process, around a store one server owns.

`BudgetedStore` wraps a single-server `SessionStore` (memory, sqlite) and counts, per session,
the bytes it keeps (the measure is `sizes`'s, shared with every store):

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

A shared store keeps the count itself, next to the data (`SessionStore.keep_budget`): a count
in one replica's memory would let a session hold its budget once per replica.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import weakref
from collections import deque
from collections.abc import Awaitable, Collection, Sequence
from typing import TypeVar

from dspy_bridge.model import (
    HistoryEntry,
    Job,
    JobStatus,
    JobUpdate,
    LMSpec,
    ModuleRecord,
    Session,
    Variable,
    VariableWrite,
)
from dspy_bridge.store.base import SessionStore
from dspy_bridge.store.sizes import (
    SessionUsage,
    budget_exceeded,
    entry_size,
    job_size,
    measure,
    module_size,
    session_size,
    variable_size,
)
from dspy_bridge.to_the_end import to_the_end

__all__ = ["BudgetedStore", "with_session_budget"]

#: Freed bytes past which a session delete asks the allocator to return memory to the OS.
_TRIM_AFTER_BYTES = 8 << 20

T = TypeVar("T")


class BudgetedStore(SessionStore):
    """`inner` with a per-session byte budget (see module docstring); 0 = no budget."""

    def __init__(self, inner: SessionStore, *, max_bytes: int, history_limit: int) -> None:
        self._inner = inner
        self.backend = inner.backend
        self.shared = inner.shared
        self._max = max_bytes
        self._keep = history_limit or None
        self._usage: dict[str, SessionUsage] = {}
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self.commits_after_cancel = inner.commits_after_cancel

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
        if not self.commits_after_cancel:  # no cancel can fall between write and count
            return await step
        return await to_the_end(step)

    def _lock(self, session_id: str) -> asyncio.Lock:
        lock = self._locks.get(session_id)
        if lock is None:
            lock = self._locks[session_id] = asyncio.Lock()
        return lock

    async def _counted(self, session_id: str) -> SessionUsage:
        usage = self._usage.get(session_id)
        if usage is None:
            usage = await measure(self._inner, session_id, self._keep)
            self._usage[session_id] = usage
        return usage

    def _admit(self, session_id: str, usage: SessionUsage, needed: int) -> None:
        if self._max <= 0 or needed <= 0:
            return
        used = usage.total()
        if used + needed > self._max:
            raise budget_exceeded(session_id, used, needed, self._max)

    def _add_entry(self, usage: SessionUsage, variable_id: str, size: int) -> None:
        sizes = usage.history.setdefault(variable_id, deque(maxlen=self._keep))
        dropped = sizes[0] if sizes.maxlen is not None and len(sizes) == sizes.maxlen else 0
        sizes.append(size)
        usage.history_bytes[variable_id] = usage.history_bytes.get(variable_id, 0) + size - dropped

    def _growth(self, usage: SessionUsage, variable_id: str, size: int) -> int:
        """Bytes a new history entry adds once the oldest kept one (if full) is dropped."""
        sizes = usage.history.get(variable_id)
        if sizes is not None and sizes.maxlen is not None and len(sizes) == sizes.maxlen:
            return size - sizes[0]
        return size

    # -- sessions ---------------------------------------------------------------------------

    async def create_session(
        self, session: Session, *, max_sessions: int, max_per_owner: int = 0
    ) -> Session:
        created = await self._inner.create_session(
            session, max_sessions=max_sessions, max_per_owner=max_per_owner
        )
        self._usage[created.session_id] = SessionUsage(base=session_size(created))
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
            record = variable_size(variable)
            entry = entry_size(variable.value, variable.source, "")
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
            sizes = [entry_size(w.value, w.source, w.reason) for w in writes]
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
            size = module_size(record)
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
            size = module_size(record)
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

    async def create_job(self, job: Job, *, owner: str = "", max_active_per_owner: int = 0) -> Job:
        return await self._to_the_end(self._create_job(job, owner, max_active_per_owner))

    async def _create_job(self, job: Job, owner: str, max_active_per_owner: int) -> Job:
        sid = job.session_id
        async with self._lock(sid):
            usage = await self._counted(sid)
            size = job_size(job)
            self._admit(sid, usage, size)
            created = await self._inner.create_job(
                job, owner=owner, max_active_per_owner=max_active_per_owner
            )
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


def with_session_budget(store: SessionStore, *, max_bytes: int, history_limit: int) -> SessionStore:
    """`store` with the per-session byte budget `max_bytes` (0 = none): kept by the store itself
    when it can (`SessionStore.keep_budget`: a shared store, next to its data), otherwise
    counted in this process by a `BudgetedStore` around it."""
    if store.keep_budget(max_bytes):
        return store
    return BudgetedStore(store, max_bytes=max_bytes, history_limit=history_limit)
