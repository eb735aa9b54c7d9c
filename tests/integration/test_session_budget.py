"""The per-session byte budget through a real channel (#10 item 7): values, kept history,
modules and jobs count; past the budget a write is RESOURCE_EXHAUSTED SESSION_BUDGET_EXCEEDED
and changes nothing; other sessions are unaffected; deletes give bytes back; a restarted server
counts what a session already keeps."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest

from dspy_bridge.transport.server import start_server
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import module_pb2, variable_pb2
from tests.conftest import test_settings
from tests.integration.rpc import expect_error, sv

Stub = pb_grpc.BridgeServiceStub
FULL = grpc.StatusCode.RESOURCE_EXHAUSTED
BUDGET = "SESSION_BUDGET_EXCEEDED"
CHUNK = 100_000  # bytes of one string value
LIMITS = {"max_session_bytes": 1_000_000, "max_value_bytes": 200_000}
# The budget holds on every store a server may use (on Redis, counted by this one replica).
ON_EVERY_STORE = pytest.mark.parametrize("store_url", ["memory", "redis"], indirect=True)


async def register_string(stub: Stub, sid: str, name: str, size: int = 1) -> None:
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid,
            name=name,
            type=variable_pb2.VARIABLE_TYPE_STRING,
            initial_value=sv("v" * size),
        )
    )


async def write_chunk(stub: Stub, sid: str, name: str, size: int = CHUNK) -> None:
    await stub.UpdateVariable(
        pb.UpdateVariableRequest(session_id=sid, name=name, value=sv("w" * size))
    )


async def fill(stub: Stub, sid: str, name: str) -> int:
    """Writes CHUNKs to `name` until the budget refuses one; how many were accepted."""
    for written in range(20):  # bounded: LIMITS' budget holds 9 such versions
        try:
            await write_chunk(stub, sid, name)
        except grpc.aio.AioRpcError as err:
            assert err.code() == FULL, err
            return written
    raise AssertionError("20 writes of 100 kB fit in a 1 MB budget")


@ON_EVERY_STORE
@pytest.mark.parametrize("settings_overrides", [LIMITS])
async def test_history_counts_and_a_full_session_refuses_writes(stub: Stub) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    await register_string(stub, sid, "x")
    written = await fill(stub, sid, "x")
    assert 5 <= written < 10, "history versions of one variable must count, not only its value"
    err = await expect_error(write_chunk(stub, sid, "x"), FULL, BUDGET)
    assert int(err.metadata["limit"]) == 1_000_000 and int(err.metadata["used"]) > 500_000
    got = await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="x"))
    assert got.variable.version == written + 1  # the refused writes changed nothing
    await expect_error(register_string(stub, sid, "y", CHUNK), FULL, BUDGET)
    # Another session is not affected by this one being full.
    other = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    await register_string(stub, other, "x")
    await write_chunk(stub, other, "x")
    # Deleting the variable gives its bytes (all its kept versions) back.
    await stub.DeleteVariable(pb.DeleteVariableRequest(session_id=sid, name="x"))
    await register_string(stub, sid, "x")
    await write_chunk(stub, sid, "x")


@ON_EVERY_STORE
@pytest.mark.parametrize("settings_overrides", [{"max_session_bytes": 50_000}])
async def test_module_versions_count(stub: Stub) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    module = pb.CreateModuleRequest(
        session_id=sid,
        module_id="m",
        module_type="Predict",
        signature=module_pb2.Signature(text="q -> a", instructions="i" * 30_000),
    )
    await stub.CreateModule(module)
    module.module_id = "n"
    await expect_error(stub.CreateModule(module), FULL, BUDGET)
    listed = await stub.ListModules(pb.ListModulesRequest(session_id=sid))
    assert [m.module_id for m in listed.modules] == ["m"]


@ON_EVERY_STORE
@pytest.mark.parametrize("settings_overrides", [{**LIMITS, "history_limit": 2}])
async def test_trimmed_history_gives_bytes_back(stub: Stub) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    await register_string(stub, sid, "x")
    for _ in range(30):  # far past the budget in total, but only 2 versions are kept
        await write_chunk(stub, sid, "x")
    history = await stub.GetVariableHistory(pb.GetVariableHistoryRequest(session_id=sid, name="x"))
    assert len(history.entries) == 2


async def test_a_restarted_server_counts_what_a_session_keeps(tmp_path: Path) -> None:
    settings = test_settings(store=f"sqlite:///{tmp_path / 'b.db'}", **LIMITS)
    running = await start_server(settings)
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            stub = Stub(channel)
            sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
            await register_string(stub, sid, "x")
            for _ in range(6):
                await write_chunk(stub, sid, "x")
    finally:
        await running.stop(grace=0)
    running = await start_server(settings)
    try:
        async with grpc.aio.insecure_channel(running.target) as channel:
            stub = Stub(channel)
            for _ in range(3):
                try:
                    await write_chunk(stub, sid, "x")
                except grpc.aio.AioRpcError:
                    break
            await expect_error(write_chunk(stub, sid, "x"), FULL, BUDGET)
    finally:
        await running.stop(grace=0)


@pytest.mark.parametrize("store_url", ["sqlite", "redis"], indirect=True)
@pytest.mark.parametrize("settings_overrides", [LIMITS])
async def test_cancelled_writes_cannot_keep_more_than_the_budget(stub: Stub) -> None:
    """A store write that is under way when its caller cancels commits anyway (SQLite finishes
    the transaction on its thread, Redis has the command): it must be counted all the same,
    or a host that cancels its writes keeps bytes the budget never saw."""
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    names = [f"v{i}" for i in range(20)]
    for name in names:
        await register_string(stub, sid, name)
    for round_ in range(60):
        calls = [
            stub.UpdateVariable(
                pb.UpdateVariableRequest(session_id=sid, name=name, value=sv("w" * CHUNK))
            )
            for name in names
        ]
        # Cancel at a different moment each round: some land while a write is committing.
        for _ in range(round_ % 12):
            await asyncio.sleep(0.0005)
        for call in calls:
            call.cancel()
        await stub.Ping(pb.PingRequest())
    kept = 0
    for name in names:
        token = ""
        for _ in range(100):  # bounded paging
            page = await stub.GetVariableHistory(
                pb.GetVariableHistoryRequest(session_id=sid, name=name, page_token=token)
            )
            kept += sum(len(entry.value.string_value) for entry in page.entries)
            token = page.next_page_token
            if not token:
                break
    assert kept <= LIMITS["max_session_bytes"]
