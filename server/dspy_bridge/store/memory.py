"""The in-process session store (`memory://`): plain dicts, fastest, gone when the process exits.

Every method is synchronous code behind an `async def` with no `await` inside, so under asyncio
each call runs to completion before another starts: the event loop is the lock. Writes validate
everything first and mutate only afterwards, so a call that raises has changed nothing.

Callers get copies (shallow dataclass copies plus copies of mutable containers) and the store copies
what it is handed, so nobody outside can change stored state by mutating an object. Scalars,
strings and `Tensor`s are immutable and are shared rather than copied, which keeps the hot path
(`write_variables` of a scalar) free of deep copies.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, replace

from dspy_bridge.errors import (
    Reason,
    already_exists,
    module_not_found,
    not_found,
    resource_exhausted,
    session_not_found,
    variable_not_found,
    version_conflict,
)
from dspy_bridge.model import (
    ACTIVE_STATUSES,
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
from dspy_bridge.store.job_errors import job_exists, job_not_found, job_state_conflict
from dspy_bridge.store.quotas import session_quota_exceeded

# The copy helpers under the names this file has always used.
from dspy_bridge.store.record_copies import IMMUTABLE as _IMMUTABLE
from dspy_bridge.store.record_copies import copy_json as _copy_json
from dspy_bridge.store.record_copies import copy_lm as _copy_lm
from dspy_bridge.store.record_copies import copy_module as _copy_module
from dspy_bridge.store.record_copies import copy_value as _copy_value
from dspy_bridge.store.record_copies import copy_variable as _copy_variable
from dspy_bridge.store.record_copies import shallow as _shallow


def _copy_job(job: Job) -> Job:
    return Job.from_dict(_copy_json(job.to_dict()))


@dataclass
class _VariableSlot:
    """A variable and its kept history (oldest first; bounded by the store's history_limit)."""

    variable: Variable
    history: deque[HistoryEntry]


@dataclass
class _SessionSlot:
    """Everything one session owns; deleting the slot deletes it all."""

    session: Session
    by_id: dict[str, _VariableSlot] = field(default_factory=dict)
    by_name: dict[str, _VariableSlot] = field(default_factory=dict)
    # module_id -> every version, index = version - 1.
    modules: dict[str, list[ModuleRecord]] = field(default_factory=dict)
    # job_id -> job record.
    jobs: dict[str, Job] = field(default_factory=dict)


class MemoryStore(SessionStore):
    """Dict-backed `SessionStore`: O(1) lookups of sessions and of variables by name and by id."""

    backend = "memory"
    commits_after_cancel = False  # its methods never yield the loop

    def __init__(self, history_limit: int = 1000) -> None:
        """`history_limit`: history entries kept per variable, oldest dropped (0 = unlimited)."""
        if history_limit < 0:
            raise ValueError(f"history_limit must be >= 0, not {history_limit}")
        self._history_limit = history_limit or None
        self._sessions: dict[str, _SessionSlot] = {}

    # -- helpers --------------------------------------------------------------------------

    def _slot(self, session_id: str) -> _SessionSlot:
        slot = self._sessions.get(session_id)
        if slot is None:
            raise session_not_found(session_id)
        return slot

    @staticmethod
    def _variable_slot(slot: _SessionSlot, variable_id: str) -> _VariableSlot:
        found = slot.by_id.get(variable_id)
        if found is None:
            raise variable_not_found(slot.session.session_id, variable_id)
        return found

    @staticmethod
    def _versions(slot: _SessionSlot, module_id: str) -> list[ModuleRecord]:
        versions = slot.modules.get(module_id)
        if versions is None:
            raise module_not_found(slot.session.session_id, module_id)
        return versions

    @staticmethod
    def _session_view(slot: _SessionSlot) -> Session:
        """A caller-owned copy of the session with live counts."""
        session = slot.session
        return _shallow(
            session,
            metadata=dict(session.metadata),
            lm=_copy_lm(session.lm),
            variable_count=len(slot.by_id),
            module_count=len(slot.modules),
        )

    # -- sessions -------------------------------------------------------------------------

    async def create_session(
        self, session: Session, *, max_sessions: int, max_per_owner: int = 0
    ) -> Session:
        if session.session_id in self._sessions:
            raise already_exists(
                Reason.SESSION_ALREADY_EXISTS,
                f"session {session.session_id!r} already exists",
                session_id=session.session_id,
            )
        if max_sessions > 0 and len(self._sessions) >= max_sessions:
            raise resource_exhausted(
                Reason.SESSION_LIMIT,
                f"the server holds its maximum of {max_sessions} sessions",
                limit=str(max_sessions),
            )
        if session.owner and max_per_owner > 0:
            owned = sum(
                1
                for slot in self._sessions.values()
                if slot.session.owner == session.owner
                and not slot.session.expired(session.create_time)
            )
            if owned >= max_per_owner:
                raise session_quota_exceeded(owned, max_per_owner)
        stored = replace(
            session,
            metadata=dict(session.metadata),
            lm=_copy_lm(session.lm),
            variable_count=0,
            module_count=0,
        )
        slot = _SessionSlot(stored)
        self._sessions[session.session_id] = slot
        return self._session_view(slot)

    async def get_session(self, session_id: str) -> Session:
        return self._session_view(self._slot(session_id))

    async def list_sessions(
        self, *, offset: int, limit: int, visible_to: str | None = None
    ) -> list[Session]:
        ordered = sorted(
            (
                s
                for s in self._sessions.values()
                if visible_to is None or s.session.owner in ("", visible_to)
            ),
            key=lambda slot: (slot.session.create_time, slot.session.session_id),
        )
        start = max(offset, 0)
        page = ordered[start : start + limit] if limit > 0 else ordered[start:]
        return [self._session_view(slot) for slot in page]

    async def count_sessions(self) -> int:
        return len(self._sessions)

    async def delete_session(self, session_id: str, reason: str = "deleted") -> None:
        self._slot(session_id)
        del self._sessions[session_id]

    async def set_session_expiry(self, session_id: str, expire_time: float | None) -> Session:
        slot = self._slot(session_id)
        slot.session = replace(slot.session, expire_time=expire_time)
        return self._session_view(slot)

    async def set_session_lm(self, session_id: str, lm: LMSpec | None) -> Session:
        slot = self._slot(session_id)
        slot.session = replace(slot.session, lm=_copy_lm(lm))
        return self._session_view(slot)

    async def expired_sessions(self, now: float) -> list[str]:
        expired = [slot.session for slot in self._sessions.values() if slot.session.expired(now)]
        expired.sort(key=lambda s: (s.expire_time or 0.0, s.session_id))
        return [s.session_id for s in expired]

    # -- variables ------------------------------------------------------------------------

    async def create_variable(self, variable: Variable, *, max_variables: int) -> Variable:
        slot = self._slot(variable.session_id)
        if variable.name in slot.by_name or variable.id in slot.by_id:
            taken = variable.name if variable.name in slot.by_name else variable.id
            raise already_exists(
                Reason.VARIABLE_ALREADY_EXISTS,
                f"variable {taken!r} already exists in session {variable.session_id!r}",
                session_id=variable.session_id,
                variable=taken,
            )
        if max_variables > 0 and len(slot.by_id) >= max_variables:
            raise resource_exhausted(
                Reason.VARIABLE_LIMIT,
                f"session {variable.session_id!r} holds its maximum of {max_variables} variables",
                session_id=variable.session_id,
                limit=str(max_variables),
            )
        stored = replace(_copy_variable(variable), version=1)
        first = HistoryEntry(1, stored.value, stored.source, "", stored.update_time)
        new_slot = _VariableSlot(stored, deque((first,), maxlen=self._history_limit))
        slot.by_id[stored.id] = new_slot
        slot.by_name[stored.name] = new_slot
        return _copy_variable(stored)

    async def get_variable(self, session_id: str, name_or_id: str) -> Variable:
        slot = self._slot(session_id)
        found = slot.by_name.get(name_or_id) or slot.by_id.get(name_or_id)
        if found is None:
            raise variable_not_found(session_id, name_or_id)
        return _copy_variable(found.variable)

    async def list_variables(self, session_id: str) -> list[Variable]:
        slot = self._slot(session_id)
        return [_copy_variable(slot.by_name[name].variable) for name in sorted(slot.by_name)]

    async def delete_variable(self, session_id: str, variable_id: str) -> Variable:
        slot = self._slot(session_id)
        found = self._variable_slot(slot, variable_id)
        del slot.by_id[variable_id]
        del slot.by_name[found.variable.name]
        return found.variable  # no longer reachable from the store: no copy needed

    async def write_variables(
        self, session_id: str, writes: Sequence[VariableWrite], *, now: float
    ) -> list[Variable]:
        slot = self._slot(session_id)
        targets = self._check_writes(slot, writes)
        results: list[Variable] = []
        for write, target in zip(writes, targets, strict=True):
            # In place: the stored Variable is never handed out, only copies of it.
            variable = target.variable
            variable.value = _copy_value(write.value)
            variable.version += 1
            variable.update_time = now
            variable.source = write.source
            target.history.append(
                HistoryEntry(variable.version, variable.value, write.source, write.reason, now)
            )
            results.append(_copy_variable(variable))
        return results

    def _check_writes(
        self, slot: _SessionSlot, writes: Sequence[VariableWrite]
    ) -> list[_VariableSlot]:
        """Resolves every write's variable and checks its expected version, changing nothing.

        Several writes to one variable apply in order, so each later one is checked against the
        version the earlier ones will have produced.
        """
        targets: list[_VariableSlot] = []
        pending: dict[str, int] = {}
        for write in writes:
            target = self._variable_slot(slot, write.variable_id)
            current = pending.get(write.variable_id, target.variable.version)
            if write.expected_version is not None and write.expected_version != current:
                raise version_conflict(
                    f"variable {target.variable.name!r}", write.expected_version, current
                )
            pending[write.variable_id] = current + 1
            targets.append(target)
        return targets

    async def variable_history(
        self, session_id: str, variable_id: str, *, limit: int
    ) -> list[HistoryEntry]:
        history = self._variable_slot(self._slot(session_id), variable_id).history
        count = len(history) if limit <= 0 else min(limit, len(history))
        newest_first = [history[-1 - i] for i in range(count)]
        # HistoryEntry is frozen: only a mutable (JSON container) value needs a copy.
        return [
            entry
            if type(entry.value) in _IMMUTABLE
            else replace(entry, value=_copy_json(entry.value))
            for entry in newest_first
        ]

    # -- modules --------------------------------------------------------------------------

    async def create_module(self, record: ModuleRecord) -> ModuleRecord:
        slot = self._slot(record.session_id)
        if record.module_id in slot.modules:
            raise already_exists(
                Reason.MODULE_ALREADY_EXISTS,
                f"module {record.module_id!r} already exists in session {record.session_id!r}",
                session_id=record.session_id,
                module_id=record.module_id,
            )
        stored = replace(_copy_module(record), version=1)
        slot.modules[record.module_id] = [stored]
        return _copy_module(stored)

    async def get_module(self, session_id: str, module_id: str, version: int = 0) -> ModuleRecord:
        versions = self._versions(self._slot(session_id), module_id)
        if version == 0:
            return _copy_module(versions[-1])
        if not 0 < version <= len(versions):
            raise not_found(
                Reason.VERSION_NOT_FOUND,
                f"module {module_id!r} has no version {version} (current is {len(versions)})",
                session_id=session_id,
                module_id=module_id,
                version=str(version),
            )
        return _copy_module(versions[version - 1])

    async def list_modules(self, session_id: str) -> list[ModuleRecord]:
        slot = self._slot(session_id)
        return [_copy_module(slot.modules[module_id][-1]) for module_id in sorted(slot.modules)]

    async def put_module_version(
        self, record: ModuleRecord, *, expected_version: int
    ) -> ModuleRecord:
        versions = self._versions(self._slot(record.session_id), record.module_id)
        if expected_version != len(versions):
            raise version_conflict(f"module {record.module_id!r}", expected_version, len(versions))
        stored = replace(_copy_module(record), version=expected_version + 1)
        versions.append(stored)
        return _copy_module(stored)

    async def delete_module(self, session_id: str, module_id: str) -> None:
        slot = self._slot(session_id)
        self._versions(slot, module_id)
        del slot.modules[module_id]

    # -- jobs -----------------------------------------------------------------------------

    async def create_job(self, job: Job, *, owner: str = "", max_active_per_owner: int = 0) -> Job:
        slot = self._slot(job.session_id)
        if job.job_id in slot.jobs:
            raise job_exists(job.session_id, job.job_id)
        slot.jobs[job.job_id] = _copy_job(job)
        return _copy_job(job)

    @staticmethod
    def _job(slot: _SessionSlot, job_id: str) -> Job:
        job = slot.jobs.get(job_id)
        if job is None:
            raise job_not_found(slot.session.session_id, job_id)
        return job

    async def get_job(self, session_id: str, job_id: str) -> Job:
        return _copy_job(self._job(self._slot(session_id), job_id))

    async def update_job(
        self,
        session_id: str,
        job_id: str,
        update: JobUpdate,
        *,
        if_status: Collection[JobStatus] | None = None,
    ) -> Job:
        slot = self._slot(session_id)
        job = self._job(slot, job_id)
        if if_status is not None and job.status not in if_status:
            raise job_state_conflict(job_id, job.status)
        updated = _copy_job(update.apply_to(job))
        slot.jobs[job_id] = updated
        return _copy_job(updated)

    async def list_jobs(
        self, session_id: str, *, module_id: str = "", offset: int = 0, limit: int = 0
    ) -> list[Job]:
        slot = self._slot(session_id)
        jobs = [job for job in slot.jobs.values() if not module_id or job.module_id == module_id]
        jobs.sort(key=lambda job: (job.create_time, job.job_id))
        start = max(offset, 0)
        page = jobs[start : start + limit] if limit > 0 else jobs[start:]
        return [_copy_job(job) for job in page]

    async def mark_running_jobs_interrupted(self, now: float) -> list[Job]:
        marked: list[Job] = []
        for slot in self._sessions.values():
            for job_id, job in list(slot.jobs.items()):
                if job.status in ACTIVE_STATUSES:
                    done = replace(job, status=JobStatus.INTERRUPTED, end_time=now)
                    slot.jobs[job_id] = done
                    marked.append(_copy_job(done))
        marked.sort(key=lambda job: (job.create_time, job.job_id))
        return marked
