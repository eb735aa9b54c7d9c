"""Variables through a real channel: every bad input gets its documented code and changes
nothing; versions, batches, history, rollback and watch streams behave as the contract says."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import value_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.integration.rpc import bv, expect_error, fv, iv, sv

Stub = pb_grpc.BridgeServiceStub
T = vpb.VariableType
C = vpb.VariableChangeKind

pytestmark = pytest.mark.parametrize("store_url", ["memory", "sqlite", "redis"], indirect=True)


async def _session(stub: Stub) -> str:
    return (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id


async def _register(
    stub: Stub, sid: str, name: str, type_: int, value: value_pb2.Value, **c: Any
) -> vpb.Variable:
    req = pb.RegisterVariableRequest(
        session_id=sid,
        name=name,
        type=type_,
        initial_value=value,
        constraints=vpb.VariableConstraints(**c),
    )
    return (await stub.RegisterVariable(req)).variable


async def _snapshot(stub: Stub, sid: str) -> list[tuple[str, int, bytes]]:
    listed = await stub.ListVariables(pb.ListVariablesRequest(session_id=sid))
    return [(v.name, v.version, v.value.SerializeToString()) for v in listed.variables]


async def test_register_every_type(stub: Stub) -> None:
    sid = await _session(stub)
    tensor = value_pb2.Value(
        tensor_value=value_pb2.Tensor(dtype="float32", shape=[2], data=b"\x00" * 8)
    )
    emb = value_pb2.Value(
        json_value=struct_pb2.Value(
            list_value=struct_pb2.ListValue(
                values=[struct_pb2.Value(number_value=0.1), struct_pb2.Value(number_value=0.2)]
            )
        )
    )
    cases = [
        ("temperature", T.VARIABLE_TYPE_FLOAT, fv(0.7), {"min": 0, "max": 2}),
        ("max_tokens", T.VARIABLE_TYPE_INTEGER, iv(256), {"min": 1, "max": 4096, "step": 1}),
        ("persona", T.VARIABLE_TYPE_STRING, sv("terse"), {"pattern": "[a-z]+"}),
        ("verbose", T.VARIABLE_TYPE_BOOLEAN, bv(True), {}),
        ("tone", T.VARIABLE_TYPE_CHOICE, sv("formal"), {"choices": ["formal", "casual"]}),
        ("strategy", T.VARIABLE_TYPE_MODULE, sv("ChainOfThought"), {}),
        ("centroid", T.VARIABLE_TYPE_EMBEDDING, emb, {"dims": [2]}),
        ("weights", T.VARIABLE_TYPE_TENSOR, tensor, {"dtype": "float32", "dims": [2]}),
        (
            "extra",
            T.VARIABLE_TYPE_JSON,
            value_pb2.Value(json_value=struct_pb2.Value(string_value="x")),
            {},
        ),
    ]
    for name, type_, value, constraints in cases:
        var = await _register(stub, sid, name, type_, value, **constraints)
        assert var.version == 1 and var.type == type_ and var.id
    names = [v[0] for v in await _snapshot(stub, sid)]
    assert names == sorted(n for n, *_ in cases)
    by_id = (await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name=var.id))).variable
    assert by_id.name == "extra"
    glob = await stub.ListVariables(pb.ListVariablesRequest(session_id=sid, pattern="t*"))
    assert [v.name for v in glob.variables] == ["temperature", "tone"]


BAD_REGISTRATIONS: list[tuple[str, dict[str, Any], grpc.StatusCode, str]] = [
    (
        "wrong type",
        {"type": T.VARIABLE_TYPE_FLOAT, "initial_value": sv("hot")},
        grpc.StatusCode.INVALID_ARGUMENT,
        "VARIABLE_TYPE_MISMATCH",
    ),
    (
        "out of range",
        {
            "type": T.VARIABLE_TYPE_FLOAT,
            "initial_value": fv(3.0),
            "constraints": vpb.VariableConstraints(min=0, max=2),
        },
        grpc.StatusCode.INVALID_ARGUMENT,
        "VARIABLE_CONSTRAINT_VIOLATION",
    ),
    (
        "bad pattern",
        {
            "type": T.VARIABLE_TYPE_STRING,
            "initial_value": sv("ABC"),
            "constraints": vpb.VariableConstraints(pattern="[a-z]+"),
        },
        grpc.StatusCode.INVALID_ARGUMENT,
        "VARIABLE_CONSTRAINT_VIOLATION",
    ),
    (
        "choice outside choices",
        {
            "type": T.VARIABLE_TYPE_CHOICE,
            "initial_value": sv("loud"),
            "constraints": vpb.VariableConstraints(choices=["a", "b"]),
        },
        grpc.StatusCode.INVALID_ARGUMENT,
        "VARIABLE_CONSTRAINT_VIOLATION",
    ),
    (
        "unspecified type",
        {"type": T.VARIABLE_TYPE_UNSPECIFIED, "initial_value": fv(1)},
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_REQUEST",
    ),
    (
        "bad constraints",
        {
            "type": T.VARIABLE_TYPE_FLOAT,
            "initial_value": fv(1),
            "constraints": vpb.VariableConstraints(min=5, max=1),
        },
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_CONSTRAINTS",
    ),
    (
        "oversized value",
        {"type": T.VARIABLE_TYPE_STRING, "initial_value": sv("x" * 5000)},
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        "VALUE_TOO_LARGE",
    ),
]


@pytest.mark.parametrize("settings_overrides", [{"max_value_bytes": 4096}])
@pytest.mark.parametrize(
    ("case", "fields", "code", "reason"), BAD_REGISTRATIONS, ids=[c[0] for c in BAD_REGISTRATIONS]
)
async def test_bad_registration_changes_nothing(
    stub: Stub, case: str, fields: dict[str, Any], code: grpc.StatusCode, reason: str
) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "keep", T.VARIABLE_TYPE_INTEGER, iv(1))
    before = await _snapshot(stub, sid)
    err = await expect_error(
        stub.RegisterVariable(pb.RegisterVariableRequest(session_id=sid, name="v", **fields)),
        code,
        reason,
    )
    assert err.fields, "a field violation names the bad field"
    assert await _snapshot(stub, sid) == before


async def test_duplicate_name(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "t", T.VARIABLE_TYPE_FLOAT, fv(0.1))
    await expect_error(
        stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid, name="t", type=T.VARIABLE_TYPE_FLOAT, initial_value=fv(0.2)
            )
        ),
        grpc.StatusCode.ALREADY_EXISTS,
        "VARIABLE_ALREADY_EXISTS",
    )
    got = (await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="t"))).variable
    assert got.value.float_value == 0.1 and got.version == 1


@pytest.mark.parametrize("settings_overrides", [{"max_value_bytes": 4096}])
async def test_bad_updates_change_nothing(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "t", T.VARIABLE_TYPE_FLOAT, fv(0.5), min=0, max=1)
    await _register(stub, sid, "s", T.VARIABLE_TYPE_STRING, sv("ok"), pattern="[a-z]+")
    await _register(stub, sid, "c", T.VARIABLE_TYPE_CHOICE, sv("a"), choices=["a", "b"])
    before = await _snapshot(stub, sid)

    def upd(name: str, value: value_pb2.Value, **kw: Any) -> Awaitable[Any]:
        return stub.UpdateVariable(
            pb.UpdateVariableRequest(session_id=sid, name=name, value=value, **kw)
        )

    cases: list[tuple[Callable[[], Awaitable[Any]], grpc.StatusCode, str]] = [
        (lambda: upd("t", sv("x")), grpc.StatusCode.INVALID_ARGUMENT, "VARIABLE_TYPE_MISMATCH"),
        (
            lambda: upd("t", fv(1.5)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "VARIABLE_CONSTRAINT_VIOLATION",
        ),
        (
            lambda: upd("s", sv("NO")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "VARIABLE_CONSTRAINT_VIOLATION",
        ),
        (
            lambda: upd("c", sv("z")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "VARIABLE_CONSTRAINT_VIOLATION",
        ),
        (lambda: upd("s", sv("a" * 5000)), grpc.StatusCode.RESOURCE_EXHAUSTED, "VALUE_TOO_LARGE"),
        (lambda: upd("nope", fv(0.1)), grpc.StatusCode.NOT_FOUND, "VARIABLE_NOT_FOUND"),
        (
            lambda: upd("t", fv(0.2), expected_version=7),
            grpc.StatusCode.ABORTED,
            "VERSION_CONFLICT",
        ),
    ]
    for make_call, code, reason in cases:
        await expect_error(make_call(), code, reason)
    assert await _snapshot(stub, sid) == before
    history = await stub.GetVariableHistory(pb.GetVariableHistoryRequest(session_id=sid, name="t"))
    assert [e.version for e in history.entries] == [1]


async def test_version_conflict_reports_current_version(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "n", T.VARIABLE_TYPE_INTEGER, iv(0))
    await stub.UpdateVariable(
        pb.UpdateVariableRequest(session_id=sid, name="n", value=iv(1), expected_version=1)
    )
    err = await expect_error(
        stub.UpdateVariable(
            pb.UpdateVariableRequest(session_id=sid, name="n", value=iv(2), expected_version=1)
        ),
        grpc.StatusCode.ABORTED,
        "VERSION_CONFLICT",
    )
    assert err.metadata["current_version"] == "2"


async def test_batch_atomic_and_not(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "a", T.VARIABLE_TYPE_INTEGER, iv(0), min=0, max=10)
    await _register(stub, sid, "b", T.VARIABLE_TYPE_INTEGER, iv(0), min=0, max=10)
    before = await _snapshot(stub, sid)
    writes = [pb.VariableWrite(name="a", value=iv(5)), pb.VariableWrite(name="b", value=iv(50))]
    err = await expect_error(
        stub.BatchUpdateVariables(
            pb.BatchUpdateVariablesRequest(session_id=sid, writes=writes, atomic=True)
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "VARIABLE_CONSTRAINT_VIOLATION",
    )
    assert err.fields == ["writes[1].value"]
    assert await _snapshot(stub, sid) == before
    stale = [
        pb.VariableWrite(name="a", value=iv(5)),
        pb.VariableWrite(name="b", value=iv(6), expected_version=9),
    ]
    await expect_error(
        stub.BatchUpdateVariables(
            pb.BatchUpdateVariablesRequest(session_id=sid, writes=stale, atomic=True)
        ),
        grpc.StatusCode.ABORTED,
        "VERSION_CONFLICT",
    )
    assert await _snapshot(stub, sid) == before

    mixed = await stub.BatchUpdateVariables(
        pb.BatchUpdateVariablesRequest(session_id=sid, writes=writes)
    )
    assert mixed.results[0].variable.value.int_value == 5 and mixed.results[0].error.code == 0
    assert mixed.results[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    ok = await stub.BatchUpdateVariables(
        pb.BatchUpdateVariablesRequest(
            session_id=sid,
            atomic=True,
            source="tuner",
            reason="both",
            writes=[
                pb.VariableWrite(name="a", value=iv(7)),
                pb.VariableWrite(name="b", value=iv(8)),
            ],
        )
    )
    assert [(r.variable.name, r.variable.version) for r in ok.results] == [("a", 3), ("b", 2)]
    assert ok.results[0].variable.source == "tuner"


async def test_history_and_rollback(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "t", T.VARIABLE_TYPE_FLOAT, fv(0.1))
    for x in (0.2, 0.3, 0.4):
        await stub.UpdateVariable(
            pb.UpdateVariableRequest(session_id=sid, name="t", value=fv(x), reason=f"to {x}")
        )
    history = (
        await stub.GetVariableHistory(pb.GetVariableHistoryRequest(session_id=sid, name="t"))
    ).entries
    assert [(e.version, e.value.float_value) for e in history] == [
        (4, 0.4),
        (3, 0.3),
        (2, 0.2),
        (1, 0.1),
    ]
    assert history[0].reason == "to 0.4" and history[0].source == "host"
    limited = (
        await stub.GetVariableHistory(
            pb.GetVariableHistoryRequest(session_id=sid, name="t", limit=2)
        )
    ).entries
    assert [e.version for e in limited] == [4, 3]
    rolled = (
        await stub.RollbackVariable(
            pb.RollbackVariableRequest(session_id=sid, name="t", target_version=2)
        )
    ).variable
    assert rolled.version == 5 and rolled.value.float_value == 0.2
    await expect_error(
        stub.RollbackVariable(
            pb.RollbackVariableRequest(session_id=sid, name="t", target_version=99)
        ),
        grpc.StatusCode.NOT_FOUND,
        "VERSION_NOT_FOUND",
    )
    await expect_error(
        stub.RollbackVariable(
            pb.RollbackVariableRequest(
                session_id=sid, name="t", target_version=1, expected_version=1
            )
        ),
        grpc.StatusCode.ABORTED,
        "VERSION_CONFLICT",
    )
    assert (
        await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="t"))
    ).variable.version == 5


async def test_delete_variable(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "t", T.VARIABLE_TYPE_FLOAT, fv(0.1))
    await stub.DeleteVariable(pb.DeleteVariableRequest(session_id=sid, name="t"))
    await expect_error(
        stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="t")),
        grpc.StatusCode.NOT_FOUND,
        "VARIABLE_NOT_FOUND",
    )
    await expect_error(
        stub.DeleteVariable(pb.DeleteVariableRequest(session_id=sid, name="t")),
        grpc.StatusCode.NOT_FOUND,
        "VARIABLE_NOT_FOUND",
    )


async def test_watch_initial_updates_and_session_end(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "t", T.VARIABLE_TYPE_FLOAT, fv(0.1))
    await _register(stub, sid, "other", T.VARIABLE_TYPE_FLOAT, fv(0.1))
    stream = stub.WatchVariables(
        pb.WatchVariablesRequest(session_id=sid, names=["t"], include_initial=True)
    )
    first = await stream.read()
    assert (
        first.change.kind == C.VARIABLE_CHANGE_KIND_INITIAL and first.change.variable.version == 1
    )
    await stub.UpdateVariable(pb.UpdateVariableRequest(session_id=sid, name="other", value=fv(0.9)))
    await stub.UpdateVariable(
        pb.UpdateVariableRequest(session_id=sid, name="t", value=fv(0.2), reason="r")
    )
    second = await stream.read()
    assert second.change.kind == C.VARIABLE_CHANGE_KIND_UPDATED
    assert (second.change.variable.name, second.change.variable.version, second.change.reason) == (
        "t",
        2,
        "r",
    )
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid))
    last = await stream.read()
    assert last.session_ended.reason == "deleted"
    assert await stream.read() == grpc.aio.EOF
    assert (await stream.code()) == grpc.StatusCode.OK


async def test_watch_unknown_variable(stub: Stub) -> None:
    sid = await _session(stub)
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, names=["ghost"]))
    await expect_error(stream.read(), grpc.StatusCode.NOT_FOUND, "VARIABLE_NOT_FOUND")


async def test_concurrent_writers_lose_nothing_and_watchers_see_every_version(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "counter", T.VARIABLE_TYPE_INTEGER, iv(0))
    writers, increments = 8, 15
    total = writers * increments
    watchers = [
        stub.WatchVariables(
            pb.WatchVariablesRequest(session_id=sid, names=["counter"], include_initial=True)
        )
        for _ in range(3)
    ]
    for w in watchers:  # the INITIAL event proves the watcher is subscribed
        assert (await w.read()).change.kind == C.VARIABLE_CHANGE_KIND_INITIAL

    async def writer() -> None:
        for _ in range(increments):
            while True:
                cur = (
                    await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="counter"))
                ).variable
                try:
                    await stub.UpdateVariable(
                        pb.UpdateVariableRequest(
                            session_id=sid,
                            name="counter",
                            value=iv(cur.value.int_value + 1),
                            expected_version=cur.version,
                        )
                    )
                    break
                except grpc.aio.AioRpcError as err:
                    assert err.code() == grpc.StatusCode.ABORTED

    async def watch(stream: grpc.aio.UnaryStreamCall) -> list[tuple[int, int]]:
        seen: list[tuple[int, int]] = []
        while len(seen) < total:
            event = await stream.read()
            assert event.WhichOneof("event") == "change", event
            seen.append((event.change.variable.version, event.change.variable.value.int_value))
        return seen

    watching = [asyncio.create_task(watch(w)) for w in watchers]
    await asyncio.gather(*(writer() for _ in range(writers)))
    final = (await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="counter"))).variable
    assert final.value.int_value == total and final.version == total + 1
    for seen in await asyncio.wait_for(asyncio.gather(*watching), timeout=30):
        assert seen == [(v, v - 1) for v in range(2, total + 2)]
    for w in watchers:
        w.cancel()


@pytest.mark.parametrize("settings_overrides", [{"watch_queue_size": 4}])
async def test_watcher_that_falls_behind_gets_resync_not_a_silent_gap(
    stub: Stub, server: RunningServer
) -> None:
    sid = await _session(stub)
    names = [f"v{i}" for i in range(10)]
    for name in names:
        await _register(stub, sid, name, T.VARIABLE_TYPE_INTEGER, iv(0))
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, include_initial=True))
    for _ in names:
        assert (await stream.read()).change.kind == C.VARIABLE_CHANGE_KIND_INITIAL
    # One atomic batch publishes 10 changes at once: more than the watcher's queue holds.
    writes = [pb.VariableWrite(name=n, value=iv(1)) for n in names]
    await stub.BatchUpdateVariables(
        pb.BatchUpdateVariablesRequest(session_id=sid, writes=writes, atomic=True)
    )
    if server.store.shared:
        # Redis: the session's stream is the buffer (the queue size only bounds a read), so
        # a watcher is behind only once the stream is trimmed past it: here it is not.
        for name in names:
            event = await stream.read()
            assert (event.change.variable.name, event.change.variable.version) == (name, 2)
        stream.cancel()
        return
    event = await stream.read()
    assert event.WhichOneof("event") == "resync"
    assert event.resync.skipped_changes == 10
    assert sorted((v.name, v.version, v.value.int_value) for v in event.resync.variables) == [
        (n, 2, 1) for n in names
    ]
    # After the resync the stream carries on with ordinary changes.
    await stub.UpdateVariable(pb.UpdateVariableRequest(session_id=sid, name="v3", value=iv(9)))
    event = await stream.read()
    assert (event.change.variable.name, event.change.variable.version) == ("v3", 3)
    stream.cancel()
