"""A job's host calls end with the job: cancelled, or its process dead, the job's call in flight
is cancelled at once (the host gets `cancel`, the call leaves the connection) instead of
holding its place until the metric's deadline."""

from __future__ import annotations

import os
import signal

import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from tests.host.raw_host import RawHost, hello
from tests.jobs.helpers import Stub, setup, start_host_scored_job, wait_done

#: Far longer than any test waits: a call freed only at its deadline fails the test.
METRIC_TIMEOUT_MS = 600_000


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"host_metric_timeout_ms": METRIC_TIMEOUT_MS}


async def _metric_call(host: RawHost) -> str:
    while (message := await host.read()).WhichOneof("message") != "metric_call":
        pass
    return str(message.metric_call.call_id)


async def _cancel_for(host: RawHost) -> str:
    message = await host.read()  # long before the metric's own deadline
    assert message.WhichOneof("message") == "cancel", message
    return str(message.cancel.call_id)


def _pending(server: RunningServer, sid: str) -> int:
    assert server.hosts is not None
    return sum(len(c.pending) for c in server.hosts._connections(sid))


async def test_cancelling_a_job_cancels_its_host_metric_call(
    server: RunningServer, stub: Stub
) -> None:
    sid = await setup(stub)
    async with RawHost(stub, hello(sid, metrics=["quality"])) as host:
        job_id = await start_host_scored_job(stub, sid)
        call_id = await _metric_call(host)
        await stub.CancelOptimization(pb.CancelOptimizationRequest(session_id=sid, job_id=job_id))
        assert await _cancel_for(host) == call_id
        assert _pending(server, sid) == 0


async def test_a_job_process_that_dies_mid_call_cancels_its_host_metric_call(
    server: RunningServer, stub: Stub
) -> None:
    sid = await setup(stub)
    async with RawHost(stub, hello(sid, metrics=["quality"])) as host:
        job_id = await start_host_scored_job(stub, sid)
        call_id = await _metric_call(host)
        assert server.jobs is not None
        process = server.jobs._handles[job_id].process
        assert process is not None and process.pid is not None
        os.kill(process.pid, signal.SIGKILL)
        assert await _cancel_for(host) == call_id
        done = await wait_done(stub, sid, job_id)
        assert done.status == job_pb2.JOB_STATUS_FAILED
        assert _pending(server, sid) == 0


@pytest.mark.parametrize(
    "settings_overrides",
    [
        {
            "host_metric_timeout_ms": METRIC_TIMEOUT_MS,
            "max_running_jobs": 1,
            "max_queued_jobs_per_caller": 2,
        }
    ],
)
async def test_cancelling_a_queued_job_frees_its_place_at_once(
    server: RunningServer, stub: Stub
) -> None:
    """The running job holds the only slot (its host metric is not answered); the caller
    cancels its queued job and may start another straight away."""
    sid = await setup(stub)
    async with RawHost(stub, hello(sid, metrics=["quality"])) as host:
        running = await start_host_scored_job(stub, sid)
        await _metric_call(host)
        queued = await start_host_scored_job(stub, sid)
        await stub.CancelOptimization(pb.CancelOptimizationRequest(session_id=sid, job_id=queued))
        assert server.jobs is not None
        await server.jobs.wait_stopped(queued, within=30)
        assert sorted(server.jobs.running_jobs()) == [running]
        third = await start_host_scored_job(stub, sid)  # within the quota of 2 again
        await stub.CancelOptimization(pb.CancelOptimizationRequest(session_id=sid, job_id=third))
        await stub.CancelOptimization(pb.CancelOptimizationRequest(session_id=sid, job_id=running))
        await _cancel_for(host)
