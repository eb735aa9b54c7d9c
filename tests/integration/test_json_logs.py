"""In JSON mode every line the sidecar writes is one JSON object, at every level: its own
events, its workers' and job processes', and the records of gRPC, LiteLLM and Python warnings
(which log through the standard library)."""

from __future__ import annotations

import json

import pytest

from dspy_bridge_client import BridgeClient, JobStatus, NotFoundError
from tests.jobs.task import HELD_OUT, SIGNATURE, TRAINSET
from tests.process import server_process


def test_every_line_is_json_at_debug_level() -> None:
    with server_process("--log-level", "debug", "--workers", "1") as server:
        with BridgeClient(server.target, timeout=120) as client:
            client.ping()
            session = client.create_session()
            session.configure_lm("offline")
            session.create_module("Predict", SIGNATURE, module_id="clf")
            session.execute("clf", text="the striker scored a goal")
            session.evaluate("clf", HELD_OUT, "exact_match")
            job = session.start_optimization(
                "clf", "BootstrapFewShot", TRAINSET, "exact_match", valset=HELD_OUT
            )
            assert session.wait_optimization(job.job_id, max_wait=180).status is JobStatus.SUCCEEDED
            with pytest.raises(NotFoundError):
                client.session("missing").get()
        assert server.terminate() == 0
    lines = [line for line in server.all_output() if line.strip()]
    events = []
    for line in lines:
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
    assert all(isinstance(e, dict) and "event" in e and "level" in e for e in events)
    names = {e["event"] for e in events}
    assert {"serving", "rpc", "rpc failed", "job started", "stopped"} <= names
    assert any(e["level"] == "debug" for e in events)
    # gRPC's Python logger writes dozens of DEBUG lines per RPC: kept at WARNING.
    assert not any(str(e.get("logger", "")).startswith("grpc") for e in events)
