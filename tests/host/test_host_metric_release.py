"""Host metric calls of an evaluation in the front end with it: a cancelled Evaluate sends
`cancel` to the host at once and frees the call, and a host that does not answer its metric
holds only its own evaluation, never threads other sessions' evaluations need."""

from __future__ import annotations

import asyncio
import itertools
import os

import grpc
import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from tests.host.raw_host import RawHost, hello
from tests.jobs.helpers import Stub, examples, setup
from tests.jobs.task import HELD_OUT, TRAINSET

#: Far longer than any test waits: a call the server frees only at its deadline fails the test.
METRIC_TIMEOUT_MS = 600_000


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"host_metric_timeout_ms": METRIC_TIMEOUT_MS}


#: More metric calls in flight than the front's default thread pool has threads (asyncio's
#: default: min(32, cores + 4)), so a thread per waiting call would leave none for others.
IN_FLIGHT = min(32, (os.cpu_count() or 1) + 4) + 2


def _evaluation(sid: str, metric: str, rows: int, threads: int) -> pb.EvaluateRequest:
    dataset = list(itertools.islice(itertools.cycle([*HELD_OUT, *TRAINSET]), rows))
    return pb.EvaluateRequest(
        session_id=sid,
        module_id="clf",
        dataset=examples(dataset),
        metric=job_pb2.MetricSpec(name=metric),
        num_threads=threads,
    )


def _pending(server: RunningServer, sid: str) -> int:
    assert server.hosts is not None
    return sum(len(c.pending) for c in server.hosts._connections(sid))


async def test_cancelling_an_evaluation_cancels_its_host_metric_call(
    server: RunningServer, stub: Stub
) -> None:
    sid = await setup(stub)
    async with RawHost(stub, hello(sid, metrics=["quality"])) as host:
        evaluation = stub.Evaluate(_evaluation(sid, "host:quality", rows=1, threads=1))
        message = await host.read()
        assert message.WhichOneof("message") == "metric_call"
        call_id = message.metric_call.call_id
        evaluation.cancel()
        message = await host.read()  # long before the metric's own deadline
        assert message.WhichOneof("message") == "cancel"
        assert message.cancel.call_id == call_id
        assert _pending(server, sid) == 0
        with pytest.raises(asyncio.CancelledError):
            await evaluation


async def test_a_silent_host_metric_does_not_stall_another_sessions_evaluation(
    server: RunningServer, stub: Stub
) -> None:
    """More metric calls in flight than the front's default thread pool has threads, none
    answered: another session's evaluation still runs."""
    silent = await setup(stub)
    other = await setup(stub)
    in_flight = IN_FLIGHT
    async with RawHost(stub, hello(silent, metrics=["quality"])) as host:
        stalled = stub.Evaluate(
            _evaluation(silent, "host:quality", rows=in_flight, threads=in_flight)
        )
        for _ in range(in_flight):  # every call reaches the host at once
            assert (await host.read()).WhichOneof("message") == "metric_call"
        result = await asyncio.wait_for(
            stub.Evaluate(_evaluation(other, "exact_match", rows=2, threads=2)), 60
        )
        assert len(result.results) == 2
        stalled.cancel()
        for _ in range(in_flight):
            assert (await host.read()).WhichOneof("message") == "cancel"
        assert _pending(server, silent) == 0
    with pytest.raises((asyncio.CancelledError, grpc.aio.AioRpcError)):
        await stalled
