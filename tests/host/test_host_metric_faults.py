"""A job whose host metric connection drops: it waits up to `host_reconnect_wait_seconds` for
the metric to be offered again — a host that comes back in time finishes it, one that does not
fails it UNAVAILABLE `HOST_DISCONNECTED` with a clear reason; it never scores without it."""

from __future__ import annotations

import asyncio

import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import host_pb2, job_pb2
from tests.host.raw_host import RawHost, answer_all, hello
from tests.jobs.helpers import Stub, setup, start_host_scored_job, wait_done


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"host_reconnect_wait_seconds": 5.0}


def _score(call: host_pb2.HostMetricCall) -> tuple[float, str]:
    return 0.5, ""


async def _first_metric_call(host: RawHost) -> None:
    while (await host.read()).WhichOneof("message") != "metric_call":
        pass


async def test_a_job_fails_when_its_host_metric_does_not_come_back(
    server: RunningServer, stub: Stub
) -> None:
    sid = await setup(stub)
    async with RawHost(stub, hello(sid, metrics=["quality"])) as host:
        job_id = await start_host_scored_job(stub, sid)
        await _first_metric_call(host)  # the job is scoring; the host leaves without answering
        await host.close()
    done = await wait_done(stub, sid, job_id, wait_s=120)
    assert done.status == job_pb2.JOB_STATUS_FAILED
    assert "HOST_DISCONNECTED" in str(done.error) or done.error.code == 14
    assert "host:quality" in done.error.message and "reconnect" in done.error.message
    assert not done.HasField("module_result")


async def test_a_job_finishes_when_its_host_metric_comes_back_in_time(stub: Stub) -> None:
    sid = await setup(stub)
    async with RawHost(stub, hello(sid, metrics=["quality"])) as first:
        job_id = await start_host_scored_job(stub, sid)
        await _first_metric_call(first)
        await first.close()
    async with RawHost(stub, hello(sid, metrics=["quality"])) as second:  # back within the wait
        answering = asyncio.create_task(answer_all(second, metrics=_score))
        done = await wait_done(stub, sid, job_id, wait_s=120)
        answering.cancel()
    assert done.status == job_pb2.JOB_STATUS_SUCCEEDED, done.error.message
    assert done.module_result.score_before == pytest.approx(0.5)
