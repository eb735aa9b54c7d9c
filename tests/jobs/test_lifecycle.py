"""Job lifecycle through real RPCs: Watch streams progress and ends with the terminal state,
Cancel takes effect within seconds (and stops the job process), Execute keeps answering while
a job runs, and a job that was running when the server stopped reads INTERRUPTED after a
restart (kill -9 and SIGTERM, sqlite store, a real server process)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
import pytest

from dspy_bridge.model import JobStatus
from dspy_bridge.store import SqliteStore
from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from tests.integration.rpc import expect_error
from tests.jobs.helpers import (
    TERMINAL,
    Stub,
    add_module,
    setup,
    start_request,
    sv,
    wait_done,
)
from tests.jobs.task import TRAINSET
from tests.process import server_process

RUNNING = job_pb2.JOB_STATUS_RUNNING


async def _wait_running(stub: Stub, sid: str, job_id: str) -> job_pb2.Job:
    """The job once it is doing real work, waited for on its WatchOptimization stream."""
    request = pb.WatchOptimizationRequest(session_id=sid, job_id=job_id)
    async with asyncio.timeout(60):
        async for update in stub.WatchOptimization(request):
            job = update.job
            if job.status == RUNNING and job.progress.phase not in ("", "starting"):
                return job
            assert job.status not in TERMINAL, job
    raise AssertionError("the watch ended before the job ran")


async def test_watch_streams_progress_then_the_terminal_state(stub: Stub) -> None:
    sid = await setup(stub, latency_ms=40)
    job = (await stub.StartOptimization(start_request(sid, "BootstrapFewShot"))).job
    snapshots = [
        r.job
        async for r in stub.WatchOptimization(
            pb.WatchOptimizationRequest(session_id=sid, job_id=job.job_id)
        )
    ]
    assert snapshots[-1].status == job_pb2.JOB_STATUS_SUCCEEDED
    assert all(s.status not in TERMINAL for s in snapshots[:-1])
    phases = [s.progress.phase for s in snapshots if s.status == RUNNING]
    assert "scoring" in phases and "optimizing" in phases, phases
    assert any(s.progress.completed > 0 for s in snapshots)  # metric calls counted
    assert snapshots[-1].best_score == pytest.approx(snapshots[-1].module_result.score_after)
    # Watching a finished job returns its terminal snapshot and ends.
    again = [
        r.job
        async for r in stub.WatchOptimization(
            pb.WatchOptimizationRequest(session_id=sid, job_id=job.job_id)
        )
    ]
    assert [s.status for s in again] == [job_pb2.JOB_STATUS_SUCCEEDED]


async def test_cancel_takes_effect_within_seconds(stub: Stub, server: RunningServer) -> None:
    sid = await setup(stub, latency_ms=500)
    job = (await stub.StartOptimization(start_request(sid, "BootstrapFewShot"))).job
    await _wait_running(stub, sid, job.job_id)
    assert server.jobs is not None and job.job_id in server.jobs.running_jobs()

    # Execute is not starved while the job runs (its own process).
    executed = await stub.Execute(
        pb.ExecuteRequest(session_id=sid, module_id="clf", inputs={"text": sv("rain")})
    )
    assert executed.outputs["topic"].string_value

    watch = stub.WatchOptimization(pb.WatchOptimizationRequest(session_id=sid, job_id=job.job_id))
    started = time.monotonic()
    cancelled = (
        await stub.CancelOptimization(
            pb.CancelOptimizationRequest(session_id=sid, job_id=job.job_id)
        )
    ).job
    assert cancelled.status == job_pb2.JOB_STATUS_CANCELLED
    assert cancelled.HasField("end_time")
    last = [r.job async for r in watch][-1]
    assert last.status == job_pb2.JOB_STATUS_CANCELLED
    assert server.jobs is not None
    await server.jobs.wait_stopped(job.job_id, within=15)  # an event, bounded
    assert job.job_id not in server.jobs.running_jobs()
    assert time.monotonic() - started < 15
    final = await wait_done(stub, sid, job.job_id)
    assert final.status == job_pb2.JOB_STATUS_CANCELLED and not final.HasField("module_result")
    again = await stub.CancelOptimization(
        pb.CancelOptimizationRequest(session_id=sid, job_id=job.job_id)
    )
    assert again.job.status == job_pb2.JOB_STATUS_CANCELLED


async def test_list_pages_and_filters(stub: Stub) -> None:
    sid = await setup(stub)
    await add_module(stub, sid, "other")
    ids = []
    for module_id in ("clf", "other", "clf"):
        request = start_request(sid, "LabeledFewShot", trainset=TRAINSET[:2], module_id=module_id)
        ids.append((await stub.StartOptimization(request)).job.job_id)
    for job_id in ids:
        await wait_done(stub, sid, job_id)
    first = await stub.ListOptimizations(pb.ListOptimizationsRequest(session_id=sid, page_size=2))
    assert [j.job_id for j in first.jobs] == ids[:2] and first.next_page_token
    second = await stub.ListOptimizations(
        pb.ListOptimizationsRequest(session_id=sid, page_size=2, page_token=first.next_page_token)
    )
    assert [j.job_id for j in second.jobs] == ids[2:] and not second.next_page_token
    only = await stub.ListOptimizations(
        pb.ListOptimizationsRequest(session_id=sid, module_id="other")
    )
    assert [j.job_id for j in only.jobs] == [ids[1]]
    await expect_error(
        stub.ListOptimizations(pb.ListOptimizationsRequest(session_id=sid, page_token="x")),
        grpc.StatusCode.INVALID_ARGUMENT,
    )


async def test_deleting_the_session_stops_its_jobs(stub: Stub, server: RunningServer) -> None:
    sid = await setup(stub, latency_ms=500)
    job = (await stub.StartOptimization(start_request(sid, "BootstrapFewShot"))).job
    await _wait_running(stub, sid, job.job_id)
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid))
    assert server.jobs is not None
    await server.jobs.wait_stopped(job.job_id, within=30)
    assert job.job_id not in server.jobs.running_jobs()


@pytest.mark.parametrize("how", ["kill", "term"])
async def test_running_job_reads_interrupted_after_restart(tmp_path: Path, how: str) -> None:
    url = f"sqlite:///{tmp_path / 'bridge.db'}"
    with server_process("--store", url, "--workers", "0") as first:
        async with grpc.aio.insecure_channel(first.target) as channel:
            stub = pb_grpc.BridgeServiceStub(channel)
            sid = await setup(stub, latency_ms=1000)
            job = (await stub.StartOptimization(start_request(sid, "BootstrapFewShot"))).job
            await _wait_running(stub, sid, job.job_id)
        if how == "kill":
            first.kill()
        else:
            first.terminate()
            # A graceful stop marks the job INTERRUPTED itself, before any restart.
            store = await SqliteStore.open(tmp_path / "bridge.db")
            try:
                stopped = await store.get_job(sid, job.job_id)
                assert stopped.status is JobStatus.INTERRUPTED
            finally:
                await store.close()
    with server_process("--store", url, "--workers", "0") as second:
        async with grpc.aio.insecure_channel(second.target) as channel:
            stub = pb_grpc.BridgeServiceStub(channel)
            found = (
                await stub.GetOptimization(
                    pb.GetOptimizationRequest(session_id=sid, job_id=job.job_id)
                )
            ).job
            assert found.status == job_pb2.JOB_STATUS_INTERRUPTED
            assert found.HasField("end_time") and not found.HasField("module_result")
            watched = [
                r.job
                async for r in stub.WatchOptimization(
                    pb.WatchOptimizationRequest(session_id=sid, job_id=job.job_id)
                )
            ]
            assert [w.status for w in watched] == [job_pb2.JOB_STATUS_INTERRUPTED]
            # The module is untouched and the server works normally.
            module = (
                await stub.GetModule(pb.GetModuleRequest(session_id=sid, module_id="clf"))
            ).module
            assert module.version == 1
        second.terminate()
