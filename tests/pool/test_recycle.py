"""Recycling starts the replacement first: the old worker keeps taking calls until its
successor is ready, so no call waits for a worker to start, then it drains and exits."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from dspy_bridge.model import LMSpec
from dspy_bridge.pool import PoolConfig, WorkerPool
from dspy_bridge.runtime.executor import ExecutionRequest
from tests.runtime.module_helpers import make_record

pytestmark = pytest.mark.slow

# Every worker after the first blocks on a FIFO before it starts: the test decides when the
# replacement may become ready, so nothing depends on how fast a worker starts.
_GATED_WORKER = """
import os, sys
first, gate = sys.argv[1], sys.argv[2]
if os.path.exists(first):
    with open(gate) as fifo:
        fifo.read()
else:
    open(first, "w").close()
os.execv(sys.executable, [sys.executable, "-m", "dspy_bridge.pool", *sys.argv[3:]])
"""


def _request(question: str) -> ExecutionRequest:
    return ExecutionRequest(
        record=make_record("Predict"), lm=LMSpec(model="offline"), inputs={"question": question}
    )


async def test_recycled_worker_serves_until_its_successor_is_ready(tmp_path: Path) -> None:
    first, gate = tmp_path / "first", tmp_path / "gate"
    os.mkfifo(gate)
    pool = WorkerPool(
        PoolConfig(workers=1, max_requests=2, grace_seconds=20),
        worker_command=lambda fd: [
            sys.executable,
            "-c",
            _GATED_WORKER,
            str(first),
            str(gate),
            str(fd),
            "warning",
            "json",
        ],
    )
    await pool.start()
    try:
        old = pool.pids()[0]
        for i in range(2):  # the second call reaches max_requests: recycling starts
            assert (await pool.execute(_request(f"q{i}"))).outputs["answer"]
        assert pool.stats()["recycled"] == 1
        # The successor is held at the gate; calls still run, on the old worker, at once.
        for i in range(5):
            assert (await pool.execute(_request(f"during {i}"))).outputs["answer"]
        assert pool.pids() == [old]
        assert pool.stats()["recycled"] == 1  # one replacement, however many calls came since
        await asyncio.to_thread(gate.write_text, "go")
        await pool.wait_for(lambda: pool.pids() != [old], 60)
        assert (await pool.execute(_request("after"))).outputs["answer"]
        assert pool.stats()["crashes"] == 0
    finally:
        await pool.close()
    with pytest.raises(ProcessLookupError):  # the old worker drained, exited and was reaped
        os.kill(old, 0)
