"""`WorkerPool.close()` (what SIGTERM ends in): new executions are refused with UNAVAILABLE
`DRAINING` while the calls in flight finish normally, then the workers exit."""

from __future__ import annotations

import asyncio
import os

import grpc
import pytest

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import LMSpec
from dspy_bridge.pool import PoolConfig, WorkerPool
from dspy_bridge.runtime.executor import ExecutionRequest
from tests.runtime.module_helpers import make_record

pytestmark = pytest.mark.slow


async def test_close_refuses_new_calls_and_drains_those_in_flight() -> None:
    pool = WorkerPool(PoolConfig(workers=1, grace_seconds=20))
    await pool.start()
    worker = pool.pids()[0]
    request = ExecutionRequest(
        record=make_record("ChainOfThought"),
        lm=LMSpec(model="offline", options={"latency_ms": "500"}),
        inputs={"question": "What is 2+2?"},
    )
    running = [asyncio.create_task(pool.execute(request)) for _ in range(3)]
    await pool.wait_for(lambda: pool.stats()["in_flight"] == 3, 20)
    closing = asyncio.create_task(pool.close())
    await asyncio.sleep(0)  # let close() mark the pool as draining (an ordering, not a wait)
    with pytest.raises(BridgeError) as caught:
        await pool.execute(request)
    assert (caught.value.code, caught.value.reason) == (
        grpc.StatusCode.UNAVAILABLE,
        Reason.DRAINING,
    )
    assert caught.value.metadata["retryable"] == "true"
    for result in await asyncio.gather(*running):
        assert result.outputs["answer"]
    await closing
    assert pool.stats()["in_flight"] == 0
    with pytest.raises(ProcessLookupError):  # drained, exited and reaped
        os.kill(worker, 0)
