"""The durable single-node session store (`sqlite:///path.db`), on the stdlib `sqlite3`.

Durability: WAL journal with `synchronous=FULL`, so a mutating method's transaction is on disk
before the method returns and survives `kill -9` of the server (and a power cut).

Concurrency: one connection, used only from one dedicated worker thread. Every call is queued to
that thread with `run_in_executor`, so writes are serialized without locks and the event loop never
blocks on disk. Each mutating call is one `BEGIN IMMEDIATE … COMMIT` transaction that is rolled
back on any error, which gives the interface's "a method that raises changes nothing".

A call whose awaiting task is cancelled still runs to completion on the worker thread (a
transaction is never abandoned half way); its result is simply dropped.

Ownership: every table hangs off `sessions` through foreign keys with `ON DELETE CASCADE`, so
deleting a session row deletes all it owns.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

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
    Constraints,
    HistoryEntry,
    Job,
    JobStatus,
    JobUpdate,
    LMSpec,
    ModuleRecord,
    Session,
    Variable,
    VariableType,
    VariableWrite,
    decode_value,
    encode_value,
)
from dspy_bridge.store.base import SessionStore
from dspy_bridge.store.job_errors import job_exists, job_not_found, job_state_conflict
from dspy_bridge.store.quotas import session_quota_exceeded
from dspy_bridge.store.single_server import release_lock, take_lock

T = TypeVar("T")

#: Bumped whenever the schema changes; `open` refuses a database written by a newer schema.
SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_version (
    version INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS sessions (
    session_id  TEXT PRIMARY KEY,
    metadata    TEXT NOT NULL,
    ttl_seconds INTEGER NOT NULL,
    create_time REAL NOT NULL,
    expire_time REAL,
    lm          TEXT,
    owner       TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS sessions_by_create ON sessions (create_time, session_id);
CREATE INDEX IF NOT EXISTS sessions_by_expiry ON sessions (expire_time)
    WHERE expire_time IS NOT NULL;
CREATE TABLE IF NOT EXISTS variables (
    session_id  TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    id          TEXT NOT NULL,
    name        TEXT NOT NULL,
    type        INTEGER NOT NULL,
    value       TEXT NOT NULL,
    constraints TEXT NOT NULL,
    description TEXT NOT NULL,
    metadata    TEXT NOT NULL,
    version     INTEGER NOT NULL,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    source      TEXT NOT NULL,
    PRIMARY KEY (session_id, id),
    UNIQUE (session_id, name)
);
CREATE TABLE IF NOT EXISTS history (
    session_id  TEXT NOT NULL,
    variable_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    value       TEXT NOT NULL,
    source      TEXT NOT NULL,
    reason      TEXT NOT NULL,
    update_time REAL NOT NULL,
    PRIMARY KEY (session_id, variable_id, version),
    FOREIGN KEY (session_id, variable_id)
        REFERENCES variables (session_id, id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS modules (
    session_id      TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    module_id       TEXT NOT NULL,
    current_version INTEGER NOT NULL,
    PRIMARY KEY (session_id, module_id)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS module_versions (
    session_id  TEXT NOT NULL,
    module_id   TEXT NOT NULL,
    version     INTEGER NOT NULL,
    spec        TEXT NOT NULL,
    state       TEXT,
    create_time REAL NOT NULL,
    update_time REAL NOT NULL,
    source      TEXT NOT NULL,
    PRIMARY KEY (session_id, module_id, version),
    FOREIGN KEY (session_id, module_id)
        REFERENCES modules (session_id, module_id) ON DELETE CASCADE
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS jobs (
    session_id  TEXT NOT NULL REFERENCES sessions (session_id) ON DELETE CASCADE,
    job_id      TEXT NOT NULL,
    module_id   TEXT NOT NULL,
    status      INTEGER NOT NULL,
    create_time REAL NOT NULL,
    record      TEXT NOT NULL,
    PRIMARY KEY (session_id, job_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS jobs_by_status ON jobs (status);
"""

_SESSION_COLUMNS = """
    s.session_id, s.metadata, s.ttl_seconds, s.create_time, s.expire_time, s.lm,
    (SELECT COUNT(*) FROM variables v WHERE v.session_id = s.session_id),
    (SELECT COUNT(*) FROM modules m WHERE m.session_id = s.session_id),
    s.owner
"""

_VARIABLE_COLUMNS = """
    session_id, id, name, type, value, constraints, description, metadata, version,
    create_time, update_time, source
"""

_MODULE_FIELDS = (
    "session_id",
    "module_id",
    "version",
    "spec",
    "state",
    "create_time",
    "update_time",
    "source",
)
_MODULE_COLUMNS = ", ".join(_MODULE_FIELDS)
_MODULE_COLUMNS_V = ", ".join(f"v.{name}" for name in _MODULE_FIELDS)


def _dumps(raw: Any) -> str:
    return json.dumps(raw, separators=(",", ":"), ensure_ascii=False)


# -- row <-> model -------------------------------------------------------------------------


def _session_from_row(row: sqlite3.Row | tuple[Any, ...]) -> Session:
    session_id, metadata, ttl, create_time, expire_time, lm, variables, modules, owner = row
    return Session(
        session_id=session_id,
        metadata=json.loads(metadata),
        ttl_seconds=ttl,
        create_time=create_time,
        expire_time=expire_time,
        lm=None if lm is None else LMSpec.from_dict(json.loads(lm)),
        variable_count=variables,
        module_count=modules,
        owner=owner,
    )


def _variable_from_row(row: tuple[Any, ...]) -> Variable:
    (session_id, var_id, name, kind, value, constraints, description, metadata, version) = row[:9]
    create_time, update_time, source = row[9:]
    return Variable(
        id=var_id,
        session_id=session_id,
        name=name,
        type=VariableType(kind),
        value=decode_value(value),
        constraints=Constraints.from_dict(json.loads(constraints)),
        description=description,
        metadata=json.loads(metadata),
        version=version,
        create_time=create_time,
        update_time=update_time,
        source=source,
    )


def _module_from_row(row: tuple[Any, ...]) -> ModuleRecord:
    session_id, module_id, version, spec, state, create_time, update_time, source = row
    return ModuleRecord(
        session_id=session_id,
        module_id=module_id,
        version=version,
        spec=json.loads(spec),
        state=None if state is None else json.loads(state),
        create_time=create_time,
        update_time=update_time,
        source=source,
    )


# -- lookups shared by the transactions ----------------------------------------------------


def _require_session(conn: sqlite3.Connection, session_id: str) -> None:
    row = conn.execute("SELECT 1 FROM sessions WHERE session_id = ?", (session_id,)).fetchone()
    if row is None:
        raise session_not_found(session_id)


def _load_session(conn: sqlite3.Connection, session_id: str) -> Session:
    row = conn.execute(
        f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE s.session_id = ?", (session_id,)
    ).fetchone()
    if row is None:
        raise session_not_found(session_id)
    return _session_from_row(row)


def _load_variable(conn: sqlite3.Connection, session_id: str, variable_id: str) -> Variable:
    """By id only; the caller has checked the session. NOT_FOUND if the variable is gone."""
    row = conn.execute(
        f"SELECT {_VARIABLE_COLUMNS} FROM variables WHERE session_id = ? AND id = ?",
        (session_id, variable_id),
    ).fetchone()
    if row is None:
        raise variable_not_found(session_id, variable_id)
    return _variable_from_row(row)


def _current_module_version(conn: sqlite3.Connection, session_id: str, module_id: str) -> int:
    row = conn.execute(
        "SELECT current_version FROM modules WHERE session_id = ? AND module_id = ?",
        (session_id, module_id),
    ).fetchone()
    if row is None:
        raise module_not_found(session_id, module_id)
    return int(row[0])


def _insert_module_version(conn: sqlite3.Connection, record: ModuleRecord, version: int) -> None:
    conn.execute(
        f"INSERT INTO module_versions ({_MODULE_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.session_id,
            record.module_id,
            version,
            _dumps(record.spec),
            None if record.state is None else _dumps(record.state),
            record.create_time,
            record.update_time,
            record.source,
        ),
    )


class SqliteStore(SessionStore):
    """`SessionStore` on one SQLite file. Build it with `await SqliteStore.open(path)`."""

    backend = "sqlite"

    def __init__(
        self,
        conn: sqlite3.Connection,
        executor: ThreadPoolExecutor,
        history_limit: int,
        lock_fd: int | None = None,
    ) -> None:
        """Use `open`; this only wires up a connection already made on `executor`'s thread."""
        self._conn: sqlite3.Connection | None = conn
        self._executor = executor
        self._history_limit = history_limit
        self._lock_fd = lock_fd

    @classmethod
    async def open(cls, path: str | Path, *, history_limit: int = 1000) -> SqliteStore:
        """Opens (creating if needed) the database at `path` and makes sure its schema exists.
        The file is locked for this store until `close` (`single_server.py`): `StoreInUse`
        when another server has it open.

        `history_limit`: history entries kept per variable, oldest dropped (0 = unlimited).
        """
        if history_limit < 0:
            raise ValueError(f"history_limit must be >= 0, not {history_limit}")
        lock_fd = take_lock(path)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-store")
        loop = asyncio.get_running_loop()
        try:
            conn = await loop.run_in_executor(executor, _connect, str(path))
        except BaseException:
            executor.shutdown(wait=False)
            release_lock(lock_fd)
            raise
        return cls(conn, executor, history_limit, lock_fd)

    # -- plumbing -------------------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        """Runs `fn` on the store's thread, inside one transaction when `write` is set."""
        if self._conn is None:
            raise RuntimeError("the sqlite store is closed")
        job = partial(_in_transaction if write else _read, self._conn, fn)
        return await asyncio.get_running_loop().run_in_executor(self._executor, job)

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=True)
        if self._lock_fd is not None:  # after the connection: nothing writes once it is free
            release_lock(self._lock_fd)
            self._lock_fd = None

    # -- sessions -------------------------------------------------------------------------

    async def create_session(
        self, session: Session, *, max_sessions: int, max_per_owner: int = 0
    ) -> Session:
        def tx(conn: sqlite3.Connection) -> Session:
            taken = conn.execute(
                "SELECT 1 FROM sessions WHERE session_id = ?", (session.session_id,)
            ).fetchone()
            if taken is not None:
                raise already_exists(
                    Reason.SESSION_ALREADY_EXISTS,
                    f"session {session.session_id!r} already exists",
                    session_id=session.session_id,
                )
            if max_sessions > 0:
                (count,) = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()
                if count >= max_sessions:
                    raise resource_exhausted(
                        Reason.SESSION_LIMIT,
                        f"the server holds its maximum of {max_sessions} sessions",
                        limit=str(max_sessions),
                    )
            if session.owner and max_per_owner > 0:
                (owned,) = conn.execute(
                    "SELECT COUNT(*) FROM sessions WHERE owner = ?"
                    " AND (expire_time IS NULL OR expire_time > ?)",
                    (session.owner, session.create_time),
                ).fetchone()
                if owned >= max_per_owner:
                    raise session_quota_exceeded(owned, max_per_owner)
            conn.execute(
                "INSERT INTO sessions (session_id, metadata, ttl_seconds, create_time,"
                " expire_time, lm, owner) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    session.session_id,
                    _dumps(session.metadata),
                    session.ttl_seconds,
                    session.create_time,
                    session.expire_time,
                    None if session.lm is None else _dumps(session.lm.to_dict()),
                    session.owner,
                ),
            )
            return _load_session(conn, session.session_id)

        return await self._run(tx, write=True)

    async def get_session(self, session_id: str) -> Session:
        return await self._run(partial(_load_session, session_id=session_id), write=False)

    async def list_sessions(
        self, *, offset: int, limit: int, visible_to: str | None = None
    ) -> list[Session]:
        def read(conn: sqlite3.Connection) -> list[Session]:
            where, args = "", []
            if visible_to is not None:  # what it owns, and what no one owns
                where, args = "WHERE s.owner IN ('', ?) ", [visible_to]
            rows = conn.execute(
                f"SELECT {_SESSION_COLUMNS} FROM sessions s {where}"
                "ORDER BY s.create_time, s.session_id LIMIT ? OFFSET ?",
                (*args, limit if limit > 0 else -1, max(offset, 0)),
            ).fetchall()
            return [_session_from_row(row) for row in rows]

        return await self._run(read, write=False)

    async def count_sessions(self) -> int:
        def read(conn: sqlite3.Connection) -> int:
            count: int = conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0]
            return count

        return await self._run(read, write=False)

    async def delete_session(self, session_id: str, reason: str = "deleted") -> None:
        def tx(conn: sqlite3.Connection) -> None:
            deleted = conn.execute("DELETE FROM sessions WHERE session_id = ?", (session_id,))
            if deleted.rowcount == 0:
                raise session_not_found(session_id)

        await self._run(tx, write=True)

    async def set_session_expiry(self, session_id: str, expire_time: float | None) -> Session:
        return await self._update_session(session_id, "expire_time", expire_time)

    async def set_session_lm(self, session_id: str, lm: LMSpec | None) -> Session:
        encoded = None if lm is None else _dumps(lm.to_dict())
        return await self._update_session(session_id, "lm", encoded)

    async def _update_session(self, session_id: str, column: str, value: object) -> Session:
        """Sets one column (a fixed name from this class, never caller input) of a session."""

        def tx(conn: sqlite3.Connection) -> Session:
            updated = conn.execute(
                f"UPDATE sessions SET {column} = ? WHERE session_id = ?", (value, session_id)
            )
            if updated.rowcount == 0:
                raise session_not_found(session_id)
            return _load_session(conn, session_id)

        return await self._run(tx, write=True)

    async def expired_sessions(self, now: float) -> list[str]:
        def read(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT session_id FROM sessions WHERE expire_time IS NOT NULL"
                " AND expire_time <= ? ORDER BY expire_time, session_id",
                (now,),
            ).fetchall()
            return [row[0] for row in rows]

        return await self._run(read, write=False)

    # -- variables ------------------------------------------------------------------------

    async def create_variable(self, variable: Variable, *, max_variables: int) -> Variable:
        def tx(conn: sqlite3.Connection) -> Variable:
            sid = variable.session_id
            _require_session(conn, sid)
            taken = conn.execute(
                "SELECT name, id FROM variables WHERE session_id = ? AND (name = ? OR id = ?)",
                (sid, variable.name, variable.id),
            ).fetchone()
            if taken is not None:
                clash = variable.name if taken[0] == variable.name else variable.id
                raise already_exists(
                    Reason.VARIABLE_ALREADY_EXISTS,
                    f"variable {clash!r} already exists in session {sid!r}",
                    session_id=sid,
                    variable=clash,
                )
            if max_variables > 0:
                (count,) = conn.execute(
                    "SELECT COUNT(*) FROM variables WHERE session_id = ?", (sid,)
                ).fetchone()
                if count >= max_variables:
                    raise resource_exhausted(
                        Reason.VARIABLE_LIMIT,
                        f"session {sid!r} holds its maximum of {max_variables} variables",
                        session_id=sid,
                        limit=str(max_variables),
                    )
            value = encode_value(variable.value)
            conn.execute(
                f"INSERT INTO variables ({_VARIABLE_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)",
                (
                    sid,
                    variable.id,
                    variable.name,
                    variable.type.value,
                    value,
                    _dumps(variable.constraints.to_dict()),
                    variable.description,
                    _dumps(variable.metadata),
                    variable.create_time,
                    variable.update_time,
                    variable.source,
                ),
            )
            conn.execute(
                "INSERT INTO history (session_id, variable_id, version, value, source, reason,"
                " update_time) VALUES (?, ?, 1, ?, ?, '', ?)",
                (sid, variable.id, value, variable.source, variable.update_time),
            )
            return _load_variable(conn, sid, variable.id)

        return await self._run(tx, write=True)

    async def get_variable(self, session_id: str, name_or_id: str) -> Variable:
        def read(conn: sqlite3.Connection) -> Variable:
            _require_session(conn, session_id)
            # A name wins over an id when both match (different variables).
            row = conn.execute(
                f"SELECT {_VARIABLE_COLUMNS} FROM variables"
                " WHERE session_id = ? AND (name = ? OR id = ?) ORDER BY name = ? DESC LIMIT 1",
                (session_id, name_or_id, name_or_id, name_or_id),
            ).fetchone()
            if row is None:
                raise variable_not_found(session_id, name_or_id)
            return _variable_from_row(row)

        return await self._run(read, write=False)

    async def list_variables(self, session_id: str) -> list[Variable]:
        def read(conn: sqlite3.Connection) -> list[Variable]:
            _require_session(conn, session_id)
            rows = conn.execute(
                f"SELECT {_VARIABLE_COLUMNS} FROM variables WHERE session_id = ? ORDER BY name",
                (session_id,),
            ).fetchall()
            return [_variable_from_row(row) for row in rows]

        return await self._run(read, write=False)

    async def delete_variable(self, session_id: str, variable_id: str) -> Variable:
        def tx(conn: sqlite3.Connection) -> Variable:
            _require_session(conn, session_id)
            variable = _load_variable(conn, session_id, variable_id)
            conn.execute(
                "DELETE FROM variables WHERE session_id = ? AND id = ?", (session_id, variable_id)
            )
            return variable

        return await self._run(tx, write=True)

    async def write_variables(
        self, session_id: str, writes: Sequence[VariableWrite], *, now: float
    ) -> list[Variable]:
        # Encode outside the store thread: it is pure CPU and keeps the transaction short.
        encoded = [encode_value(write.value) for write in writes]

        def tx(conn: sqlite3.Connection) -> list[Variable]:
            _require_session(conn, session_id)
            results = []
            for write, value in zip(writes, encoded, strict=True):
                results.append(self._apply_write(conn, session_id, write, value, now))
            return results

        return await self._run(tx, write=True)

    def _apply_write(
        self,
        conn: sqlite3.Connection,
        session_id: str,
        write: VariableWrite,
        value: str,
        now: float,
    ) -> Variable:
        """One write inside the batch transaction; raising rolls back the whole batch."""
        current = _load_variable(conn, session_id, write.variable_id)
        if write.expected_version is not None and write.expected_version != current.version:
            raise version_conflict(
                f"variable {current.name!r}", write.expected_version, current.version
            )
        version = current.version + 1
        conn.execute(
            "UPDATE variables SET value = ?, version = ?, update_time = ?, source = ?"
            " WHERE session_id = ? AND id = ?",
            (value, version, now, write.source, session_id, write.variable_id),
        )
        conn.execute(
            "INSERT INTO history (session_id, variable_id, version, value, source, reason,"
            " update_time) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (session_id, write.variable_id, version, value, write.source, write.reason, now),
        )
        if self._history_limit > 0:
            # Versions are contiguous, so the kept window is the last `history_limit` of them.
            conn.execute(
                "DELETE FROM history WHERE session_id = ? AND variable_id = ? AND version <= ?",
                (session_id, write.variable_id, version - self._history_limit),
            )
        return _variable_with(current, write, value, version, now)

    async def variable_history(
        self, session_id: str, variable_id: str, *, limit: int
    ) -> list[HistoryEntry]:
        def read(conn: sqlite3.Connection) -> list[HistoryEntry]:
            _require_session(conn, session_id)
            _load_variable(conn, session_id, variable_id)
            rows = conn.execute(
                "SELECT version, value, source, reason, update_time FROM history"
                " WHERE session_id = ? AND variable_id = ? ORDER BY version DESC LIMIT ?",
                (session_id, variable_id, limit if limit > 0 else -1),
            ).fetchall()
            return [
                HistoryEntry(version, decode_value(value), source, reason, update_time)
                for version, value, source, reason, update_time in rows
            ]

        return await self._run(read, write=False)

    # -- modules --------------------------------------------------------------------------

    async def create_module(self, record: ModuleRecord) -> ModuleRecord:
        def tx(conn: sqlite3.Connection) -> ModuleRecord:
            _require_session(conn, record.session_id)
            exists = conn.execute(
                "SELECT 1 FROM modules WHERE session_id = ? AND module_id = ?",
                (record.session_id, record.module_id),
            ).fetchone()
            if exists is not None:
                raise already_exists(
                    Reason.MODULE_ALREADY_EXISTS,
                    f"module {record.module_id!r} already exists in session {record.session_id!r}",
                    session_id=record.session_id,
                    module_id=record.module_id,
                )
            conn.execute(
                "INSERT INTO modules (session_id, module_id, current_version) VALUES (?, ?, 1)",
                (record.session_id, record.module_id),
            )
            _insert_module_version(conn, record, 1)
            return _load_module(conn, record.session_id, record.module_id, 1)

        return await self._run(tx, write=True)

    async def get_module(self, session_id: str, module_id: str, version: int = 0) -> ModuleRecord:
        def read(conn: sqlite3.Connection) -> ModuleRecord:
            _require_session(conn, session_id)
            current = _current_module_version(conn, session_id, module_id)
            return _load_module(conn, session_id, module_id, version or current)

        return await self._run(read, write=False)

    async def list_modules(self, session_id: str) -> list[ModuleRecord]:
        def read(conn: sqlite3.Connection) -> list[ModuleRecord]:
            _require_session(conn, session_id)
            rows = conn.execute(
                f"SELECT {_MODULE_COLUMNS_V}"
                " FROM modules m JOIN module_versions v ON v.session_id = m.session_id"
                " AND v.module_id = m.module_id AND v.version = m.current_version"
                " WHERE m.session_id = ? ORDER BY m.module_id",
                (session_id,),
            ).fetchall()
            return [_module_from_row(row) for row in rows]

        return await self._run(read, write=False)

    async def put_module_version(
        self, record: ModuleRecord, *, expected_version: int
    ) -> ModuleRecord:
        def tx(conn: sqlite3.Connection) -> ModuleRecord:
            sid, mid = record.session_id, record.module_id
            _require_session(conn, sid)
            current = _current_module_version(conn, sid, mid)
            if current != expected_version:
                raise version_conflict(f"module {mid!r}", expected_version, current)
            version = current + 1
            conn.execute(
                "UPDATE modules SET current_version = ? WHERE session_id = ? AND module_id = ?",
                (version, sid, mid),
            )
            _insert_module_version(conn, record, version)
            return _load_module(conn, sid, mid, version)

        return await self._run(tx, write=True)

    async def delete_module(self, session_id: str, module_id: str) -> None:
        def tx(conn: sqlite3.Connection) -> None:
            _require_session(conn, session_id)
            deleted = conn.execute(
                "DELETE FROM modules WHERE session_id = ? AND module_id = ?",
                (session_id, module_id),
            )
            if deleted.rowcount == 0:
                raise module_not_found(session_id, module_id)

        await self._run(tx, write=True)

    # -- jobs -----------------------------------------------------------------------------

    async def create_job(self, job: Job, *, owner: str = "", max_active_per_owner: int = 0) -> Job:
        record = _dumps(job.to_dict())

        def tx(conn: sqlite3.Connection) -> Job:
            _require_session(conn, job.session_id)
            taken = conn.execute(
                "SELECT 1 FROM jobs WHERE session_id = ? AND job_id = ?",
                (job.session_id, job.job_id),
            ).fetchone()
            if taken is not None:
                raise job_exists(job.session_id, job.job_id)
            _write_job(conn, Job.from_dict(json.loads(record)), insert=True)
            return _load_job(conn, job.session_id, job.job_id)

        return await self._run(tx, write=True)

    async def get_job(self, session_id: str, job_id: str) -> Job:
        def read(conn: sqlite3.Connection) -> Job:
            _require_session(conn, session_id)
            return _load_job(conn, session_id, job_id)

        return await self._run(read, write=False)

    async def update_job(
        self,
        session_id: str,
        job_id: str,
        update: JobUpdate,
        *,
        if_status: Collection[JobStatus] | None = None,
    ) -> Job:
        def tx(conn: sqlite3.Connection) -> Job:
            _require_session(conn, session_id)
            job = _load_job(conn, session_id, job_id)
            if if_status is not None and job.status not in if_status:
                raise job_state_conflict(job_id, job.status)
            _write_job(conn, update.apply_to(job), insert=False)
            return _load_job(conn, session_id, job_id)

        return await self._run(tx, write=True)

    async def list_jobs(
        self, session_id: str, *, module_id: str = "", offset: int = 0, limit: int = 0
    ) -> list[Job]:
        def read(conn: sqlite3.Connection) -> list[Job]:
            _require_session(conn, session_id)
            rows = conn.execute(
                "SELECT record FROM jobs WHERE session_id = ? AND (? = '' OR module_id = ?)"
                " ORDER BY create_time, job_id LIMIT ? OFFSET ?",
                (session_id, module_id, module_id, limit if limit > 0 else -1, max(offset, 0)),
            ).fetchall()
            return [Job.from_dict(json.loads(row[0])) for row in rows]

        return await self._run(read, write=False)

    async def mark_running_jobs_interrupted(self, now: float) -> list[Job]:
        active = tuple(int(status) for status in ACTIVE_STATUSES)

        def tx(conn: sqlite3.Connection) -> list[Job]:
            rows = conn.execute(
                f"SELECT record FROM jobs WHERE status IN ({', '.join('?' * len(active))})"
                " ORDER BY create_time, job_id",
                active,
            ).fetchall()
            marked = []
            for (record,) in rows:
                job = Job.from_dict(json.loads(record))
                job = JobUpdate(status=JobStatus.INTERRUPTED, end_time=now).apply_to(job)
                _write_job(conn, job, insert=False)
                marked.append(job)
            return marked

        return await self._run(tx, write=True)


def _write_job(conn: sqlite3.Connection, job: Job, *, insert: bool) -> None:
    record = _dumps(job.to_dict())
    if insert:
        conn.execute(
            "INSERT INTO jobs (session_id, job_id, module_id, status, create_time, record)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (job.session_id, job.job_id, job.module_id, int(job.status), job.create_time, record),
        )
    else:
        conn.execute(
            "UPDATE jobs SET status = ?, record = ? WHERE session_id = ? AND job_id = ?",
            (int(job.status), record, job.session_id, job.job_id),
        )


def _load_job(conn: sqlite3.Connection, session_id: str, job_id: str) -> Job:
    row = conn.execute(
        "SELECT record FROM jobs WHERE session_id = ? AND job_id = ?", (session_id, job_id)
    ).fetchone()
    if row is None:
        raise job_not_found(session_id, job_id)
    return Job.from_dict(json.loads(row[0]))


def _variable_with(
    current: Variable, write: VariableWrite, value: str, version: int, now: float
) -> Variable:
    """`current` after `write`; the value is decoded from its stored JSON so the caller gets
    exactly what a later read returns (and never shares the object it passed in)."""
    current.value = decode_value(value)
    current.version = version
    current.update_time = now
    current.source = write.source
    return current


def _load_module(
    conn: sqlite3.Connection, session_id: str, module_id: str, version: int
) -> ModuleRecord:
    row = conn.execute(
        f"SELECT {_MODULE_COLUMNS} FROM module_versions"
        " WHERE session_id = ? AND module_id = ? AND version = ?",
        (session_id, module_id, version),
    ).fetchone()
    if row is None:
        raise not_found(
            Reason.VERSION_NOT_FOUND,
            f"module {module_id!r} has no version {version}",
            session_id=session_id,
            module_id=module_id,
            version=str(version),
        )
    return _module_from_row(row)


# -- functions that run on the store thread -----------------------------------------------


def _connect(path: str) -> sqlite3.Connection:
    """Opens the connection with durable settings and creates the schema (idempotent)."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA busy_timeout = 5000")
        _in_transaction(conn, _ensure_schema)
    except BaseException:
        conn.close()
        raise
    return conn


def _ensure_schema(conn: sqlite3.Connection) -> None:
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    row = conn.execute("SELECT MAX(version) FROM schema_version").fetchone()
    found = row[0]
    if found is None:
        conn.execute("INSERT INTO schema_version (version) VALUES (?)", (SCHEMA_VERSION,))
    elif found < SCHEMA_VERSION:
        # Version 2 lacks only tables, which the CREATE … IF NOT EXISTS above has added; 3 adds
        # the sessions' owner (sessions made before had no authenticated creator).
        columns = {row[1] for row in conn.execute("PRAGMA table_info(sessions)")}
        if "owner" not in columns:
            conn.execute("ALTER TABLE sessions ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
        conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION,))
    elif found > SCHEMA_VERSION:
        raise RuntimeError(
            f"database schema version {found} is newer than this server's {SCHEMA_VERSION}"
        )


def _in_transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn` inside BEGIN IMMEDIATE … COMMIT; any exception rolls everything back."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return result


def _read(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], T]) -> T:
    """`fn` inside one read transaction, so multi-statement reads see a single snapshot."""
    conn.execute("BEGIN")
    try:
        return fn(conn)
    finally:
        conn.execute("COMMIT")
