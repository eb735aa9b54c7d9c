"""The host-call hub: the Connect streams of every session and the calls travelling on them.

A host opens `Connect`, says `hello` (its session and the tools, metrics and LMs it offers) and
then answers calls by `call_id`. The hub keeps, per session, the live connections and what each
offers, and implements `HostCaller` for everything in the front (and, through the worker and job
channels, for every other process):

- **Spreading.** Several connections may offer the same name (several nodes of a host cluster):
  a call goes to the one with the fewest calls of that name in flight (then the fewest calls at
  all), ties taken in turn. A tool's `max_concurrency` bounds its calls in flight per
  connection; beyond it calls wait for a slot (within their deadline).
- **Deadlines.** A call's deadline is the smaller of the name's timeout (the tool's
  `timeout_ms`, or the server's metric / LM timeout) and the caller's remaining time. At the
  deadline the caller gets DEADLINE_EXCEEDED `HOST_CALL_TIMEOUT` and the host a `cancel`; an
  answer after that (or for a call_id never sent on that stream) is ignored and logged (one
  line a second at most, counting the rest).
- **Cancellation.** A caller that goes away (its execution cancelled) sends `cancel` at once.
- **Disconnects.** The calls of a connection that drops go to another live connection offering
  the name, within their deadline; with none, a tool call fails UNAVAILABLE
  `HOST_DISCONNECTED` at once, while a metric or LM call (made by an evaluation or an
  optimization) waits up to `host_reconnect_wait_seconds` for the name to be offered again.
- **Bounds.** Everything a host controls is bounded by settings: connections per session,
  names per hello, schema size, calls in flight per connection, the size of one answer
  (a bigger answer fails that call only, RESOURCE_EXHAUSTED `HOST_RESULT_TOO_LARGE`), and the
  numbers in an answer (token counts 0..2^31-1, finite scores; else that call fails UNKNOWN
  `HOST_PROTOCOL_ERROR`).
- **Isolation.** Names are per session: a session's host tools, metrics and LMs are invisible
  to every other session.

The hub speaks no protobuf: the transport turns its `Outgoing` messages into `ConnectResponse`s
and the host's answers into `HostReply`s.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc

from dspy_bridge.config import Settings
from dspy_bridge.errors import (
    BridgeError,
    FieldViolation,
    Reason,
    already_exists,
    invalid_argument,
    resource_exhausted,
    session_not_found,
)
from dspy_bridge.log import RateLimited, get_logger
from dspy_bridge.runtime.host_calls import (
    PREFIX,
    HostReply,
    HostRequest,
    HostToolSpec,
    Kind,
    LMReply,
    MetricReply,
    ToolReply,
    call_timeout,
    host_disconnected,
    kind_of,
)

log = get_logger(__name__)
#: Answers to unknown or finished calls cost a host nothing to send: one line a second at most.
IGNORED_LOG_EVERY_S = 1.0

NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,63}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")
_MAX_PROPERTIES = 64
_MAX_DESCRIPTION = 4_000
_MAX_TIMEOUT_MS = 3_600_000
#: Most tokens one host LM answer may report per count (int32): sums over any evaluation or
#: job stay far inside int64.
MAX_REPORTED_TOKENS = 2**31 - 1


_REPLY_TYPES: dict[Kind, type] = {"tool": ToolReply, "metric": MetricReply, "lm": LMReply}


@dataclass(frozen=True)
class OfferedTool:
    """A tool of a `hello`: its spec plus how many calls this connection takes at once
    (0: the server default)."""

    spec: HostToolSpec
    max_concurrency: int = 0


@dataclass
class Offer:
    """A `hello`, as the transport read it."""

    session_id: str
    tools: list[OfferedTool] = field(default_factory=list)
    #: (name, description) as offered, repeats included: `validate` refuses a repeated name
    #: (a dict here let `["m", "m"]` through, and named the wrong index for a description)
    metrics: list[tuple[str, str]] = field(default_factory=list)
    lms: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Welcome:
    connection_id: str
    tools: list[str]
    metrics: list[str]
    lms: list[str]


@dataclass(frozen=True)
class CallOut:
    """A call to send to the host."""

    call_id: str
    request: HostRequest
    #: Wall-clock deadline (seconds since the epoch) and the milliseconds left when sent.
    deadline: float
    timeout_ms: int


@dataclass(frozen=True)
class CancelOut:
    call_id: str


@dataclass(frozen=True)
class End:
    """The server ends the stream: with `error` as its status, or OK."""

    error: BridgeError | None = None


Outgoing = Welcome | CallOut | CancelOut | End


class _Lost(Exception):
    pass


@dataclass(eq=False)
class _Pending:
    call_id: str
    kind: Kind
    name: str
    future: asyncio.Future[HostReply]


class HostConnection:
    """One Connect stream: what it offers, its calls in flight and its outbox."""

    def __init__(self, session_id: str, offer: Offer, settings: Settings) -> None:
        self.id = f"conn_{secrets.token_hex(6)}"
        self.session_id = session_id
        self.tools = {t.spec.name: t.spec for t in offer.tools}
        default = settings.host_tool_max_concurrency
        self.tool_limits = {t.spec.name: t.max_concurrency or default for t in offer.tools}
        self.metrics = dict(offer.metrics)
        self.lms = set(offer.lms)
        self.outbox: asyncio.Queue[Outgoing] = asyncio.Queue()
        self.pending: dict[str, _Pending] = {}
        self.busy: dict[str, int] = {}
        self.closed = False
        self._ids = itertools.count(1)

    def offers(self, kind: Kind, name: str) -> bool:
        if kind == "tool":
            return name in self.tools
        if kind == "metric":
            return name in self.metrics
        return name in self.lms

    def has_room(self, kind: Kind, name: str, max_in_flight: int) -> bool:
        if len(self.pending) >= max_in_flight:
            return False
        return kind != "tool" or self.busy.get(name, 0) < self.tool_limits[name]

    def next_call_id(self) -> str:
        return f"{self.id[5:]}-{next(self._ids)}"

    def send(self, message: Outgoing) -> None:
        if not self.closed:
            self.outbox.put_nowait(message)


class _Session:
    def __init__(self) -> None:
        self.connections: list[HostConnection] = []
        self.changed = asyncio.Condition()
        self.waiters = 0
        self.turn = 0


class HostHub:
    """Connections per session and the calls on them (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._sessions: dict[str, _Session] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._ignored_log = RateLimited(log, IGNORED_LOG_EVERY_S)

    # -- connections ------------------------------------------------------------------------

    def validate(self, offer: Offer) -> None:
        """INVALID_ARGUMENT (with the `hello` field's path) for a name, schema or limit the
        server does not take; RESOURCE_EXHAUSTED for too many names."""
        s = self._settings
        count = len(offer.tools) + len(offer.metrics) + len(offer.lms)
        if count > s.host_max_names:
            raise resource_exhausted(
                Reason.HOST_CONNECTION_LIMIT,
                f"hello offers {count} names; at most {s.host_max_names} "
                "(tools + metrics + lms) per connection",
                limit=str(s.host_max_names),
            )
        for kind, names in (
            ("tools", [t.spec.name for t in offer.tools]),
            ("metrics", [name for name, _ in offer.metrics]),
            ("lms", list(offer.lms)),
        ):
            seen: set[str] = set()
            for i, name in enumerate(names):
                path = f"hello.{kind}[{i}].name"
                if not NAME.fullmatch(name):
                    raise _bad(
                        path,
                        f"{name[:80]!r} is not a valid name (a letter, then letters, digits, "
                        "`_` or `-`, up to 64; no `host:` prefix)",
                    )
                if name in seen:
                    raise _bad(path, f"{name!r} is offered twice")
                seen.add(name)
        for i, tool in enumerate(offer.tools):
            self._check_tool(f"hello.tools[{i}]", tool)
        for i, (name, description) in enumerate(offer.metrics):
            if len(description) > _MAX_DESCRIPTION:
                raise _bad(
                    f"hello.metrics[{i}].description",
                    f"metric {name!r}: longer than {_MAX_DESCRIPTION} characters",
                )

    def _check_tool(self, path: str, tool: OfferedTool) -> None:
        s, spec = self._settings, tool.spec
        if len(spec.description) > _MAX_DESCRIPTION:
            raise _bad(f"{path}.description", f"longer than {_MAX_DESCRIPTION} characters")
        if not 0 <= spec.timeout_ms <= _MAX_TIMEOUT_MS:
            raise _bad(f"{path}.timeout_ms", f"must be 0..{_MAX_TIMEOUT_MS}")
        if not 0 <= tool.max_concurrency <= s.host_max_calls_in_flight:
            raise _bad(f"{path}.max_concurrency", f"must be 0..{s.host_max_calls_in_flight}")
        schema = spec.parameters
        size = len(json.dumps(schema, separators=(",", ":")))
        if size > s.host_max_schema_bytes:
            raise BridgeError(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                Reason.HOST_CONNECTION_LIMIT,
                f"{path}.parameters: the schema is {size} bytes; at most {s.host_max_schema_bytes}",
                {"limit": str(s.host_max_schema_bytes)},
                (FieldViolation(f"{path}.parameters", "schema too large"),),
            )
        if not schema:
            return
        where = f"{path}.parameters"
        if schema.get("type", "object") != "object":
            raise _bad(where, 'must be an object schema ("type": "object")')
        properties = schema.get("properties", {})
        if not isinstance(properties, Mapping) or len(properties) > _MAX_PROPERTIES:
            raise _bad(
                f"{where}.properties",
                f"must be an object of at most {_MAX_PROPERTIES} parameter schemas",
            )
        for name, sub in properties.items():
            if not _IDENTIFIER.fullmatch(name):
                raise _bad(
                    f"{where}.properties",
                    f"parameter name {name[:80]!r} must be an identifier (letters, digits, _)",
                )
            if not isinstance(sub, Mapping):
                raise _bad(f"{where}.properties.{name}", "must be a schema object")
        required = schema.get("required", [])
        if not isinstance(required, Sequence) or isinstance(required, str):
            raise _bad(f"{where}.required", "must be a list of parameter names")
        missing = [r for r in required if r not in properties]
        if missing:
            raise _bad(f"{where}.required", f"names {missing[0]!r}, which is not a property")

    def register(self, offer: Offer) -> HostConnection:
        """A new connection offering `offer` (already validated). ALREADY_EXISTS
        `HOST_NAME_CONFLICT` when another connection of the session offers a tool of the same
        name with another schema; RESOURCE_EXHAUSTED past `host_max_connections`."""
        session = self._sessions.setdefault(offer.session_id, _Session())
        limit = self._settings.host_max_connections
        if len(session.connections) >= limit:
            raise resource_exhausted(
                Reason.HOST_CONNECTION_LIMIT,
                f"session already has {limit} host connections (the most allowed)",
                limit=str(limit),
            )
        for tool in offer.tools:
            for other in session.connections:
                theirs = other.tools.get(tool.spec.name)
                if theirs is not None and theirs.parameters != tool.spec.parameters:
                    raise already_exists(
                        Reason.HOST_NAME_CONFLICT,
                        f"another connection of this session offers tool "
                        f"{PREFIX}{tool.spec.name} with a different parameters schema; "
                        "every connection must offer the same schema for a name",
                        name=f"{PREFIX}{tool.spec.name}",
                        connection_id=other.id,
                    )
        connection = HostConnection(offer.session_id, offer, self._settings)
        session.connections.append(connection)
        connection.send(
            Welcome(
                connection.id,
                sorted(connection.tools),
                sorted(connection.metrics),
                sorted(connection.lms),
            )
        )
        self._changed(session)
        log.info(
            "host connected",
            session_id=offer.session_id,
            connection_id=connection.id,
            tools=len(connection.tools),
            metrics=len(connection.metrics),
            lms=len(connection.lms),
        )
        return connection

    def unregister(self, connection: HostConnection) -> None:
        """The stream ended: its calls go elsewhere (or fail) — see the module docstring."""
        if connection.closed:
            return
        connection.closed = True
        session = self._sessions.get(connection.session_id)
        if session is not None:
            if connection in session.connections:
                session.connections.remove(connection)
            self._changed(session)
        for pending in list(connection.pending.values()):
            if not pending.future.done():
                pending.future.set_exception(_Lost())
        connection.pending.clear()
        log.info("host disconnected", session_id=connection.session_id, connection_id=connection.id)

    def session_gone(self, session_id: str) -> None:
        """The session was deleted or expired: its streams end (NOT_FOUND)."""
        session = self._sessions.get(session_id)
        if session is None:
            return
        for connection in list(session.connections):
            connection.outbox.put_nowait(End(session_not_found(session_id)))
            self.unregister(connection)
        self._sessions.pop(session_id, None)

    def close(self) -> None:
        """Server stop: every stream ends (UNAVAILABLE, retry elsewhere)."""
        error = BridgeError(
            grpc.StatusCode.UNAVAILABLE,
            Reason.DRAINING,
            "the server is shutting down",
            {"retryable": "true"},
        )
        for session in list(self._sessions.values()):
            for connection in list(session.connections):
                connection.outbox.put_nowait(End(error))
                self.unregister(connection)

    async def session_gone_hook(self, session_id: str) -> None:
        self.session_gone(session_id)

    # -- what is offered --------------------------------------------------------------------

    def _connections(self, session_id: str) -> list[HostConnection]:
        session = self._sessions.get(session_id)
        return list(session.connections) if session is not None else []

    def names(self, session_id: str, kind: Kind) -> list[str]:
        """Names of `kind` some live connection of the session offers, sorted, unprefixed."""
        found: set[str] = set()
        for connection in self._connections(session_id):
            if kind == "tool":
                found.update(connection.tools)
            elif kind == "metric":
                found.update(connection.metrics)
            else:
                found.update(connection.lms)
        return sorted(found)

    def tool_specs(self, session_id: str) -> dict[str, HostToolSpec]:
        """Every tool the session's connections offer, by name (the first offer of a name;
        all offers of one name share its schema)."""
        specs: dict[str, HostToolSpec] = {}
        for connection in self._connections(session_id):
            for name, spec in connection.tools.items():
                specs.setdefault(name, spec)
        return specs

    def tool_spec(self, session_id: str, name: str) -> HostToolSpec | None:
        for connection in self._connections(session_id):
            spec = connection.tools.get(name)
            if spec is not None:
                return spec
        return None

    def connection_count(self, session_id: str) -> int:
        return len(self._connections(session_id))

    async def wait_connections(
        self, session_id: str, predicate: Callable[[int], bool], within: float
    ) -> None:
        """Waits until `predicate(number of live connections)` holds (for tests, the client's
        own checks and operators); raises TimeoutError after `within` seconds."""
        session = self._sessions.setdefault(session_id, _Session())
        session.waiters += 1
        try:
            async with asyncio.timeout(within), session.changed:
                await session.changed.wait_for(lambda: predicate(len(session.connections)))
        finally:
            session.waiters -= 1

    async def wait_disconnected(self, session_id: str, within: float) -> None:
        await self.wait_connections(session_id, lambda n: n == 0, within)

    # -- answers ----------------------------------------------------------------------------

    def deliver(
        self, connection: HostConnection, call_id: str, reply: HostReply, size: int
    ) -> None:
        """An answer from the host. Unknown, finished or late calls are ignored and logged; an
        answer of the wrong kind, over `host_max_result_bytes` or with a number out of range (token
        counts, a non-finite score) fails that call only."""
        pending = connection.pending.pop(call_id, None)
        if pending is None or pending.future.done():
            self._ignored_log.info(
                "host answer ignored: unknown or finished call",
                session_id=connection.session_id,
                connection_id=connection.id,
                call_id=call_id[:80],
            )
            return
        limit = self._settings.host_max_result_bytes
        if not isinstance(reply, _REPLY_TYPES[pending.kind]):
            pending.future.set_exception(
                BridgeError(
                    grpc.StatusCode.UNKNOWN,
                    Reason.HOST_PROTOCOL_ERROR,
                    f"the host answered {pending.kind} call {call_id} with a "
                    f"{type(reply).__name__}",
                )
            )
        elif size > limit:
            pending.future.set_exception(
                resource_exhausted(
                    Reason.HOST_RESULT_TOO_LARGE,
                    f"the host's answer to {pending.kind} {PREFIX}{pending.name} is {size} "
                    f"bytes; at most {limit} (host_max_result_bytes)",
                    limit=str(limit),
                    size=str(size),
                )
            )
        elif (problem := _out_of_range(reply)) is not None:
            pending.future.set_exception(
                BridgeError(
                    grpc.StatusCode.UNKNOWN,
                    Reason.HOST_PROTOCOL_ERROR,
                    f"the host's answer to {pending.kind} {PREFIX}{pending.name}: {problem}",
                )
            )
        else:
            pending.future.set_result(reply)

    # -- calls ------------------------------------------------------------------------------

    @property
    def reconnect_wait_s(self) -> float:
        """How long a metric or LM call waits for its name to be offered again."""
        return self._settings.host_reconnect_wait_seconds

    def _limit_ms(self, session_id: str, kind: Kind, name: str) -> int:
        s = self._settings
        if kind == "tool":
            spec = self.tool_spec(session_id, name)
            if spec is not None and spec.timeout_ms:
                return spec.timeout_ms
            return s.host_tool_timeout_ms
        return s.host_metric_timeout_ms if kind == "metric" else s.host_lm_timeout_ms

    def _pick(self, session: _Session, kind: Kind, name: str) -> tuple[HostConnection | None, bool]:
        """(a connection with room for the call, whether any connection offers the name)."""
        limit = self._settings.host_max_calls_in_flight
        offering = [c for c in session.connections if c.offers(kind, name) and not c.closed]
        roomy = [c for c in offering if c.has_room(kind, name, limit)]
        if not roomy:
            return None, bool(offering)
        session.turn += 1
        turn = session.turn
        best = min(
            range(len(roomy)),
            key=lambda i: (
                roomy[i].busy.get(name, 0),
                len(roomy[i].pending),
                (i - turn) % len(roomy),
            ),
        )
        return roomy[best], True

    async def call_host(
        self, session_id: str, request: HostRequest, timeout_s: float | None
    ) -> HostReply:
        return await self.call(session_id, request, timeout_s)

    async def call(
        self,
        session_id: str,
        request: HostRequest,
        timeout_s: float | None,
        reconnect_wait_s: float | None = None,
    ) -> HostReply:
        """Sends `request` to a connection of the session offering its name and waits for the
        answer (see the module docstring). `reconnect_wait_s`: how long to wait for the name to
        be offered when no connection offers it (default: 0 for tools, the setting for metrics
        and LMs)."""
        kind, name = kind_of(request)
        loop = asyncio.get_running_loop()
        if reconnect_wait_s is None:
            reconnect_wait_s = 0.0 if kind == "tool" else self._settings.host_reconnect_wait_seconds
        now = loop.time()
        caller_deadline = now + timeout_s if timeout_s is not None else float("inf")
        limit_ms = self._limit_ms(session_id, kind, name)
        deadline = min(caller_deadline, now + limit_ms / 1000)
        session = self._sessions.setdefault(session_id, _Session())
        while True:
            connection, offered = self._pick(session, kind, name)
            if connection is None:
                if offered:
                    if not self._roomy_later(session, kind, name):
                        raise resource_exhausted(
                            Reason.HOST_CALLS_LIMIT,
                            f"every host connection offering {PREFIX}{name} has "
                            f"{self._settings.host_max_calls_in_flight} calls in flight",
                            limit=str(self._settings.host_max_calls_in_flight),
                        )
                    await self._wait(session, deadline, kind, name, limit_ms)
                    continue
                wait_until = min(caller_deadline, loop.time() + reconnect_wait_s)
                if loop.time() >= wait_until:
                    raise host_disconnected(kind, name, self.names(session_id, kind))
                await self._wait_offered(session, wait_until, kind, name)
                if not any(c.offers(kind, name) for c in session.connections):
                    raise host_disconnected(kind, name, self.names(session_id, kind))
                # A reconnected host gets the name's whole timeout again.
                deadline = min(caller_deadline, loop.time() + limit_ms / 1000)
                continue
            try:
                return await self._send(connection, session, kind, name, request, deadline)
            except _Lost:
                continue  # the connection dropped: another one, within the deadline

    def _roomy_later(self, session: _Session, kind: Kind, name: str) -> bool:
        """False when every offering connection is full of calls in flight overall (a limit
        reached only under overload: fail fast rather than queue)."""
        limit = self._settings.host_max_calls_in_flight
        return any(len(c.pending) < limit for c in session.connections if c.offers(kind, name))

    async def _wait(
        self, session: _Session, deadline: float, kind: Kind, name: str, limit_ms: int
    ) -> None:
        """Waits for any change in the session (a slot freed, a connection added or gone)."""
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            raise call_timeout(kind, name, limit_ms)
        session.waiters += 1
        try:
            async with session.changed:
                await asyncio.wait_for(session.changed.wait(), remaining)
        except TimeoutError:
            raise call_timeout(kind, name, limit_ms) from None
        finally:
            session.waiters -= 1

    async def _wait_offered(self, session: _Session, until: float, kind: Kind, name: str) -> None:
        session.waiters += 1
        try:
            async with session.changed:
                remaining = until - asyncio.get_running_loop().time()
                if remaining > 0:
                    await asyncio.wait_for(
                        session.changed.wait_for(
                            lambda: any(c.offers(kind, name) for c in session.connections)
                        ),
                        remaining,
                    )
        except TimeoutError:
            pass
        finally:
            session.waiters -= 1

    async def _send(
        self,
        connection: HostConnection,
        session: _Session,
        kind: Kind,
        name: str,
        request: HostRequest,
        deadline: float,
    ) -> HostReply:
        loop = asyncio.get_running_loop()
        remaining = deadline - loop.time()
        limit_ms = self._limit_ms(connection.session_id, kind, name)
        if remaining <= 0:
            raise call_timeout(kind, name, limit_ms)
        call_id = connection.next_call_id()
        future: asyncio.Future[HostReply] = loop.create_future()
        connection.pending[call_id] = _Pending(call_id, kind, name, future)
        connection.busy[name] = connection.busy.get(name, 0) + 1
        connection.send(
            CallOut(call_id, request, time.time() + remaining, max(1, int(remaining * 1000)))
        )
        try:
            async with asyncio.timeout(remaining):
                return await future
        except TimeoutError:
            connection.send(CancelOut(call_id))
            raise call_timeout(kind, name, min(limit_ms, int(remaining * 1000) or 1)) from None
        except asyncio.CancelledError:
            connection.send(CancelOut(call_id))
            raise
        finally:
            connection.pending.pop(call_id, None)
            connection.busy[name] -= 1
            if session.waiters:
                self._changed(session)

    def _changed(self, session: _Session) -> None:
        if not session.waiters:
            return

        async def notify() -> None:
            async with session.changed:
                session.changed.notify_all()

        task = asyncio.get_running_loop().create_task(notify())
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def _out_of_range(reply: HostReply) -> str | None:
    """What is wrong with a number in an answer, or None. Token counts feed usage sums (int64
    on the wire) and counters; scores feed means and optimizers, where a NaN poisons all."""
    if isinstance(reply, LMReply):
        for name, count in (
            ("prompt_tokens", reply.prompt_tokens),
            ("completion_tokens", reply.completion_tokens),
        ):
            if not 0 <= count <= MAX_REPORTED_TOKENS:
                return f"usage.{name} is {count}; it must be 0..{MAX_REPORTED_TOKENS}"
    if isinstance(reply, MetricReply) and not reply.error and not math.isfinite(reply.score):
        return f"score is {reply.score}; it must be a finite number"
    return None


def _bad(path: str, message: str) -> BridgeError:
    return invalid_argument(Reason.INVALID_REQUEST, f"{path}: {message}", path)
