"""Modules through a real channel: create/get/list/delete, execution with variables (unary,
batch, streaming), state export/import against plain DSPy, and every documented error case
returning its code and reason with nothing changed."""

from __future__ import annotations

import json
from typing import Any

import dspy
import grpc
import pytest
from google.protobuf import struct_pb2

from dspy_bridge.runtime import registry
from dspy_bridge.runtime.lm.offline import OfflineLM
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2, value_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.integration.rpc import expect_error, fv, iv, sv

Stub = pb_grpc.BridgeServiceStub
T = vpb.VariableType
QA = module_pb2.Signature(text="question -> answer")
QUESTION = "What is the capital of France?"

pytestmark = pytest.mark.parametrize("store_url", ["memory", "sqlite", "redis"], indirect=True)


# -- helpers ----------------------------------------------------------------------------------


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


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(data)
    return out


async def _create(
    stub: Stub,
    sid: str,
    module_id: str = "qa",
    module_type: str = "Predict",
    signature: module_pb2.Signature = QA,
    config: dict[str, Any] | None = None,
    bindings: dict[str, str] | None = None,
    lm: lm_pb2.LMConfig | None = None,
) -> module_pb2.Module:
    req = pb.CreateModuleRequest(
        session_id=sid,
        module_id=module_id,
        module_type=module_type,
        signature=signature,
        config=_struct(config or {}),
        variable_bindings=bindings or {},
        lm=lm,
    )
    return (await stub.CreateModule(req)).module


def _inputs(**values: Any) -> dict[str, value_pb2.Value]:
    out = {}
    for name, v in values.items():
        out[name] = iv(v) if isinstance(v, int) else sv(v) if isinstance(v, str) else v
    return out


def _execute(sid: str, module_id: str = "qa", **kw: Any) -> pb.ExecuteRequest:
    kw.setdefault("inputs", _inputs(question=QUESTION))
    return pb.ExecuteRequest(session_id=sid, module_id=module_id, **kw)


async def _modules(stub: Stub, sid: str) -> list[tuple[str, int, str]]:
    listed = await stub.ListModules(pb.ListModulesRequest(session_id=sid))
    return [(m.module_id, m.version, m.module_type) for m in listed.modules]


# -- CRUD -------------------------------------------------------------------------------------


async def test_create_get_list_delete(stub: Stub) -> None:
    sid = await _session(stub)
    module = await _create(
        stub,
        sid,
        module_id="",
        module_type="ReAct",
        signature=module_pb2.Signature(
            fields=[
                module_pb2.SignatureField(
                    name="question", role=module_pb2.FIELD_ROLE_INPUT, description="asked"
                ),
                module_pb2.SignatureField(
                    name="answer", role=module_pb2.FIELD_ROLE_OUTPUT, type="int"
                ),
            ],
            instructions="Use the calculator.",
        ),
        config={"tools": ["calculator"], "max_iters": 2},
    )
    assert module.module_id.startswith("mod_")
    assert module.version == 1 and module.demo_count == 0
    assert module.signature.text == "question -> answer: int"
    assert [f.name for f in module.signature.fields] == ["question", "answer"]
    assert module.signature.instructions == "Use the calculator."
    assert dict(module.config)["max_iters"] == 2
    assert list(module.config["tools"]) == ["calculator"]
    assert module.create_time.seconds > 0

    again = (
        await stub.GetModule(pb.GetModuleRequest(session_id=sid, module_id=module.module_id))
    ).module
    assert again == module
    await _create(stub, sid, "b")
    assert await _modules(stub, sid) == [("b", 1, "Predict"), (module.module_id, 1, "ReAct")]
    await stub.DeleteModule(pb.DeleteModuleRequest(session_id=sid, module_id="b"))
    assert [m for m, *_ in await _modules(stub, sid)] == [module.module_id]


# -- execution with variables -------------------------------------------------------------


async def test_execute_with_variables_reports_versions_and_switches_strategy(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "temp", T.VARIABLE_TYPE_FLOAT, fv(0.2), min=0, max=1)
    await _register(
        stub,
        sid,
        "strategy",
        T.VARIABLE_TYPE_MODULE,
        sv("Predict"),
        choices=["Predict", "ChainOfThought"],
    )
    module = await _create(stub, sid, bindings={"temperature": "temp", "module_type": "strategy"})
    assert dict(module.variable_bindings) == {"temperature": "temp", "module_type": "strategy"}

    first = await stub.Execute(_execute(sid, options=module_pb2.ExecuteOptions(include_trace=True)))
    assert set(first.outputs) == {"answer"}
    assert first.module_version == 1
    assert first.variables_used["temp"].value.float_value == 0.2
    assert first.variables_used["temp"].version == 1
    assert not first.variables_used["temp"].overridden
    assert first.usage.lm_calls == 1 and first.usage.prompt_tokens > 0
    assert first.latency_ms > 0
    (call,) = first.trace
    assert call.model == "offline"
    assert call.options["temperature"] == 0.2
    assert call.messages[0]["role"] == "system"
    assert "[[ ## answer ## ]]" in call.completions[0]

    await stub.UpdateVariable(
        pb.UpdateVariableRequest(session_id=sid, name="strategy", value=sv("ChainOfThought"))
    )
    second = await stub.Execute(_execute(sid))
    assert list(second.outputs) == ["reasoning", "answer"] or set(second.outputs) == {
        "reasoning",
        "answer",
    }
    assert second.variables_used["strategy"].version == 2
    assert second.trace == []

    overridden = await stub.Execute(
        _execute(sid, variable_overrides={"temp": fv(0.9), "strategy": sv("Predict")})
    )
    assert set(overridden.outputs) == {"answer"}
    assert overridden.variables_used["temp"].overridden
    assert overridden.variables_used["temp"].version == 0
    stored = await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="temp"))
    assert stored.variable.value.float_value == 0.2 and stored.variable.version == 1


async def test_typed_inputs_and_outputs(stub: Stub) -> None:
    sid = await _session(stub)
    await _create(
        stub,
        sid,
        signature=module_pb2.Signature(
            text="context: list[str], question -> answer, confidence: float, ok: bool"
        ),
    )
    context = value_pb2.Value(
        json_value=struct_pb2.Value(
            list_value=struct_pb2.ListValue(values=[struct_pb2.Value(string_value="Paris")])
        )
    )
    out = await stub.Execute(_execute(sid, inputs={"context": context, "question": sv("q")}))
    assert out.outputs["answer"].WhichOneof("kind") == "string_value"
    assert out.outputs["confidence"].WhichOneof("kind") == "float_value"
    assert out.outputs["ok"].WhichOneof("kind") == "bool_value"


async def test_execute_batch(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "temp", T.VARIABLE_TYPE_FLOAT, fv(0.3))
    await _create(stub, sid, bindings={"temperature": "temp"})
    items = [pb.ExecuteBatchItem(inputs=_inputs(question=f"question {i}")) for i in range(6)]
    items[2] = pb.ExecuteBatchItem(inputs=_inputs(question=5))
    out = await stub.ExecuteBatch(
        pb.ExecuteBatchRequest(session_id=sid, module_id="qa", items=items, max_concurrency=2)
    )
    assert len(out.results) == 6
    assert out.module_version == 1
    assert out.variables_used["temp"].version == 1
    assert out.usage.lm_calls == 5
    for i, result in enumerate(out.results):
        if i == 2:
            assert result.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
            assert not result.outputs
            details = {d.type_url.rsplit("/", 1)[-1] for d in result.error.details}
            assert details == {"google.rpc.ErrorInfo", "google.rpc.BadRequest"}
            assert "INVALID_INPUT" in str(result.error.details[0].value)
        else:
            assert result.error.code == 0
            assert set(result.outputs) == {"answer"}
            assert result.usage.lm_calls == 1


async def test_execute_stream(stub: Stub) -> None:
    sid = await _session(stub)
    await _create(stub, sid, module_type="ChainOfThought")
    chunks: dict[str, str] = {}
    statuses: list[str] = []
    result = None
    async for event in stub.ExecuteStream(
        pb.ExecuteStreamRequest(session_id=sid, module_id="qa", inputs=_inputs(question="q"))
    ):
        kind = event.WhichOneof("event")
        if kind == "chunk":
            chunks[event.chunk.field] = chunks.get(event.chunk.field, "") + event.chunk.text
        elif kind == "status":
            statuses.append(event.status.message)
        else:
            result = event.result
    assert result is not None
    assert set(chunks) == {"reasoning", "answer"}
    for name, text in chunks.items():
        assert text.strip() == result.outputs[name].string_value
    assert statuses and result.module_version == 1 and result.usage.lm_calls == 1


async def test_cancelled_stream_leaves_the_server_healthy(stub: Stub) -> None:
    sid = await _session(stub)
    await _create(
        stub,
        sid,
        module_type="ChainOfThought",
        lm=lm_pb2.LMConfig(model="offline", options={"latency_ms": "10000"}),
    )
    call = stub.ExecuteStream(
        pb.ExecuteStreamRequest(session_id=sid, module_id="qa", inputs=_inputs(question="q"))
    )
    first = await call.read()  # "Calling LM..." arrives before the slow LM answers
    assert first.WhichOneof("event") == "status"
    call.cancel()
    await _create(stub, sid, "quick")
    assert (await stub.Execute(_execute(sid, "quick"))).outputs


async def test_timeout_is_deadline_exceeded(stub: Stub) -> None:
    sid = await _session(stub)
    await _create(stub, sid, lm=lm_pb2.LMConfig(model="offline", options={"latency_ms": "10000"}))
    await expect_error(
        stub.Execute(_execute(sid, options=module_pb2.ExecuteOptions(timeout_ms=50))),
        grpc.StatusCode.DEADLINE_EXCEEDED,
        "DEADLINE_EXCEEDED",
    )


# -- state --------------------------------------------------------------------------------


async def test_state_export_import_against_plain_dspy(stub: Stub) -> None:
    sid = await _session(stub)
    await _create(stub, sid, module_type="ChainOfThought")
    before = await stub.Execute(_execute(sid))

    plain = dspy.ChainOfThought("question -> answer")
    plain.predict.demos = [
        dspy.Example(question=QUESTION, reasoning="It is well known.", answer="Paris")
    ]
    plain.predict.signature = plain.predict.signature.with_instructions("Answer in one word.")
    imported = await stub.ImportModuleState(
        pb.ImportModuleStateRequest(
            session_id=sid,
            module_id="qa",
            state_json=json.dumps(plain.dump_state()),
            expected_version=1,
        )
    )
    assert imported.module.version == 2 and imported.module.demo_count == 1
    after = await stub.Execute(_execute(sid))
    assert after.module_version == 2
    assert after.outputs["answer"].string_value == "Paris"
    assert before.outputs["answer"].string_value != "Paris"

    exported = await stub.ExportModuleState(
        pb.ExportModuleStateRequest(session_id=sid, module_id="qa")
    )
    assert exported.version == 2
    loaded = dspy.ChainOfThought("question -> answer")
    loaded.load_state(json.loads(exported.state_json))
    assert loaded.predict.signature.instructions == "Answer in one word."
    with dspy.context(lm=OfflineLM()):
        theirs = loaded(question=QUESTION)
    assert theirs.answer == "Paris"
    assert theirs.reasoning == after.outputs["reasoning"].string_value

    old = await stub.ExportModuleState(
        pb.ExportModuleStateRequest(session_id=sid, module_id="qa", version=1)
    )
    assert old.version == 1 and json.loads(old.state_json)["predict"]["demos"] == []
    v1 = await stub.GetModule(pb.GetModuleRequest(session_id=sid, module_id="qa", version=1))
    assert v1.module.version == 1 and v1.module.demo_count == 0


# -- errors: documented code and reason, and nothing changed ------------------------------


async def test_create_errors_change_nothing(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "name", T.VARIABLE_TYPE_STRING, sv("x"))
    await _create(stub, sid, "existing")
    before = await _modules(stub, sid)
    cases: list[tuple[dict[str, Any], grpc.StatusCode, str, str | None]] = [
        (
            {"module_type": "Predictt"},
            grpc.StatusCode.INVALID_ARGUMENT,
            "UNKNOWN_MODULE_TYPE",
            "module_type",
        ),
        (
            {"signature": module_pb2.Signature(text="question, -> answer")},
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_SIGNATURE",
            "signature.text",
        ),
        (
            {"signature": module_pb2.Signature(text="question -> answer: os.system")},
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_SIGNATURE",
            "signature.text",
        ),
        (
            {"bindings": {"temperature": "name"}},
            grpc.StatusCode.FAILED_PRECONDITION,
            "BINDING_TYPE_MISMATCH",
            "variable_bindings[temperature]",
        ),
        (
            {"bindings": {"warmth": "name"}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "UNKNOWN_PARAMETER",
            "variable_bindings[warmth]",
        ),
        (
            {"module_type": "ReAct", "config": {"tools": ["shell"]}},
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_MODULE_CONFIG",
            "config.tools",
        ),
        ({"module_id": "existing"}, grpc.StatusCode.ALREADY_EXISTS, "MODULE_ALREADY_EXISTS", None),
    ]
    for kwargs, code, reason, field in cases:
        args: dict[str, Any] = {"module_id": "new", **kwargs}
        err = await expect_error(_create(stub, sid, **args), code, reason)
        if field is not None:
            assert field in err.fields, (reason, err.fields)
    await expect_error(
        _create(stub, "no-such-session"), grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND"
    )
    assert await _modules(stub, sid) == before


async def test_program_of_thought_without_interpreter(stub: Stub) -> None:
    if registry.interpreter_problem() is None:
        pytest.skip("Deno is installed here")
    sid = await _session(stub)
    err = await expect_error(
        _create(stub, sid, module_type="ProgramOfThought"),
        grpc.StatusCode.FAILED_PRECONDITION,
        "INTERPRETER_UNAVAILABLE",
    )
    assert "Deno" in err.message
    assert await _modules(stub, sid) == []


async def test_execute_errors_change_nothing(stub: Stub) -> None:
    sid = await _session(stub)
    await _register(stub, sid, "temp", T.VARIABLE_TYPE_FLOAT, fv(0.2), min=0, max=1)
    await _create(stub, sid, bindings={"temperature": "temp"})
    before = (
        await _modules(stub, sid),
        await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="temp")),
    )
    cases: list[tuple[pb.ExecuteRequest, grpc.StatusCode, str, str | None]] = [
        (
            _execute(sid, inputs={}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_INPUT",
            "inputs.question",
        ),
        (
            _execute(sid, inputs=_inputs(question="q", extra="x")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_INPUT",
            "inputs.extra",
        ),
        (
            _execute(sid, inputs=_inputs(question=42)),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_INPUT",
            "inputs.question",
        ),
        (
            _execute(sid, variable_overrides={"temp": fv(7.0)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "VARIABLE_CONSTRAINT_VIOLATION",
            "variable_overrides[temp]",
        ),
        (
            _execute(sid, variable_overrides={"other": fv(0.1)}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_REQUEST",
            "variable_overrides[other]",
        ),
        (_execute(sid, "nope"), grpc.StatusCode.NOT_FOUND, "MODULE_NOT_FOUND", None),
        (_execute("no-such-session"), grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND", None),
    ]
    for request, code, reason, field in cases:
        err = await expect_error(stub.Execute(request), code, reason)
        if field is not None:
            assert field in err.fields, (reason, err.fields)
    after = (
        await _modules(stub, sid),
        await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="temp")),
    )
    assert after == before


async def test_state_errors_change_nothing(stub: Stub) -> None:
    sid = await _session(stub)
    await _create(stub, sid)
    for state_json, code, reason in [
        ("{", grpc.StatusCode.INVALID_ARGUMENT, "INVALID_STATE"),
        ('{"predict": {}}', grpc.StatusCode.INVALID_ARGUMENT, "INVALID_STATE"),
    ]:
        await expect_error(
            stub.ImportModuleState(
                pb.ImportModuleStateRequest(session_id=sid, module_id="qa", state_json=state_json)
            ),
            code,
            reason,
        )
    await expect_error(
        stub.ImportModuleState(
            pb.ImportModuleStateRequest(
                session_id=sid, module_id="qa", state_json="{}", expected_version=5
            )
        ),
        grpc.StatusCode.ABORTED,
        "VERSION_CONFLICT",
    )
    await expect_error(
        stub.ExportModuleState(pb.ExportModuleStateRequest(session_id=sid, module_id="zz")),
        grpc.StatusCode.NOT_FOUND,
        "MODULE_NOT_FOUND",
    )
    assert await _modules(stub, sid) == [("qa", 1, "Predict")]
