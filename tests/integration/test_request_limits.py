"""Field limits through a real channel (#10 items 6, 7): out-of-range numbers, oversized texts,
maps, ids and config Structs are INVALID_ARGUMENT with a field violation, change nothing, and
never echo the oversized value into the status or its trailers."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from dspy_bridge.model import Session
from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import module_pb2, variable_pb2
from tests.integration.rpc import expect_error, fv, iv

Stub = pb_grpc.BridgeServiceStub
BAD = grpc.StatusCode.INVALID_ARGUMENT


async def _session(stub: Stub) -> str:
    return (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id


async def _variable(stub: Stub, sid: str, name: str = "x") -> None:
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid, name=name, type=variable_pb2.VARIABLE_TYPE_INTEGER, initial_value=iv(1)
        )
    )


async def test_a_huge_ttl_is_refused_and_stores_nothing(stub: Stub) -> None:
    err = await expect_error(
        stub.CreateSession(pb.CreateSessionRequest(session_id="forever", ttl_seconds=2**63 - 1)),
        BAD,
        "INVALID_REQUEST",
    )
    assert err.fields == ["ttl_seconds"]
    listed = await stub.ListSessions(pb.ListSessionsRequest())
    assert [s.session_id for s in listed.sessions] == []
    await expect_error(
        stub.GetSession(pb.GetSessionRequest(session_id="forever")), grpc.StatusCode.NOT_FOUND
    )
    longest = await stub.CreateSession(pb.CreateSessionRequest(ttl_seconds=30 * 86_400))
    assert longest.session.expire_time.seconds > 0


@pytest.mark.parametrize(
    "call",
    [
        lambda stub, big: stub.GetSession(pb.GetSessionRequest(session_id=big)),
        lambda stub, big: stub.CreateSession(pb.CreateSessionRequest(session_id=big)),
        lambda stub, big: stub.UpdateVariable(
            pb.UpdateVariableRequest(session_id=big, name="x", value=iv(2))
        ),
        lambda stub, big: stub.DeleteSession(pb.DeleteSessionRequest(session_id=big)),
    ],
)
async def test_a_20000_character_session_id_is_refused_without_echoing_it(
    stub: Stub, call: object
) -> None:
    big = "s" * 20_000
    err = await expect_error(call(stub, big), BAD, "INVALID_REQUEST")  # type: ignore[operator]
    assert err.fields == ["session_id"]
    assert len(err.message) < 200 and big not in err.message
    assert all(len(v) < 200 for v in err.metadata.values())


async def test_oversized_texts_on_a_variable_change_nothing(stub: Stub) -> None:
    sid = await _session(stub)
    await _variable(stub, sid)
    huge = "d" * (15 << 20)
    err = await expect_error(
        stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid,
                name="y",
                type=variable_pb2.VARIABLE_TYPE_FLOAT,
                initial_value=fv(1.0),
                description=huge,
            )
        ),
        BAD,
        "INVALID_REQUEST",
    )
    assert err.fields == ["description"] and len(err.message) < 200
    for field in ("reason", "source"):
        err = await expect_error(
            stub.UpdateVariable(
                pb.UpdateVariableRequest(session_id=sid, name="x", value=iv(2), **{field: huge})
            ),
            BAD,
        )
        assert err.fields == [field]
    err = await expect_error(
        stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid,
                name="z",
                type=variable_pb2.VARIABLE_TYPE_FLOAT,
                initial_value=fv(1.0),
                metadata={f"k{i}": "v" for i in range(65)},
            )
        ),
        BAD,
    )
    assert err.fields == ["metadata"]
    err = await expect_error(
        stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid,
                name="z",
                type=variable_pb2.VARIABLE_TYPE_FLOAT,
                initial_value=fv(1.0),
                metadata={"k": "v" * 1_025},
            )
        ),
        BAD,
    )
    assert err.fields == ["metadata['k']"]
    listed = await stub.ListVariables(pb.ListVariablesRequest(session_id=sid))
    assert [v.name for v in listed.variables] == ["x"]
    history = await stub.GetVariableHistory(pb.GetVariableHistoryRequest(session_id=sid, name="x"))
    assert [e.version for e in history.entries] == [1]


async def test_numbers_outside_their_range_name_the_field(stub: Stub) -> None:
    sid = await _session(stub)
    await _variable(stub, sid)
    cases = [
        (
            stub.UpdateVariable(
                pb.UpdateVariableRequest(session_id=sid, name="x", value=iv(2), expected_version=-1)
            ),
            "expected_version",
        ),
        (
            stub.BatchUpdateVariables(
                pb.BatchUpdateVariablesRequest(
                    session_id=sid,
                    writes=[pb.VariableWrite(name="x", value=iv(3), expected_version=-5)],
                )
            ),
            "writes[0].expected_version",
        ),
        (
            stub.GetVariableHistory(
                pb.GetVariableHistoryRequest(session_id=sid, name="x", limit=-1)
            ),
            "limit",
        ),
        (
            stub.RollbackVariable(
                pb.RollbackVariableRequest(session_id=sid, name="x", target_version=-(2**63))
            ),
            "target_version",
        ),
        (stub.ListSessions(pb.ListSessionsRequest(page_size=-1)), "page_size"),
    ]
    for call, field in cases:
        err = await expect_error(call, BAD, "INVALID_REQUEST")
        assert err.fields == [field]
    got = await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="x"))
    assert got.variable.version == 1


async def test_a_deep_or_large_module_config_is_refused(stub: Stub) -> None:
    sid = await _session(stub)
    deep = struct_pb2.Struct()
    node = deep
    for _ in range(25):  # past the limit of 20, within what protobuf parses (~33)
        node = node.fields["a"].struct_value
    large = struct_pb2.Struct()
    large.fields["x"].string_value = "c" * 70_000
    for config in (deep, large):
        err = await expect_error(
            stub.CreateModule(
                pb.CreateModuleRequest(
                    session_id=sid,
                    module_id="m",
                    module_type="Predict",
                    signature=module_pb2.Signature(text="q -> a"),
                    config=config,
                )
            ),
            BAD,
        )
        assert err.fields == ["config"]
    modules = await stub.ListModules(pb.ListModulesRequest(session_id=sid))
    assert not modules.modules


async def test_the_refusal_comes_before_ownership_and_logs(server: RunningServer) -> None:
    """A huge id is refused by the limits check whatever the RPC; the server answers the next
    call at once (nothing is left half done)."""
    async with grpc.aio.insecure_channel(server.target) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        for _ in range(3):
            await expect_error(stub.Heartbeat(pb.HeartbeatRequest(session_id="h" * 50_000)), BAD)
        pong = await stub.Ping(pb.PingRequest(message="still here"))
        assert pong.message == "still here"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_a_stored_huge_expiry_no_longer_breaks_list_sessions(
    server: RunningServer, stub: Stub
) -> None:
    """A session stored with a huge TTL by an older server (the store takes it as it is) is
    listed with the latest Timestamp instead of failing ListSessions for every caller."""
    await server.store.create_session(
        Session(session_id="old", ttl_seconds=2**63 - 1, create_time=1.0, expire_time=2.0**63),
        max_sessions=0,
    )
    listed = await stub.ListSessions(pb.ListSessionsRequest())
    (old,) = [s for s in listed.sessions if s.session_id == "old"]
    assert old.expire_time.seconds == 253_402_300_799
