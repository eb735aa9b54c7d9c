"""Every module type: config validation, availability, and a real execution with OfflineLM."""

from __future__ import annotations

from typing import Any

import dspy
import grpc
import pytest

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.runtime import registry
from dspy_bridge.runtime.executor import ExecutionRequest, InProcessExecutor
from dspy_bridge.runtime.program import build_program, coerce_execution_inputs
from dspy_bridge.runtime.strategies import Reward
from tests.runtime.module_helpers import OFFLINE, make_record


@pytest.fixture
def executor() -> InProcessExecutor:
    return InProcessExecutor()


async def run(executor: InProcessExecutor, record: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    coerced = coerce_execution_inputs(record, inputs)
    result = await executor.execute(ExecutionRequest(record, OFFLINE, coerced))
    assert result.usage.lm_calls >= 1
    return result.outputs


def test_module_types_lists_every_builtin() -> None:
    assert registry.module_types()[:8] == [
        "Predict",
        "ChainOfThought",
        "ReAct",
        "ProgramOfThought",
        "BestOfN",
        "Refine",
        "MultiChainComparison",
        "Parallel",
    ]
    assert "Parallel" not in registry.switchable_types()


def test_unknown_module_type() -> None:
    with pytest.raises(BridgeError) as caught:
        registry.get_type("Predictt")
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == Reason.UNKNOWN_MODULE_TYPE
    assert "ChainOfThought" in caught.value.message


@pytest.mark.parametrize(
    ("module_type", "config", "key", "problem"),
    [
        ("Predict", {"max_iters": 3}, "max_iters", "unknown key for Predict"),
        ("ReAct", {"max_iters": 2.5}, "max_iters", "whole number"),
        ("ReAct", {"max_iters": 0}, "max_iters", "at least 1"),
        ("ReAct", {"tools": "calculator"}, "tools", "must be a list"),
        ("ReAct", {"tools": ["calculator", "shell"]}, "tools", "unknown tool 'shell'"),
        ("BestOfN", {"N": "three"}, "N", "must be a number"),
        ("BestOfN", {"reward": "vibes"}, "reward", "non_empty, exact_match, contains"),
        ("BestOfN", {"reward": "exact_match"}, "target", "needs target or target_input"),
        ("Refine", {"field": "nope"}, "field", "not an output field"),
        ("Refine", {"reward": "contains", "target_input": "x"}, "target_input", "not an input"),
        ("BestOfN", {"inner": "ReAct"}, "inner", "Predict, ChainOfThought"),
        ("MultiChainComparison", {"M": 11}, "M", "at most 10"),
        ("Parallel", {"max_concurrency": True}, "max_concurrency", "must be a number"),
    ],
)
def test_config_errors_name_the_key(
    module_type: str, config: dict[str, Any], key: str, problem: str
) -> None:
    with pytest.raises(registry.ConfigError, match=problem) as caught:
        make_record(module_type, config=config)
    err = caught.value.to_bridge()
    assert caught.value.key == key
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == Reason.INVALID_MODULE_CONFIG
    assert err.violations[0].field == f"config.{key}"


def test_config_is_normalized_with_defaults() -> None:
    record = make_record("BestOfN", config={"N": 2.0, "threshold": 1})
    assert record.spec["config"] == {
        "N": 2,
        "threshold": 1.0,
        "reward": "non_empty",
        "inner": "Predict",
    }
    assert make_record("ReAct").spec["config"] == {"tools": [], "max_iters": 10}


async def test_predict(executor: InProcessExecutor) -> None:
    outputs = await run(executor, make_record("Predict"), {"question": "What is DSPy?"})
    assert set(outputs) == {"answer"}
    assert isinstance(outputs["answer"], str)


async def test_chain_of_thought_returns_reasoning(executor: InProcessExecutor) -> None:
    record = make_record("ChainOfThought", "question -> answer, confidence: float")
    outputs = await run(executor, record, {"question": "Why is the sky blue?"})
    assert list(outputs) == ["reasoning", "answer", "confidence"]
    assert isinstance(outputs["confidence"], float)


async def test_react_uses_server_tools(executor: InProcessExecutor) -> None:
    record = make_record(
        "ReAct",
        config={
            "tools": ["calculator", {"name": "lookup", "table": {"pi": "3.14"}}],
            "max_iters": 2,
        },
    )
    program = build_program(record)
    assert set(program.module.tools) == {"calculator", "lookup", "finish"}
    outputs = await run(executor, record, {"question": "What is 6 * 7?"})
    assert {"trajectory", "reasoning", "answer"} <= set(outputs)
    assert isinstance(outputs["trajectory"], dict)
    assert "tool_name_0" in outputs["trajectory"]


def test_program_of_thought_needs_an_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry, "interpreter_problem", lambda: "Deno was not found")
    with pytest.raises(BridgeError) as caught:
        build_program(make_record("ProgramOfThought"))
    assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
    assert caught.value.reason == Reason.INTERPRETER_UNAVAILABLE
    assert "Deno" in caught.value.message


class _FakeInterpreter:
    """Stands in for Deno/Pyodide: every program 'prints' 42."""

    def __init__(self) -> None:
        self.tools: dict[str, Any] = {}

    def start(self) -> None: ...

    def execute(self, code: str, variables: Any = None) -> Any:
        return 42

    def shutdown(self) -> None: ...


async def test_program_of_thought_runs_with_an_interpreter(
    executor: InProcessExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(registry, "interpreter_problem", lambda: None)
    with dspy.context(interpreter_factory=_FakeInterpreter):
        outputs = await run(executor, make_record("ProgramOfThought"), {"question": "6*7?"})
    assert {"reasoning", "answer"} <= set(outputs)


@pytest.mark.parametrize("module_type", ["BestOfN", "Refine"])
async def test_reward_loops(executor: InProcessExecutor, module_type: str) -> None:
    record = make_record(module_type, config={"N": 2, "inner": "ChainOfThought"})
    program = build_program(record)
    assert program.is_async is (module_type == "BestOfN")
    outputs = await run(executor, record, {"question": "Name a colour"})
    assert {"reasoning", "answer"} <= set(outputs)


def test_rewards() -> None:
    pred = dspy.Prediction(answer="  Paris ", note="")
    assert Reward("non_empty", ["answer", "note"])({}, pred) == 0.5
    assert Reward("non_empty", ["answer"], field="answer")({}, pred) == 1.0
    assert Reward("exact_match", ["answer"], target="paris")({}, pred) == 1.0
    assert Reward("exact_match", ["answer"], target="Lyon")({}, pred) == 0.0
    assert Reward("contains", ["answer"], target="ari")({}, pred) == 1.0
    assert Reward("contains", ["answer"], target_input="city")({"city": "PARIS"}, pred) == 1.0
    assert Reward("contains", ["answer"], target="")({}, pred) == 0.0


async def test_best_of_n_stops_at_threshold_and_counts_failures(
    executor: InProcessExecutor,
) -> None:
    record = make_record(
        "BestOfN", config={"N": 3, "reward": "contains", "target": "zzz-never", "fail_count": 0}
    )
    result = await executor.execute(
        ExecutionRequest(record, OFFLINE, {"question": "q"}, include_trace=True)
    )
    assert result.usage.lm_calls == 3  # no attempt reached the threshold: all N ran
    record = make_record("BestOfN", config={"N": 3})
    result = await executor.execute(ExecutionRequest(record, OFFLINE, {"question": "q"}))
    assert result.usage.lm_calls == 1  # non_empty is met by the first attempt


async def test_multi_chain_comparison(executor: InProcessExecutor) -> None:
    outputs = await run(
        executor, make_record("MultiChainComparison", config={"M": 2}), {"question": "2+2?"}
    )
    assert list(outputs)[:1] == ["rationale"]
    assert "answer" in outputs


async def test_parallel_runs_each_item(executor: InProcessExecutor) -> None:
    record = make_record("Parallel", "question -> answer, score: int", {"inner": "ChainOfThought"})
    items = [{"question": f"question {i}"} for i in range(5)]
    coerced = coerce_execution_inputs(record, {"items": items})
    result = await executor.execute(ExecutionRequest(record, OFFLINE, coerced))
    assert result.usage.lm_calls == 5
    assert len(result.outputs["items"]) == 5
    for item in result.outputs["items"]:
        assert set(item) == {"reasoning", "answer", "score"}
        assert isinstance(item["score"], int)


@pytest.mark.parametrize(
    ("inputs", "field"),
    [
        ({"question": "q"}, "inputs.question"),
        ({}, "inputs.items"),
        ({"items": [{"question": "ok"}, {"question": 3}]}, "inputs.items[1].question"),
        ({"items": ["q"]}, "inputs.items[0]"),
    ],
)
def test_parallel_inputs_are_checked(inputs: dict[str, Any], field: str) -> None:
    with pytest.raises(BridgeError) as caught:
        coerce_execution_inputs(make_record("Parallel"), inputs)
    assert caught.value.reason == Reason.INVALID_INPUT
    assert caught.value.violations[0].field == field


class _Echo(dspy.Module):
    def __init__(self, signature: type[dspy.Signature], prefix: str) -> None:
        super().__init__()
        self.predict = dspy.Predict(signature)
        self.prefix = prefix

    async def aforward(self, **kwargs: Any) -> dspy.Prediction:
        pred = await self.predict.acall(**kwargs)
        return dspy.Prediction(answer=self.prefix + pred.answer)


def _echo_factory(signature: type[dspy.Signature], config: dict[str, Any]) -> dspy.Module:
    return _Echo(signature, config.get("prefix", ""))


def _validate(config: dict[str, Any]) -> None:
    if not isinstance(config.get("prefix", ""), str):
        raise ValueError("prefix must be a string")


_echo_factory.validate_config = _validate  # type: ignore[attr-defined]


class _EntryPoint:
    def __init__(self, name: str, obj: Any) -> None:
        self.name, self._obj = name, obj

    def load(self) -> Any:
        return self._obj


async def test_entry_point_module_types(
    executor: InProcessExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        registry.importlib.metadata,
        "entry_points",
        lambda group: [_EntryPoint("EchoPrefix", _echo_factory), _EntryPoint("Predict", object)],
    )
    registry._entry_point_types.cache_clear()
    try:
        assert "EchoPrefix" in registry.module_types()
        assert registry.module_types().count("Predict") == 1  # a plugin cannot shadow a built-in
        with pytest.raises(registry.ConfigError, match="prefix must be a string"):
            make_record("EchoPrefix", config={"prefix": 3})
        record = make_record("EchoPrefix", config={"prefix": ">> "})
        outputs = await run(executor, record, {"question": "hello"})
        assert outputs["answer"].startswith(">> ")
        assert "prefix" in registry.get_type("EchoPrefix").validate_config(
            {"prefix": "x"}, ("question",), ("answer",), registry.BuildContext()
        )
    finally:
        registry._entry_point_types.cache_clear()
