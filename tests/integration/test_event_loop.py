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
