"""Sync and async clients against the fake sidecar: the requests sent and the typed results.

Each test runs twice through the `api` fixture: once with `BridgeClient`, once with
`AsyncBridgeClient`.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

import grpc
import pytest
from google.protobuf import timestamp_pb2

from dspy_bridge_client import (
    AsyncBridgeClient,
    AsyncSessionHandle,
    BatchResults,
    BridgeClient,
    ExecuteResult,
    ExecutionStatus,
    FailedPreconditionError,
    FieldRole,
    InvalidArgumentError,
    LMConfig,
    NotFoundError,
    OutputChunk,
    SessionEnded,
    SessionHandle,
    Signature,
    SignatureField,
    Tensor,
    UnimplementedError,
    VariableChange,
    VariableChangeKind,
    VariableType,
    VariableUsage,
    VersionConflictError,
    WatchResync,
)
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import (
    lm_pb2,
    module_pb2,
    session_pb2,
    variable_pb2,
)
from dspy_bridge_client.values import from_struct, from_value, from_value_map, to_struct, to_value

from .conftest import Api
from .fake_server import FakeBridge, rich_status

T0 = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)


def stamp(when: datetime = T0) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(when)
    return out


def pb_session(session_id: str = "s1", **extra: Any) -> session_pb2.Session:
    return session_pb2.Session(session_id=session_id, ttl_seconds=60, create_time=stamp(), **extra)


def pb_variable(
    name: str = "temperature", value: Any = 0.7, version: int = 1
) -> variable_pb2.Variable:
    return variable_pb2.Variable(
        id=f"v-{name}",
        session_id="s1",
        name=name,
        type=variable_pb2.VARIABLE_TYPE_FLOAT,
        value=to_value(value),
        constraints=variable_pb2.VariableConstraints(min=0.0, max=1.0),
        description="sampling temperature",
        metadata={"team": "a"},
        version=version,
        create_time=stamp(),
        update_time=stamp(),
        source="host",
    )


def pb_module(module_id: str = "qa", version: int = 1) -> module_pb2.Module:
    return module_pb2.Module(
        module_id=module_id,
        session_id="s1",
        module_type="Predict",
        signature=module_pb2.Signature(
            text="question -> answer",
            fields=[
                module_pb2.SignatureField(
                    name="question", role=module_pb2.FIELD_ROLE_INPUT, type="str"
                ),
                module_pb2.SignatureField(
                    name="answer", role=module_pb2.FIELD_ROLE_OUTPUT, type="str"
                ),
            ],
        ),
        config=to_struct({"n": 3}),
        variable_bindings={"temperature": "temperature"},
        version=version,
        create_time=stamp(),
        demo_count=2,
    )


def pb_execute_response(answer: str = "4") -> pb.ExecuteResponse:
    return pb.ExecuteResponse(
        outputs={"answer": to_value(answer), "reasoning": to_value("2 + 2")},
        variables_used={
            "temperature": module_pb2.VariableUsage(value=to_value(0.2), version=3),
            "model": module_pb2.VariableUsage(value=to_value("offline"), overridden=True),
        },
        usage=module_pb2.Usage(lm_calls=1, prompt_tokens=10, completion_tokens=2, cost_usd=0.5),
        latency_ms=1.25,
        module_version=2,
        trace=[
            module_pb2.LMCallTrace(
                model="offline",
                messages=[to_struct({"role": "user", "content": "hi"})],
                completions=["[[ ## answer ## ]] 4"],
                options=to_struct({"temperature": 0.2}),
            )
        ],
    )


async def new_session(api: Api, fake: FakeBridge) -> Any:
    fake.replies["CreateSession"] = pb.CreateSessionResponse(session=pb_session())
    return await api(api.client.create_session)


# --------------------------------------------------------------------------- server


async def test_ping(api: Api, fake: FakeBridge) -> None:
    fake.replies["Ping"] = lambda req: pb.PingResponse(
        message=req.message, server_time=stamp(), version="0.1.0"
    )
    result = await api(api.client.ping, "hello")
    assert fake.last("Ping").message == "hello"
    assert (result.message, result.version, result.server_time) == ("hello", "0.1.0", T0)
    assert result.server_time.tzinfo is UTC
    assert result.round_trip_ms > 0


async def test_server_info(api: Api, fake: FakeBridge) -> None:
    fake.replies["GetServerInfo"] = pb.GetServerInfoResponse(
        bridge_version="0.1.0",
        dspy_version="3.4.1",
        python_version="3.11.7",
        module_types=["Predict", "ChainOfThought"],
        optimizers=["MIPROv2"],
        metrics=["exact_match"],
        variable_types=[
            variable_pb2.VARIABLE_TYPE_FLOAT,
            variable_pb2.VARIABLE_TYPE_JSON,
            99,  # type: ignore[list-item]  # a type newer than this client
        ],
        store_backend="memory",
        pool=pb.PoolInfo(workers=2, workers_alive=2, restarts=1, queue_depth=3, in_flight=4),
        limits=pb.ServerLimits(
            max_sessions=10, max_variables_per_session=20, max_value_bytes=30, max_message_bytes=40
        ),
        default_lm_model="offline",
    )
    info = await api(api.client.server_info)
    assert info.module_types == ("Predict", "ChainOfThought")
    assert info.variable_types == (VariableType.FLOAT, VariableType.JSON, VariableType.UNSPECIFIED)
    assert (info.pool.workers, info.pool.restarts, info.pool.in_flight) == (2, 1, 4)
    assert info.limits.max_message_bytes == 40
    assert info.start_time is None
    assert info.default_lm_model == "offline"


async def test_client_metadata_and_default_deadline(api: Api, fake: FakeBridge) -> None:
    await api(api.client.ping)
    received = fake.calls[-1]
    assert received.time_remaining is not None
    assert 0 < received.time_remaining <= 10.5  # the wire encoding of grpc-timeout rounds up
    api.client.timeout = None
    assert api.client.timeout is None
    await api(api.client.ping)
    assert fake.calls[-1].time_remaining is None


async def test_metadata_is_sent_with_every_call(target: str, fake: FakeBridge) -> None:
    from dspy_bridge_client import AsyncBridgeClient, BridgeClient

    with BridgeClient(target, metadata={"Authorization": "Bearer t"}) as client:
        client.ping()
        client.session("s1").get()
    async with AsyncBridgeClient(target, metadata=[("x-tenant", "acme")]) as aclient:
        await aclient.ping()
    assert [c.metadata.get("authorization") for c in fake.calls[:2]] == ["Bearer t"] * 2
    assert fake.calls[2].metadata.get("x-tenant") == "acme"


# --------------------------------------------------------------------------- sessions


async def test_create_session(api: Api, fake: FakeBridge) -> None:
    fake.replies["CreateSession"] = pb.CreateSessionResponse(
        session=pb_session(
            "made-by-server",
            metadata={"app": "x"},
            expire_time=stamp(),
            variable_count=2,
            lm=lm_pb2.LMConfig(model="offline"),
        )
    )
    handle = await api(api.client.create_session, metadata={"app": "x"}, ttl_seconds=60)
    request = fake.last("CreateSession")
    assert (request.session_id, dict(request.metadata), request.ttl_seconds) == (
        "",
        {"app": "x"},
        60,
    )
    assert isinstance(handle, AsyncSessionHandle if api.is_async else SessionHandle)
    assert handle.session_id == "made-by-server"
    assert handle.session is not None
    assert handle.session.metadata == {"app": "x"}
    assert handle.session.expire_time == T0
    assert handle.session.variable_count == 2
    assert handle.session.lm == LMConfig("offline")
    assert repr(handle).endswith("(session_id='made-by-server')")

    await api(api.client.create_session, "mine")
    assert fake.last("CreateSession").session_id == "mine"


async def test_session_handle_makes_no_call(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s9")
    assert handle.session_id == "s9"
    assert handle.session is None
    assert fake.calls == []


async def test_list_sessions_follows_pages(api: Api, fake: FakeBridge) -> None:
    pages = {
        "": pb.ListSessionsResponse(
            sessions=[pb_session("a"), pb_session("b")], next_page_token="p2"
        ),
        "p2": pb.ListSessionsResponse(sessions=[pb_session("c")]),
    }
    fake.replies["ListSessions"] = lambda req: pages[req.page_token]
    sessions = await api.collect(api.client.list_sessions(page_size=2))
    assert [s.session_id for s in sessions] == ["a", "b", "c"]
    assert [(r.page_size, r.page_token) for r in fake.requests("ListSessions")] == [
        (2, ""),
        (2, "p2"),
    ]


async def test_get_delete_heartbeat(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["GetSession"] = pb.GetSessionResponse(session=pb_session(variable_count=4))
    fake.replies["Heartbeat"] = pb.HeartbeatResponse(session=pb_session(expire_time=stamp()))
    assert (await api(handle.get)).variable_count == 4
    assert (await api(handle.heartbeat)).expire_time == T0
    assert await api(handle.delete) is None
    for method in ("GetSession", "Heartbeat", "DeleteSession"):
        assert fake.last(method).session_id == "s1"


async def test_configure_lm(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["ConfigureLM"] = lambda req: pb.ConfigureLMResponse(session=pb_session(lm=req.lm))
    session = await api(
        handle.configure_lm,
        "openai/gpt-4o-mini",
        api_base="http://127.0.0.1:9999/v1",
        api_key_env="OPENAI_API_KEY",
        temperature=0.2,
        max_tokens=64,
        cache=False,
    )
    lm = fake.last("ConfigureLM").lm
    assert (lm.model, lm.api_base, lm.api_key_env) == (
        "openai/gpt-4o-mini",
        "http://127.0.0.1:9999/v1",
        "OPENAI_API_KEY",
    )
    assert dict(lm.options) == {"temperature": "0.2", "max_tokens": "64", "cache": "false"}
    assert session.lm.options == {"temperature": "0.2", "max_tokens": "64", "cache": "false"}

    await api(handle.configure_lm, LMConfig("offline", options={"latency_ms": 5}))
    assert dict(fake.last("ConfigureLM").lm.options) == {"latency_ms": "5"}
    with pytest.raises(TypeError, match="either an LMConfig"):
        await api(handle.configure_lm, LMConfig("offline"), temperature=1)


# --------------------------------------------------------------------------- variables


async def test_register_variable(api: Api, fake: FakeBridge) -> None:
    handle = await new_session(api, fake)
    fake.replies["RegisterVariable"] = pb.RegisterVariableResponse(variable=pb_variable())
    variable = await api(
        handle.register_variable,
        "temperature",
        "float",
        1,
        min=0.0,
        max=1.0,
        description="sampling temperature",
        metadata={"team": "a"},
    )
    request = fake.last("RegisterVariable")
    assert request.session_id == "s1"
    assert request.type == variable_pb2.VARIABLE_TYPE_FLOAT
    assert request.initial_value.WhichOneof("kind") == "float_value"  # int widened for FLOAT
    assert request.initial_value.float_value == 1.0
    c = request.constraints
    assert (c.HasField("min"), c.HasField("max"), c.HasField("step")) == (True, True, False)
    assert (c.min, c.max) == (0.0, 1.0)
    assert not c.HasField("min_length")
    assert (request.description, dict(request.metadata)) == ("sampling temperature", {"team": "a"})

    assert variable.name == "temperature"
    assert variable.type is VariableType.FLOAT
    assert variable.value == 0.7
    assert variable.constraints.min == 0.0
    assert variable.constraints.step is None
    assert (variable.version, variable.source, variable.id) == (1, "host", "v-temperature")
    assert variable.create_time == T0
    assert variable.metadata == {"team": "a"}


async def test_register_variable_constraints_and_types(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["RegisterVariable"] = pb.RegisterVariableResponse(variable=pb_variable())
    await api(
        handle.register_variable,
        "strategy",
        VariableType.CHOICE,
        "fast",
        choices=["fast", "careful"],
    )
    await api(handle.register_variable, "name", "VARIABLE_TYPE_STRING", "ab", pattern="[a-z]+",
              min_length=1, max_length=8)  # fmt: skip
    await api(handle.register_variable, "cfg", "json", "just text", max_length=100)
    await api(handle.register_variable, "emb", "embedding", [0.1, 0.2], dims=[2])
    await api(
        handle.register_variable,
        "t",
        "tensor",
        Tensor.from_list([[1, 2]], "int32"),
        dims=[1, 0],
        dtype="int32",
    )
    await api(handle.register_variable, "k", "int", 3, min=0, max=10, step=1)
    choice, string, cfg, emb, tensor, k = fake.requests("RegisterVariable")
    assert choice.type == variable_pb2.VARIABLE_TYPE_CHOICE
    assert list(choice.constraints.choices) == ["fast", "careful"]
    assert string.type == variable_pb2.VARIABLE_TYPE_STRING
    assert (string.constraints.pattern, string.constraints.min_length) == ("[a-z]+", 1)
    assert string.constraints.max_length == 8
    assert cfg.initial_value.WhichOneof("kind") == "json_value"  # JSON variables get JSON
    assert from_value(cfg.initial_value) == "just text"
    assert emb.initial_value.WhichOneof("kind") == "json_value"
    assert list(emb.constraints.dims) == [2]
    assert tensor.initial_value.WhichOneof("kind") == "tensor_value"
    assert (list(tensor.constraints.dims), tensor.constraints.dtype) == ([1, 0], "int32")
    assert k.type == variable_pb2.VARIABLE_TYPE_INTEGER
    assert k.initial_value.int_value == 3
    assert (k.constraints.min, k.constraints.max, k.constraints.step) == (0, 10, 1)

    with pytest.raises(ValueError, match="'floaty' is not a valid VariableType"):
        await api(handle.register_variable, "x", "floaty", 1.0)


async def test_get_list_delete_variable(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["GetVariable"] = pb.GetVariableResponse(variable=pb_variable(version=4))
    fake.replies["ListVariables"] = pb.ListVariablesResponse(
        variables=[pb_variable("a"), pb_variable("b")]
    )
    assert (await api(handle.get_variable, "temperature")).version == 4
    assert fake.last("GetVariable").name == "temperature"
    listed = await api(handle.list_variables, "temp*")
    assert [v.name for v in listed] == ["a", "b"]
    assert fake.last("ListVariables").pattern == "temp*"
    assert await api(handle.delete_variable, "a") is None
    assert (fake.last("DeleteVariable").session_id, fake.last("DeleteVariable").name) == ("s1", "a")


async def test_update_variable(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["UpdateVariable"] = lambda req: pb.UpdateVariableResponse(
        variable=pb_variable(value=from_value(req.value), version=2)
    )
    variable = await api(handle.update_variable, "temperature", 0.2)
    request = fake.last("UpdateVariable")
    assert not request.HasField("expected_version")
    assert (request.source, request.reason) == ("", "")
    assert (variable.value, variable.version) == (0.2, 2)

    await api(
        handle.update_variable,
        "temperature",
        0.3,
        expected_version=0,
        source="tuner",
        reason="sweep",
    )
    request = fake.last("UpdateVariable")
    assert request.HasField("expected_version")
    assert request.expected_version == 0
    assert (request.source, request.reason) == ("tuner", "sweep")


async def test_update_variable_version_conflict(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["UpdateVariable"] = rich_status(
        grpc.StatusCode.ABORTED,
        "temperature is at version 7, not the expected 5; re-read and retry",
        reason="VERSION_CONFLICT",
        metadata={"current_version": "7", "expected_version": "5"},
    )
    with pytest.raises(VersionConflictError) as caught:
        await api(handle.update_variable, "temperature", 0.2, expected_version=5)
    err = caught.value
    assert err.current_version == 7
    assert err.reason == "VERSION_CONFLICT"
    assert err.__cause__ is None
    assert err.__suppress_context__


async def test_constraint_violation_is_readable(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["UpdateVariable"] = rich_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        "1.5 is above max 1.0",
        reason="VARIABLE_CONSTRAINT_VIOLATION",
        violations=[("value", "1.5 is above max 1.0")],
    )
    with pytest.raises(InvalidArgumentError) as caught:
        await api(handle.update_variable, "temperature", 1.5)
    assert str(caught.value) == (
        "INVALID_ARGUMENT VARIABLE_CONSTRAINT_VIOLATION: 1.5 is above max 1.0 (value)"
    )
    assert caught.value.field_violations == [("value", "1.5 is above max 1.0")]


async def test_batch_update(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")

    def reply(req: pb.BatchUpdateVariablesRequest) -> pb.BatchUpdateVariablesResponse:
        results = []
        for write in req.writes:
            if write.name == "bad":
                error = rich_status(
                    grpc.StatusCode.NOT_FOUND, "no variable 'bad'", reason="VARIABLE_NOT_FOUND"
                )
                results.append(pb.VariableWriteResult(error=error))
            else:
                variable = pb_variable(write.name, from_value(write.value), 2)
                results.append(pb.VariableWriteResult(variable=variable))
        return pb.BatchUpdateVariablesResponse(results=results)

    fake.replies["BatchUpdateVariables"] = reply
    results = await api(handle.batch_update, {"a": 0.1, "bad": 0.2}, source="job", reason="r")
    request = fake.last("BatchUpdateVariables")
    assert [(w.name, from_value(w.value)) for w in request.writes] == [("a", 0.1), ("bad", 0.2)]
    assert not request.atomic
    assert (request.source, request.reason) == ("job", "r")
    assert [(r.name, r.ok) for r in results] == [("a", True), ("bad", False)]
    assert results[0].unwrap().value == 0.1
    assert isinstance(results[1].error, NotFoundError)
    assert results[1].error.reason == "VARIABLE_NOT_FOUND"
    with pytest.raises(NotFoundError):
        results[1].unwrap()

    await api(handle.batch_update, [("a", 1.0, 3), ("b", 2.0), ("c", 3.0, None)], atomic=True)
    request = fake.last("BatchUpdateVariables")
    assert request.atomic
    assert [w.HasField("expected_version") for w in request.writes] == [True, False, False]
    assert request.writes[0].expected_version == 3
    with pytest.raises(TypeError, match="batch_update takes"):
        await api(handle.batch_update, [("a",)])


async def test_history_and_rollback(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["GetVariableHistory"] = pb.GetVariableHistoryResponse(
        entries=[
            variable_pb2.VariableHistoryEntry(
                version=2, value=to_value(0.2), source="host", reason="r", update_time=stamp()
            ),
            variable_pb2.VariableHistoryEntry(version=1, value=to_value(0.7), source="host"),
        ]
    )
    fake.replies["RollbackVariable"] = pb.RollbackVariableResponse(
        variable=pb_variable(value=0.7, version=3)
    )
    entries = await api(handle.history, "temperature", limit=5)
    assert fake.last("GetVariableHistory").limit == 5
    assert [(e.version, e.value) for e in entries] == [(2, 0.2), (1, 0.7)]
    assert entries[0].update_time == T0
    assert entries[1].update_time is None
    variable = await api(handle.rollback, "temperature", 1, expected_version=2, reason="undo")
    request = fake.last("RollbackVariable")
    assert (request.target_version, request.expected_version, request.reason) == (1, 2, "undo")
    assert (variable.value, variable.version) == (0.7, 3)


# --------------------------------------------------------------------------- watch


async def test_watch_yields_typed_events(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["WatchVariables"] = [
        pb.WatchVariablesResponse(
            change=variable_pb2.VariableChange(
                kind=variable_pb2.VARIABLE_CHANGE_KIND_INITIAL, variable=pb_variable()
            )
        ),
        pb.WatchVariablesResponse(),  # an event kind this client does not know: skipped
        pb.WatchVariablesResponse(
            change=variable_pb2.VariableChange(
                kind=variable_pb2.VARIABLE_CHANGE_KIND_UPDATED,
                variable=pb_variable(value=0.3, version=2),
                reason="tuning",
            ),
            resume_token="e.2",
        ),
        pb.WatchVariablesResponse(
            resync=pb.WatchResync(variables=[pb_variable(version=9)], skipped_changes=6),
            resume_token="e.9",
        ),
        pb.WatchVariablesResponse(session_ended=pb.SessionEnded(reason="deleted")),
    ]
    stream = handle.watch(["temperature", "top_p"], include_initial=True)
    events = await api.collect(stream)
    request = fake.last("WatchVariables")
    assert (list(request.names), request.include_initial) == (["temperature", "top_p"], True)
    initial, updated, resync, ended = events
    assert isinstance(initial, VariableChange)
    assert initial.kind is VariableChangeKind.INITIAL
    assert initial.variable.value == 0.7
    assert (updated.kind, updated.variable.version, updated.reason) == (
        VariableChangeKind.UPDATED,
        2,
        "tuning",
    )
    assert updated.resume_token == "e.2"
    assert isinstance(resync, WatchResync)
    assert (resync.skipped_changes, resync.variables[0].version) == (6, 9)
    assert resync.resume_token == "e.9"
    assert ended == SessionEnded("deleted")
    assert not stream.cancelled


async def test_watch_resumes_with_a_token(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    await api.collect(handle.watch(resume_token="e.2"))
    request = fake.last("WatchVariables")
    assert (request.resume_token, request.include_initial) == ("e.2", False)


async def test_watch_has_no_deadline_and_takes_a_lone_name(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    await api.collect(handle.watch("temperature"))
    assert list(fake.last("WatchVariables").names) == ["temperature"]
    assert fake.calls[-1].time_remaining is None


async def test_watch_cancel_ends_iteration_and_the_server_call(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.hold_open.add("WatchVariables")
    fake.replies["WatchVariables"] = [
        pb.WatchVariablesResponse(
            change=variable_pb2.VariableChange(
                kind=variable_pb2.VARIABLE_CHANGE_KIND_INITIAL, variable=pb_variable()
            )
        )
    ]
    stream = handle.watch(include_initial=True)
    first = await api.next(stream)
    assert first.kind is VariableChangeKind.INITIAL
    stream.cancel()
    assert await api.collect(stream) == []
    assert stream.cancelled
    assert fake.stream_cancelled.wait(timeout=10)
    stream.cancel()  # idempotent


async def test_watch_context_manager_cancels(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.hold_open.add("WatchVariables")
    fake.replies["WatchVariables"] = [
        pb.WatchVariablesResponse(session_ended=pb.SessionEnded(reason="x"))
    ]
    stream = handle.watch()
    if api.is_async:
        async with stream as events:
            await api.next(events)
    else:
        with stream as events:
            await api.next(events)
    assert stream.cancelled
    assert fake.stream_cancelled.wait(timeout=10)


async def test_watch_error_is_raised_typed(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("nope")
    fake.replies["WatchVariables"] = rich_status(
        grpc.StatusCode.NOT_FOUND, "session 'nope' does not exist", reason="SESSION_NOT_FOUND"
    )
    with pytest.raises(NotFoundError) as caught:
        await api.collect(handle.watch())
    assert caught.value.reason == "SESSION_NOT_FOUND"
    assert caught.value.__suppress_context__


# --------------------------------------------------------------------------- modules


async def test_create_module_from_text(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["CreateModule"] = pb.CreateModuleResponse(module=pb_module())
    module = await api(
        handle.create_module,
        "Predict",
        "question -> answer",
        module_id="qa",
        config={"n": 3, "tools": ["search"]},
        bindings={"temperature": "temperature"},
        lm="offline",
    )
    request = fake.last("CreateModule")
    assert (request.module_type, request.module_id, request.signature.text) == (
        "Predict",
        "qa",
        "question -> answer",
    )
    assert from_struct(request.config) == {"n": 3, "tools": ["search"]}
    assert dict(request.variable_bindings) == {"temperature": "temperature"}
    assert request.lm.model == "offline"

    assert module.module_id == "qa"
    assert module.config == {"n": 3}
    assert type(module.config["n"]) is int
    assert [f.name for f in module.signature.inputs] == ["question"]
    assert [f.name for f in module.signature.outputs] == ["answer"]
    assert module.signature.outputs[0].role is FieldRole.OUTPUT
    assert (module.version, module.demo_count, module.lm) == (1, 2, None)
    assert module.variable_bindings == {"temperature": "temperature"}


async def test_create_module_from_fields(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    signature = Signature(
        fields=[
            SignatureField("context", "input", "list[str]", "passages"),
            SignatureField("answer", FieldRole.OUTPUT),
        ],
        instructions="Answer briefly.",
    )
    await api(handle.create_module, "ChainOfThought", signature, lm=LMConfig("openai/x"))
    request = fake.last("CreateModule")
    assert request.module_id == ""
    assert not request.HasField("config")
    fields = [(f.name, f.role, f.type, f.description) for f in request.signature.fields]
    assert fields == [
        ("context", module_pb2.FIELD_ROLE_INPUT, "list[str]", "passages"),
        ("answer", module_pb2.FIELD_ROLE_OUTPUT, "str", ""),
    ]
    assert request.signature.instructions == "Answer briefly."
    assert request.lm.model == "openai/x"


async def test_create_module_binding_mismatch(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["CreateModule"] = rich_status(
        grpc.StatusCode.FAILED_PRECONDITION,
        "temperature needs a FLOAT variable; 'mode' is a STRING",
        reason="BINDING_TYPE_MISMATCH",
    )
    with pytest.raises(FailedPreconditionError, match="BINDING_TYPE_MISMATCH"):
        await api(handle.create_module, "Predict", "q -> a", bindings={"temperature": "mode"})


async def test_get_list_delete_module(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["GetModule"] = pb.GetModuleResponse(module=pb_module(version=2))
    fake.replies["ListModules"] = pb.ListModulesResponse(modules=[pb_module("a"), pb_module("b")])
    assert (await api(handle.get_module, "qa", 2)).version == 2
    assert (fake.last("GetModule").module_id, fake.last("GetModule").version) == ("qa", 2)
    assert [m.module_id for m in await api(handle.list_modules)] == ["a", "b"]
    assert await api(handle.delete_module, "qa") is None
    assert fake.last("DeleteModule").module_id == "qa"


# --------------------------------------------------------------------------- execution


async def test_execute(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["Execute"] = pb_execute_response()
    result = await api(
        handle.execute,
        "qa",
        {"question": "2 + 2?"},
        overrides={"temperature": 0.0},
        include_trace=True,
        k=3,
    )
    request = fake.last("Execute")
    assert (request.session_id, request.module_id) == ("s1", "qa")
    assert from_value_map(request.inputs) == {"question": "2 + 2?", "k": 3}
    assert from_value_map(request.variable_overrides) == {"temperature": 0.0}
    assert (request.options.include_trace, request.options.timeout_ms) == (True, 0)

    assert isinstance(result, ExecuteResult)
    assert result["answer"] == "4"
    assert result.outputs == {"answer": "4", "reasoning": "2 + 2"}
    assert result.variables_used["temperature"] == VariableUsage(0.2, 3, False)
    value, version, overridden = result.variables_used["model"]
    assert (value, version, overridden) == ("offline", 0, True)
    assert (result.usage.lm_calls, result.usage.prompt_tokens, result.usage.cost_usd) == (
        1,
        10,
        0.5,
    )
    assert (result.latency_ms, result.module_version) == (1.25, 2)
    assert result.trace[0].messages == ({"role": "user", "content": "hi"},)
    assert result.trace[0].options == {"temperature": 0.2}


async def test_execute_inputs_as_keywords_only_and_conflicts(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    await api(handle.execute, "qa", question="why?", module_id="a field called module_id")
    assert from_value_map(fake.last("Execute").inputs) == {
        "question": "why?",
        "module_id": "a field called module_id",
    }
    await api(handle.execute, "qa", inputs={"question": "kw"})
    assert from_value_map(fake.last("Execute").inputs) == {"question": "kw"}
    with pytest.raises(TypeError, match="'question' given both"):
        await api(handle.execute, "qa", {"question": "a"}, question="b")


async def test_execute_timeout_ms_extends_the_deadline(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    api.client.timeout = 1
    await api(handle.execute, "qa", question="q", timeout_ms=60_000)
    assert fake.last("Execute").options.timeout_ms == 60_000
    remaining = fake.calls[-1].time_remaining
    assert remaining is not None
    assert remaining > 30


async def test_execute_batch(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["ExecuteBatch"] = pb.ExecuteBatchResponse(
        results=[
            pb.ExecuteBatchResult(
                outputs={"answer": to_value("4")},
                usage=module_pb2.Usage(lm_calls=1),
                latency_ms=1.0,
            ),
            pb.ExecuteBatchResult(
                error=rich_status(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    "missing input field 'question'",
                    reason="INVALID_INPUT",
                    violations=[("inputs.question", "missing input field 'question'")],
                )
            ),
        ],
        variables_used={"temperature": module_pb2.VariableUsage(value=to_value(0.2), version=3)},
        usage=module_pb2.Usage(lm_calls=1),
        latency_ms=3.0,
        module_version=4,
    )
    results = await api(
        handle.execute_batch,
        "qa",
        [{"question": "2 + 2?"}, {}],
        max_concurrency=2,
        overrides={"temperature": 0.1},
        timeout_ms=500,
    )
    request = fake.last("ExecuteBatch")
    assert [from_value_map(i.inputs) for i in request.items] == [{"question": "2 + 2?"}, {}]
    assert request.max_concurrency == 2
    assert from_value_map(request.variable_overrides) == {"temperature": 0.1}
    assert request.options.timeout_ms == 500

    assert isinstance(results, BatchResults)
    assert len(results) == 2
    ok, failed = results
    assert ok.ok and ok["answer"] == "4" and ok.error is None
    assert not failed.ok
    assert isinstance(failed.error, InvalidArgumentError)
    assert failed.error.reason == "INVALID_INPUT"
    assert failed.error.field_violations[0].field == "inputs.question"
    assert results.errors == [(1, failed.error)]
    with pytest.raises(InvalidArgumentError):
        failed.unwrap()
    assert results[0] is ok
    assert list(results[1:]) == [failed]
    assert (results.module_version, results.latency_ms, results.usage.lm_calls) == (4, 3.0, 1)
    assert results.variables_used["temperature"].version == 3


async def test_execute_stream(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["ExecuteStream"] = [
        pb.ExecuteStreamResponse(status=pb.ExecutionStatus(message="Calling LM...")),
        pb.ExecuteStreamResponse(chunk=pb.OutputChunk(field="answer", text="4")),
        pb.ExecuteStreamResponse(chunk=pb.OutputChunk(field="answer", text="!", last=True)),
        pb.ExecuteStreamResponse(result=pb_execute_response("4!")),
    ]
    events = await api.collect(
        handle.execute_stream("qa", question="2 + 2?", overrides={"temperature": 0.0})
    )
    request = fake.last("ExecuteStream")
    assert from_value_map(request.inputs) == {"question": "2 + 2?"}
    assert from_value_map(request.variable_overrides) == {"temperature": 0.0}
    assert fake.calls[-1].time_remaining is not None
    status, chunk1, chunk2, result = events
    assert status == ExecutionStatus("Calling LM...")
    assert (chunk1, chunk2) == (OutputChunk("answer", "4", False), OutputChunk("answer", "!", True))
    assert isinstance(result, ExecuteResult)
    assert result["answer"] == "4!"

    final = await api(handle.execute_stream("qa", question="again").result)
    assert final["answer"] == "4!"


async def test_execute_stream_cancel_stops_the_server_call(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.hold_open.add("ExecuteStream")
    fake.replies["ExecuteStream"] = [
        pb.ExecuteStreamResponse(chunk=pb.OutputChunk(field="answer", text="a"))
    ]
    stream = handle.execute_stream("qa", question="long")
    assert await api.next(stream) == OutputChunk("answer", "a", False)
    stream.cancel()
    assert await api.collect(stream) == []
    assert fake.stream_cancelled.wait(timeout=10)


async def test_execute_stream_without_result_is_a_server_bug(api: Api, fake: FakeBridge) -> None:
    from dspy_bridge_client import InternalError

    handle = api.client.session("s1")
    fake.replies["ExecuteStream"] = [
        pb.ExecuteStreamResponse(status=pb.ExecutionStatus(message="..."))
    ]
    with pytest.raises(InternalError, match="without a result"):
        await api(handle.execute_stream("qa", question="q").result)


async def test_execute_stream_error_mid_stream(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    fake.replies["ExecuteStream"] = [
        pb.ExecuteStreamResponse(status=pb.ExecutionStatus(message="Calling LM...")),
        rich_status(grpc.StatusCode.UNAVAILABLE, "worker lost", reason="WORKER_LOST"),
    ]
    stream = handle.execute_stream("qa", question="q")
    assert await api.next(stream) == ExecutionStatus("Calling LM...")
    from dspy_bridge_client import UnavailableError

    with pytest.raises(UnavailableError) as caught:
        await api.collect(stream)
    assert caught.value.retryable
    assert str(caught.value) == "UNAVAILABLE WORKER_LOST: worker lost"


async def test_export_and_import_state(api: Api, fake: FakeBridge) -> None:
    handle = api.client.session("s1")
    state = {"predict": {"demos": [{"question": "q", "answer": "a"}], "signature": {}}}
    fake.replies["ExportModuleState"] = pb.ExportModuleStateResponse(
        state_json=json.dumps(state), version=3
    )
    fake.replies["ImportModuleState"] = pb.ImportModuleStateResponse(module=pb_module(version=4))
    exported = await api(handle.export_state, "qa", 3)
    assert json.loads(exported) == state
    assert fake.last("ExportModuleState").version == 3

    module = await api(handle.import_state, "qa", state, expected_version=3)
    request = fake.last("ImportModuleState")
    assert json.loads(request.state_json) == state
    assert request.expected_version == 3
    assert module.version == 4
    await api(handle.import_state, "qa", exported)
    request = fake.last("ImportModuleState")
    assert request.state_json == exported
    assert not request.HasField("expected_version")


@pytest.mark.parametrize("kind", ["sync", "async"])
async def test_serve_against_a_server_without_connect_fails_at_once(kind: str) -> None:
    """UNIMPLEMENTED (a server without `Connect`) is final, as in the Node client: reconnecting
    cannot help, so waiting raises it instead of retrying until the timeout."""
    server = grpc.aio.server()  # serves no method at all
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        if kind == "sync":

            def serve_sync() -> None:
                with BridgeClient(f"127.0.0.1:{port}") as client:
                    hosting = client.session("s").serve(tools={"t": lambda: "x"})
                    with pytest.raises(UnimplementedError):
                        hosting.wait_connected(60)
                    hosting.stop()

            await asyncio.to_thread(serve_sync)
        else:
            async with AsyncBridgeClient(f"127.0.0.1:{port}") as aclient:
                hosting = await aclient.session("s").serve(tools={"t": lambda: "x"})
                with pytest.raises(UnimplementedError):
                    await hosting.wait_connected(60)
                await hosting.stop()
    finally:
        await server.stop(0)
