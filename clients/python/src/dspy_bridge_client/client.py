"""The synchronous client. `dspy_bridge_client.aio` has the asyncio twin with the same shape.

::

    from dspy_bridge_client import BridgeClient

    with BridgeClient("127.0.0.1:50051") as client:
        session = client.create_session()
        session.register_variable("temperature", "float", 0.7, min=0.0, max=1.0)
        session.update_variable("temperature", 0.2)

Every failed call raises a `dspy_bridge_client.errors.BridgeError` subclass. The client is
thread-safe; one instance (one connection) per process is usually all you need.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable, Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any, Self

import grpc

from dspy_bridge_client import _requests as rq
from dspy_bridge_client import host, jobs
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from dspy_bridge_client._streams import ExecutionStream, Stream
from dspy_bridge_client.errors import DeadlineExceededError, UnavailableError, from_rpc_error
from dspy_bridge_client.jobs import ApplyResult, Job
from dspy_bridge_client.types import (
    BatchResults,
    Constraints,
    Evaluation,
    ExecuteResult,
    HistoryEntry,
    LMConfig,
    Module,
    PingResult,
    ServerInfo,
    Session,
    Signature,
    Variable,
    VariableType,
    WatchEvent,
    WriteResult,
    _stream_event,
    _watch_event,
)

__all__ = ["DEFAULT_TARGET", "BridgeClient", "SessionHandle"]

DEFAULT_TARGET = "127.0.0.1:50051"
"""Where `BridgeClient` connects by default (the sidecar's default address)."""

_CLOSED = "the client has been closed; create a new one to make more calls"


class _Transport:
    """The channel, stub and call settings shared by a client and its session handles."""

    def __init__(
        self, channel: grpc.Channel, target: str, timeout: float | None, metadata: rq.Metadata
    ) -> None:
        self.channel = channel
        self.stub = pb_grpc.BridgeServiceStub(channel)
        self.target = target
        self.timeout = timeout
        self.metadata = metadata
        self.closed = False
        self.credentials: grpc.ChannelCredentials | None = None
        self.options: tuple[tuple[str, Any], ...] = ()
        #: `serve` connections made through this client: `close` stops them (they run on a
        #: channel and thread of their own, which closing this channel would not end).
        self.hosts: weakref.WeakSet[host.HostServer] = weakref.WeakSet()

    def check_open(self) -> None:
        if self.closed:
            raise RuntimeError(_CLOSED)

    def unary(self, method: str, request: Any, timeout_ms: int = 0) -> Any:
        self.check_open()
        try:
            return getattr(self.stub, method)(
                request,
                timeout=rq.call_timeout(self.timeout, timeout_ms),
                metadata=self.metadata,
            )
        except grpc.RpcError as exc:
            raise from_rpc_error(exc, target=self.target) from None

    def stream(self, method: str, request: Any, timeout: float | None) -> Any:
        self.check_open()
        return getattr(self.stub, method)(request, timeout=timeout, metadata=self.metadata)


class BridgeClient:
    """A connection to a dspy-bridge sidecar.

    Args:
        target: ``host:port`` of the sidecar.
        timeout: default deadline of each call in seconds; None waits forever. Watch streams
            never time out; `execute` extends it to cover its ``timeout_ms``.
        metadata: sent with every call, e.g. ``{"authorization": "Bearer ..."}``.
        credentials: `grpc.ChannelCredentials` for TLS / mTLS
            (`grpc.ssl_channel_credentials`); None connects in plaintext.
        options: extra gRPC channel options, e.g. ``[("grpc.max_receive_message_length", n)]``.

    Use it as a context manager, or call `close` when done. Calls connect lazily;
    `wait_until_ready` waits for the sidecar to come up.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        *,
        timeout: float | None = 30,
        metadata: Mapping[str, str] | Iterable[tuple[str, str | bytes]] = (),
        credentials: grpc.ChannelCredentials | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        if credentials is not None:
            channel = grpc.secure_channel(target, credentials, options=list(options))
        else:
            channel = grpc.insecure_channel(target, options=list(options))
        self._transport = _Transport(channel, target, timeout, rq.normalize_metadata(metadata))
        # `SessionHandle.serve` opens a channel of its own (asyncio, on its thread) like this one.
        self._transport.credentials = credentials
        self._transport.options = tuple(options)

    @property
    def target(self) -> str:
        """The address this client dials."""
        return self._transport.target

    @property
    def timeout(self) -> float | None:
        """Default deadline of each call in seconds (None: no deadline); may be changed."""
        return self._transport.timeout

    @timeout.setter
    def timeout(self, value: float | None) -> None:
        self._transport.timeout = value

    def __repr__(self) -> str:
        return f"BridgeClient(target={self.target!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; calls in flight are cancelled and `serve` connections made
        through it stop serving. Safe to call twice."""
        self._transport.closed = True
        for hosting in list(self._transport.hosts):
            hosting.stop()
        self._transport.channel.close()

    def wait_until_ready(self, timeout: float | None = 10.0) -> None:
        """Block until the sidecar accepts connections, or raise `UnavailableError` after
        `timeout` seconds."""
        try:
            grpc.channel_ready_future(self._transport.channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise UnavailableError(
                f"could not connect to {self.target} within {timeout}s",
                hint="is the dspy-bridge sidecar running? Start it with `dspy-bridge serve`",
            ) from None

    def ping(self, message: str = "") -> PingResult:
        """Check the sidecar is alive; echoes `message` with the server time and version."""
        start = time.perf_counter()
        response: pb.PingResponse = self._transport.unary("Ping", pb.PingRequest(message=message))
        return PingResult._from_proto(response, (time.perf_counter() - start) * 1000)

    def server_info(self) -> ServerInfo:
        """What the sidecar offers (module types, variable types, ...) and its configuration."""
        response: pb.GetServerInfoResponse = self._transport.unary(
            "GetServerInfo", pb.GetServerInfoRequest()
        )
        return ServerInfo._from_proto(response)

    def create_session(
        self,
        session_id: str | None = None,
        metadata: Mapping[str, str] | None = None,
        ttl_seconds: int = 0,
    ) -> SessionHandle:
        """Create a session and return a handle bound to it.

        Args:
            session_id: identifier to use (letters, digits, ``_``, ``-``); None lets the server
                make an unguessable one. `AlreadyExistsError` when taken.
            metadata: free-form labels.
            ttl_seconds: idle time after which the session expires; 0 uses the server default.
        """
        request = rq.create_session(session_id, metadata, ttl_seconds)
        response: pb.CreateSessionResponse = self._transport.unary("CreateSession", request)
        info = Session._from_proto(response.session)
        return SessionHandle(self._transport, info.session_id, info)

    def session(self, session_id: str) -> SessionHandle:
        """A handle for an existing session (no call is made; `SessionHandle.get` checks it)."""
        return SessionHandle(self._transport, session_id)

    def list_sessions(self, *, page_size: int = 0) -> Iterator[Session]:
        """Every session, oldest first, fetched a page (`page_size`, 0 = server default) at a
        time as the iteration proceeds."""
        token = ""
        while True:
            request = pb.ListSessionsRequest(page_size=page_size, page_token=token)
            response: pb.ListSessionsResponse = self._transport.unary("ListSessions", request)
            for session in response.sessions:
                yield Session._from_proto(session)
            token = response.next_page_token
            if not token:
                return


class SessionHandle:
    """Everything inside one session: LM, variables, modules, executions.

    Made by `BridgeClient.create_session` or `BridgeClient.session`; cheap, holds no server
    state, shares the client's connection (closing the client ends it).
    """

    def __init__(
        self, transport: _Transport, session_id: str, session: Session | None = None
    ) -> None:
        self._transport = transport
        self._session_id = session_id
        self._session = session

    @property
    def session_id(self) -> str:
        """The session's identifier."""
        return self._session_id

    @property
    def session(self) -> Session | None:
        """The session as it was when this handle was created by `create_session`; None for
        handles from `BridgeClient.session`. Call `get` for a fresh copy."""
        return self._session

    def __repr__(self) -> str:
        return f"SessionHandle(session_id={self._session_id!r})"

    # ------------------------------------------------------------------ session

    def get(self) -> Session:
        """The session, fresh from the server (`NotFoundError` when gone)."""
        request = pb.GetSessionRequest(session_id=self._session_id)
        response: pb.GetSessionResponse = self._transport.unary("GetSession", request)
        return Session._from_proto(response.session)

    def delete(self) -> None:
        """Delete the session with everything it owns; its watch streams end."""
        request = pb.DeleteSessionRequest(session_id=self._session_id)
        self._transport.unary("DeleteSession", request)

    def heartbeat(self) -> Session:
        """Extend the session's TTL from now; returns it with its new `expire_time`."""
        request = pb.HeartbeatRequest(session_id=self._session_id)
        response: pb.HeartbeatResponse = self._transport.unary("Heartbeat", request)
        return Session._from_proto(response.session)

    def configure_lm(
        self,
        model: str | LMConfig,
        *,
        api_base: str = "",
        api_key_env: str = "",
        **options: Any,
    ) -> Session:
        """Set the language model this session's modules use unless a module overrides it.

        Args:
            model: a LiteLLM model string (``openai/gpt-4o-mini``), ``offline`` (the built-in
                deterministic test double), or a whole `LMConfig`.
            api_base: base URL of an OpenAI-compatible or self-hosted endpoint.
            api_key_env: name of the *server's* environment variable holding the API key (the
                key itself never travels).
            options: provider options, e.g. ``temperature=0.2, max_tokens=512``.
        """
        lm = rq.lm_config(model, api_base, api_key_env, options)
        request = pb.ConfigureLMRequest(session_id=self._session_id, lm=lm._to_proto())
        response: pb.ConfigureLMResponse = self._transport.unary("ConfigureLM", request)
        return Session._from_proto(response.session)

    # ------------------------------------------------------------------ variables

    def register_variable(
        self,
        name: str,
        type: VariableType | str,
        initial_value: Any,
        *,
        min: float | None = None,
        max: float | None = None,
        step: float | None = None,
        choices: Sequence[str] | None = None,
        pattern: str | None = None,
        min_length: int | None = None,
        max_length: int | None = None,
        dims: Sequence[int] | None = None,
        dtype: str | None = None,
        description: str = "",
        metadata: Mapping[str, str] | None = None,
    ) -> Variable:
        """Register a typed variable; returns it at version 1.

        Args:
            name: unique within the session; letters, digits, ``_``, ``.``, ``-``.
            type: a `VariableType` or its name (``"float"``, ``"choice"``, ...).
            initial_value: the first value; must satisfy the type and constraints.
            min, max, step: numeric bounds and grid (FLOAT, INTEGER).
            choices: allowed values (CHOICE: required; STRING, MODULE: optional).
            pattern, min_length, max_length: string rules (``max_length`` also bounds JSON).
            dims: EMBEDDING length, or TENSOR shape (0 = any size in that dimension).
            dtype: required TENSOR element type (``float32``, ...).
            description, metadata: for humans and tools.

        Raises `InvalidArgumentError` for a bad name, type, constraints or value,
        `AlreadyExistsError` for a duplicate name, `ResourceExhaustedError` at a limit.
        """
        constraints = Constraints(
            min=min,
            max=max,
            step=step,
            choices=tuple(choices or ()),
            pattern=pattern or "",
            min_length=min_length,
            max_length=max_length,
            dims=tuple(dims or ()),
            dtype=dtype or "",
        )
        request = rq.register_variable(
            self._session_id, name, type, initial_value, constraints, description, metadata
        )
        response: pb.RegisterVariableResponse = self._transport.unary("RegisterVariable", request)
        return Variable._from_proto(response.variable)

    def get_variable(self, name: str) -> Variable:
        """A variable by name or id (`NotFoundError` when unknown)."""
        request = pb.GetVariableRequest(session_id=self._session_id, name=name)
        response: pb.GetVariableResponse = self._transport.unary("GetVariable", request)
        return Variable._from_proto(response.variable)

    def list_variables(self, pattern: str = "") -> list[Variable]:
        """The session's variables whose names match a glob `pattern` (``*``, ``?``, ``[ab]``;
        empty = all), in name order."""
        out: list[Variable] = []
        token = ""
        while True:  # pages: each is cut to fit in one gRPC message
            request = pb.ListVariablesRequest(
                session_id=self._session_id, pattern=pattern, page_token=token
            )
            response: pb.ListVariablesResponse = self._transport.unary("ListVariables", request)
            out.extend(Variable._from_proto(v) for v in response.variables)
            token = response.next_page_token
            if not token:
                return out

    def delete_variable(self, name: str) -> None:
        """Delete a variable and its history (`FailedPreconditionError` while a module is bound
        to it)."""
        request = pb.DeleteVariableRequest(session_id=self._session_id, name=name)
        self._transport.unary("DeleteVariable", request)

    def update_variable(
        self,
        name: str,
        value: Any,
        *,
        expected_version: int | None = None,
        source: str = "",
        reason: str = "",
    ) -> Variable:
        """Write a new version of a variable; returns it at its new version.

        Args:
            name: the variable's name or id.
            value: the new value. For a JSON variable, lists, dicts and None go as JSON; wrap a
                bare scalar in `dspy_bridge_client.Json`.
            expected_version: write only if this is the current version; otherwise
                `VersionConflictError` (its `current_version` tells you where it is).
            source: who writes (recorded in history); empty means ``host``.
            reason: why (recorded in history).
        """
        request = rq.update_variable(
            self._session_id, name, value, expected_version, source, reason
        )
        response: pb.UpdateVariableResponse = self._transport.unary("UpdateVariable", request)
        return Variable._from_proto(response.variable)

    def batch_update(
        self,
        updates: rq.BatchUpdates,
        *,
        atomic: bool = False,
        source: str = "",
        reason: str = "",
    ) -> list[WriteResult]:
        """Write several variables in one call; one `WriteResult` per write, in order.

        Args:
            updates: ``{name: value}``, or a list of ``(name, value)`` /
                ``(name, value, expected_version)`` tuples.
            atomic: all or nothing. The first failing write raises its error and nothing is
                written. Without it each write succeeds or fails on its own: check
                `WriteResult.ok` / `WriteResult.error`, or call `WriteResult.unwrap`.
            source, reason: recorded in every written variable's history.
        """
        request = rq.batch_update(self._session_id, updates, atomic, source, reason)
        response: pb.BatchUpdateVariablesResponse = self._transport.unary(
            "BatchUpdateVariables", request
        )
        return [
            WriteResult._from_proto(write.name, result)
            for write, result in zip(request.writes, response.results, strict=False)
        ]

    def watch(
        self,
        names: str | Iterable[str] = (),
        *,
        include_initial: bool = False,
        resume_token: str = "",
    ) -> Stream[WatchEvent]:
        """Stream changes of variables: `VariableChange`, `WatchResync` (when this watcher fell
        behind: the current values instead of the missed versions) and finally `SessionEnded`.

        Args:
            names: names or ids to watch; empty watches every variable, including ones
                registered later.
            include_initial: start with each watched variable's current value (an INITIAL
                change).
            resume_token: the ``resume_token`` of the last event an earlier watch got: this one
                continues right after it (on this server or any replica sharing its store),
                with a `WatchResync` first only when the changes in between are no longer kept.

        The stream has no deadline. Stop it with `Stream.cancel` (from any thread) or by
        leaving its ``with`` block.
        """
        request = pb.WatchVariablesRequest(
            session_id=self._session_id,
            names=rq.names(names),
            include_initial=include_initial,
            resume_token=resume_token,
        )
        call = self._transport.stream("WatchVariables", request, None)
        return Stream(call, _watch_event, self._transport.target)

    def history(self, name: str, limit: int = 0) -> list[HistoryEntry]:
        """A variable's versions, newest first; `limit` = most entries (0 = all kept)."""
        out: list[HistoryEntry] = []
        token = ""
        while True:  # pages: each is cut to fit in one gRPC message
            left = limit - len(out) if limit > 0 else 0
            request = pb.GetVariableHistoryRequest(
                session_id=self._session_id, name=name, limit=left, page_token=token
            )
            response: pb.GetVariableHistoryResponse = self._transport.unary(
                "GetVariableHistory", request
            )
            out.extend(HistoryEntry._from_proto(e) for e in response.entries)
            token = response.next_page_token
            if not token or (limit > 0 and len(out) >= limit):
                return out

    def rollback(
        self,
        name: str,
        target_version: int,
        *,
        expected_version: int | None = None,
        source: str = "",
        reason: str = "",
    ) -> Variable:
        """Write a new version whose value equals that of `target_version`; returns the
        variable at its new version. `expected_version`, `source` and `reason` work as in
        `update_variable`."""
        request = rq.rollback(
            self._session_id, name, target_version, expected_version, source, reason
        )
        response: pb.RollbackVariableResponse = self._transport.unary("RollbackVariable", request)
        return Variable._from_proto(response.variable)

    # ------------------------------------------------------------------ modules

    def create_module(
        self,
        module_type: str,
        signature: str | Signature,
        *,
        module_id: str | None = None,
        config: Mapping[str, Any] | None = None,
        bindings: Mapping[str, str] | None = None,
        lm: LMConfig | str | None = None,
    ) -> Module:
        """Create a DSPy module; returns it at version 1.

        Args:
            module_type: ``Predict``, ``ChainOfThought``, ``ReAct``, ... (see
                `ServerInfo.module_types`).
            signature: DSPy's string form (``"question -> answer: int"``) or a `Signature`.
            module_id: identifier to use; None lets the server make one.
            config: type-specific configuration (JSON-compatible), e.g. ``{"max_iters": 5}``.
            bindings: module parameter → variable name, e.g. ``{"temperature": "temp"}``;
                `FailedPreconditionError` when a variable's type does not fit its parameter.
            lm: an LM override for this module (model string or `LMConfig`).
        """
        request = rq.create_module(
            self._session_id, module_type, signature, module_id, config, bindings, lm
        )
        response: pb.CreateModuleResponse = self._transport.unary("CreateModule", request)
        return Module._from_proto(response.module)

    def get_module(self, module_id: str, version: int = 0) -> Module:
        """A module at its current version, or at an older `version`."""
        request = pb.GetModuleRequest(
            session_id=self._session_id, module_id=module_id, version=version
        )
        response: pb.GetModuleResponse = self._transport.unary("GetModule", request)
        return Module._from_proto(response.module)

    def list_modules(self) -> list[Module]:
        """The session's modules, in id order."""
        out: list[Module] = []
        token = ""
        while True:  # pages: each is cut to fit in one gRPC message
            request = pb.ListModulesRequest(session_id=self._session_id, page_token=token)
            response: pb.ListModulesResponse = self._transport.unary("ListModules", request)
            out.extend(Module._from_proto(m) for m in response.modules)
            token = response.next_page_token
            if not token:
                return out

    def delete_module(self, module_id: str) -> None:
        """Delete a module with all its versions."""
        request = pb.DeleteModuleRequest(session_id=self._session_id, module_id=module_id)
        self._transport.unary("DeleteModule", request)

    def execute(
        self,
        module_id: str,
        /,
        inputs: Mapping[str, Any] | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        timeout_ms: int = 0,
        include_trace: bool = False,
        **input_kwargs: Any,
    ) -> ExecuteResult:
        """Run a module once, its bound variables resolved at dispatch.

        Inputs come as a dict, as keywords, or both:
        ``session.execute("qa", question="Why?")``. Input fields whose names clash with this
        method's parameters (``inputs``, ``overrides``, ...) go in the dict.

        Args:
            module_id: the module to run.
            inputs: one value per input field of the signature.
            overrides: variable name → value used instead of the bound variable for this call
                only (validated against the variable's constraints, never stored).
            timeout_ms: server-side deadline of the execution; the call's deadline is extended
                to cover it.
            include_trace: return the LM calls (messages, raw completions) in
                `ExecuteResult.trace`.

        The result reports the exact variable versions used (`ExecuteResult.variables_used`).
        """
        request = rq.execute(
            self._session_id,
            module_id,
            rq.merge_inputs(inputs, input_kwargs),
            overrides,
            timeout_ms,
            include_trace,
        )
        response: pb.ExecuteResponse = self._transport.unary("Execute", request, timeout_ms)
        return ExecuteResult._from_proto(response)

    def execute_batch(
        self,
        module_id: str,
        items: Iterable[Mapping[str, Any]],
        *,
        max_concurrency: int = 0,
        overrides: Mapping[str, Any] | None = None,
        timeout_ms: int = 0,
        include_trace: bool = False,
    ) -> BatchResults:
        """Run a module on many inputs; one item's failure does not fail the batch.

        Returns a sequence of `BatchResult`, in item order, each with `outputs` or an `error`
        (a `BridgeError`, not raised). `max_concurrency` bounds the items run at once (0 =
        server default); `overrides`, `timeout_ms` (per item) and `include_trace` apply to
        every item as in `execute`.
        """
        request = rq.execute_batch(
            self._session_id,
            module_id,
            items,
            max_concurrency,
            overrides,
            timeout_ms,
            include_trace,
        )
        response: pb.ExecuteBatchResponse = self._transport.unary(
            "ExecuteBatch", request, timeout_ms
        )
        return BatchResults._from_proto(response)

    def execute_stream(
        self,
        module_id: str,
        /,
        inputs: Mapping[str, Any] | None = None,
        *,
        overrides: Mapping[str, Any] | None = None,
        timeout_ms: int = 0,
        include_trace: bool = False,
        **input_kwargs: Any,
    ) -> ExecutionStream:
        """Run a module once, streaming `OutputChunk` (tokens per output field) and
        `ExecutionStatus` events, then the final `ExecuteResult`.

        Arguments as in `execute`. Cancelling the stream (`ExecutionStream.cancel`, or leaving
        its ``with`` block) stops the LM call; `ExecutionStream.result` skips to the result.
        """
        request = rq.execute_stream(
            self._session_id,
            module_id,
            rq.merge_inputs(inputs, input_kwargs),
            overrides,
            timeout_ms,
            include_trace,
        )
        timeout = rq.call_timeout(self._transport.timeout, timeout_ms)
        call = self._transport.stream("ExecuteStream", request, timeout)
        return ExecutionStream(call, _stream_event, self._transport.target)

    def export_state(self, module_id: str, version: int = 0) -> str:
        """The module's DSPy state (demos, instructions) as DSPy's ``save()`` JSON, which loads
        in plain DSPy with ``load_state()`` / ``load()``. `version` 0 = current."""
        request = pb.ExportModuleStateRequest(
            session_id=self._session_id, module_id=module_id, version=version
        )
        response: pb.ExportModuleStateResponse = self._transport.unary("ExportModuleState", request)
        return response.state_json

    def import_state(
        self,
        module_id: str,
        state_json: str | Mapping[str, Any],
        expected_version: int | None = None,
    ) -> Module:
        """Replace the module's DSPy state with one in DSPy's format (the JSON text of
        ``Module.save(path)``, or the dict of ``module.dump_state()``); returns the module at
        its new version. With `expected_version`, `VersionConflictError` unless current."""
        request = rq.import_state(self._session_id, module_id, state_json, expected_version)
        response: pb.ImportModuleStateResponse = self._transport.unary("ImportModuleState", request)
        return Module._from_proto(response.module)

    def evaluate(
        self,
        module_id: str,
        dataset: rq.Dataset,
        metric: str,
        *,
        metric_options: Mapping[str, Any] | None = None,
        num_threads: int = 0,
        overrides: Mapping[str, Any] | None = None,
        module_version: int = 0,
        progress: rq.EvaluationProgress | None = None,
        timeout_ms: int = 0,
    ) -> Evaluation:
        """Run a module over a dataset and score every prediction with a metric.

        Args:
            module_id: the module to evaluate.
            dataset: examples as ``{"inputs": {...}, "labels": {...}}`` or
                ``(inputs, labels)`` pairs; every label must be an output field.
            metric: a built-in metric (``ServerInfo.metrics``), e.g. ``"exact_match"``.
            metric_options: the metric's options, e.g. ``{"field": "answer"}`` or
                ``{"pattern": "^yes"}`` for ``regex``.
            num_threads: examples run at once (0 = server default, 4).
            overrides: variable values used instead of the bound variables.
            module_version: a past version to evaluate; 0 = current.
            progress: called as ``progress(completed, total)`` while examples finish (the call
                then uses the streaming RPC, EvaluateStream).
            timeout_ms: extends the call's deadline (the client's `timeout`) to at least this
                many milliseconds, for an evaluation that takes longer.

        Returns an `Evaluation`: the mean ``score`` and one `EvaluationResult` per example
        (a failed example carries its error and scores 0). A bad request (unknown metric, bad
        options, labels that are not output fields, inputs that do not match the signature)
        raises `InvalidArgumentError` before any work.
        """
        request = rq.evaluate(
            self._session_id,
            module_id,
            dataset,
            metric,
            metric_options,
            num_threads,
            overrides,
            module_version,
        )
        if progress is None:
            response: pb.EvaluateResponse = self._transport.unary("Evaluate", request, timeout_ms)
            return Evaluation._from_proto(response)
        call = self._transport.stream(
            "EvaluateStream",
            pb.EvaluateStreamRequest(evaluation=request),
            rq.call_timeout(self._transport.timeout, timeout_ms),
        )
        events: Stream[rq.EvaluationEvent] = Stream(
            call, rq.evaluation_event, self._transport.target
        )
        with events:
            for event in events:
                if isinstance(event, pb.EvaluateResponse):
                    return Evaluation._from_proto(event)
                progress(*event)
        raise UnavailableError("the evaluation stream ended without a result")

    # -- optimization jobs ------------------------------------------------------------------

    def start_optimization(
        self,
        module_id: str,
        optimizer: str,
        trainset: jobs.Dataset,
        metric: str,
        *,
        valset: jobs.Dataset | None = None,
        metric_options: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
        apply: bool = False,
        variable_search: job_pb2.VariableSearchSpec | None = None,
    ) -> Job:
        """Start an optimization job of a module; returns it QUEUED or RUNNING.

        Args:
            module_id: the module to optimize (its current version).
            optimizer: a DSPy optimizer (``ServerInfo.optimizers``: ``LabeledFewShot``,
                ``BootstrapFewShot``, ``MIPROv2``, ``GEPA``, ...) or ``VariableSearch``.
            trainset: examples as ``{"inputs": {...}, "labels": {...}}`` or ``(inputs, labels)``.
            metric: a metric name (``ServerInfo.metrics``); `metric_options` its options.
            valset: validation examples (default: the optimizer uses the trainset).
            config: the optimizer's arguments, e.g. ``{"max_bootstrapped_demos": 2}``.
            apply: make the result current as soon as the job succeeds.
            variable_search: what a ``VariableSearch`` searches.

        A bad request raises `InvalidArgumentError` before any work starts.
        """
        request = jobs.start_request(
            self._session_id,
            module_id,
            optimizer,
            trainset,
            metric,
            valset=valset,
            metric_options=metric_options,
            config=config,
            apply=apply,
            variable_search=variable_search,
        )
        response: pb.StartOptimizationResponse = self._transport.unary("StartOptimization", request)
        return Job._from_proto(response.job)

    def get_optimization(self, job_id: str) -> Job:
        """A job as it is now."""
        request = pb.GetOptimizationRequest(session_id=self._session_id, job_id=job_id)
        response: pb.GetOptimizationResponse = self._transport.unary("GetOptimization", request)
        return Job._from_proto(response.job)

    def watch_optimization(self, job_id: str) -> Stream[Job]:
        """Stream snapshots of a job as it progresses; the last has a terminal status."""
        request = pb.WatchOptimizationRequest(session_id=self._session_id, job_id=job_id)
        call = self._transport.stream("WatchOptimization", request, None)
        return Stream(call, jobs.watch_event, self._transport.target)

    def wait_optimization(self, job_id: str, max_wait: float | None = None) -> Job:
        """Wait until the job reaches a terminal status, following its WatchOptimization
        stream; returns it then. Raises `TimeoutError` after `max_wait` seconds."""
        request = pb.WatchOptimizationRequest(session_id=self._session_id, job_id=job_id)
        call = self._transport.stream("WatchOptimization", request, max_wait)
        last: Job | None = None
        try:
            with Stream(call, jobs.watch_event, self._transport.target) as updates:
                for job in updates:
                    last = job
                    if job.done:
                        return job
        except DeadlineExceededError:
            status = last.status if last is not None else "not finished"
            raise TimeoutError(f"job {job_id} is still {status}") from None
        return self.get_optimization(job_id)  # the stream ended early: read it once more

    def cancel_optimization(self, job_id: str) -> Job:
        """Stop a job (CANCELLED within seconds); a finished job is returned unchanged."""
        request = pb.CancelOptimizationRequest(session_id=self._session_id, job_id=job_id)
        response: pb.CancelOptimizationResponse = self._transport.unary(
            "CancelOptimization", request
        )
        return Job._from_proto(response.job)

    def list_optimizations(self, module_id: str = "", *, page_size: int = 0) -> Iterator[Job]:
        """The session's jobs (of one module when `module_id` is set), oldest first; pages
        are fetched as the iteration goes."""
        token = ""
        while True:
            request = pb.ListOptimizationsRequest(
                session_id=self._session_id,
                module_id=module_id,
                page_size=page_size,
                page_token=token,
            )
            response: pb.ListOptimizationsResponse = self._transport.unary(
                "ListOptimizations", request
            )
            for job in response.jobs:
                yield Job._from_proto(job)
            token = response.next_page_token
            if not token:
                return

    def apply_optimization(self, job_id: str, trial_number: int | None = None) -> ApplyResult:
        """Make a SUCCEEDED job's result current: a new module version (source
        ``optimizer:<job_id>``) or variable writes (VariableSearch; `trial_number` picks a
        trial other than the best)."""
        request = jobs.apply_request(self._session_id, job_id, trial_number)
        response: pb.ApplyOptimizationResponse = self._transport.unary("ApplyOptimization", request)
        return ApplyResult._from_proto(response)

    # -- host callbacks ----------------------------------------------------------------------

    def serve(
        self,
        tools: Mapping[str, host.ToolFn] | None = None,
        metrics: Mapping[str, host.MetricFn] | None = None,
        lms: Mapping[str, host.LMFn] | None = None,
        *,
        timeouts_ms: Mapping[str, int] | None = None,
        max_concurrency: Mapping[str, int] | None = None,
    ) -> host.HostServer:
        """Lend Python functions to this session's programs as ``host:<name>`` tools, metrics
        and LMs, on a background thread (see `dspy_bridge_client.host`). Returns at once; use
        the result as a context manager (which waits until the sidecar has welcomed the
        stream) or call `wait_connected` and `stop`. `timeouts_ms` / `max_concurrency` set a
        tool's deadline and its calls in flight (default: the server's)."""
        self._transport.check_open()
        t = self._transport
        offered = host.functions(tools, metrics, lms, timeouts_ms, max_concurrency)
        hosting = host.HostServer(
            t.target, t.credentials, t.options, self._session_id, offered, t.metadata
        )
        t.hosts.add(hosting)
        return hosting

    def revert_module(
        self, module_id: str, to_version: int, expected_version: int | None = None
    ) -> Module:
        """Make an old module version current again, as a new version equal to it."""
        request = jobs.revert_request(self._session_id, module_id, to_version, expected_version)
        response: pb.RevertModuleResponse = self._transport.unary("RevertModule", request)
        return Module._from_proto(response.module)
