"""Prometheus metrics, defined once and shared by the transport, pool and runtime."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, start_http_server

RPC_LATENCY = Histogram(
    "dspy_bridge_rpc_latency_seconds",
    "Server-side latency of each RPC.",
    ["rpc", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
LM_CALLS = Counter("dspy_bridge_lm_calls_total", "LM calls made by executions.", ["model"])
LM_TOKENS = Counter(
    "dspy_bridge_lm_tokens_total", "LM tokens used by executions.", ["model", "kind"]
)
POOL_QUEUE_DEPTH = Gauge("dspy_bridge_pool_queue_depth", "Executions waiting for a worker.")
WORKER_RESTARTS = Counter("dspy_bridge_worker_restarts_total", "Worker processes restarted.")
WATCHERS = Gauge("dspy_bridge_watchers", "Open WatchVariables streams.")
SESSIONS_EXPIRED = Counter("dspy_bridge_sessions_expired_total", "Sessions removed by TTL expiry.")


def serve_metrics(port: int, host: str = "0.0.0.0") -> Callable[[], None]:
    """Starts the /metrics HTTP endpoint in a daemon thread; returns its stop function."""
    server, thread = start_http_server(port, addr=host)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop
