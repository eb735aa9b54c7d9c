"""The Prometheus endpoint of a real sidecar tells the truth: LM calls and tokens counted
wherever they are made (Execute, batches, streams, Evaluate, a job in its own process), gauges
of what is live, streams measured apart from unary latency, no `_created` series."""

from __future__ import annotations

import json
import re
import socket
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from dspy_bridge_client import BridgeClient, JobStatus
from tests.jobs.task import HELD_OUT, SIGNATURE, TRAINSET
from tests.process import server_process

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _scrape(port: int) -> tuple[str, Samples]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return body, samples


def _get(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def _sum(samples: Samples, name: str, **labels: str) -> float:
    """The series with these labels, summed over the labels not given (e.g. every code)."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= set(have))


def _scrape_until_counted(
    port: int, name: str, bound_s: float, **labels: str
) -> tuple[str, Samples]:
    """Scrapes until the series counts at least one. A stream's duration is recorded when its
    handler returns, which can come after the client has already seen the stream end."""
    deadline = time.monotonic() + bound_s
    while True:
        body, samples = _scrape(port)
        if _sum(samples, name, **labels) >= 1 or time.monotonic() > deadline:
            return body, samples


def test_metrics_after_executions_an_evaluation_and_a_job() -> None:
    port = _free_port()
    with (
        server_process("--workers", "1", "--metrics-port", str(port)) as server,
        BridgeClient(server.target, timeout=120) as client,
    ):
        assert server.serving["metrics_port"] == port
        session = client.create_session()
        session.configure_lm("offline")
        session.create_module("Predict", SIGNATURE, module_id="clf")
        text = {"text": "the striker scored a goal"}
        usages = [session.execute("clf", text).usage]
        usages += [r.usage for r in session.execute_batch("clf", [text, text])]  # type: ignore[misc]
        with session.execute_stream("clf", text) as stream:
            usages.append(stream.result().usage)
        usages.append(session.evaluate("clf", HELD_OUT, "exact_match").usage)
        body, samples = _scrape(port)
        offline = {"model": "offline"}
        assert _get(samples, "dspy_bridge_lm_calls_total", **offline) == sum(
            u.lm_calls for u in usages
        )
        assert _get(samples, "dspy_bridge_lm_tokens_total", kind="prompt", **offline) == sum(
            u.prompt_tokens for u in usages
        )
        assert _get(samples, "dspy_bridge_lm_tokens_total", kind="completion", **offline) == sum(
            u.completion_tokens for u in usages
        )
        calls_before_job = _get(samples, "dspy_bridge_lm_calls_total", **offline)
        assert _get(samples, "dspy_bridge_sessions") == 1
        assert _get(samples, "dspy_bridge_workers_alive") == 1
        # (its value races with the last stream's worker bookkeeping; the series is there)
        assert ("dspy_bridge_executions_in_flight", ()) in samples
        assert "_created" not in body

        # A job: the LM calls its own process makes are reported back to the front.
        # Each LM call takes 0.3 s: the job runs for seconds, long enough to be seen RUNNING.
        session.configure_lm("offline", latency_ms=300)
        job = session.start_optimization(
            "clf", "BootstrapFewShot", TRAINSET, "exact_match", valset=HELD_OUT
        )
        with session.watch_optimization(job.job_id) as updates:
            for update in updates:
                if update.status is JobStatus.RUNNING:
                    break
        _, samples = _scrape(port)
        assert _get(samples, "dspy_bridge_jobs", state="running") == 1
        assert _get(samples, "dspy_bridge_jobs", state="queued") == 0
        done = session.wait_optimization(job.job_id, max_wait=180)
        assert done.status is JobStatus.SUCCEEDED
        # Both watch streams end on the client's side once it has what it waited for, so each
        # is recorded OK or CANCELLED, whichever of the handler's return and the client's
        # cancel comes first: count them whatever their code.
        watch = {"rpc": "WatchOptimization"}
        stream_count = "dspy_bridge_stream_duration_seconds_count"
        body, samples = _scrape_until_counted(port, stream_count, 60, **watch)
        assert _get(samples, "dspy_bridge_lm_calls_total", **offline) > calls_before_job
        assert _get(samples, "dspy_bridge_jobs", state="running") == 0

        # Streams have their own histogram; the unary one holds unary RPCs only.
        assert _sum(samples, stream_count, **watch) >= 1
        assert 'dspy_bridge_rpc_latency_seconds_count{code="OK",rpc="Execute"}' in body
        assert 'rpc_latency_seconds_count{code="OK",rpc="WatchOptimization"}' not in body
        assert 'rpc_latency_seconds_count{code="OK",rpc="ExecuteStream"}' not in body
        assert "_created" not in body
        # Every series the Grafana dashboard queries is one the sidecar serves.
        for name in _dashboard_series():
            assert f"\n{name}" in body, name


def _dashboard_series() -> set[str]:
    dashboard = json.loads(
        (Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text()
    )
    exprs = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return {name for expr in exprs for name in re.findall(r"dspy_bridge_[a-z_]+", expr)}
