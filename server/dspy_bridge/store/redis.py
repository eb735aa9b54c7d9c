"""The shared session store (`redis://host:port/db`, `rediss://` for TLS) for several replicas.

Every mutating method is one Lua script (`redis_scripts`), so it is atomic on the Redis server
whichever replica runs it: a variable write checks versions, writes, appends history and adds
the change to the session's event stream in one step. Reads that touch several keys are
scripts too, so they see one consistent state.

Durability is Redis's: with AOF and `appendfsync always` a write is on disk before Redis
answers, so no acknowledged write is lost when Redis restarts (see docs/scale-out.md for what
each setting gives). Redis unreachable, restarting or loading → `BridgeError` UNAVAILABLE
`STORE_UNAVAILABLE` (retryable); the client reconnects by itself on the next call. Commands are
never retried by the client library: a write whose answer was lost must not apply twice.

The reads every Execute makes (its execution view; with owners, the session's owner) go
through a connection of their own (`redis_pipe`) rather than the client: the same round trip at
a fraction of the replica's CPU. A read script Redis no longer knows (restarted, flushed) did
not run, so it is loaded and run again there.

Jobs are leased: the replica that creates an active job holds `P:lease:S:JID` (its replica id,
with a TTL) and renews it while the job runs (`renew_job_leases`); a job whose lease lapsed lost
its replica, and any replica marks it INTERRUPTED (`interrupt_orphaned_jobs`).

The per-session byte budget (`sizes`) and the per-caller shares of sessions and jobs (`quotas`)
are kept in Redis and checked by the script of the write they admit, so they hold across
replicas: a session holds its budget once, not once per replica.

Key layout: see `redis_scripts`. `?key_prefix=NAME` in the URL (default `dspyb`) lets several
deployments share one Redis database.
"""

from __future__ import annotations

import contextlib
import json
import secrets
from collections.abc import Collection, Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import grpc
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import (
    BusyLoadingError,
    ReadOnlyError,
    RedisError,
    ResponseError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dspy_bridge.errors import (
    BridgeError,
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
from dspy_bridge.store import redis_scripts as lua
from dspy_bridge.store.base import SessionStore
from dspy_bridge.store.job_errors import job_exists, job_not_found, job_state_conflict
from dspy_bridge.store.quotas import job_quota_exceeded, session_quota_exceeded
from dspy_bridge.store.redis_pipe import RedisPipe
from dspy_bridge.store.redis_views import ExecutionView, ExecutionViews, ViewKey
from dspy_bridge.store.shared_reads import SharedReads
from dspy_bridge.store.sizes import (
    budget_exceeded,
    entry_size,
    job_size,
    measure,
    module_size,
    session_size,
    variable_size,
)

#: `ErrorInfo.reason` when the shared store cannot be reached (UNAVAILABLE: retry later).
STORE_UNAVAILABLE = "STORE_UNAVAILABLE"
DEFAULT_PREFIX = "dspyb"
#: How long a deleted session's event stream is kept so late watchers read its end.
_ENDED_STREAM_TTL_S = 3600
#: Compare-and-set rounds of a job update before it gives up (only under heavy contention).
_JOB_CAS_ROUNDS = 64
#: Times a write is tried on a session whose byte count it had to start first (`uncounted`).
_COUNT_ROUNDS = 3

_UNAVAILABLE_ERRORS = (
    RedisConnectionError,
    RedisTimeoutError,
    BusyLoadingError,
    ReadOnlyError,
    OSError,
)


#: Error replies that mean Redis could not run the command now (nothing was written): loading
#: its data, a replica without its primary, a script running long, out of memory (maxmemory).
_TRANSIENT_REPLIES = ("LOADING", "MASTERDOWN", "TRYAGAIN", "BUSY", "OOM")


def _retryable(exc: Exception) -> bool:
    """Whether a redis-py failure means Redis is unavailable for now (`STORE_UNAVAILABLE`)."""
    if isinstance(exc, _UNAVAILABLE_ERRORS):
        return True
    return isinstance(exc, ResponseError) and str(exc).startswith(_TRANSIENT_REPLIES)


def store_unavailable(detail: str) -> BridgeError:
    """UNAVAILABLE `STORE_UNAVAILABLE`: the call changed nothing that was acknowledged; retry."""
    return BridgeError(
        grpc.StatusCode.UNAVAILABLE,
        STORE_UNAVAILABLE,
        f"the session store (Redis) is unavailable: {detail}; retry shortly",
        {"retryable": "true"},
    )


def unavailable_from(exc: BaseException) -> BridgeError:
    """The `store_unavailable` error for a redis-py failure (its class name only: a message may
    hold the server's address)."""
    return store_unavailable(type(exc).__name__)


@contextlib.contextmanager
def _unavailable_mapped() -> Iterator[None]:
    """Re-raises a failure that means Redis is unavailable for now as `STORE_UNAVAILABLE`."""
    try:
        yield
    except (*_UNAVAILABLE_ERRORS, ResponseError) as exc:
        if _retryable(exc):
            raise unavailable_from(exc) from None
        raise


def _dumps(raw: Any) -> str:
    return json.dumps(raw, separators=(",", ":"), ensure_ascii=False)


def _num(value: float) -> str:
    """A float as text that reads back exactly (`repr` round-trips)."""
    return repr(float(value))


def split_url(url: str) -> tuple[str, str]:
    """The URL for redis-py without our own `key_prefix` query parameter, and that prefix."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    prefix = DEFAULT_PREFIX
    kept = []
    for key, value in query:
        if key == "key_prefix":
            prefix = value
        else:
            kept.append((key, value))
    if not prefix or any(c in prefix for c in ":\n ") or len(prefix) > 64:
        raise ValueError("key_prefix must be 1-64 characters without ':', spaces or newlines")
    return urlunsplit(parts._replace(query=urlencode(kept))), prefix


def _settings_of(client: aioredis.Redis) -> Connection:
    """A redis-py connection (never connected) with the settings `client` connects with: host,
    port, TLS, credentials and database, as redis-py read them from the store URL."""
    settings = client.connection_pool.make_connection()  # type: ignore[no-untyped-call]
    assert isinstance(settings, Connection)  # redis:// and rediss:// (a subclass): TCP
    return settings


# -- records <-> Redis ---------------------------------------------------------------------


def _session_fields(session: Session, epoch: str) -> list[str]:
    return [
        "sid",
        session.session_id,
        "metadata",
        _dumps(session.metadata),
        "ttl",
        str(session.ttl_seconds),
        "create_time",
        _num(session.create_time),
        "expire_time",
        "" if session.expire_time is None else _num(session.expire_time),
        "lm",
        "" if session.lm is None else _dumps(session.lm.to_dict()),
        "owner",
        session.owner,
        "epoch",
        epoch,
        "seq",
        "0",
    ]


def session_from_reply(flat: list[str], variables: int, modules: int) -> Session:
    f = dict(zip(flat[::2], flat[1::2], strict=True))
    return Session(
        session_id=f["sid"],
        metadata=json.loads(f["metadata"]),
        ttl_seconds=int(f["ttl"]),
        create_time=float(f["create_time"]),
        expire_time=float(f["expire_time"]) if f["expire_time"] else None,
        lm=LMSpec.from_dict(json.loads(f["lm"])) if f["lm"] else None,
        variable_count=int(variables),
        module_count=int(modules),
        owner=f.get("owner", ""),
    )


def variable_meta(variable: Variable) -> str:
    """The fields of a variable that never change after it is registered."""
    return _dumps(
        {
            "id": variable.id,
            "sid": variable.session_id,
            "name": variable.name,
            "type": variable.type.value,
            "constraints": variable.constraints.to_dict(),
            "description": variable.description,
            "metadata": variable.metadata,
            "ct": _num(variable.create_time),
        }
    )


def variable_from_fields(meta: str, value: str, version: str, ut: str, src: str) -> Variable:
    m = json.loads(meta)
    return Variable(
        id=m["id"],
        session_id=m["sid"],
        name=m["name"],
        type=VariableType(m["type"]),
        value=decode_value(value),
        constraints=Constraints.from_dict(m["constraints"]),
        description=m["description"],
        metadata=dict(m["metadata"]),
        version=int(version),
        create_time=float(m["ct"]),
        update_time=float(ut),
        source=src,
    )


def _module_doc(record: ModuleRecord, version: int) -> str:
    return _dumps(
        {
            "session_id": record.session_id,
            "module_id": record.module_id,
            "version": version,
            "spec": record.spec,
            "state": record.state,
            "create_time": _num(record.create_time),
            "update_time": _num(record.update_time),
            "source": record.source,
        }
    )


def _module_from_doc(doc: str) -> ModuleRecord:
    d = json.loads(doc)
    return ModuleRecord(
        session_id=d["session_id"],
        module_id=d["module_id"],
        version=int(d["version"]),
        spec=d["spec"],
        state=d["state"],
        create_time=float(d["create_time"]),
        update_time=float(d["update_time"]),
        source=d["source"],
    )


def _job_doc(job: Job) -> str:
    return _dumps(job.to_dict())


def _raise_module_error(reply: list[Any], session_id: str, module_id: str, version: int) -> None:
    """The error a module read's script answered (`session`, `module`, `version`), if any."""
    kind = reply[0]
    if kind == "session":
        raise session_not_found(session_id)
    if kind == "module":
        raise module_not_found(session_id, module_id)
    if kind == "version":
        raise not_found(
            Reason.VERSION_NOT_FOUND,
            f"module {module_id!r} has no version {version} (current is {reply[1]})",
            session_id=session_id,
            module_id=module_id,
            version=str(version),
        )


class RedisStore(SessionStore):
    """`SessionStore` on one Redis database, shared by every replica. Use `RedisStore.open`."""

    backend = "redis"
    shared = True

    def __init__(
        self,
        client: aioredis.Redis,
        prefix: str,
        *,
        history_limit: int,
        stream_length: int,
        lease_seconds: float,
        timeout_seconds: float = 5.0,
    ) -> None:
        self._client: aioredis.Redis | None = client
        #: The hot reads (execution views, owners) on a lean pipelined connection of their own.
        self._pipe = RedisPipe(_settings_of(client), timeout=timeout_seconds)
        self.prefix = prefix
        self._history_limit = history_limit
        self._stream_length = stream_length
        self._lease_ms = max(1, int(lease_seconds * 1000))
        #: This replica's identity in job leases.
        self.replica_id = f"r_{secrets.token_hex(8)}"
        self._scripts: dict[str, AsyncScript] = {}
        #: Active jobs this replica created (and so leases): released when it closes.
        self._leased: set[tuple[str, str]] = set()
        #: The per-session byte budget the scripts enforce (`keep_budget`; 0 = none).
        self._max_bytes = 0
        #: What Executes read, kept between them and checked against Redis on each (stamps).
        self._views = ExecutionViews()
        #: Owner checks of one session in flight together share one read.
        self._owner_reads: SharedReads[str, str] = SharedReads()

    @classmethod
    async def open(
        cls,
        url: str,
        *,
        history_limit: int = 1000,
        stream_length: int = 10_000,
        lease_seconds: float = 10.0,
        timeout_seconds: float = 5.0,
    ) -> RedisStore:
        """Connects to the Redis `url` names and checks that it answers (UNAVAILABLE if not).

        `stream_length`: events kept per session for watchers to resume from (approximate);
        `lease_seconds`: how long a job's lease lasts without renewal."""
        if history_limit < 0:
            raise ValueError(f"history_limit must be >= 0, not {history_limit}")
        redis_url, prefix = split_url(url)
        client = aioredis.Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            health_check_interval=30,
            # Never resend a command: a script whose answer was lost may have run.
            retry=Retry(NoBackoff(), 0),
            retry_on_error=[],
        )
        store = cls(
            client,
            prefix,
            history_limit=history_limit,
            stream_length=stream_length,
            lease_seconds=lease_seconds,
            timeout_seconds=timeout_seconds,
        )
        try:
            await client.ping()
        except _UNAVAILABLE_ERRORS as exc:
            await client.aclose()
            raise unavailable_from(exc) from None
        return store

    # -- plumbing -------------------------------------------------------------------------

    @property
    def client(self) -> aioredis.Redis:
        if self._client is None:
            raise RuntimeError("the redis store is closed")
        return self._client

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def events_key(self, session_id: str) -> str:
        """The session's change stream (read by the watch feed)."""
        return self.key("s", session_id, "events")

    def session_key(self, session_id: str) -> str:
        return self.key("s", session_id)

    def _script(self, source: str) -> AsyncScript:
        """The client's handle on a script (its SHA computed once), registered on first use."""
        script = self._scripts.get(source)
        if script is None:
            script = self._scripts[source] = self.client.register_script(source)
        return script

    async def _run(self, source: str, *args: str | int | float) -> Any:
        """Runs a script (by SHA, loading it on first use or after a Redis restart)."""
        with _unavailable_mapped():
            return await self._script(source)(args=[self.prefix, *args])

    async def _piped(self, *command: str | int) -> Any:
        """One command through the pipe (`redis_pipe`), its failures mapped like `_run`'s."""
        with _unavailable_mapped():
            return await self._pipe.call(*command)

    async def _read(self, source: str, *args: str | int) -> Any:
        """Runs a read-only script through the pipe: the reads every Execute makes, at a
        fraction of the CPU the client's `_run` costs per call."""
        sha = self._script(source).sha
        try:
            return await self._piped("EVALSHA", sha, 0, self.prefix, *args)
        except ResponseError as exc:
            if not str(exc).startswith("NOSCRIPT"):
                raise
        # Redis restarted (or flushed its scripts): the script did not run; load it, run it.
        await self._piped("SCRIPT", "LOAD", source)
        return await self._piped("EVALSHA", sha, 0, self.prefix, *args)

    async def run_script(self, source: str, *args: str | int | float) -> Any:
        """Runs one of `redis_scripts` (for the shared watch feed)."""
        return await self._run(source, *args)

    async def call(self, command: str, *args: str | int | float) -> Any:
        """One plain Redis command, with failures mapped like the scripts'."""
        try:
            return await self.client.execute_command(command, *args)  # type: ignore[no-untyped-call]
        except _UNAVAILABLE_ERRORS as exc:
            raise unavailable_from(exc) from None

    def keep_budget(self, max_bytes: int) -> bool:
        """The budget is kept in Redis, checked and counted by each write's script."""
        self._max_bytes = max(0, max_bytes)
        return True

    async def _admitted(self, source: str, session_id: str, *args: str | int | float) -> Any:
        """Runs a script that admits a write against the session's byte budget (its arguments
        after the session id); starts the count of a session stored before it existed. Raises
        SESSION_BUDGET_EXCEEDED when the write does not fit."""
        for _ in range(_COUNT_ROUNDS):
            reply = await self._run(source, session_id, *args)
            if reply[0] == "budget":
                raise budget_exceeded(session_id, int(reply[1]), int(reply[2]), self._max_bytes)
            if reply[0] != "uncounted":
                return reply
            await self._start_count(session_id)
        raise store_unavailable(f"session {session_id!r} could not be counted")

    async def _start_count(self, session_id: str) -> None:
        """Counts a session from its stored contents (`sizes.measure`) into Redis."""
        usage = await measure(self, session_id, self._history_limit or None)
        args: list[str | int | float] = [session_id, usage.base + usage.jobs, len(usage.variables)]
        for variable_id, record in usage.variables.items():
            sizes = usage.history.get(variable_id, ())
            args += [variable_id, record, len(sizes), *sizes]
        for module_id, size in usage.modules.items():
            args += [module_id, size]
        reply = await self._run(lua.INIT_BUDGET, *args)
        if reply[0] == "session":
            raise session_not_found(session_id)

    async def close(self) -> None:
        """Releases this replica's job leases (its jobs are orphaned now: any replica marks
        them INTERRUPTED at once, not a lease later), then the connections."""
        if self._client is not None and self._leased:
            flat = [part for pair in sorted(self._leased) for part in pair]
            # Redis unreachable: the leases lapse by themselves.
            with contextlib.suppress(BridgeError, RedisError):
                await self._run(lua.RELEASE_LEASES, self.replica_id, *flat)
            self._leased.clear()
        await self._pipe.close()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError):
                await client.aclose()

    # -- sessions -------------------------------------------------------------------------

    async def create_session(
        self, session: Session, *, max_sessions: int, max_per_owner: int = 0
    ) -> Session:
        expire = "" if session.expire_time is None else _num(session.expire_time)
        reply = await self._run(
            lua.CREATE_SESSION,
            session.session_id,
            max_sessions,
            _num(session.create_time),
            expire,
            session_size(session),
            session.owner,
            max_per_owner,
            *_session_fields(session, secrets.token_hex(8)),
        )
        if reply[0] == "exists":
            raise already_exists(
                Reason.SESSION_ALREADY_EXISTS,
                f"session {session.session_id!r} already exists",
                session_id=session.session_id,
            )
        if reply[0] == "limit":
            raise resource_exhausted(
                Reason.SESSION_LIMIT,
                f"the server holds its maximum of {max_sessions} sessions",
                limit=str(max_sessions),
            )
        if reply[0] == "quota":
            raise session_quota_exceeded(int(reply[1]), max_per_owner)
        return await self.get_session(session.session_id)

    async def get_session(self, session_id: str) -> Session:
        reply = await self._run(lua.GET_SESSION, session_id)
        if reply[0] != "ok":
            raise session_not_found(session_id)
        return session_from_reply(reply[1], reply[2], reply[3])

    async def session_epoch(self, session_id: str) -> str:
        """The session's incarnation (new at each create): NOT_FOUND if it is gone."""
        epoch = await self.call("HGET", self.session_key(session_id), "epoch")
        if epoch is None:
            raise session_not_found(session_id)
        return str(epoch)

    async def session_owner(self, session_id: str) -> str:
        """The session's owner, read from Redis for this call (NOT_FOUND if it is gone); calls
        for the same session share reads (`SharedReads`: none gets one sent before it came)."""
        return await self._owner_reads.read(session_id, self._read_owner)

    async def _read_owner(self, session_id: str) -> str:
        found = await self._piped("HMGET", self.session_key(session_id), "sid", "owner")
        if found[0] is None:
            raise session_not_found(session_id)
        return str(found[1] or "")

    async def list_sessions(
        self, *, offset: int, limit: int, visible_to: str | None = None
    ) -> list[Session]:
        rows = await self._run(
            lua.LIST_SESSIONS,
            max(offset, 0),
            max(limit, 0),
            visible_to or "",
            "0" if visible_to is None else "1",
        )
        return [session_from_reply(flat, v, m) for flat, v, m in rows]

    async def count_sessions(self) -> int:
        return int(await self.call("ZCARD", self.key("sessions")))

    async def delete_session(self, session_id: str, reason: str = "deleted") -> None:
        reply = await self._run(
            lua.DELETE_SESSION, session_id, reason, self._stream_length, _ENDED_STREAM_TTL_S
        )
        self._views.drop_session(session_id)
        if reply[0] != "ok":
            raise session_not_found(session_id)

    async def set_session_expiry(self, session_id: str, expire_time: float | None) -> Session:
        value = "" if expire_time is None else _num(expire_time)
        return await self._set_session_field(session_id, "expire_time", value)

    async def set_session_lm(self, session_id: str, lm: LMSpec | None) -> Session:
        value = "" if lm is None else _dumps(lm.to_dict())
        return await self._set_session_field(session_id, "lm", value)

    async def _set_session_field(self, session_id: str, name: str, value: str) -> Session:
        reply = await self._run(lua.SET_SESSION_FIELD, session_id, name, value)
        if reply[0] != "ok":
            raise session_not_found(session_id)
        return await self.get_session(session_id)

    async def expired_sessions(self, now: float) -> list[str]:
        found = await self.call("ZRANGEBYSCORE", self.key("expiry"), "-inf", _num(now))
        return [str(sid) for sid in found]

    # -- variables ------------------------------------------------------------------------

    async def create_variable(self, variable: Variable, *, max_variables: int) -> Variable:
        value = encode_value(variable.value)
        ut = _num(variable.update_time)
        entry = _dumps(["1", value, variable.source, "", ut])
        reply = await self._admitted(
            lua.CREATE_VARIABLE,
            variable.session_id,
            variable.id,
            variable.name,
            max_variables,
            self._stream_length,
            entry,
            self._max_bytes,
            variable_size(variable),
            entry_size(variable.value, variable.source, ""),
            "meta",
            variable_meta(variable),
            "value",
            value,
            "version",
            "1",
            "ut",
            ut,
            "src",
            variable.source,
        )
        if reply[0] == "session":
            raise session_not_found(variable.session_id)
        if reply[0] == "exists":
            raise already_exists(
                Reason.VARIABLE_ALREADY_EXISTS,
                f"variable {reply[1]!r} already exists in session {variable.session_id!r}",
                session_id=variable.session_id,
                variable=reply[1],
            )
        if reply[0] == "limit":
            raise resource_exhausted(
                Reason.VARIABLE_LIMIT,
                f"session {variable.session_id!r} holds its maximum of {max_variables} variables",
                session_id=variable.session_id,
                limit=str(max_variables),
            )
        return variable_from_fields(variable_meta(variable), value, "1", ut, variable.source)

    async def get_variable(self, session_id: str, name_or_id: str) -> Variable:
        reply = await self._run(lua.GET_VARIABLE, session_id, name_or_id)
        if reply[0] == "session":
            raise session_not_found(session_id)
        if reply[0] != "ok":
            raise variable_not_found(session_id, name_or_id)
        return variable_from_fields(*reply[1:6])

    async def list_variables(self, session_id: str) -> list[Variable]:
        reply = await self._run(lua.LIST_VARIABLES, session_id)
        if reply[0] != "ok":
            raise session_not_found(session_id)
        variables = [variable_from_fields(*fields) for fields in reply[1:]]
        variables.sort(key=lambda v: v.name)
        return variables

    async def delete_variable(self, session_id: str, variable_id: str) -> Variable:
        current = await self.get_variable(session_id, variable_id)
        if current.id != variable_id:  # the name of another variable, not this id
            raise variable_not_found(session_id, variable_id)
        reply = await self._run(
            lua.DELETE_VARIABLE, session_id, variable_id, current.name, self._stream_length
        )
        if reply[0] == "session":
            raise session_not_found(session_id)
        if reply[0] != "ok":
            raise variable_not_found(session_id, variable_id)
        return variable_from_fields(*reply[1:6])

    async def write_variables(
        self, session_id: str, writes: Sequence[VariableWrite], *, now: float
    ) -> list[Variable]:
        args: list[str | int | float] = [
            _num(now),
            self._history_limit,
            self._stream_length,
            self._max_bytes,
        ]
        encoded = []
        for write in writes:
            value = encode_value(write.value)
            encoded.append(value)
            expected = "" if write.expected_version is None else str(write.expected_version)
            size = entry_size(write.value, write.source, write.reason)
            args += [write.variable_id, value, write.source, write.reason, expected, size]
        reply = await self._admitted(lua.WRITE_VARIABLES, session_id, *args)
        kind = reply[0]
        if kind == "session":
            raise session_not_found(session_id)
        if kind == "variable":
            raise variable_not_found(session_id, reply[1])
        if kind == "conflict":
            name = await self._variable_name(session_id, reply[1])
            raise version_conflict(f"variable {name!r}", int(reply[2]), int(reply[3]))
        ut = _num(now)
        return [
            variable_from_fields(meta, value, version, ut, write.source)
            for (version, meta), value, write in zip(reply[1:], encoded, writes, strict=True)
        ]

    async def _variable_name(self, session_id: str, variable_id: str) -> str:
        try:
            return (await self.get_variable(session_id, variable_id)).name
        except BridgeError:
            return variable_id

    async def variable_history(
        self, session_id: str, variable_id: str, *, limit: int
    ) -> list[HistoryEntry]:
        reply = await self._run(lua.VARIABLE_HISTORY, session_id, variable_id, max(limit, 0))
        if reply[0] == "session":
            raise session_not_found(session_id)
        if reply[0] != "ok":
            raise variable_not_found(session_id, variable_id)
        entries = []
        for raw in reversed(reply[1]):
            version, value, source, reason, ut = json.loads(raw)
            entries.append(
                HistoryEntry(int(version), decode_value(value), source, reason, float(ut))
            )
        return entries

    # -- modules --------------------------------------------------------------------------

    async def create_module(self, record: ModuleRecord) -> ModuleRecord:
        doc = _module_doc(record, 1)
        reply = await self._admitted(
            lua.CREATE_MODULE,
            record.session_id,
            record.module_id,
            doc,
            self._max_bytes,
            module_size(record),
        )
        if reply[0] == "session":
            raise session_not_found(record.session_id)
        if reply[0] == "exists":
            raise already_exists(
                Reason.MODULE_ALREADY_EXISTS,
                f"module {record.module_id!r} already exists in session {record.session_id!r}",
                session_id=record.session_id,
                module_id=record.module_id,
            )
        return _module_from_doc(doc)

    async def get_module(self, session_id: str, module_id: str, version: int = 0) -> ModuleRecord:
        reply = await self._run(lua.GET_MODULE, session_id, module_id, version)
        _raise_module_error(reply, session_id, module_id, version)
        return _module_from_doc(reply[1])

    async def list_modules(self, session_id: str) -> list[ModuleRecord]:
        reply = await self._run(lua.LIST_MODULES, session_id)
        if reply[0] != "ok":
            raise session_not_found(session_id)
        records = [_module_from_doc(doc) for doc in reply[1:]]
        records.sort(key=lambda r: r.module_id)
        return records

    async def execution_view(
        self, session_id: str, module_id: str, version: int = 0
    ) -> tuple[Session, ModuleRecord, list[Variable]]:
        """At most one round trip, shared by the Executes of the same module that arrive while
        another read of it is on its way (`ExecutionViews.read`); see `_read_view`."""
        key = (session_id, module_id, version)
        view, expire_time = await self._views.read(key, self._read_view)
        return view.copy(expire_time=expire_time)

    async def _read_view(self, key: ViewKey) -> tuple[ExecutionView, float | None]:
        """The view this replica read last for the same module, when the session's stamp says
        nothing in it changed since (only the expiry is read afresh); otherwise the whole view,
        kept for the next Execute. One round trip either way."""
        session_id, module_id, version = key
        held = self._views.get(key)
        stamp = ("", "", "") if held is None else held.stamp
        reply = await self._read(lua.EXECUTION_VIEW, session_id, module_id, version, *stamp)
        if reply[0] == "same" and held is not None:
            return held, float(reply[1]) if reply[1] else None
        self._views.drop(key)
        _raise_module_error(reply, session_id, module_id, version)
        stored = dict(zip(reply[1][::2], reply[1][1::2], strict=True))
        session = session_from_reply(reply[1], reply[2], reply[3])
        variables = [variable_from_fields(*fields) for fields in reply[5:]]
        variables.sort(key=lambda v: v.name)
        view = ExecutionView(
            (stored["epoch"], stored["seq"], stored.get("gen", "0")),
            session,
            _module_from_doc(reply[4]),
            variables,
        )
        self._views.put(key, view)
        return view, session.expire_time

    async def put_module_version(
        self, record: ModuleRecord, *, expected_version: int
    ) -> ModuleRecord:
        doc = _module_doc(record, expected_version + 1)
        reply = await self._admitted(
            lua.PUT_MODULE_VERSION,
            record.session_id,
            record.module_id,
            expected_version,
            doc,
            self._max_bytes,
            module_size(record),
        )
        if reply[0] == "session":
            raise session_not_found(record.session_id)
        if reply[0] == "module":
            raise module_not_found(record.session_id, record.module_id)
        if reply[0] == "conflict":
            raise version_conflict(f"module {record.module_id!r}", expected_version, int(reply[1]))
        return _module_from_doc(doc)

    async def delete_module(self, session_id: str, module_id: str) -> None:
        reply = await self._run(lua.DELETE_MODULE, session_id, module_id)
        if reply[0] == "session":
            raise session_not_found(session_id)
        if reply[0] != "ok":
            raise module_not_found(session_id, module_id)

    # -- jobs -----------------------------------------------------------------------------

    async def create_job(self, job: Job, *, owner: str = "", max_active_per_owner: int = 0) -> Job:
        doc = _job_doc(job)
        active = "1" if job.status in ACTIVE_STATUSES else "0"
        reply = await self._admitted(
            lua.CREATE_JOB,
            job.session_id,
            job.job_id,
            doc,
            active,
            self.replica_id,
            self._lease_ms,
            self._max_bytes,
            job_size(job),
            owner,
            max_active_per_owner,
        )
        if reply[0] == "session":
            raise session_not_found(job.session_id)
        if reply[0] == "exists":
            raise job_exists(job.session_id, job.job_id)
        if reply[0] == "quota":
            raise job_quota_exceeded(int(reply[1]), max_active_per_owner)
        if active == "1":
            self._leased.add((job.session_id, job.job_id))
        return Job.from_dict(json.loads(doc))

    async def _job_doc(self, session_id: str, job_id: str) -> str:
        reply = await self._run(lua.GET_JOB, session_id, job_id)
        if reply[0] == "session":
            raise session_not_found(session_id)
        if reply[0] != "ok":
            raise job_not_found(session_id, job_id)
        return str(reply[1])

    async def get_job(self, session_id: str, job_id: str) -> Job:
        return Job.from_dict(json.loads(await self._job_doc(session_id, job_id)))

    async def update_job(
        self,
        session_id: str,
        job_id: str,
        update: JobUpdate,
        *,
        if_status: Collection[JobStatus] | None = None,
    ) -> Job:
        for _ in range(_JOB_CAS_ROUNDS):
            old = await self._job_doc(session_id, job_id)
            job = Job.from_dict(json.loads(old))
            if if_status is not None and job.status not in if_status:
                raise job_state_conflict(job_id, job.status)
            new = _job_doc(update.apply_to(job))
            updated = Job.from_dict(json.loads(new))
            active = "1" if updated.status in ACTIVE_STATUSES else "0"
            reply = await self._run(lua.UPDATE_JOB, session_id, job_id, old, new, active)
            if reply[0] == "ok":
                return updated
            if reply[0] == "session":
                raise session_not_found(session_id)
            if reply[0] == "job":
                raise job_not_found(session_id, job_id)
        raise store_unavailable(f"job {job_id!r} kept changing during the update")

    async def list_jobs(
        self, session_id: str, *, module_id: str = "", offset: int = 0, limit: int = 0
    ) -> list[Job]:
        reply = await self._run(lua.LIST_JOBS, session_id)
        if reply[0] != "ok":
            raise session_not_found(session_id)
        jobs = [Job.from_dict(json.loads(doc)) for doc in reply[1]]
        jobs = [job for job in jobs if not module_id or job.module_id == module_id]
        jobs.sort(key=lambda job: (job.create_time, job.job_id))
        start = max(offset, 0)
        return jobs[start : start + limit] if limit > 0 else jobs[start:]

    async def mark_running_jobs_interrupted(self, now: float) -> list[Job]:
        """Shared store: only jobs whose replica is gone (lease lapsed), never the live jobs of
        other replicas."""
        return await self.interrupt_orphaned_jobs(now)

    async def renew_job_leases(self, jobs: Sequence[tuple[str, str]]) -> set[tuple[str, str]]:
        if not jobs:
            return set()
        flat = [part for pair in jobs for part in pair]
        held = await self._run(lua.RENEW_LEASES, self.replica_id, self._lease_ms, *flat)
        lost = {pair for pair, ok in zip(jobs, held, strict=True) if not int(ok)}
        self._leased -= lost
        return lost

    async def interrupt_orphaned_jobs(self, now: float) -> list[Job]:
        marked = []
        for session_id, job_id in await self._run(lua.ORPHANED_JOBS):
            try:
                job = await self.update_job(
                    session_id,
                    job_id,
                    JobUpdate(status=JobStatus.INTERRUPTED, end_time=now),
                    if_status=ACTIVE_STATUSES,
                )
            except BridgeError as exc:
                if exc.code == grpc.StatusCode.UNAVAILABLE:
                    raise
                # Gone, or no longer active: drop it from the active set and its caller's share.
                await self._run(lua.DEACTIVATE_JOB, session_id, job_id)
                continue
            marked.append(job)
        marked.sort(key=lambda job: (job.create_time, job.job_id))
        return marked
