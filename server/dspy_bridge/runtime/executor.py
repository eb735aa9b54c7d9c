"""The execution seam: one request in, outputs + usage + trace out (or a stream of events).

`Executor` is what the front dispatches to. `InProcessExecutor` runs executions in the calling
process (`--workers 0`, tests); the worker pool implements the same protocol by sending the same
picklable `ExecutionRequest` to a worker process that runs an `InProcessExecutor`.

Why executions never interfere: nothing here calls `dspy.configure`. Each execution runs inside
its own `dspy.context(...)` (LM, adapter, callbacks, usage tracker, trace list), which lives in a
contextvar of its own asyncio task, so executions with different LMs and parameters can share one
cached program object concurrently. Programs are cached by (session, module, version,
structural parameter values) in an LRU; LMs are cached by the LM factory.

A module with an async path is awaited (`acall`), so a deadline or a client cancel cancels the LM
call itself; a sync-only module (Refine, ProgramOfThought, plugin types without `aforward`) runs
in a thread, where a deadline answers at once but the thread finishes its current LM call.

Streaming uses `dspy.streamify` with one `StreamListener` per output field of the module's final
predictor (`reasoning` included), so chunks are the field's text as the LM produces it (with the
`json` adapter, DSPy's listener yields the raw JSON text of the value). Modules without a single
final predictor called as-is (BestOfN and Refine run copies, Parallel runs many) stream status
messages and the result only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import dspy
import grpc
from dspy.streaming.messages import StatusMessage, StatusStreamingCallback, StreamResponse
from dspy.streaming.streaming_listener import StreamListener

from dspy_bridge import tracing
from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import LMSpec, ModuleRecord, PyValue
from dspy_bridge.runtime import registry
from dspy_bridge.runtime.host_calls import (
    CURRENT_HOST,
    CURRENT_SESSION,
    EXECUTION_DEADLINE,
    EXECUTION_MODULE,
    THREAD_HOST_CALLS,
    HostCaller,
    HostToolSpec,
    HostUnavailable,
    ThreadHostCalls,
)
from dspy_bridge.runtime.host_tools import with_host_tools
from dspy_bridge.runtime.lm.errors import (
    lm_error_to_bridge,
    log_lm_failure,
    redact,
    with_raw_output,
)
from dspy_bridge.runtime.lm.factory import build_lm
from dspy_bridge.runtime.lm.inline_routing import route_natively_on_the_loop
from dspy_bridge.runtime.lm.loop_hops import run_dspy_steps_on_the_loop
from dspy_bridge.runtime.lm.metadata import memoize_model_metadata
from dspy_bridge.runtime.params import LM_PARAMETERS
from dspy_bridge.runtime.program import (
    NON_STRUCTURAL,
    Program,
    build_program,
    make_adapter,
)
from dspy_bridge.runtime.type_adapters import memoize_type_adapters
from dspy_bridge.runtime.usage import CallRecorder, UsageStats

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Requests, results, events


@dataclass
class ExecutionRequest:
    """One execution: the module version to run, the LM, validated inputs and the values of
    every bound parameter (from the variable snapshot and overrides). Picklable."""

    record: ModuleRecord
    lm: LMSpec | None
    inputs: dict[str, PyValue]
    params: dict[str, PyValue] = field(default_factory=dict)
    timeout_ms: int = 0
    include_trace: bool = False
    #: The `host:` tools the module uses, as the session's host offers them at dispatch.
    host_tools: tuple[HostToolSpec, ...] = ()
    #: The caller's trace context (W3C headers) when tracing is on and the execution runs in
    #: another process; empty: the current context.
    trace_parent: dict[str, str] = field(default_factory=dict)


@dataclass
class ExecutionResult:
    """Outputs (every field of the prediction, typed), usage, LM call trace and latency;
    `first_chunk_ms`: when a streamed execution sent its first output chunk (0: unstreamed, or
    no chunk)."""

    outputs: dict[str, PyValue]
    usage: UsageStats
    trace: list[dict[str, Any]]
    latency_ms: float
    first_chunk_ms: float = 0.0


@dataclass(frozen=True)
class ChunkEvent:
    """New text of an output field, as the LM produces it; `last` on the field's last chunk."""

    field: str
    text: str
    last: bool


@dataclass(frozen=True)
class StatusEvent:
    """A progress message (`Calling LM...`, `Calling tool calculator...`)."""

    message: str


@dataclass(frozen=True)
class ResultEvent:
    """The final result; always the last event of a stream."""

    result: ExecutionResult


ExecutionEvent = ChunkEvent | StatusEvent | ResultEvent


class Executor(Protocol):
    """Runs executions; implemented in-process here and by the worker pool."""

    async def execute(self, req: ExecutionRequest) -> ExecutionResult:
        """Run once. Raises BridgeError (DEADLINE_EXCEEDED, LM errors, EXECUTION_FAILED, ...)."""
        ...

    def execute_stream(self, req: ExecutionRequest) -> AsyncGenerator[ExecutionEvent, None]:
        """Run once, yielding chunks and status messages, then exactly one ResultEvent.
        Closing the iterator early cancels the execution (and its LM call)."""
        ...

    def forget_session(self, session_id: str) -> None:
        """Drop cached programs of a session that is gone (a cache hint, never required)."""
        ...

    async def close(self) -> None:
        """Stop: cancel nothing in flight, release caches."""
        ...

    def stats(self) -> dict[str, int]:
        """Counters for GetServerInfo and metrics."""
        ...


def _execute_span(req: ExecutionRequest) -> contextlib.AbstractContextManager[object]:
    """The `execute` span of one execution (a child of the caller's, across processes)."""
    attributes = {"dspy_bridge.module_id": req.record.module_id, "process.pid": os.getpid()}
    return tracing.span("execute", attributes, parent=req.trace_parent)


# --------------------------------------------------------------------------------------------
# Runtime set-up


_configured = False
#: Most LM answers kept by the in-memory response cache of one process (LMs with the `cache`
#: option only; least recently used dropped first).
LM_RESPONSE_CACHE_ENTRIES = 4096


def configure_runtime() -> None:
    """Process-wide DSPy set-up for serving, done once: no disk cache (executions must really
    run and a server must not fill a disk with prompts). A bounded in-memory cache stays
    available to LMs created with the `cache` option (off by default; see
    `runtime.lm.factory`). DSPy's model-table lookups are memoized (`runtime.lm.metadata`),
    its adapters build one pydantic TypeAdapter per type (`runtime.type_adapters`), and its
    native engine routes on the loop once a provider's client is built
    (`runtime.lm.inline_routing`)."""
    global _configured
    if _configured:
        return
    memoize_model_metadata()
    memoize_type_adapters()
    route_natively_on_the_loop()
    dspy.configure_cache(
        enable_disk_cache=False,
        enable_memory_cache=True,
        memory_max_entries=LM_RESPONSE_CACHE_ENTRIES,
    )
    _configured = True


K = TypeVar("K")
V = TypeVar("V")


class _LRU(Generic[K, V]):
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.capacity:
            self._items.popitem(last=False)

    def drop(self, predicate: Callable[[K], bool]) -> None:
        for key in [k for k in self._items if predicate(k)]:
            del self._items[key]

    def clear(self) -> None:
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


class _StatusCallback(StatusStreamingCallback):  # type: ignore[misc]
    """Progress messages for ExecuteStream (LM calls, tool calls), delivered to the stream's
    queue with `call_soon_threadsafe`.

    DSPy's own status callback sends through the stream from a fresh event loop in a helper
    thread, which loses messages when it runs on a live loop; this one replaces it (`streamify`
    adds its own only when no `StatusStreamingCallback` is installed)."""

    def __init__(self, notify: Callable[[ExecutionEvent], None]) -> None:
        super().__init__()
        self._notify = notify
        self._tools: dict[str, str] = {}

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        model = getattr(instance, "model", "")
        self._notify(StatusEvent(f"Calling LM {model}..." if model else "Calling LM..."))

    def on_lm_end(self, call_id: str, outputs: Any, exception: BaseException | None = None) -> None:
        return None

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if instance.name != "finish":  # ReAct's own end marker is not a tool call to report
            self._tools[call_id] = instance.name
            self._notify(StatusEvent(f"Calling tool {instance.name}..."))

    def on_tool_end(
        self, call_id: str, outputs: Any, exception: BaseException | None = None
    ) -> None:
        name = self._tools.pop(call_id, None)
        if name is not None:
            self._notify(StatusEvent(f"Tool {name} {'failed' if exception else 'finished'}"))

    def on_module_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        return None

    def on_module_end(
        self, call_id: str, outputs: Any, exception: BaseException | None = None
    ) -> None:
        return None


# --------------------------------------------------------------------------------------------
# Errors


def _leaf(exc: BaseException) -> BaseException:
    """The first real failure inside (nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


def execution_error(
    exc: BaseException, module_type: str, include_trace: bool = False
) -> BridgeError:
    """A BridgeError for a failure inside a running module: the LM's mapped error when there is
    one (with the raw output of a failed parse when the trace was asked for), else
    EXECUTION_FAILED with the error's type and message (never a traceback)."""
    mapped = lm_error_to_bridge(exc)
    if mapped is not None:
        if not isinstance(_leaf(exc), BridgeError):
            log_lm_failure(exc, mapped)
        return with_raw_output(mapped, exc, include_trace)
    exc = _leaf(exc)
    if isinstance(exc, BridgeError):
        return exc
    text = redact(str(exc).strip().splitlines()[0][:500]) if str(exc).strip() else ""
    return BridgeError(
        grpc.StatusCode.UNKNOWN,
        Reason.EXECUTION_FAILED,
        f"{module_type} failed: {type(exc).__name__}{': ' + text if text else ''}",
        {"error_type": type(exc).__name__, "module_type": module_type},
    )


def deadline_exceeded(timeout_ms: int) -> BridgeError:
    return BridgeError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        Reason.DEADLINE_EXCEEDED,
        f"the execution did not finish within timeout_ms={timeout_ms}; it was cancelled",
        {"timeout_ms": str(timeout_ms)},
    )


# --------------------------------------------------------------------------------------------
# In-process execution


def _freeze(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


Emit = Callable[[ExecutionEvent], Awaitable[None]]
Notify = Callable[[ExecutionEvent], None]
LMFactory = Callable[[LMSpec | None, Mapping[str, Any]], dspy.BaseLM]


class InProcessExecutor:
    """Runs executions on this event loop (sync-only modules in threads). See module docstring."""

    def __init__(
        self,
        *,
        max_programs: int = 256,
        build_context: Callable[[str], registry.BuildContext] | None = None,
        lm_factory: LMFactory | None = None,
        host: HostCaller | None = None,
    ) -> None:
        """`build_context` gives the tools of a session; `lm_factory` builds an LM from a spec
        and the LM parameters (default: `runtime.lm.factory.build_lm`, which caches LMs);
        `host` carries calls of `host:` tools to the session's host (the front's hub, or a
        worker's channel to the front)."""
        configure_runtime()
        self._host = host
        self._lm_factory: LMFactory = lm_factory or build_lm
        self._programs: _LRU[tuple[str, str, int, float, str], Program] = _LRU(max_programs)
        self._context = build_context or (lambda sid: registry.BuildContext(session_id=sid))
        self._in_flight = 0
        self._executions = 0
        self._failures = 0

    # -- caches -----------------------------------------------------------------------------

    def program(
        self,
        record: ModuleRecord,
        params: Mapping[str, PyValue],
        host_tools: tuple[HostToolSpec, ...] = (),
    ) -> Program:
        """The built program for a record version and parameter values (cached).

        The key holds the module's create_time: a module deleted and created again under the
        same id starts at version 1 again and must not hit the old one's programs; and the
        shape of its host tools (a host may come back offering another schema)."""
        structural = {k: v for k, v in params.items() if k not in NON_STRUCTURAL}
        shape = _freeze(structural) if structural else ""
        if host_tools:
            shape += "|" + "|".join(spec.fingerprint() for spec in host_tools)
        key = (record.session_id, record.module_id, record.version, record.create_time, shape)
        program = self._programs.get(key)
        if program is None:
            ctx = with_host_tools(self._context(record.session_id), host_tools, self._host)
            program = build_program(record, params, ctx)
            self._programs.put(key, program)
        return program

    def lm(self, spec: LMSpec | None, params: Mapping[str, PyValue]) -> dspy.BaseLM:
        """The LM for a spec and the LM parameters (shared by concurrent calls)."""
        return self._lm_factory(spec, {k: params[k] for k in LM_PARAMETERS if k in params})

    def forget_session(self, session_id: str) -> None:
        self._programs.drop(lambda key: key[0] == session_id)

    # -- executing --------------------------------------------------------------------------

    async def execute(self, req: ExecutionRequest) -> ExecutionResult:
        with _execute_span(req):
            return await self._execute(req, None, None)

    async def execute_stream(self, req: ExecutionRequest) -> AsyncGenerator[ExecutionEvent, None]:
        """Runs the execution in its own task (its own DSPy context) and relays its events;
        leaving the loop early cancels that task, hence the LM call."""
        # Unbounded: status messages arrive from callbacks (maybe in a thread) that cannot wait;
        # what it holds is bounded by the LM's output.
        events: asyncio.Queue[ExecutionEvent | BaseException] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def notify(event: ExecutionEvent) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        async def run() -> None:
            try:
                with _execute_span(req):
                    result = await self._execute(req, events.put, notify)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                await events.put(exc)
                return
            await events.put(ResultEvent(result))

        task = asyncio.create_task(run())
        try:
            while True:
                item = await events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if isinstance(item, ResultEvent):
                    return
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(task, return_exceptions=True)

    async def _execute(
        self, req: ExecutionRequest, emit: Emit | None, notify: Notify | None
    ) -> ExecutionResult:
        start = time.perf_counter()
        first_chunk = 0.0
        run_dspy_steps_on_the_loop()  # once per loop: DSPy's CPU-only steps skip the thread
        self._in_flight += 1
        self._executions += 1
        module_token = EXECUTION_MODULE.set(req.record.module_id)
        host_token = CURRENT_HOST.set(self._host)
        session_token = CURRENT_SESSION.set(req.record.session_id)
        deadline_token = EXECUTION_DEADLINE.set(
            time.monotonic() + req.timeout_ms / 1000 if req.timeout_ms > 0 else None
        )
        # Host LM calls from the thread a sync-only module runs in go through this loop; they
        # end with the execution (done, cancelled or past its deadline).
        thread_calls = ThreadHostCalls(asyncio.get_running_loop())
        thread_calls_token = THREAD_HOST_CALLS.set(thread_calls)
        try:
            program = self.program(req.record, req.params, req.host_tools)
            lm = self.lm(req.lm, req.params)
            recorder = CallRecorder(req.include_trace)
            callbacks = recorder.callbacks
            if notify is not None:
                callbacks = [*callbacks, _StatusCallback(notify)]
            if tracing.enabled():
                callbacks = [*callbacks, tracing.ExecutionSpans(recorder)]
            settings = {
                "lm": recorder.bind(lm),
                "adapter": make_adapter(str(req.params.get("adapter") or "")),
                "callbacks": callbacks,
                "trace": [],
            }
            timeout = req.timeout_ms / 1000 if req.timeout_ms > 0 else None
            deadline = asyncio.timeout(timeout)
            try:
                async with deadline:
                    with dspy.context(**settings):
                        if emit is None:
                            prediction = await self._call(program, req.inputs)
                        else:
                            prediction, first_chunk = await self._stream(program, req.inputs, emit)
            except asyncio.CancelledError:
                raise
            except HostUnavailable as signal:  # a host tool's host is gone: not an observation
                raise signal.error from None
            except Exception as exc:
                # The deadline's cancellation may surface as TimeoutError or, through a task
                # group, as another error: once it has expired, it is the deadline.
                if deadline.expired():
                    raise deadline_exceeded(req.timeout_ms) from None
                raise execution_error(exc, program.shape.module_type, req.include_trace) from None
            outputs = program.output_values(prediction)
        except HostUnavailable as signal:  # raised while building (a tool gone since dispatch)
            self._failures += 1
            raise signal.error from None
        except BaseException:
            self._failures += 1
            raise
        finally:
            self._in_flight -= 1
            thread_calls.close()
            THREAD_HOST_CALLS.reset(thread_calls_token)
            EXECUTION_DEADLINE.reset(deadline_token)
            EXECUTION_MODULE.reset(module_token)
            CURRENT_HOST.reset(host_token)
            CURRENT_SESSION.reset(session_token)
        latency = (time.perf_counter() - start) * 1000
        first_chunk_ms = (first_chunk - start) * 1000 if first_chunk else 0.0
        return ExecutionResult(
            outputs, recorder.usage(), recorder.trace, latency, round(first_chunk_ms, 3)
        )

    @staticmethod
    async def _call(program: Program, inputs: Mapping[str, PyValue]) -> Any:
        if program.is_async:
            return await program.module.acall(**inputs)
        # `to_thread` copies the contextvars, so the thread sees this execution's DSPy context.
        return await asyncio.to_thread(program.module, **inputs)

    @staticmethod
    async def _stream(
        program: Program, inputs: Mapping[str, PyValue], emit: Emit
    ) -> tuple[Any, float]:
        """The prediction, and when the first output chunk went out (perf_counter; 0: none)."""
        listeners = [
            StreamListener(name, predict=program.stream_predictor)
            for name in program.stream_fields()
        ]
        streaming = dspy.streamify(
            program.module,
            stream_listeners=listeners,
            is_async_program=program.is_async,
            async_streaming=True,
        )
        prediction = None
        first_chunk = 0.0
        async for value in streaming(**inputs):
            if isinstance(value, StreamResponse):
                if not first_chunk:
                    first_chunk = time.perf_counter()
                await emit(ChunkEvent(value.signature_field_name, value.chunk, value.is_last_chunk))
            elif isinstance(value, StatusMessage):  # from a plugin module's own callbacks
                await emit(StatusEvent(value.message))
            elif isinstance(value, dspy.Prediction):
                prediction = value
        if prediction is None:
            raise RuntimeError("the program ended without a prediction")
        return prediction, first_chunk

    # -- lifecycle --------------------------------------------------------------------------

    async def close(self) -> None:
        self._programs.clear()

    def stats(self) -> dict[str, int]:
        return {
            "in_flight": self._in_flight,
            "executions": self._executions,
            "failures": self._failures,
            "programs_cached": len(self._programs),
        }
