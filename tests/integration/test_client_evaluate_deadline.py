"""`evaluate(..., timeout_ms=)` in both Python clients extends the call's deadline past the
client's default, as `execute(timeout_ms=)` does (the Node client's `evaluate` has it too): an
evaluation slower than the client's timeout fails DEADLINE_EXCEEDED without it and completes
with it, unary and streamed (`progress=`)."""

from __future__ import annotations

import asyncio

import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client import AsyncBridgeClient, BridgeClient, DeadlineExceededError

DATASET = [({"question": "2 + 2?"}, {"answer": "4"})]
SLOW_LM_MS = 1_500  # the offline LM's simulated provider latency: well past the 0.3 s timeout


def _progress(completed: int, total: int) -> None:
    pass


async def test_async_evaluate_extends_its_deadline(server: RunningServer) -> None:
    async with AsyncBridgeClient(server.target, timeout=0.3) as client:
        session = await client.create_session()
        await session.configure_lm("offline", latency_ms=SLOW_LM_MS)
        await session.create_module("Predict", "question -> answer", module_id="qa")
        with pytest.raises(DeadlineExceededError):
            await session.evaluate("qa", DATASET, "exact_match")
        for progress in (None, _progress):
            done = await session.evaluate(
                "qa", DATASET, "exact_match", progress=progress, timeout_ms=60_000
            )
            assert len(done.results) == 1 and done.results[0].ok


async def test_sync_evaluate_extends_its_deadline(server: RunningServer) -> None:
    def evaluate() -> None:
        with BridgeClient(server.target, timeout=0.3) as client:
            session = client.create_session()
            session.configure_lm("offline", latency_ms=SLOW_LM_MS)
            session.create_module("Predict", "question -> answer", module_id="qa")
            with pytest.raises(DeadlineExceededError):
                session.evaluate("qa", DATASET, "exact_match", progress=_progress)
            for progress in (None, _progress):
                done = session.evaluate(
                    "qa", DATASET, "exact_match", progress=progress, timeout_ms=60_000
                )
                assert len(done.results) == 1 and done.results[0].ok

    await asyncio.to_thread(evaluate)
