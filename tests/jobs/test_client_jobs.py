"""The Python client's job methods (sync and async, same shape) against a real server."""

from __future__ import annotations

import asyncio

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client import AsyncBridgeClient, BridgeClient, InvalidArgumentError, JobStatus
from tests.jobs.task import HELD_OUT, SIGNATURE, TRAINSET


async def test_async_client_optimizes_watches_applies_and_reverts(server: RunningServer) -> None:
    async with AsyncBridgeClient(server.target) as client:
        session = await client.create_session()
        await session.configure_lm("offline")
        await session.create_module("Predict", SIGNATURE, module_id="clf")
        job = await session.start_optimization(
            "clf", "LabeledFewShot", TRAINSET, "exact_match", valset=HELD_OUT, config={"k": 12}
        )
        assert (
            job.status in (JobStatus.QUEUED, JobStatus.RUNNING)
            and job.optimizer == "LabeledFewShot"
        )
        snapshots = [s async for s in session.watch_optimization(job.job_id)]
        final = snapshots[-1]
        assert final.status is JobStatus.SUCCEEDED and final.done
        assert final.module_result is not None and final.module_result.score_after == 1.0
        assert final.config == {"k": 12} and final.metric == "exact_match"
        applied = await session.apply_optimization(job.job_id)
        assert applied.module is not None and applied.module.version == 2
        assert applied.job.applied
        listed = [j.job_id async for j in session.list_optimizations("clf")]
        assert listed == [job.job_id]
        reverted = await session.revert_module("clf", 1)
        assert reverted.version == 3 and reverted.demo_count == 0
        try:
            await session.start_optimization("clf", "Nope", TRAINSET, "exact_match")
        except InvalidArgumentError as exc:
            assert exc.reason == "UNKNOWN_OPTIMIZER"
        else:
            raise AssertionError("expected InvalidArgumentError")


def _sync_flow(target: str) -> None:
    with BridgeClient(target) as client:
        session = client.create_session()
        session.configure_lm("offline", latency_ms=300)
        session.create_module("Predict", SIGNATURE, module_id="clf")
        job = session.start_optimization(
            "clf", "BootstrapFewShot", TRAINSET, "exact_match", valset=HELD_OUT, apply=True
        )
        cancelled = session.cancel_optimization(job.job_id)
        assert cancelled.status is JobStatus.CANCELLED
        assert session.wait_optimization(job.job_id, max_wait=10).status is JobStatus.CANCELLED
        assert session.get_optimization(job.job_id).status is JobStatus.CANCELLED
        assert [j.job_id for j in session.list_optimizations()] == [job.job_id]


async def test_sync_client_start_cancel_get_list(server: RunningServer) -> None:
    await asyncio.to_thread(_sync_flow, server.target)
