"""ModuleService without gRPC: validation before storing, variable snapshots and overrides,
LM resolution, batch, stream, state import/export and versions."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import dspy
import grpc
import pytest

from dspy_bridge.config import Settings
from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import Constraints, LMSpec, VariableType
from dspy_bridge.runtime.executor import (
    ChunkEvent,
    ExecutionResult,
    InProcessExecutor,
    ResultEvent,
)
from dspy_bridge.services.modules import (
    ExecuteOptions,
    ModuleService,
    SignatureInput,
    VariableUse,
)
from dspy_bridge.services.sessions import SessionService
from dspy_bridge.services.variables import VariableService, WriteRequest
from dspy_bridge.services.watch import WatchHub
from dspy_bridge.store.memory import MemoryStore
from tests.runtime.module_helpers import offline_factory

T = VariableType
QA = SignatureInput("question -> answer")


@dataclass
class World:
    store: MemoryStore
    sessions: SessionService
    variables: VariableService
    modules: ModuleService
    executor: InProcessExecutor
    sid: str

    async def var(self, name: str, type_: VariableType, value: Any, **c: Any) -> None:
        await self.variables.register(self.sid, name, type_, value, Constraints(**c))

    async def snapshot(self) -> Any:
        return (await self.store.list_modules(self.sid), await self.store.get_session(self.sid))


@pytest.fixture
async def world() -> World:
    settings = Settings(lm="offline", session_ttl_seconds=0)
    store = MemoryStore()
    hub = WatchHub(8)
    sessions = SessionService(store, hub, settings)
    variables = VariableService(store, hub, settings)
    executor = InProcessExecutor(lm_factory=offline_factory)
    modules = ModuleService(store, executor, settings)
    sid = (await sessions.create("", {}, 0)).session_id
    return World(store, sessions, variables, modules, executor, sid)


async def expect(call: Any, code: grpc.StatusCode, reason: str) -> BridgeError:
    with pytest.raises(BridgeError) as caught:
        await call
    assert caught.value.code == code, caught.value
    assert caught.value.reason == reason, caught.value
    return caught.value


async def test_create_normalizes_and_stores_version_1(world: World) -> None:
    await world.var("temp", T.FLOAT, 0.2)
    temp_id = (await world.variables.get(world.sid, "temp")).id
    record = await world.modules.create(
        world.sid,
        "",
        "ReAct",
        SignatureInput(fields=(), text="question: str, context: list[str] -> answer"),
        {"tools": ["calculator"], "max_iters": 3.0},
        {"temperature": temp_id},
    )
    assert record.module_id.startswith("mod_") and len(record.module_id) == 16
    assert record.version == 1
    assert record.spec["config"] == {"tools": ["calculator"], "max_iters": 3}
    assert record.spec["variable_bindings"] == {"temperature": "temp"}  # ids become names
    assert record.spec["signature"]["fields"][1]["type"] == "list[str]"
    assert (await world.modules.get(world.sid, record.module_id)).spec == record.spec


@pytest.mark.parametrize(
    ("kwargs", "code", "reason"),
    [
        ({"module_type": "Nope"}, grpc.StatusCode.INVALID_ARGUMENT, Reason.UNKNOWN_MODULE_TYPE),
        ({"module_type": ""}, grpc.StatusCode.INVALID_ARGUMENT, Reason.UNKNOWN_MODULE_TYPE),
        (
            {"signature": SignatureInput("question answer")},
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.INVALID_SIGNATURE,
        ),
        (
            {"config": {"N": 0}, "module_type": "BestOfN"},
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.INVALID_MODULE_CONFIG,
        ),
        (
            {"bindings": {"temperature": "name"}},
            grpc.StatusCode.FAILED_PRECONDITION,
            Reason.BINDING_TYPE_MISMATCH,
        ),
        (
            {"bindings": {"temprature": "temp"}},
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.UNKNOWN_PARAMETER,
        ),
        (
            {"bindings": {"temperature": "missing"}},
            grpc.StatusCode.NOT_FOUND,
            Reason.VARIABLE_NOT_FOUND,
        ),
        ({"module_id": "9bad id"}, grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_REQUEST),
        (
            {"lm": LMSpec("offline", options={"tempo": "1"})},
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.INVALID_REQUEST,
        ),
        ({"session_id": "nope"}, grpc.StatusCode.NOT_FOUND, Reason.SESSION_NOT_FOUND),
        (
            {"module_type": "ReAct", "signature": SignatureInput("question -> trajectory")},
            grpc.StatusCode.INVALID_ARGUMENT,
            Reason.INVALID_SIGNATURE,
        ),
    ],
)
async def test_bad_create_changes_nothing(
    world: World, kwargs: dict[str, Any], code: grpc.StatusCode, reason: str
) -> None:
    await world.var("temp", T.FLOAT, 0.2)
    await world.var("name", T.STRING, "x")
    before = await world.snapshot()
    args: dict[str, Any] = {
        "session_id": world.sid,
        "module_id": "m",
        "module_type": "Predict",
        "signature": QA,
        "config": {},
        "bindings": {},
        "lm": None,
    }
    args.update(kwargs)
    await expect(world.modules.create(**args), code, reason)
    assert await world.snapshot() == before


async def test_duplicate_module_id(world: World) -> None:
    await world.modules.create(world.sid, "m", "Predict", QA, {}, {})
    await expect(
        world.modules.create(world.sid, "m", "Predict", QA, {}, {}),
        grpc.StatusCode.ALREADY_EXISTS,
        Reason.MODULE_ALREADY_EXISTS,
    )


async def test_execute_reports_variable_versions_and_follows_updates(world: World) -> None:
    await world.var("temp", T.FLOAT, 0.2, min=0.0, max=1.0)
    await world.var("strategy", T.MODULE, "Predict", choices=("Predict", "ChainOfThought"))
    await world.modules.create(
        world.sid, "m", "Predict", QA, {}, {"temperature": "temp", "module_type": "strategy"}
    )
    first = await world.modules.execute(world.sid, "m", {"question": "Why?"})
    assert first.module_version == 1
    assert first.variables_used == {
        "temp": VariableUse(0.2, 1, False),
        "strategy": VariableUse("Predict", 1, False),
    }
    assert set(first.result.outputs) == {"answer"}

    await world.variables.update(world.sid, WriteRequest("strategy", "ChainOfThought"))
    second = await world.modules.execute(world.sid, "m", {"question": "Why?"})
    assert second.variables_used["strategy"] == VariableUse("ChainOfThought", 2, False)
    assert set(second.result.outputs) == {"reasoning", "answer"}  # switched, not recreated


async def test_overrides_are_validated_and_never_stored(world: World) -> None:
    await world.var("temp", T.FLOAT, 0.2, min=0.0, max=1.0)
    await world.var("free", T.FLOAT, 0.5)
    await world.modules.create(world.sid, "m", "Predict", QA, {}, {"temperature": "temp"})
    options = ExecuteOptions(include_trace=True)
    out = await world.modules.execute(world.sid, "m", {"question": "q"}, {"temp": 0.9}, options)
    assert out.variables_used["temp"] == VariableUse(0.9, 0, True)
    assert out.result.trace[0]["options"]["temperature"] == 0.9
    assert (await world.variables.get(world.sid, "temp")).value == 0.2

    for overrides, reason in [
        ({"temp": 1.5}, Reason.VARIABLE_CONSTRAINT_VIOLATION),
        ({"temp": "hot"}, Reason.VARIABLE_TYPE_MISMATCH),
        ({"free": 0.1}, Reason.INVALID_REQUEST),  # not bound by this module
    ]:
        err = await expect(
            world.modules.execute(world.sid, "m", {"question": "q"}, overrides),
            grpc.StatusCode.INVALID_ARGUMENT,
            reason,
        )
        assert err.violations[0].field.startswith("variable_overrides[")


async def test_override_must_suit_the_parameter(world: World) -> None:
    await world.var("adapter", T.STRING, "chat")
    await world.modules.create(world.sid, "m", "Predict", QA, {}, {"adapter": "adapter"})
    await expect(
        world.modules.execute(world.sid, "m", {"question": "q"}, {"adapter": "yaml"}),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_MODULE_CONFIG,
    )
    # A stored value that became unusable is a precondition failure, reported by name.
    await world.variables.update(world.sid, WriteRequest("adapter", "yaml"))
    err = await expect(
        world.modules.execute(world.sid, "m", {"question": "q"}),
        grpc.StatusCode.FAILED_PRECONDITION,
        Reason.INVALID_MODULE_CONFIG,
    )
    assert "'adapter'" in err.message and "version 2" in err.message


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({}, "inputs.question"),
        ({"question": "q", "extra": 1}, "inputs.extra"),
        ({"question": 3}, "inputs.question"),
    ],
)
async def test_bad_inputs(world: World, inputs: dict[str, Any], field: str) -> None:
    await world.modules.create(world.sid, "m", "Predict", QA, {}, {})
    err = await expect(
        world.modules.execute(world.sid, "m", inputs),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_INPUT,
    )
    assert err.violations[0].field == field


async def test_lm_resolution_module_then_session_then_default(world: World) -> None:
    await world.modules.create(world.sid, "plain", "Predict", QA, {}, {})
    await world.modules.create(
        world.sid, "own", "Predict", QA, {}, {}, LMSpec("offline", options={"latency_ms": "1"})
    )
    trace = ExecuteOptions(include_trace=True)

    async def model_of(module_id: str) -> str:
        out = await world.modules.execute(world.sid, module_id, {"question": "q"}, {}, trace)
        return str(out.result.trace[0]["model"])

    assert await model_of("plain") == "offline"  # server default (settings.lm)
    await world.sessions.configure_lm(world.sid, LMSpec("session-model"))
    assert await model_of("plain") == "session-model"
    assert await model_of("own") == "offline"


async def test_batch_keeps_order_isolates_failures_and_bounds_concurrency(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await world.var("temp", T.FLOAT, 0.2)
    await world.modules.create(world.sid, "m", "Predict", QA, {}, {"temperature": "temp"})
    running = peak = 0
    real = world.executor.execute

    async def counting(req: Any) -> ExecutionResult:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        try:
            await asyncio.sleep(0.01)
            return await real(req)
        finally:
            running -= 1

    monkeypatch.setattr(world.executor, "execute", counting)
    items: list[dict[str, Any]] = [{"question": f"q{i}"} for i in range(10)]
    items[3] = {"question": 7}
    out = await world.modules.execute_batch(world.sid, "m", items, max_concurrency=3)
    assert peak <= 3
    assert len(out.results) == 10
    bad = out.results[3]
    assert isinstance(bad, BridgeError) and bad.reason == Reason.INVALID_INPUT
    assert bad.violations[0].field == "items[3].inputs.question"
    good = [r for r in out.results if isinstance(r, ExecutionResult)]
    assert len(good) == 9
    assert out.usage.lm_calls == 9
    assert out.variables_used == {"temp": VariableUse(0.2, 1, False)}


async def test_stream_validates_before_the_first_event(world: World) -> None:
    await world.modules.create(world.sid, "m", "ChainOfThought", QA, {}, {})
    await expect(
        world.modules.execute_stream(world.sid, "m", {"nope": 1}),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_INPUT,
    )
    handle = await world.modules.execute_stream(world.sid, "m", {"question": "q"})
    events = [e async for e in handle.events]
    assert any(isinstance(e, ChunkEvent) for e in events)
    assert isinstance(events[-1], ResultEvent)
    assert handle.module_version == 1


async def test_import_makes_a_new_version_and_export_reads_any(world: World) -> None:
    await world.modules.create(world.sid, "m", "Predict", QA, {}, {})
    plain = dspy.Predict("question -> answer")
    plain.demos = [dspy.Example(question="What is the capital of France?", answer="Paris")]
    imported = await world.modules.import_state(
        world.sid, "m", json.dumps(plain.dump_state()), expected_version=1
    )
    assert imported.version == 2 and imported.source == "import"
    out = await world.modules.execute(
        world.sid, "m", {"question": "What is the capital of France?"}
    )
    assert out.result.outputs["answer"] == "Paris" and out.module_version == 2
    v1, version = await world.modules.export_state(world.sid, "m", 1)
    assert version == 1 and json.loads(v1)["demos"] == []
    current, version = await world.modules.export_state(world.sid, "m")
    assert version == 2 and len(json.loads(current)["demos"]) == 1

    await expect(
        world.modules.import_state(world.sid, "m", "{}", expected_version=1),
        grpc.StatusCode.ABORTED,
        Reason.VERSION_CONFLICT,
    )
    await expect(
        world.modules.import_state(world.sid, "m", '{"demos": 3}'),
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_STATE,
    )
    assert (await world.modules.get(world.sid, "m")).version == 2


async def test_delete_and_unknown_module(world: World) -> None:
    await world.modules.create(world.sid, "m", "Predict", QA, {}, {})
    await world.modules.execute(world.sid, "m", {"question": "q"})
    await world.modules.delete(world.sid, "m")
    for call in (
        world.modules.get(world.sid, "m"),
        world.modules.execute(world.sid, "m", {"question": "q"}),
        world.modules.delete(world.sid, "m"),
    ):
        await expect(call, grpc.StatusCode.NOT_FOUND, Reason.MODULE_NOT_FOUND)
    assert await world.modules.list(world.sid) == []


async def test_session_gone_drops_cached_programs(world: World) -> None:
    await world.modules.create(world.sid, "m", "Predict", QA, {}, {})
    await world.modules.execute(world.sid, "m", {"question": "q"})
    assert world.executor.stats()["programs_cached"] == 1
    world.sessions.on_session_gone(world.modules.session_gone)
    await world.sessions.delete(world.sid)
    assert world.executor.stats()["programs_cached"] == 0


async def test_a_module_created_again_under_the_same_id_is_the_new_one(world: World) -> None:
    await world.modules.create(world.sid, "m", "Predict", QA, {}, {})
    assert set((await world.modules.execute(world.sid, "m", {"question": "q"})).result.outputs) == {
        "answer"
    }
    await world.modules.delete(world.sid, "m")
    await world.modules.create(world.sid, "m", "ChainOfThought", QA, {}, {})
    out = await world.modules.execute(world.sid, "m", {"question": "q"})
    assert set(out.result.outputs) == {"reasoning", "answer"}
