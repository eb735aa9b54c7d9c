"""Two in-process servers on one real Redis: what one replica caches never goes stale when the
other changes the store (the process-level scenarios are in test_replicas.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest_asyncio

from dspy_bridge.transport.server import RunningServer, start_server
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2, lm_pb2, module_pb2, value_pb2
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


async def _bound_module(stub: Stub, sid: str, variable: str) -> None:
    """Module `clf` (Predict) with its `temperature` bound to `variable`."""
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="clf",
            module_type="Predict",
            signature=module_pb2.Signature(text="text -> topic"),
            variable_bindings={"temperature": variable},
        )
    )


async def test_an_execute_on_one_replica_reads_what_the_other_just_wrote(
    pair: tuple[Stub, Stub],
) -> None:
    """B keeps what its Executes read between calls; each write through A shows in B's very
    next Execute: a variable's value, a module version, a module made anew, a deleted session."""
    a, b = pair
    sid = (await a.CreateSession(pb.CreateSessionRequest())).session.session_id
    await a.ConfigureLM(pb.ConfigureLMRequest(session_id=sid, lm=lm_pb2.LMConfig(model="offline")))
    for name, value in (("warm", 0.2), ("cold", 1.5)):
        await _register(a, sid, name, vpb.VARIABLE_TYPE_FLOAT, value_pb2.Value(float_value=value))
    await _bound_module(a, sid, "warm")
    request = pb.ExecuteRequest(
        session_id=sid, module_id="clf", inputs={"text": value_pb2.Value(string_value="hi")}
    )

    async def used_on_b() -> tuple[str, float, int, int]:
        reply = await b.Execute(request)
        ((name, usage),) = reply.variables_used.items()
        return name, usage.value.float_value, usage.version, reply.module_version

    assert await used_on_b() == ("warm", 0.2, 1, 1)
    for n in range(2, 5):  # each write on A, then at once an Execute on B
        value = n / 10
        await a.UpdateVariable(
            pb.UpdateVariableRequest(
                session_id=sid, name="warm", value=value_pb2.Value(float_value=value)
            )
        )
        assert await used_on_b() == ("warm", value, n, 1)
    state = await a.ExportModuleState(pb.ExportModuleStateRequest(session_id=sid, module_id="clf"))
    await a.ImportModuleState(
        pb.ImportModuleStateRequest(session_id=sid, module_id="clf", state_json=state.state_json)
    )
    assert await used_on_b() == ("warm", 0.4, 4, 2)
    # Made anew under the same id (version 1 again), bound to the other variable.
    await a.DeleteModule(pb.DeleteModuleRequest(session_id=sid, module_id="clf"))
    await _bound_module(a, sid, "cold")
    assert await used_on_b() == ("cold", 1.5, 1, 1)
    await a.DeleteSession(pb.DeleteSessionRequest(session_id=sid))
    await expect_error(b.Execute(request), grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
