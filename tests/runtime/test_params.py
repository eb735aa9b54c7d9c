"""Bindable parameters: which exist, which variable types fit, which values they accept."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import Constraints, Variable, VariableType
from dspy_bridge.runtime import params
from dspy_bridge.runtime.params import ParamError, check_bindings, check_value

T = VariableType


def var(name: str, type_: VariableType, value: Any, choices: tuple[str, ...] = ()) -> Variable:
    return Variable(
        id=f"var_{name}",
        session_id="s",
        name=name,
        type=type_,
        value=value,
        constraints=Constraints(choices=choices),
    )


def bind(
    param: str,
    variable: Variable,
    module_type: str = "Predict",
    config: dict[str, Any] | None = None,
) -> None:
    check_bindings(
        {param: variable.name},
        {variable.name: variable},
        config or {},
        module_type=module_type,
        inputs=("question",),
        outputs=("answer",),
    )


@pytest.mark.parametrize(
    ("param", "variable"),
    [
        ("temperature", var("t", T.FLOAT, 0.3)),
        ("temperature", var("t", T.INTEGER, 1)),
        ("max_tokens", var("m", T.INTEGER, 256)),
        ("top_p", var("p", T.FLOAT, 0.9)),
        ("n", var("n", T.INTEGER, 2)),
        ("stop", var("s", T.STRING, "###")),
        ("stop", var("s", T.JSON, ["a", "b"])),
        ("model", var("m", T.STRING, "openai/gpt-4o-mini")),
        ("model", var("m", T.CHOICE, "offline", ("offline", "openai/gpt-4o"))),
        ("adapter", var("a", T.CHOICE, "json", ("chat", "json", "xml"))),
        ("adapter", var("a", T.STRING, "xml")),
        ("module_type", var("mt", T.MODULE, "ChainOfThought", ("Predict", "ChainOfThought"))),
        ("module_type", var("mt", T.CHOICE, "Predict", ("Predict", "ReAct"))),
        ("instructions", var("i", T.STRING, "Answer tersely.")),
    ],
)
def test_fixed_parameters_accept_their_types(param: str, variable: Variable) -> None:
    bind(param, variable)


@pytest.mark.parametrize(
    ("param", "variable"),
    [
        ("temperature", var("t", T.STRING, "hot")),
        ("max_tokens", var("m", T.FLOAT, 1.5)),
        ("top_p", var("p", T.INTEGER, 1)),
        ("stop", var("s", T.BOOLEAN, True)),
        ("model", var("m", T.INTEGER, 3)),
        ("adapter", var("a", T.MODULE, "Predict")),
        ("module_type", var("mt", T.STRING, "Predict")),
        ("instructions", var("i", T.JSON, {"a": 1})),
    ],
)
def test_wrong_variable_type_is_binding_type_mismatch(param: str, variable: Variable) -> None:
    with pytest.raises(BridgeError) as caught:
        bind(param, variable)
    err = caught.value
    assert err.code == grpc.StatusCode.FAILED_PRECONDITION
    assert err.reason == Reason.BINDING_TYPE_MISMATCH
    assert err.metadata["parameter"] == param
    assert err.violations[0].field == f"variable_bindings[{param}]"


@pytest.mark.parametrize(
    ("param", "variable", "problem"),
    [
        ("temperature", var("t", T.FLOAT, 3.5), "in \\[0, 2\\]"),
        ("adapter", var("a", T.STRING, "yaml"), "chat, json, xml"),
        ("adapter", var("a", T.CHOICE, "chat", ("chat", "yaml")), "choice 'yaml'"),
        ("module_type", var("mt", T.MODULE, "Parallel"), "must be one of"),
        ("module_type", var("mt", T.MODULE, "ProgramOfThought"), "Deno"),
        ("n", var("n", T.INTEGER, 0), "between 1"),
    ],
)
def test_unusable_value_or_choice_fails_at_binding(
    param: str, variable: Variable, problem: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(params.registry, "interpreter_problem", lambda: "Deno was not found")
    with pytest.raises(BridgeError, match=problem) as caught:
        bind(param, variable)
    assert caught.value.reason == Reason.BINDING_TYPE_MISMATCH


def test_unknown_parameter() -> None:
    with pytest.raises(BridgeError) as caught:
        bind("temprature", var("t", T.FLOAT, 0.2))
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert caught.value.reason == Reason.UNKNOWN_PARAMETER
    assert "temperature" in caught.value.message  # lists what exists


def test_config_keys_are_parameters_with_compatible_types() -> None:
    bind("max_iters", var("iters", T.INTEGER, 3), "ReAct")
    bind("N", var("n", T.INTEGER, 2), "BestOfN")
    bind("threshold", var("th", T.FLOAT, 0.5), "BestOfN")
    bind("inner", var("inner", T.MODULE, "ChainOfThought"), "BestOfN")
    bind("tools", var("tools", T.JSON, ["calculator"]), "ReAct")
    with pytest.raises(BridgeError) as caught:
        bind("max_iters", var("iters", T.FLOAT, 2.5), "ReAct")
    assert caught.value.reason == Reason.BINDING_TYPE_MISMATCH
    with pytest.raises(BridgeError, match="at most 50"):
        bind("max_iters", var("iters", T.INTEGER, 500), "ReAct")
    with pytest.raises(BridgeError, match="unknown tool"):
        bind("tools", var("tools", T.JSON, ["rm_rf"]), "ReAct")
    with pytest.raises(BridgeError) as unknown:
        bind("max_iters", var("iters", T.INTEGER, 3), "Predict")
    assert unknown.value.reason == Reason.UNKNOWN_PARAMETER


def test_parallel_cannot_switch_module_type() -> None:
    with pytest.raises(BridgeError, match="bind `inner` instead") as caught:
        bind("module_type", var("mt", T.MODULE, "Predict"), "Parallel")
    assert caught.value.reason == Reason.UNKNOWN_PARAMETER
    assert "module_type" not in params.parameter_names("Parallel", {})
    assert "inner" in params.parameter_names("Parallel", {})


def test_module_type_switch_must_suit_the_config() -> None:
    # A BestOfN config with reward exact_match and a target works for BestOfN and Refine...
    config = {"reward": "exact_match", "target": "yes"}
    assert check_value("module_type", "Refine", module_type="BestOfN", config=config) == "Refine"
    # ... and a switch to a type that ignores those keys is fine too.
    assert check_value("module_type", "Predict", module_type="BestOfN", config=config) == "Predict"
    # But switching a plain Predict to BestOfN with exact_match but no target cannot work.
    with pytest.raises(ParamError, match="needs target"):
        check_value(
            "module_type", "BestOfN", module_type="Predict", config={"reward": "exact_match"}
        )


@pytest.mark.parametrize(
    ("param", "value", "normalized"),
    [
        ("temperature", 1, 1.0),
        ("max_tokens", 64.0, 64),
        ("stop", ["END"], ["END"]),
        ("instructions", "", ""),
    ],
)
def test_values_are_normalized(param: str, value: Any, normalized: Any) -> None:
    got = check_value(param, value, module_type="Predict", config={})
    assert got == normalized
    assert type(got) is type(normalized)


def test_module_type_switch_must_suit_the_signature() -> None:
    with pytest.raises(ParamError, match="rationale"):
        check_value(
            "module_type",
            "MultiChainComparison",
            module_type="Predict",
            config={},
            inputs=("question",),
            outputs=("rationale",),
        )
