"""OpenTelemetry tracing, configured by OpenTelemetry's standard environment variables.

Off unless `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an OTLP endpoint is
set (`OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`); `OTEL_SDK_DISABLED=true`
or `OTEL_TRACES_EXPORTER=none` keep it off. Then the SDK reads the rest itself:
`OTEL_SERVICE_NAME` (default `dspy-bridge`), `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG`,
`OTEL_EXPORTER_OTLP_*` and `OTEL_BSP_*`. Off, nothing is set up and every helper here returns
at its first test of `enabled()`: no span objects, no context extraction.

Spans: each RPC is a SERVER span whose parent is the W3C `traceparent` the host sent in gRPC
metadata; an execution's `validate` (resolution of the module and its variables), `queue wait`
(in the front, for a worker), `worker queue wait` (from the front handing the call to a worker
to the worker starting it) and `execute` spans, one span per LM call with the GenAI
semantic-convention attributes, one per tool call and one per host metric call
(`host_metric <name>`, in the front for Evaluate, in the job process for optimizations). A
worker or job process gets its parent in the request (`carrier()`) and exports its spans
itself, to the same endpoint (it inherits the environment). In a job process, spans begun
in the runner's thread or in DSPy's evaluator and optimizer threads (which do not carry the
job's context) go under the job's current phase (`PhaseSpans.parent_new_spans`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from dspy.utils.callback import BaseCallback
from opentelemetry import context, propagate, trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

_TRACER_NAME = "dspy_bridge"
#: A started SERVER span and the context token to restore when it ends.
ServerSpan = tuple[Span, object]
_enabled = False
#: In a job process: the job's span and its current phase's context. Spans begun where that
#: span or none is current (the runner's thread, DSPy's threads) go under the phase.
_phase_parent: tuple[Span, Callable[[], Context | None]] | None = None


def wanted(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def configure_tracing() -> bool:
    """Sets up the SDK when the environment asks for traces; True when it did. Once per
    process (the front and each worker)."""
    global _enabled
    if _enabled or not wanted():
        return _enabled
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or "dspy-bridge"})
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    exporters: list[SpanExporter] = []
    for name in (os.environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(","):
        if name.strip() == "console":
            exporters.append(ConsoleSpanExporter())
        elif name.strip() == "otlp":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

            exporters.append(OTLPSpanExporter())
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _enabled = True
    return True


def shutdown_tracing() -> None:
    """Exports what is buffered (at exit: a worker's last spans)."""
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if _enabled and callable(stop):
        stop()


def enabled() -> bool:
    return _enabled


def _tracer() -> trace.Tracer:
    return trace.get_tracer(_TRACER_NAME)


def server_span(rpc: str, service: str, metadata: Any) -> ServerSpan | None:
    """Starts the SERVER span of an RPC, parented by the `traceparent` in its metadata, and
    makes it current; returns it with the token `end_server_span` needs. None when off."""
    if not _enabled:
        return None
    carrier = {k: v for k, v in (metadata or ()) if isinstance(v, str)}
    parent = propagate.extract(carrier)
    span = _tracer().start_span(
        f"{service}/{rpc}",
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": rpc},
    )
    token = context.attach(trace.set_span_in_context(span, parent))
    return span, token


def end_server_span(started: ServerSpan | None, code: str, error: str = "") -> None:
    if started is None:
        return
    span, token = started
    span.set_attribute("rpc.grpc.status_code", code)
    if code != "OK":
        span.set_status(Status(StatusCode.ERROR, error or code))
    span.end()
    context.detach(token)  # type: ignore[arg-type]


def log_ids() -> dict[str, str]:
    """`trace_id` and `span_id` of the current span, for log lines; empty when off."""
    if not _enabled:
        return {}
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


@contextmanager
def span(
    name: str, attributes: Mapping[str, Any] | None = None, parent: Mapping[str, str] | None = None
) -> Iterator[Span | None]:
    """A child span of the current one (or of the `parent` carrier, from another process)
    around the block; nothing when off."""
    if not _enabled:
        yield None
        return
    ctx = propagate.extract(dict(parent)) if parent else _phase_context()
    with _tracer().start_as_current_span(
        name, context=ctx, attributes=dict(attributes or {})
    ) as current:
        yield current


def _phase_context() -> Context | None:
    """The parent for a span begun here: in a job process, where the job's span or no span is
    current, the job's current phase; else None (the current context)."""
    if _phase_parent is None:
        return None
    job, phase = _phase_parent
    current = trace.get_current_span()
    if current is job or not current.get_span_context().is_valid:
        return phase()
    return None


def elapsed_span(
    name: str,
    started_ns: int,
    parent: Mapping[str, str] | None,
    attributes: Mapping[str, Any] | None = None,
) -> None:
    """A span that began at `started_ns` (`time.time_ns()`, possibly in another process of
    this machine) and ends now, a child of the `parent` carrier; nothing when off."""
    if not _enabled:
        return
    ctx = propagate.extract(dict(parent)) if parent else None
    _tracer().start_span(
        name, context=ctx, start_time=started_ns, attributes=dict(attributes or {})
    ).end()


def carrier() -> dict[str, str]:
    """The current trace context as W3C headers, to send to another process; empty when off."""
    if not _enabled:
        return {}
    headers: dict[str, str] = {}
    propagate.inject(headers)
    return headers


class ExecutionSpans(BaseCallback):  # type: ignore[misc]
    """A DSPy callback making one span per tool call (`execute_tool <name>`) and one per LM
    call (`chat <model>`, CLIENT) with the GenAI semantic-convention attributes:
    `gen_ai.request.model`, `gen_ai.usage.input_tokens` and `gen_ai.usage.output_tokens` (from
    the execution's usage recorder: under concurrent LM calls within one execution, tokens go
    to the call that ends first), the latency being the span's own duration."""

    def __init__(self, usage: Any) -> None:
        self._usage = usage  # a CallRecorder: running token totals of this execution
        self._open: dict[str, tuple[Span, int, int]] = {}

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        model = str(getattr(instance, "model", ""))
        started = _tracer().start_span(
            f"chat {model}",
            kind=SpanKind.CLIENT,
            attributes={
                "gen_ai.operation.name": "chat",
                "gen_ai.system": model.split("/", 1)[0] if "/" in model else model,
                "gen_ai.request.model": model,
            },
        )
        self._open[call_id] = (
            started,
            self._usage.prompt_tokens,
            self._usage.completion_tokens,
        )

    def on_lm_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None = None
    ) -> None:
        opened = self._open.pop(call_id, None)
        if opened is None:
            return
        started, prompt_before, completion_before = opened
        started.set_attribute(
            "gen_ai.usage.input_tokens", self._usage.prompt_tokens - prompt_before
        )
        started.set_attribute(
            "gen_ai.usage.output_tokens", self._usage.completion_tokens - completion_before
        )
        if exception is not None:
            started.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        started.end()

    # -- tool calls (the module's tools, `host:` tools included) --------------------------------

    def on_tool_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        name = str(getattr(instance, "name", "") or type(instance).__name__)
        started = _tracer().start_span(
            f"execute_tool {name}",
            kind=SpanKind.INTERNAL,
            attributes={"gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": name},
        )
        self._open[call_id] = (started, 0, 0)

    def on_tool_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None = None
    ) -> None:
        opened = self._open.pop(call_id, None)
        if opened is None:
            return
        started = opened[0]
        if exception is not None:
            started.set_status(Status(StatusCode.ERROR, type(exception).__name__))
        started.end()


class PhaseSpans:
    """One span per phase of a job (`job phase <name>`), children of the span current when this
    is made (the job's), whichever thread reports the phase; the previous phase's span ends
    when the next begins. Does nothing when tracing is off."""

    def __init__(self) -> None:
        self._parent = context.get_current() if _enabled else None
        self._current: Span | None = None
        self._name = ""

    def begin(self, phase: str) -> None:
        if self._parent is None or phase == self._name:
            return
        self.close()
        self._name = phase
        self._current = _tracer().start_span(
            f"job phase {phase}", context=self._parent, attributes={"dspy_bridge.phase": phase}
        )

    def close(self) -> None:
        if self._current is not None:
            self._current.end()
            self._current = None

    def context(self) -> Context | None:
        """The current phase's context (the job's before the first phase)."""
        if self._current is None:
            return self._parent
        return trace.set_span_in_context(self._current, self._parent)

    def parent_new_spans(self) -> None:
        """Spans begun in this process where the job's span or no span is current (the
        runner's thread; DSPy's threads, which do not carry the job's context) become children
        of the current phase."""
        global _phase_parent
        if self._parent is not None:
            _phase_parent = (trace.get_current_span(self._parent), self.context)
