"""OpenTelemetry traces end to end: a sidecar started with the standard OTEL_* variables exports
to an OTLP receiver (an in-process gRPC TraceService); the host's W3C `traceparent` parents the
server span, under which come the validation, the front's and the worker's queue waits, the
worker's execution (exported by the worker process) and each LM call with GenAI attributes;
host metric calls are spans under Evaluate and under a job's phase; log lines carry the trace
id."""

from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from dspy_bridge import tracing
from dspy_bridge_client import BridgeClient
from tests.process import server_process


class Receiver(trace_service_pb2_grpc.TraceServiceServicer):
    """Collects every exported span with the service name of its resource."""

    def __init__(self) -> None:
        self.spans: queue.Queue[tuple[str, trace_pb2.Span]] = queue.Queue()

    def Export(
        self, request: trace_service_pb2.ExportTraceServiceRequest, context: Any
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    self.spans.put((attributes.get("service.name", ""), span))
        return trace_service_pb2.ExportTraceServiceResponse()


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, int]]:
    collector = Receiver()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(collector, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield collector, port
    finally:
        server.stop(0)


def _attributes(span: trace_pb2.Span) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for a in span.attributes:
        kind = a.value.WhichOneof("value")
        out[a.key] = getattr(a.value, kind) if kind else None
    return out


def _collect(
    collector: Receiver, trace_id: bytes, until: set[str], wait_s: float
) -> dict[str, Any]:
    """Spans of `trace_id` by name, once every name in `until` has arrived."""
    found: dict[str, Any] = {}
    deadline = time.monotonic() + wait_s
    while not until <= found.keys():
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"spans never came: {until - found.keys()} (got {set(found)})"
        try:
            service, span = collector.spans.get(timeout=remaining)
        except queue.Empty:
            continue
        if span.trace_id == trace_id:
            found.setdefault(span.name, (service, span))
            found.setdefault("all", []).append(span)
            found.setdefault("children", {}).setdefault(span.parent_span_id, []).append(span.name)
    return found


def test_tracing_is_off_unless_the_environment_asks() -> None:
    assert not tracing.wanted({})
    assert not tracing.wanted({"OTEL_SERVICE_NAME": "x"})
    assert tracing.wanted({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4317"})
    assert not tracing.wanted(
        {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}
    )
    assert not tracing.wanted({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.enabled()  # this test process never asked


def test_the_new_span_helpers_do_nothing_when_off() -> None:
    """Off, the host metric and worker queue wait spans cost a test of a flag each."""
    with tracing.span("host_metric quality", {"dspy_bridge.metric.name": "quality"}) as started:
        assert started is None
    tracing.elapsed_span("worker queue wait", time.time_ns(), {"traceparent": "x"})
    phases = tracing.PhaseSpans()
    phases.parent_new_spans()
    assert phases.context() is None and tracing._phase_parent is None


def test_an_execution_traced_across_the_front_and_a_worker(receiver: tuple[Receiver, int]) -> None:
    collector, port = receiver
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "OTEL_EXPORTER_OTLP_INSECURE": "true",
        "OTEL_SERVICE_NAME": "bridge-under-test",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
    }
    trace_id, parent_id = secrets.token_hex(16), secrets.token_hex(8)
    traceparent = f"00-{trace_id}-{parent_id}-01"
    with server_process("--workers", "1", "--log-level", "debug", env=env) as server:
        with BridgeClient(server.target, timeout=120) as client:
            session = client.create_session()
            session.configure_lm("offline")
            session.create_module("Predict", "question -> answer", module_id="qa")
            traced = BridgeClient(server.target, timeout=120, metadata={"traceparent": traceparent})
            with traced, session.serve(metrics={"quality": _quality}):
                mine = traced.session(session.session_id)
                result = mine.execute("qa", question="Why?")
                mine.evaluate("qa", [({"question": "a"}, {"answer": "b"})], "host:quality")
                job = mine.start_optimization(
                    "qa", "LabeledFewShot", [({"question": "a"}, {"answer": "b"})], "host:quality"
                )
                mine.wait_optimization(job.job_id, max_wait=120)
        rpc = "dspy_bridge.v1.BridgeService/Execute"
        spans = _collect(
            collector,
            bytes.fromhex(trace_id),
            {rpc, "validate", "queue wait", "worker queue wait", "execute", "chat offline"}
            | {EVALUATE, "host_metric quality", *JOB_SPANS},
            wait_s=120,
        )
        logged = [
            e
            for e in list(server.events.queue)
            if e.get("event") == "rpc" and e.get("rpc") == "Execute"
        ]
    service, root = spans[rpc]
    assert service == "bridge-under-test"
    assert root.parent_span_id == bytes.fromhex(parent_id)  # the host's span is the parent
    assert root.kind == trace_pb2.Span.SPAN_KIND_SERVER
    assert _attributes(root)["rpc.grpc.status_code"] == "OK"
    assert {"validate", "queue wait", "worker queue wait", "execute"} <= set(
        spans["children"][root.span_id]
    )
    assert spans["execute"][1].parent_span_id == root.span_id  # the only execute span
    worker_pid = _attributes(spans["execute"][1])["process.pid"]
    assert worker_pid != server.proc.pid  # exported by the worker process
    # The wait in the worker: from the front's handing the call over (after its own queue wait)
    # to the worker starting it, exported by the worker.
    _, front_wait = spans["queue wait"]
    _, worker_wait = spans["worker queue wait"]
    assert _attributes(worker_wait)["process.pid"] == worker_pid
    assert front_wait.end_time_unix_nano <= worker_wait.start_time_unix_nano
    assert worker_wait.start_time_unix_nano <= worker_wait.end_time_unix_nano
    assert worker_wait.end_time_unix_nano <= spans["execute"][1].start_time_unix_nano
    # The Execute's LM call (the job's own LM calls come later, under its phases).
    execute_id = spans["execute"][1].span_id
    (lm_call,) = [
        span
        for span in spans["all"]
        if span.parent_span_id == execute_id and span.name == "chat offline"
    ]
    assert lm_call.kind == trace_pb2.Span.SPAN_KIND_CLIENT
    attributes = _attributes(lm_call)
    assert attributes["gen_ai.request.model"] == "offline"
    assert attributes["gen_ai.usage.input_tokens"] == result.usage.prompt_tokens
    assert attributes["gen_ai.usage.output_tokens"] == result.usage.completion_tokens
    assert lm_call.end_time_unix_nano > lm_call.start_time_unix_nano
    assert logged and all(e["trace_id"] == trace_id for e in logged)  # trace ids in logs

    # The job's process joins the trace of the call that started it, one span per phase.
    _, job_span = spans["job"]
    started = spans["dspy_bridge.v1.BridgeService/StartOptimization"][1]
    assert job_span.parent_span_id == started.span_id
    assert {"job phase scoring", "job phase optimizing"} <= set(spans["children"][job_span.span_id])

    # Host metric calls: Evaluate's in the front, under its RPC; the job's in its process (from
    # DSPy's threads), under the phase that made them; each with the host's score.
    metric_calls = [s for s in spans["all"] if s.name == "host_metric quality"]
    by_parent = {s.parent_span_id: s for s in metric_calls}
    assert spans[EVALUATE][1].span_id in by_parent
    phases = {
        spans[name][1].span_id for name in spans if isinstance(name, str) and "job phase" in name
    }
    in_job = [s for s in metric_calls if s.parent_span_id in phases]
    assert in_job, [s.parent_span_id for s in metric_calls]
    for call in (by_parent[spans[EVALUATE][1].span_id], in_job[0]):
        attributes = _attributes(call)
        assert attributes["dspy_bridge.metric.name"] == "quality"
        assert attributes["dspy_bridge.metric.score"] == 1.0
    assert _attributes(in_job[0])["dspy_bridge.job_id"] == job.job_id


def _quality(inputs: dict[str, Any], labels: dict[str, Any], prediction: dict[str, Any]) -> float:
    """The host's metric (any answer scores 1: the test follows the calls, not the scores)."""
    return 1.0


EVALUATE = "dspy_bridge.v1.BridgeService/Evaluate"


JOB_SPANS = (
    "dspy_bridge.v1.BridgeService/StartOptimization",
    "job",
    "job phase scoring",
    "job phase optimizing",
)


def _console_spans(text: str) -> list[dict[str, Any]]:
    """The spans the console exporter printed (JSON objects one after another)."""
    decoder, spans, index = json.JSONDecoder(), [], 0
    while (start := text.find("{", index)) != -1:
        span, index = decoder.raw_decode(text, start)
        spans.append(span)
    return spans


def test_tool_calls_are_spans_under_their_execution() -> None:
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "tools"}
    done = subprocess.run(
        [sys.executable, "-m", "tests.runtime.traced_react"],
        capture_output=True,
        text=True,
        env=env,
        cwd=Path(__file__).parents[2],
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    spans = {s["name"]: s for s in _console_spans(done.stdout)}
    tool = spans["execute_tool calculator"]
    assert tool["attributes"]["gen_ai.tool.name"] == "calculator"
    assert tool["parent_id"] == spans["execute"]["context"]["span_id"]
    assert spans["chat offline"]["parent_id"] == spans["execute"]["context"]["span_id"]
    assert tool["resource"]["attributes"]["service.name"] == "tools"
