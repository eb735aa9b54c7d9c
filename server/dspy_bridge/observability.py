"""Prometheus metrics, defined once and shared by the transport, pool and runtime."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from prometheus_client import (
    REGISTRY,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# Every counter would otherwise get a `_created` series too: one more series per label set that
# dashboards never use and that doubles what a scrape carries.
disable_created_metrics()  # type: ignore[no-untyped-call]

RPC_LATENCY = Histogram(
    "dspy_bridge_rpc_latency_seconds",
    "Server-side latency of each unary RPC.",
    ["rpc", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
#: Streams (watches live for hours) apart from unary latency, so they never skew its quantiles.
STREAM_DURATION = Histogram(
    "dspy_bridge_stream_duration_seconds",
    "How long each streaming RPC stayed open, by how it ended.",
    ["rpc", "code"],
    buckets=(0.01, 0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 14400),
)
STREAMS_OPEN = Gauge("dspy_bridge_streams_open", "Streaming RPCs open now.", ["rpc"])
LM_CALLS = Counter(
    "dspy_bridge_lm_calls_total",
    "LM calls, wherever made: executions, batches, streams, evaluations, jobs.",
    ["model"],
)
LM_TOKENS = Counter(
    "dspy_bridge_lm_tokens_total", "LM tokens used (kind: prompt or completion).", ["model", "kind"]
)
POOL_QUEUE_DEPTH = Gauge("dspy_bridge_pool_queue_depth", "Executions waiting for a worker.")
WORKER_RESTARTS = Counter("dspy_bridge_worker_restarts_total", "Worker processes restarted.")
WATCHERS = Gauge("dspy_bridge_watchers", "Open WatchVariables streams.")
SESSIONS_EXPIRED = Counter("dspy_bridge_sessions_expired_total", "Sessions removed by TTL expiry.")


class LiveState(Collector):
    """Gauges read from the running server when Prometheus scrapes: live sessions, jobs by
    state, executions in flight, live workers, open job watchers. Read then rather than kept up
    to date, so they cannot drift from the truth (sessions in a shared store, workers that
    died). The values are read on the server's event loop, which owns that state; a loop too
    busy to answer within `timeout` leaves them out of that one scrape."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        read: Callable[[], Awaitable[Mapping[str, float]]],
        timeout: float = 5.0,
    ) -> None:
        self._loop = loop
        self._read = read
        self._timeout = timeout

    def describe(self) -> Iterable[Metric]:
        return []  # values are read at collect time only, never at registration

    def collect(self) -> Iterable[Metric]:
        future = asyncio.run_coroutine_threadsafe(self._gather(), self._loop)
        try:
            values = future.result(self._timeout)
        except Exception:
            future.cancel()
            return
        for name, (help_text, labels) in LIVE_GAUGES.items():
            family = GaugeMetricFamily(name, help_text, labels=list(labels))
            for key, value in values.items():
                metric, _, label = key.partition(":")
                if metric == name:
                    family.add_metric([label] if labels else [], value)
            yield family

    async def _gather(self) -> Mapping[str, float]:
        return await self._read()


#: The gauges `LiveState` reports: name -> (help, label names). Values are keyed `name` or
#: `name:label` by the reading function.
LIVE_GAUGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "dspy_bridge_sessions": ("Live sessions in the store.", ()),
    "dspy_bridge_jobs": ("Jobs of this server by state (running, queued).", ("state",)),
    "dspy_bridge_executions_in_flight": ("Executions running now.", ()),
    "dspy_bridge_workers_alive": ("Worker processes alive.", ()),
    "dspy_bridge_job_watchers": ("Open WatchOptimization streams.", ()),
}


_usage_counters: dict[str, tuple[Any, Any, Any]] = {}


def count_lm_usage(model: str, calls: int, prompt_tokens: int, completion_tokens: int) -> None:
    """Counts LM calls and tokens of one model (the labelled children are looked up once per
    model: `labels()` is a locked lookup, and this runs on every execution)."""
    counters = _usage_counters.get(model)
    if counters is None:
        counters = _usage_counters[model] = (
            LM_CALLS.labels(model),
            LM_TOKENS.labels(model, "prompt"),
            LM_TOKENS.labels(model, "completion"),
        )
    counters[0].inc(calls)
    counters[1].inc(prompt_tokens)
    counters[2].inc(completion_tokens)


def count_reported_usage(report: object) -> None:
    """Counts usage another process reported as `{model: [calls, prompt, completion]}` (a job
    process's messages); anything malformed is ignored rather than trusted."""
    if not isinstance(report, dict):
        return
    for model, counts in report.items():
        if (
            isinstance(model, str)
            and isinstance(counts, list)
            and len(counts) == 3
            and all(isinstance(n, int) and n >= 0 for n in counts)
        ):
            count_lm_usage(model, *counts)


def serve_metrics(port: int, host: str = "0.0.0.0") -> Callable[[], None]:
    """Starts the /metrics HTTP endpoint in a daemon thread; returns its stop function."""
    server, thread = start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


def report_live_state(
    loop: asyncio.AbstractEventLoop, read: Callable[[], Awaitable[Mapping[str, float]]]
) -> Callable[[], None]:
    """Registers a `LiveState` collector; returns its unregister function (a test process
    starts many servers, each must take its gauges away when it stops)."""
    collector = LiveState(loop, read)
    REGISTRY.register(collector)
    return lambda: REGISTRY.unregister(collector)
