"""The server and its workers run on the event loop `--event-loop` names (uvloop by default)."""

from __future__ import annotations

import json

import pytest

from dspy_bridge_client import BridgeClient
from tests.process import server_process


@pytest.mark.parametrize(("choice", "expected"), [("auto", "uvloop"), ("asyncio", "asyncio")])
def test_server_and_worker_serve_on_the_chosen_loop(choice: str, expected: str) -> None:
    with server_process("--workers", "1", "--event-loop", choice) as server:
        assert server.serving["event_loop"] == expected
        workers = [json.loads(line) for line in server.raw if '"worker ready"' in line]
        assert [w["event_loop"] for w in workers] == [expected]
        with BridgeClient(server.target) as client:
            session = client.create_session()
            session.create_module("Predict", "question -> answer", module_id="qa")
            result = session.execute("qa", question="Which loop?")
            assert result.outputs["answer"]
            streamed = session.execute_stream("qa", question="And streamed?").result()
            assert streamed.outputs["answer"]


@pytest.mark.parametrize(("threshold", "expected"), [("12345", 12345), ("0", 700)])
def test_server_and_worker_settle_their_heap(threshold: str, expected: int) -> None:
    """`--gc-young-threshold` reaches the front and its workers once they have started; with
    0 Python's collector is left as it is (its default young threshold, nothing frozen)."""
    with server_process("--workers", "1", "--gc-young-threshold", threshold) as server:
        workers = [json.loads(line) for line in server.raw if '"worker ready"' in line]
        assert [w["gc_young_threshold"] for w in workers] == [expected]
        assert server.serving["gc_young_threshold"] == expected
        if expected == 700:
            assert server.serving["frozen_objects"] == 0
        else:  # DSPy, gRPC and the store are imported: a large frozen heap
            assert server.serving["frozen_objects"] > 100_000
        with BridgeClient(server.target) as client:
            session = client.create_session()
            session.create_module("Predict", "question -> answer", module_id="qa")
            assert session.execute("qa", question="Still collected?").outputs["answer"]
