"""The session store interface: the single source of truth for everything a session owns.

Every backend implements `SessionStore` with the same semantics; `tests/store/` is the
conformance suite that runs unchanged against each. Methods raise `BridgeError` (NOT_FOUND,
ALREADY_EXISTS, ABORTED) — never backend-specific exceptions — and a method that raises changes
nothing. Values handed in are already validated by the service layer.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence

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


class SessionStore(ABC):
    """Async CRUD over sessions, variables (with history) and module versions."""

    #: Short backend name reported by GetServerInfo: `memory`, `sqlite`, `redis`.
    backend: str
    #: True when several servers share the store (redis): a server must then not trust its
    #: own caches of what others may change, and jobs are leased to the server running them.
    shared: bool = False
    #: True when a write may still commit after its caller was cancelled mid-await (SQLite
    #: finishes the transaction on its thread; Redis has the command): what must follow a
    #: commit then runs to its end (`dspy_bridge.to_the_end`). False for a store whose methods
    #: never yield the loop (memory), which then skips that extra task.
    commits_after_cancel: bool = True

    # -- sessions -------------------------------------------------------------------------

    @abstractmethod
    async def create_session(
        self, session: Session, *, max_sessions: int, max_per_owner: int = 0
    ) -> Session:
        """Stores a new session. ALREADY_EXISTS if the id is taken; RESOURCE_EXHAUSTED when
        `max_sessions` (0 = unlimited) sessions exist already (SESSION_LIMIT), or when
        `session.owner` (if named) owns `max_per_owner` (0 = unlimited) sessions unexpired at
        `session.create_time` (SESSION_QUOTA_EXCEEDED, `quotas`). Counted and created as one
        step."""

    @abstractmethod
    async def get_session(self, session_id: str) -> Session:
        """The session with its variable and module counts. NOT_FOUND if unknown."""

    async def session_owner(self, session_id: str) -> str:
        """The session's owner ("" for none). NOT_FOUND if unknown. A shared store reads just
        that field (the owner check runs before every RPC about a session)."""
        return (await self.get_session(session_id)).owner

    @abstractmethod
    async def list_sessions(
        self, *, offset: int, limit: int, visible_to: str | None = None
    ) -> list[Session]:
        """Sessions ordered by (create_time, session_id), `limit` from `offset`; with
        `visible_to`, only those it owns and those no one owns."""

    async def count_sessions(self) -> int:
        """How many sessions the store holds (the live-sessions gauge). This default pages
        through `list_sessions`; backends override it with a cheaper count."""
        total, page = 0, 1_000
        while True:
            got = len(await self.list_sessions(offset=total, limit=page))
            total += got
            if got < page:
                return total

    @abstractmethod
    async def delete_session(self, session_id: str, reason: str = "deleted") -> None:
        """Removes the session and everything it owns. NOT_FOUND if unknown. `reason`
        (`deleted`, `expired`) is what a shared store tells the watchers of other servers."""

    @abstractmethod
    async def set_session_expiry(self, session_id: str, expire_time: float | None) -> Session:
        """Sets the expiry (heartbeat). NOT_FOUND if unknown."""

    @abstractmethod
    async def set_session_lm(self, session_id: str, lm: LMSpec | None) -> Session:
        """Sets the session's LM. NOT_FOUND if unknown."""

    @abstractmethod
    async def expired_sessions(self, now: float) -> list[str]:
        """Ids of sessions whose expire_time is at or before `now`."""

    # -- variables ------------------------------------------------------------------------

    @abstractmethod
    async def create_variable(self, variable: Variable, *, max_variables: int) -> Variable:
        """Stores a new variable at version 1 with its first history entry. NOT_FOUND (session),
        ALREADY_EXISTS (name), RESOURCE_EXHAUSTED (`max_variables`, 0 = no limit)."""

    @abstractmethod
    async def get_variable(self, session_id: str, name_or_id: str) -> Variable:
        """By name, or by id. NOT_FOUND (session or variable)."""

    @abstractmethod
    async def list_variables(self, session_id: str) -> list[Variable]:
        """All variables of the session in name order. NOT_FOUND (session)."""

    @abstractmethod
    async def delete_variable(self, session_id: str, variable_id: str) -> Variable:
        """Removes the variable and its history; returns it as it was. NOT_FOUND."""

    @abstractmethod
    async def write_variables(
        self, session_id: str, writes: Sequence[VariableWrite], *, now: float
    ) -> list[Variable]:
        """Applies the writes atomically: each makes version+1 and a history entry, or, if any
        write's `expected_version` differs from the current version (ABORTED, VERSION_CONFLICT)
        or its variable is gone (NOT_FOUND), none is applied. Durable before returning.
        Returns the variables at their new versions, in write order."""

    @abstractmethod
    async def variable_history(
        self, session_id: str, variable_id: str, *, limit: int
    ) -> list[HistoryEntry]:
        """Versions newest first; `limit` 0 means all kept. NOT_FOUND."""

    # -- modules --------------------------------------------------------------------------

    @abstractmethod
    async def create_module(self, record: ModuleRecord) -> ModuleRecord:
        """Stores version 1 of a new module. NOT_FOUND (session), ALREADY_EXISTS (module_id)."""

    @abstractmethod
    async def get_module(self, session_id: str, module_id: str, version: int = 0) -> ModuleRecord:
        """The current version (version=0) or a given one. NOT_FOUND (session, module, version)."""

    @abstractmethod
    async def list_modules(self, session_id: str) -> list[ModuleRecord]:
        """Current versions of the session's modules in module_id order. NOT_FOUND (session)."""

    @abstractmethod
    async def put_module_version(
        self, record: ModuleRecord, *, expected_version: int
    ) -> ModuleRecord:
        """Stores `record` as version `expected_version + 1`, if `expected_version` is still current
        (ABORTED otherwise). NOT_FOUND (session, module)."""

    @abstractmethod
    async def delete_module(self, session_id: str, module_id: str) -> None:
        """Removes the module with all its versions. NOT_FOUND."""

    async def execution_view(
        self, session_id: str, module_id: str, version: int = 0
    ) -> tuple[Session, ModuleRecord, list[Variable]]:
        """What an execution reads — the session, the module at `version` (0: current) and the
        session's variables — with the errors of `get_session` and `get_module`. A shared store
        reads all three in one round trip."""
        session = await self.get_session(session_id)
        record = await self.get_module(session_id, module_id, version)
        return session, record, await self.list_variables(session_id)

    # -- jobs -----------------------------------------------------------------------------

    @abstractmethod
    async def create_job(self, job: Job, *, owner: str = "", max_active_per_owner: int = 0) -> Job:
        """Stores a new job record. NOT_FOUND (session), ALREADY_EXISTS (job_id, reason
        JOB_ALREADY_EXISTS). Jobs are owned by their session: deleting it deletes them.
        A shared store also refuses it (JOB_QUOTA_EXCEEDED, `quotas`) when the named `owner` has
        `max_active_per_owner` (0 = unlimited) active jobs on any server; a single-server store
        leaves that count to the `JobManager`, which sees all of its server's jobs."""

    @abstractmethod
    async def get_job(self, session_id: str, job_id: str) -> Job:
        """NOT_FOUND (session; job with reason JOB_NOT_FOUND)."""

    @abstractmethod
    async def update_job(
        self,
        session_id: str,
        job_id: str,
        update: JobUpdate,
        *,
        if_status: Collection[JobStatus] | None = None,
    ) -> Job:
        """Applies `update` atomically and returns the job after it. With `if_status`, only when the
        job's current status is one of those: otherwise ABORTED (reason JOB_STATE_CONFLICT, current
        status in metadata) and nothing changes. NOT_FOUND (session, job)."""

    @abstractmethod
    async def list_jobs(
        self, session_id: str, *, module_id: str = "", offset: int = 0, limit: int = 0
    ) -> list[Job]:
        """The session's jobs (of one module when `module_id` is set), ordered by
        (create_time, job_id), `limit` (0 = all) from `offset`. NOT_FOUND (session)."""

    @abstractmethod
    async def mark_running_jobs_interrupted(self, now: float) -> list[Job]:
        """Every QUEUED or RUNNING job of every session becomes INTERRUPTED with `end_time=now`;
        returns them. Called when a server starts (and stops): no process runs them any more."""

    # -- job leases (shared stores) --------------------------------------------------------

    async def renew_job_leases(self, jobs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        """Renews this server's leases on the (session_id, job_id) jobs it runs; returns those
        it no longer holds (lapsed, finished or cancelled through another server, or gone): their
        processes must stop. A single-server store holds every job: nothing is lost."""
        return set()

    async def interrupt_orphaned_jobs(self, now: float) -> list[Job]:
        """Marks INTERRUPTED the active jobs whose server is gone (lease lapsed); returns them.
        A single-server store has none (its jobs are marked at start)."""
        return []

    # -- the per-session byte budget -------------------------------------------------------

    def keep_budget(self, max_bytes: int) -> bool:
        """Asks the store to keep the per-session byte budget itself (`sizes`: checked and
        counted in the same step as each write, next to the data). True when it does: a shared
        store must, or a session could hold its budget once per replica. False (the default):
        the server wraps the store in a `BudgetedStore`, which counts in its own memory."""
        del max_bytes
        return False

    # -- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Releases connections and files. Idempotent."""
