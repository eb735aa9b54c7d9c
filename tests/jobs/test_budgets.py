"""Job budgets and per-caller shares through a real channel (#10 item 8): optimizer budgets are
capped, a job past --max-job-seconds FAILS with JOB_TIMEOUT and frees its slot, a named caller
holds at most its share of the job slots and of queued jobs, and of the sessions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from dspy_bridge.transport.server import RunningServer, start_server
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from tests.conftest import test_settings
from tests.integration.rpc import expect_error
from tests.jobs.helpers import setup, slow_session, start_request, wait_done

Stub = pb_grpc.BridgeServiceStub
ANA = (("authorization", "Bearer ana-token"),)
BO = (("authorization", "Bearer bo-token"),)


async def _status_reached(
    stub: Stub, sid: str, job_id: str, wanted: int, metadata: object = None
) -> job_pb2.Job:
    """The job's first snapshot with status `wanted`, read from its watch stream."""
    request = pb.WatchOptimizationRequest(session_id=sid, job_id=job_id)
    async with asyncio.timeout(120):
        async for update in stub.WatchOptimization(request, metadata=metadata):
            if update.job.status == wanted:
                return update.job
    raise AssertionError(f"job {job_id} never reached status {wanted}")


@pytest.mark.parametrize("settings_overrides", [{"max_job_metric_calls": 50}])
async def test_a_huge_gepa_budget_is_refused(stub: Stub) -> None:
    sid = await setup(stub)
    for config, key in (
        ({"max_metric_calls": 10**12}, "max_metric_calls"),
        ({"max_metric_calls": 51}, "max_metric_calls"),
        ({"max_full_evals": 10}, "max_full_evals"),  # 10 x the examples > 50 calls
        ({"max_full_evals": 10**9}, "max_full_evals"),
    ):
        err = await expect_error(
            stub.StartOptimization(start_request(sid, "GEPA", config)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_OPTIMIZER_CONFIG",
        )
        assert err.fields == [f"config.{key}"]
    err = await expect_error(
        stub.StartOptimization(start_request(sid, "MIPROv2", {"auto": None, "num_trials": 10**6})),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    listed = await stub.ListOptimizations(pb.ListOptimizationsRequest(session_id=sid))
    assert not listed.jobs


@pytest.mark.parametrize("settings_overrides", [{"max_job_seconds": 3.0, "max_running_jobs": 1}])
async def test_a_job_past_the_wall_clock_limit_fails_and_frees_its_slot(
    stub: Stub, server: RunningServer
) -> None:
    sid = await setup(stub, latency_ms=5_000)
    slow = (await stub.StartOptimization(start_request(sid, "BootstrapFewShot"))).job
    done = await wait_done(stub, sid, slow.job_id)
    assert done.status == job_pb2.JOB_STATUS_FAILED
    assert done.error.code == grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
    assert "--max-job-seconds" in done.error.message
    assert server.jobs is not None and slow.job_id not in server.jobs.running_jobs()
    # The only slot is free again: the next job gets it. Either it finishes, or (on a very
    # loaded machine) it too is stopped at the limit — which only a job holding the slot is.
    fast = await setup(stub)
    following = (await stub.StartOptimization(start_request(fast, "LabeledFewShot"))).job
    after = await wait_done(stub, fast, following.job_id)
    assert after.status == job_pb2.JOB_STATUS_SUCCEEDED or (
        after.status == job_pb2.JOB_STATUS_FAILED and "--max-job-seconds" in after.error.message
    )


async def test_a_caller_holds_its_share_of_slots_and_sessions(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("ana ana-token\nbo bo-token\n")
    settings = test_settings(
        auth_tokens_file=str(tokens),
        max_running_jobs=2,
        max_queued_jobs_per_caller=2,
        max_sessions_per_caller=2,
    )
    running = await start_server(settings)
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            stub = Stub(channel)
            ana = await slow_session(stub, ANA)
            first = (
                await stub.StartOptimization(start_request(ana, "BootstrapFewShot"), metadata=ANA)
            ).job
            second = (
                await stub.StartOptimization(start_request(ana, "BootstrapFewShot"), metadata=ANA)
            ).job
            await _status_reached(stub, ana, first.job_id, job_pb2.JOB_STATUS_RUNNING, ANA)
            err = await expect_error(
                stub.StartOptimization(start_request(ana, "BootstrapFewShot"), metadata=ANA),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "JOB_QUOTA_EXCEEDED",
            )
            assert err.metadata["limit"] == "2"
            # Ana holds one of the two slots; her second job waits, and Bo's job runs at once.
            bo = await slow_session(stub, BO)
            bos = (
                await stub.StartOptimization(start_request(bo, "BootstrapFewShot"), metadata=BO)
            ).job
            await _status_reached(stub, bo, bos.job_id, job_pb2.JOB_STATUS_RUNNING, BO)
            waiting = await stub.GetOptimization(
                pb.GetOptimizationRequest(session_id=ana, job_id=second.job_id), metadata=ANA
            )
            assert waiting.job.status == job_pb2.JOB_STATUS_QUEUED

            # Sessions: Ana may own two; her third is refused, and Bo can still create his.
            await stub.CreateSession(pb.CreateSessionRequest(), metadata=ANA)
            await expect_error(
                stub.CreateSession(pb.CreateSessionRequest(), metadata=ANA),
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "SESSION_QUOTA_EXCEEDED",
            )
            await stub.CreateSession(pb.CreateSessionRequest(), metadata=BO)
            for sid, job, who in ((ana, first, ANA), (ana, second, ANA), (bo, bos, BO)):
                await stub.CancelOptimization(
                    pb.CancelOptimizationRequest(session_id=sid, job_id=job.job_id), metadata=who
                )
    finally:
        await running.stop(grace=0)
