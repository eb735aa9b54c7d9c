"""Resume tokens of WatchVariables, on every store: a host that reconnects with the token of the
last event it got continues right after it, without include_initial and without losing a change;
a token whose changes are no longer kept starts with a resync; a malformed one is refused."""

from __future__ import annotations

import grpc
import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.integration.rpc import expect_error, iv

Stub = pb_grpc.BridgeServiceStub
C = vpb.VariableChangeKind

pytestmark = pytest.mark.parametrize("store_url", ["memory", "sqlite", "redis"], indirect=True)


async def _session_with(stub: Stub, *names: str, session_id: str = "") -> str:
    sid = (await stub.CreateSession(pb.CreateSessionRequest(session_id=session_id))).session
    for name in names:
        await stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid.session_id,
                name=name,
                type=vpb.VARIABLE_TYPE_INTEGER,
                initial_value=iv(0),
            )
        )
    return sid.session_id


async def _update(stub: Stub, sid: str, name: str, value: int) -> None:
    await stub.UpdateVariable(pb.UpdateVariableRequest(session_id=sid, name=name, value=iv(value)))


async def test_resume_continues_right_after_the_token(stub: Stub) -> None:
    sid = await _session_with(stub, "a", "b")
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, include_initial=True))
    initial = [await stream.read() for _ in range(2)]
    assert all(e.change.kind == C.VARIABLE_CHANGE_KIND_INITIAL and e.resume_token for e in initial)
    await _update(stub, sid, "a", 1)
    first = await stream.read()
    assert (first.change.variable.name, first.change.variable.version) == ("a", 2)
    stream.cancel()  # the host goes away; changes go on
    await _update(stub, sid, "b", 1)
    await _update(stub, sid, "a", 2)
    resumed = stub.WatchVariables(
        pb.WatchVariablesRequest(session_id=sid, resume_token=first.resume_token)
    )
    got = [await resumed.read() for _ in range(2)]
    assert [(e.change.kind, e.change.variable.name, e.change.variable.version) for e in got] == [
        (C.VARIABLE_CHANGE_KIND_UPDATED, "b", 2),
        (C.VARIABLE_CHANGE_KIND_UPDATED, "a", 3),
    ]
    # The INITIAL token resumes from the subscription: every change after it comes again.
    again = stub.WatchVariables(
        pb.WatchVariablesRequest(session_id=sid, resume_token=initial[0].resume_token)
    )
    versions = [((await again.read()).change.variable.name) for _ in range(3)]
    assert versions == ["a", "b", "a"]
    resumed.cancel()
    again.cancel()


async def test_resume_from_the_latest_token_waits_for_new_changes(stub: Stub) -> None:
    sid = await _session_with(stub, "a")
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, include_initial=True))
    await stream.read()  # INITIAL: the watcher is subscribed
    await _update(stub, sid, "a", 1)
    last = await stream.read()
    stream.cancel()
    resumed = stub.WatchVariables(
        pb.WatchVariablesRequest(session_id=sid, names=["a"], resume_token=last.resume_token)
    )
    await _update(stub, sid, "a", 7)
    event = await resumed.read()
    assert (event.change.variable.version, event.change.variable.value.int_value) == (3, 7)
    resumed.cancel()


async def test_token_of_an_earlier_session_under_the_same_id_resyncs(stub: Stub) -> None:
    sid = await _session_with(stub, "a", session_id="reborn")
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, include_initial=True))
    await stream.read()  # INITIAL: the watcher is subscribed
    await _update(stub, sid, "a", 1)
    token = (await stream.read()).resume_token
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid))
    assert (await stream.read()).session_ended.reason == "deleted"
    await _session_with(stub, "a", session_id="reborn")
    resumed = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, resume_token=token))
    event = await resumed.read()
    assert event.WhichOneof("event") == "resync" and event.resume_token
    assert [(v.name, v.version) for v in event.resync.variables] == [("a", 1)]
    resumed.cancel()


@pytest.mark.parametrize("settings_overrides", [{"store_stream_length": 100}])
async def test_token_whose_changes_are_no_longer_kept_resyncs(
    stub: Stub, server: RunningServer
) -> None:
    """Memory and sqlite keep the last 256 changes per session in the server; Redis keeps about
    `store_stream_length` in the session's stream."""
    sid = await _session_with(stub, "a")
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, include_initial=True))
    await stream.read()  # INITIAL: the watcher is subscribed
    await _update(stub, sid, "a", 1)
    token = (await stream.read()).resume_token
    stream.cancel()
    writes = 600
    for value in range(2, writes + 2):
        await _update(stub, sid, "a", value)
    resumed = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, resume_token=token))
    event = await resumed.read()
    assert event.WhichOneof("event") == "resync"
    assert event.resync.skipped_changes > 0
    assert [(v.name, v.version) for v in event.resync.variables] == [("a", writes + 2)]
    await _update(stub, sid, "a", 0)
    after = await resumed.read()
    assert after.change.variable.version == writes + 3
    resumed.cancel()


@pytest.mark.parametrize("token", ["nonsense", "x" * 300, "abc.-1", "abc.1.2.3"])
async def test_malformed_token_is_invalid_argument(stub: Stub, token: str) -> None:
    sid = await _session_with(stub, "a")
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, resume_token=token))
    err = await expect_error(stream.read(), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST")
    assert "resume_token" in err.fields
