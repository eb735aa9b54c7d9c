"""Two in-process servers on one real Redis: what one replica caches never goes stale when the
other changes the store (the process-level scenarios are in test_replicas.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from dspy_bridge.transport.server import RunningServer, start_server
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2, value_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.conftest import redis_store_url, test_settings
from tests.integration.rpc import expect_error, iv
from tests.jobs.helpers import setup, start_request
from tests.redis_server import RedisServer

Stub = pb_grpc.BridgeServiceStub


@pytest_asyncio.fixture
async def pair(redis_server: RedisServer) -> AsyncIterator[tuple[Stub, Stub]]:
    url = redis_store_url(redis_server)
    servers: list[RunningServer] = []
    channels: list[grpc.aio.Channel] = []
    try:
        for _ in range(2):
            servers.append(await start_server(test_settings(store=url, job_lease_seconds=1.5)))
            channels.append(grpc.aio.insecure_channel(servers[-1].target))
        yield Stub(channels[0]), Stub(channels[1])
    finally:
        for channel in channels:
            await channel.close()
        for server in servers:
            await server.stop(grace=0)


async def _register(stub: Stub, sid: str, name: str, type_: int, value: value_pb2.Value) -> None:
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(session_id=sid, name=name, type=type_, initial_value=value)
    )


async def test_a_variable_made_anew_on_another_replica_is_written_as_the_new_one(
    pair: tuple[Stub, Stub],
) -> None:
    a, b = pair
    sid = (await a.CreateSession(pb.CreateSessionRequest())).session.session_id
    await _register(a, sid, "x", vpb.VARIABLE_TYPE_INTEGER, iv(1))
    await a.UpdateVariable(pb.UpdateVariableRequest(session_id=sid, name="x", value=iv(2)))
    # B replaces x by a STRING variable of the same name (a new id).
    await b.DeleteVariable(pb.DeleteVariableRequest(session_id=sid, name="x"))
    text = value_pb2.Value(string_value="hello")
    await _register(b, sid, "x", vpb.VARIABLE_TYPE_STRING, text)
    # A, which wrote the INTEGER x before, writes the new x and checks against its type.
    await expect_error(
        a.UpdateVariable(pb.UpdateVariableRequest(session_id=sid, name="x", value=iv(3))),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    updated = await a.UpdateVariable(
        pb.UpdateVariableRequest(
            session_id=sid, name="x", value=value_pb2.Value(string_value="world")
        )
    )
    assert (updated.variable.type, updated.variable.version) == (vpb.VARIABLE_TYPE_STRING, 2)
    # Gone on B: NOT_FOUND on A at once, through the same cached name.
    await b.DeleteVariable(pb.DeleteVariableRequest(session_id=sid, name="x"))
    await expect_error(
        a.UpdateVariable(pb.UpdateVariableRequest(session_id=sid, name="x", value=text)),
        grpc.StatusCode.NOT_FOUND,
        "VARIABLE_NOT_FOUND",
    )


async def test_a_job_running_on_one_replica_is_cancelled_through_the_other(
    pair: tuple[Stub, Stub],
) -> None:
    a, b = pair
    sid = await setup(a, latency_ms=5_000)
    job = (await a.StartOptimization(start_request(sid, "BootstrapFewShot"))).job
    seen = await b.GetOptimization(pb.GetOptimizationRequest(session_id=sid, job_id=job.job_id))
    assert seen.job.job_id == job.job_id
    listed = await b.ListOptimizations(pb.ListOptimizationsRequest(session_id=sid))
    assert [j.job_id for j in listed.jobs] == [job.job_id]
    cancelled = await b.CancelOptimization(
        pb.CancelOptimizationRequest(session_id=sid, job_id=job.job_id)
    )
    assert cancelled.job.status == job_pb2.JOB_STATUS_CANCELLED
    # A's watch of its own job ends with the cancel made through B.
    request = pb.WatchOptimizationRequest(session_id=sid, job_id=job.job_id)
    async for update in a.WatchOptimization(request):
        last = update.job
    assert last.status == job_pb2.JOB_STATUS_CANCELLED
