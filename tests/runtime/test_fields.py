"""Inputs checked against the signature without guessing; outputs made plain for `Value`s."""

from __future__ import annotations

import enum
import json
from typing import Any

import dspy
import grpc
import numpy as np
import pydantic
import pytest

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import Tensor, encode_value
from dspy_bridge.runtime.fields import coerce_inputs, outputs_to_values
from dspy_bridge.runtime.lm.offline import OfflineLM
from dspy_bridge.runtime.signatures import parse_signature, to_dspy_signature


def _one(type_text: str, value: Any) -> Any:
    spec = parse_signature(f"x: {type_text} -> y")
    return coerce_inputs(spec, {"x": value})["x"]


def _refused(spec_text: str, inputs: dict[str, Any]) -> BridgeError:
    with pytest.raises(BridgeError) as info:
        coerce_inputs(parse_signature(spec_text), inputs)
    err = info.value
    assert (err.code, err.reason) == (grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_INPUT)
    return err


# -- accepted --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_text", "value", "expected"),
    [
        ("str", "hello", "hello"),
        ("int", 3, 3),
        ("float", 2.5, 2.5),
        ("float", 2, 2.0),  # an int where a float is expected
        ("bool", False, False),
        ("list[str]", ["a", "b"], ["a", "b"]),
        ("list[int]", [1.0, 2.0], [1, 2]),  # JSON numbers arrive as doubles
        ("list[float]", [1, 2.5], [1.0, 2.5]),
        ("dict[str, int]", {"a": 1}, {"a": 1}),
        ("dict[int, str]", {"1": "one"}, {1: "one"}),  # JSON object keys are strings
        ("tuple[int, str]", [1, "a"], (1, "a")),
        ("tuple[float, ...]", [1, 2], (1.0, 2.0)),
        ("Literal['a', 'b']", "b", "b"),
        ("Literal[1, 2]", 2, 2),
        ("Optional[int]", None, None),
        ("int | None", 4, 4),
        ("Union[int, str]", "x", "x"),
        ("Any", {"free": ["form", 1]}, {"free": ["form", 1]}),
        ("list[dict[str, list[float]]]", [{"v": [1, 2.5]}], [{"v": [1.0, 2.5]}]),
    ],
)
def test_values_of_the_right_type_are_accepted(type_text: str, value: Any, expected: Any) -> None:
    result = _one(type_text, value)
    assert result == expected
    assert type(result) is type(expected)


def test_a_tensor_is_accepted_for_a_list() -> None:
    tensor = Tensor.from_numpy(np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32))
    assert _one("list[list[float]]", tensor) == [[1.0, 2.0], [3.0, 4.0]]


def test_optional_inputs_may_be_left_out() -> None:
    spec = parse_signature("question, hint: Optional[str] -> answer")
    assert coerce_inputs(spec, {"question": "q"}) == {"question": "q", "hint": None}


def test_the_result_is_in_signature_order() -> None:
    spec = parse_signature("a, b: int, c: list[str] -> out")
    coerced = coerce_inputs(spec, {"c": ["x"], "a": "y", "b": 1})
    assert list(coerced) == ["a", "b", "c"]


# -- refused ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_text", "value", "problem"),
    [
        ("list[str]", "abc", "expected list[str], got str"),
        ("int", "3", "expected int, got str"),
        ("int", 2.5, "expected int, got float"),
        ("int", True, "expected int, got bool"),
        ("float", "1.5", "expected float, got str"),
        ("bool", 1, "expected bool, got int"),
        ("str", 1, "expected str, got int"),
        ("str", ["a"], "expected str, got list"),
        ("Literal['a', 'b']", "c", "expected Literal['a', 'b'], got str"),
        ("list[str]", ["a", 1], "expected list[str], got list (at [1]: "),
        ("dict[str, int]", {"a": "1"}, "expected dict[str, int], got dict (at .a: "),
        ("tuple[int, str]", [1], "expected tuple[int, str], got list"),
        ("int", None, "expected int, got null"),
        ("str", Tensor("float32", (1,), b"\0\0\0\0"), "expected str, got tensor"),
        ("int", Tensor("float32", (1,), b"\0\0\0\0"), "expected int, got tensor"),
    ],
)
def test_values_of_the_wrong_type_are_refused(type_text: str, value: Any, problem: str) -> None:
    err = _refused(f"x: {type_text} -> y", {"x": value})
    assert err.message.startswith(f"inputs.x: {problem}")
    assert [v.field for v in err.violations] == ["inputs.x"]


def test_a_missing_input_is_refused() -> None:
    err = _refused("context: list[str], question -> answer", {"question": "q"})
    assert err.message == "inputs.context: missing input field 'context' (list[str])"
    assert [v.field for v in err.violations] == ["inputs.context"]


def test_an_unknown_input_is_refused() -> None:
    err = _refused("question -> answer", {"question": "q", "qestion": "typo"})
    assert "unknown input field 'qestion'" in err.message
    assert "the signature's inputs are question" in err.message
    assert [v.field for v in err.violations] == ["inputs.qestion"]


def test_an_output_given_as_input_is_refused() -> None:
    err = _refused("question -> answer", {"question": "q", "answer": "a"})
    assert "unknown input field 'answer': it is an output field" in err.message


# -- outputs ---------------------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"


class Point(pydantic.BaseModel):
    x: int
    y: tuple[int, int]


def test_outputs_become_plain_values() -> None:
    spec = parse_signature("q -> answer, extra: Optional[int]")
    prediction = dspy.Prediction(
        reasoning="because",
        answer="42",
        point=Point(x=1, y=(2, 3)),
        pair=(1, "a"),
        color=Color.RED,
        tags={"b", "a"},
        by_id={1: "one"},
        score=np.float32(0.5),
        count=np.int64(3),
    )
    values = outputs_to_values(spec, prediction)

    assert values == {
        "reasoning": "because",
        "answer": "42",
        "point": {"x": 1, "y": [2, 3]},
        "pair": [1, "a"],
        "color": "red",
        "tags": ["a", "b"],
        "by_id": {"1": "one"},
        "score": 0.5,
        "count": 3,
        "extra": None,  # declared, not given: still reported
    }
    assert list(values)[:2] == ["reasoning", "answer"]
    json.dumps(values)
    for value in values.values():
        encode_value(value)


@pytest.mark.parametrize("module", [dspy.Predict, dspy.ChainOfThought])
def test_a_round_trip_through_a_module(module: type[dspy.Module]) -> None:
    spec = parse_signature(
        "docs: list[str], k: int -> answer, pair: tuple[int, str], scores: dict[str, float]"
    )
    program = module(to_dspy_signature(spec))
    with dspy.context(lm=OfflineLM()):
        prediction = program(**coerce_inputs(spec, {"docs": ["a", "b"], "k": 2.0}))
    values = outputs_to_values(spec, prediction)

    expected = ["answer", "pair", "scores"]
    if module is dspy.ChainOfThought:
        expected.insert(0, "reasoning")
    assert list(values) == expected
    assert isinstance(values["pair"], list)
    assert json.loads(json.dumps(values)) == values
