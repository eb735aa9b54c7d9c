"""Lend your own Python functions to a session's DSPy programs: `session.serve(...)`.

::

    def lookup_order(order_id: str) -> str:
        \"\"\"Where an order is.\"\"\"
        return orders[order_id].status

    def quality(inputs: dict, labels: dict, prediction: dict) -> tuple[float, str]:
        right = prediction["answer"] == labels["answer"]
        return (1.0, "") if right else (0.0, "the answer must name the city")

    with session.serve(tools={"lookup_order": lookup_order}, metrics={"quality": quality}):
        config = {"tools": ["host:lookup_order"]}
        session.create_module("ReAct", "question -> answer", config=config)
        ...

The host opens one `Connect` stream (no server of its own) and answers the sidecar's calls on
it, many at once; programs reference the functions as `host:<name>`.

- **Tools** ``fn(**arguments) -> value``: the parameters' type hints become the JSON Schema the
  LM sees (``str``, ``int``, ``float``, ``bool``, ``list[...]``, ``dict[...]``, ``Literal``,
  ``Optional``; a parameter with a default is optional), the docstring's first paragraph the
  description. The return value is the observation; an exception becomes an error
  observation (``"<Type>: <message>"``) the agent can react to.
- **Metrics** ``fn(inputs, labels, prediction) -> score`` (dicts of plain values): a float, a
  ``(score, feedback)`` pair, or a mapping with ``score`` and ``feedback``. GEPA reads the
  feedback. An exception fails that example.
- **LMs** ``fn(messages, options) -> text`` (chat messages with ``role`` and ``content``): a
  str, or ``(text, {"prompt_tokens": n, "completion_tokens": m})``.

Any of them may also ask for the call's context: a parameter annotated `HostCallContext` (any
name, e.g. ``call: HostCallContext``) gets the call's id, the name called, the ``module_id``
whose execution called it, the ``job_id`` of the optimization whose run made the call (empty
for ``execute`` and ``evaluate``) and its deadline. It is left out of a tool's JSON Schema
(the LM never sees it); functions without one are called as before.

Functions may be plain or ``async``; plain ones run in a thread pool so a slow one never
blocks the others. A call the sidecar cancels (its execution was cancelled, or its deadline
passed) is cancelled here too (an async function at its next await; a thread runs to its end
and its answer is dropped).

The connection is kept: when it drops it is opened again with backoff (0.1 s doubling to 5 s)
until `stop`. A `hello` the sidecar refuses (an unknown session, a bad name or schema, the same
tool name with another schema on another connection, bad credentials) stops serving and the
error is raised by `wait_connected` (and on entering the `with` block).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import threading
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Self

import grpc

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import host_pb2, module_pb2
from dspy_bridge_client.errors import BridgeError, from_rpc_error
from dspy_bridge_client.values import from_struct, from_value_map, to_struct, to_value

__all__ = ["AsyncHostServer", "HostCallContext", "HostServer", "json_schema", "tool_schema"]

_UNIONS = (typing.Union, types.UnionType)

ToolFn = Callable[..., Any]
_Example = dict[str, Any]
_Messages = list[dict[str, Any]]
# The second form of each takes the call's context (module docstring) as its last parameter.
MetricFn = (
    Callable[[_Example, _Example, _Example], Any]
    | Callable[[_Example, _Example, _Example, "HostCallContext"], Any]
)
LMFn = (
    Callable[[_Messages, dict[str, Any]], Any]
    | Callable[[_Messages, dict[str, Any], "HostCallContext"], Any]
)

#: A refused `hello` is final: reconnecting would be refused again (UNIMPLEMENTED: a sidecar
#: without `Connect`). The Node client stops on the same codes.
_FINAL = {
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.ALREADY_EXISTS,
    grpc.StatusCode.UNAUTHENTICATED,
    grpc.StatusCode.PERMISSION_DENIED,
    grpc.StatusCode.FAILED_PRECONDITION,
    grpc.StatusCode.UNIMPLEMENTED,
    grpc.StatusCode.OUT_OF_RANGE,
}
_BACKOFF_START_S = 0.1
_BACKOFF_MAX_S = 5.0


@dataclass(frozen=True, slots=True)
class HostCallContext:
    """The call a host function is answering: passed to a parameter annotated with this type."""

    call_id: str
    """The sidecar's identifier of this call."""
    name: str
    """The tool, metric or LM called (without ``host:``)."""
    module_id: str
    """The module whose execution called the tool; empty for metrics and LMs."""
    job_id: str
    """The optimization job whose run made the call; empty for ``execute`` and ``evaluate``."""
    deadline: datetime | None
    """When the sidecar stops waiting for the answer (by the sidecar's clock)."""
    timeout_ms: int
    """Milliseconds the call had left when the sidecar sent it."""

    @classmethod
    def _from_call(cls, call: Any, name: str) -> HostCallContext:
        deadline = call.deadline.ToDatetime(tzinfo=UTC) if call.HasField("deadline") else None
        return cls(
            call_id=call.call_id,
            name=name,
            module_id=getattr(call, "module_id", ""),
            job_id=getattr(call, "job_id", ""),
            deadline=deadline,
            timeout_ms=call.timeout_ms,
        )


def context_parameter(fn: Callable[..., Any]) -> str | None:
    """The name of `fn`'s parameter annotated `HostCallContext` (or ``HostCallContext | None``),
    if it has one. A callable whose hints or signature cannot be read has none: metrics and LMs
    such as a `functools.partial` keep working as before."""
    try:
        hints = typing.get_type_hints(fn)
        parameters = inspect.signature(fn).parameters
    except (NameError, TypeError, ValueError):
        return None
    for name in parameters:
        hint = hints.get(name)
        members = typing.get_args(hint) if typing.get_origin(hint) in _UNIONS else (hint,)
        if HostCallContext in members:
            return name
    return None


# -- type hints -> JSON Schema ------------------------------------------------------------------


def json_schema(hint: Any) -> dict[str, Any]:
    """The JSON Schema of a type hint (``Any`` and unknown types: no constraint)."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if hint is str:
        return {"type": "string"}
    if hint is bool:
        return {"type": "boolean"}
    if hint is int:
        return {"type": "integer"}
    if hint is float:
        return {"type": "number"}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in _UNIONS:
        members = [a for a in args if a is not type(None)]
        return (
            json_schema(members[0])
            if len(members) == 1
            else {"anyOf": [json_schema(a) for a in members]}
        )
    if hint is list or origin in (list, tuple, set, frozenset, Sequence):
        return {"type": "array", "items": json_schema(args[0])} if args else {"type": "array"}
    if hint is dict or origin in (dict, Mapping):
        schema: dict[str, Any] = {"type": "object"}
        if len(args) == 2:
            schema["additionalProperties"] = json_schema(args[1])
        return schema
    return {}


def _description(fn: Callable[..., Any]) -> str:
    doc = inspect.getdoc(fn) or ""
    return doc.split("\n\n", 1)[0].strip()


def tool_schema(fn: ToolFn) -> tuple[str, dict[str, Any]]:
    """(description, parameters JSON Schema) of a tool function, from its docstring and hints."""
    hints = typing.get_type_hints(fn)
    context = context_parameter(fn)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for name, parameter in inspect.signature(fn).parameters.items():
        if parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD) or name == context:
            continue
        schema = json_schema(hints.get(name, Any))
        if parameter.default is inspect.Parameter.empty:
            required.append(name)
        elif isinstance(parameter.default, str | int | float | bool):
            schema["default"] = parameter.default
        properties[name] = schema
    return _description(fn), {"type": "object", "properties": properties, "required": required}


@dataclass
class _Functions:
    tools: dict[str, ToolFn] = field(default_factory=dict)
    metrics: dict[str, MetricFn] = field(default_factory=dict)
    lms: dict[str, LMFn] = field(default_factory=dict)
    timeouts_ms: dict[str, int] = field(default_factory=dict)
    concurrency: dict[str, int] = field(default_factory=dict)
    #: (kind, name) -> the name of the function's `HostCallContext` parameter, if it has one.
    contexts: dict[tuple[str, str], str] = field(default_factory=dict)

    def context_kwargs(self, kind: str, name: str, call: Any) -> dict[str, Any]:
        """The keyword argument carrying the call's context, when the function asks for one."""
        parameter = self.contexts.get((kind, name))
        return {} if parameter is None else {parameter: HostCallContext._from_call(call, name)}

    def hello(self, session_id: str) -> host_pb2.ConnectRequest:
        tools = []
        for name, fn in self.tools.items():
            description, parameters = tool_schema(fn)
            tools.append(
                host_pb2.HostTool(
                    name=name,
                    description=description,
                    parameters=to_struct(parameters),
                    timeout_ms=self.timeouts_ms.get(name, 0),
                    max_concurrency=self.concurrency.get(name, 0),
                )
            )
        return host_pb2.ConnectRequest(
            hello=host_pb2.HostHello(
                session_id=session_id,
                tools=tools,
                metrics=[
                    host_pb2.HostMetric(name=n, description=_description(f))
                    for n, f in self.metrics.items()
                ],
                lms=[host_pb2.HostLM(name=n) for n in self.lms],
            )
        )


async def _run(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    if inspect.iscoroutinefunction(fn):
        return await fn(*args, **kwargs)
    result = await asyncio.to_thread(fn, *args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


async def _answer(
    functions: _Functions, message: host_pb2.ConnectResponse
) -> host_pb2.ConnectRequest | None:
    """The answer to one call (None for a message that needs none)."""
    which = message.WhichOneof("message")
    if which == "tool_call":
        call = message.tool_call
        result = host_pb2.HostToolResult(call_id=call.call_id)
        try:
            fn = functions.tools[call.tool]
            arguments = from_struct(call.arguments)
            arguments.update(functions.context_kwargs("tool", call.tool, call))  # never the LM's
            output = await _run(fn, **arguments)
            result.output.CopyFrom(to_value(output if output is not None else "", json=False))
        except Exception as exc:
            result.error = _error_text(exc)
        return host_pb2.ConnectRequest(tool_result=result)
    if which == "metric_call":
        scoring = message.metric_call
        metric = host_pb2.HostMetricResult(call_id=scoring.call_id)
        try:
            fn = functions.metrics[scoring.metric]
            raw = await _run(
                fn,
                from_value_map(scoring.inputs),
                from_value_map(scoring.labels),
                from_value_map(scoring.prediction),
                **functions.context_kwargs("metric", scoring.metric, scoring),
            )
            if isinstance(raw, Mapping):
                metric.score, metric.feedback = float(raw["score"]), str(raw.get("feedback", ""))
            elif isinstance(raw, tuple):
                metric.score, metric.feedback = float(raw[0]), str(raw[1])
            else:
                metric.score = float(raw)
        except Exception as exc:
            metric.error = _error_text(exc)
        return host_pb2.ConnectRequest(metric_result=metric)
    if which == "lm_call":
        completing = message.lm_call
        lm = host_pb2.HostLMResult(call_id=completing.call_id)
        try:
            fn = functions.lms[completing.lm]
            raw = await _run(
                fn,
                [from_struct(m) for m in completing.messages],
                from_struct(completing.options),
                **functions.context_kwargs("lm", completing.lm, completing),
            )
            text, usage = (raw[0], raw[1]) if isinstance(raw, tuple) else (raw, {})
            lm.text = str(text)
            lm.usage.CopyFrom(
                module_pb2.Usage(
                    prompt_tokens=int(usage.get("prompt_tokens", 0)),
                    completion_tokens=int(usage.get("completion_tokens", 0)),
                )
            )
        except Exception as exc:
            lm.error = _error_text(exc)
        return host_pb2.ConnectRequest(lm_result=lm)
    return None


def _forget(running: dict[str, asyncio.Task[None]], call_id: str) -> Callable[[Any], None]:
    def forget(_: Any) -> None:
        running.pop(call_id, None)

    return forget


class AsyncHostServer:
    """Serves functions to a session over `Connect` in the running event loop (module
    docstring). Made by `AsyncSessionHandle.serve`; `async with` it, or `await stop()`."""

    def __init__(
        self,
        stub: pb_grpc.BridgeServiceStub,
        session_id: str,
        functions: _Functions,
        metadata: Sequence[tuple[str, Any]],
        target: str = "",
    ) -> None:
        self._stub = stub
        self._session_id = session_id
        self._functions = functions
        self._metadata = tuple(metadata)
        self._target = target
        self._connected = asyncio.Event()
        self._stopped = False
        self._call: Any = None
        self._task: asyncio.Task[None] | None = None
        #: The connection id the sidecar gave the current stream ("" while disconnected).
        self.connection_id = ""
        #: How many times the stream was (re)opened and welcomed.
        self.connections = 0
        #: Why serving stopped for good (a refused hello), if it did.
        self.error: BridgeError | None = None

    def start(self) -> Self:
        """Starts serving in the running loop (`AsyncSessionHandle.serve` does)."""
        self._task = asyncio.get_running_loop().create_task(self._serve())
        return self

    @property
    def connected(self) -> bool:
        """Whether the stream is open and welcomed now."""
        return self._connected.is_set()

    # Same shape as the sync twin, hence a `timeout` argument rather than asyncio.timeout().
    async def wait_connected(self, timeout: float | None = 10.0) -> None:  # noqa: ASYNC109
        """Returns once the sidecar has welcomed the stream; raises the refusal (a
        `BridgeError`) when it refused the hello, TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not self._connected.is_set():
                if self.error is not None:
                    raise self.error
                if self._task is not None and self._task.done():
                    raise RuntimeError("serving stopped")
                waiter = asyncio.ensure_future(self._connected.wait())
                assert self._task is not None
                try:
                    await asyncio.wait({waiter, self._task}, return_when=asyncio.FIRST_COMPLETED)
                finally:  # also on the timeout: no pending waiter is left behind
                    waiter.cancel()
        if self.error is not None:
            raise self.error

    async def stop(self) -> None:
        """Closes the stream; calls in flight are cancelled. Safe to call twice."""
        self._stopped = True
        if self._call is not None:
            self._call.cancel()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._call is not None:  # let gRPC's own bookkeeping of the call finish
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await self._call.code()

    async def __aenter__(self) -> Self:
        try:
            await self.wait_connected()
        except BaseException:  # refused, or not welcomed in time: no `__aexit__` will stop it
            await self.stop()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _serve(self) -> None:
        delay = _BACKOFF_START_S
        while not self._stopped:
            try:
                await self._once()
                delay = _BACKOFF_START_S  # it had been welcomed: reconnect at once
            except grpc.aio.AioRpcError as exc:
                welcomed = self._connected.is_set()
                self._connected.clear()
                self.connection_id = ""
                if exc.code() in _FINAL and not welcomed:
                    self.error = from_rpc_error(exc, target=self._target)
                    return
                if exc.code() == grpc.StatusCode.CANCELLED and self._stopped:
                    return
            if self._stopped:
                return
            await asyncio.sleep(delay)
            delay = min(_BACKOFF_MAX_S, delay * 2)

    async def _once(self) -> None:
        call = self._stub.Connect(metadata=self._metadata)
        self._call = call
        running: dict[str, asyncio.Task[None]] = {}
        send_lock = asyncio.Lock()

        async def answer(message: host_pb2.ConnectResponse, call_id: str) -> None:
            reply = await _answer(self._functions, message)
            if reply is not None:
                async with send_lock:
                    with contextlib.suppress(grpc.aio.AioRpcError, asyncio.InvalidStateError):
                        await call.write(reply)

        try:
            await call.write(self._functions.hello(self._session_id))
            while True:
                message = await call.read()
                if message is grpc.aio.EOF:
                    break
                which = message.WhichOneof("message")
                if which == "welcome":
                    self.connection_id = message.welcome.connection_id
                    self.connections += 1
                    self._connected.set()
                elif which == "cancel":
                    task = running.get(message.cancel.call_id)
                    if task is not None:
                        task.cancel()
                elif which is not None:
                    call_id = getattr(message, which).call_id
                    task = asyncio.create_task(answer(message, call_id))
                    running[call_id] = task
                    task.add_done_callback(_forget(running, call_id))
            status = await call.code()
            if status != grpc.StatusCode.OK:
                raise grpc.aio.AioRpcError(
                    status, call.initial_metadata, call.trailing_metadata, await call.details()
                )
        finally:
            self._connected.clear()
            for task in list(running.values()):
                task.cancel()
            call.cancel()


class HostServer:
    """`AsyncHostServer` run on a background thread of its own, for synchronous programs.
    Made by `SessionHandle.serve`; use it as a context manager, or call `stop`."""

    def __init__(
        self,
        target: str,
        credentials: grpc.ChannelCredentials | None,
        options: Sequence[tuple[str, Any]],
        session_id: str,
        functions: _Functions,
        metadata: Sequence[tuple[str, Any]],
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._inner: AsyncHostServer | None = None
        self._channel: grpc.aio.Channel | None = None

        async def start() -> None:
            if credentials is not None:
                channel = grpc.aio.secure_channel(target, credentials, options=list(options))
            else:
                channel = grpc.aio.insecure_channel(target, options=list(options))
            self._channel = channel
            stub = pb_grpc.BridgeServiceStub(channel)
            self._inner = AsyncHostServer(stub, session_id, functions, metadata, target).start()

        def run() -> None:
            asyncio.set_event_loop(self._loop)
            self._loop.run_until_complete(start())
            self._ready.set()
            self._loop.run_forever()

        self._thread = threading.Thread(target=run, daemon=True, name="dspy-bridge-host")
        self._thread.start()
        self._ready.wait()

    @property
    def connected(self) -> bool:
        """Whether the stream is open and welcomed now."""
        return self._inner is not None and self._inner.connected

    @property
    def connection_id(self) -> str:
        """The connection id the sidecar gave the current stream ("" while disconnected)."""
        return self._inner.connection_id if self._inner is not None else ""

    @property
    def connections(self) -> int:
        """How many times the stream was (re)opened and welcomed."""
        return self._inner.connections if self._inner is not None else 0

    @property
    def error(self) -> BridgeError | None:
        """Why serving stopped for good (a refused hello), if it did."""
        return self._inner.error if self._inner is not None else None

    def wait_connected(self, timeout: float | None = 10.0) -> None:
        """Blocks until the sidecar welcomed the stream (see `AsyncHostServer`)."""
        assert self._inner is not None
        future = asyncio.run_coroutine_threadsafe(self._inner.wait_connected(timeout), self._loop)
        # the loop's own timeout fires first; this one only guards a wedged loop
        future.result()

    def stop(self) -> None:
        """Closes the stream and the thread. Safe to call twice."""
        if not self._thread.is_alive():
            return
        assert self._inner is not None

        async def shutdown() -> None:
            assert self._inner is not None
            await self._inner.stop()
            if self._channel is not None:
                await self._channel.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    def __enter__(self) -> Self:
        try:
            self.wait_connected()
        except BaseException:  # refused, or not welcomed in time: no `__exit__` will stop it
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def functions(
    tools: Mapping[str, ToolFn] | None,
    metrics: Mapping[str, MetricFn] | None,
    lms: Mapping[str, LMFn] | None,
    timeouts_ms: Mapping[str, int] | None = None,
    max_concurrency: Mapping[str, int] | None = None,
) -> _Functions:
    """What `serve` offers; TypeError for something that is not callable."""
    out = _Functions(
        dict(tools or {}),
        dict(metrics or {}),
        dict(lms or {}),
        dict(timeouts_ms or {}),
        dict(max_concurrency or {}),
    )
    for kind, table in (("tool", out.tools), ("metric", out.metrics), ("lm", out.lms)):
        for name, fn in table.items():
            if not callable(fn):
                raise TypeError(f"{kind} {name!r} is not callable")
            parameter = context_parameter(fn)
            if parameter is not None:
                out.contexts[kind, name] = parameter
    if not (out.tools or out.metrics or out.lms):
        raise ValueError("serve needs at least one tool, metric or lm")
    return out
