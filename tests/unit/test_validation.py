"""The variable rules: names, constraints per type, value coercion per type x constraint, size.

Each rejection is checked for its status code, stable reason, field violation path and a
message that says what was wrong, because hosts switch on the first three and show the last.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import Constraints, Tensor
from dspy_bridge.model import VariableType as T
from dspy_bridge.model.validation import (
    APPLICABLE_CONSTRAINTS,
    MAX_JSON_DEPTH,
    check_value_size,
    coerce_value,
    validate_constraints,
    validate_name,
)

C = Constraints
NONE = Constraints()


@contextmanager
def rejected(
    reason: str,
    field: str,
    *,
    code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT,
    says: str = "",
    constraint: str | None = None,
) -> Iterator[pytest.ExceptionInfo[BridgeError]]:
    """Expect a BridgeError with this reason and exactly one violation at `field`."""
    with pytest.raises(BridgeError) as info:
        yield info
    err = info.value
    assert err.code == code, err
    assert err.reason == reason, err
    assert [v.field for v in err.violations] == [field], err
    assert err.violations[0].description == err.message
    assert says in err.message, f"{says!r} not in {err.message!r}"
    if constraint is not None:
        assert err.metadata.get("constraint") == constraint, err.metadata


def f32(*values: float) -> Tensor:
    return Tensor.from_numpy(np.array(values, dtype=np.float32))


# --------------------------------------------------------------------------------------------
# Names


@pytest.mark.parametrize(
    "name", ["a", "Z", "temperature", "A1_b.c-d", "x" * 128, "model.v2", "a--b__c..d"]
)
def test_valid_names(name: str) -> None:
    validate_name(name)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("", "is empty"),
        ("x" * 129, "129 characters"),
        ("1abc", "must start with a letter"),
        ("_abc", "must start with a letter"),
        (".abc", "must start with a letter"),
        ("-abc", "must start with a letter"),
        ("Ωmega", "must start with a letter"),
        ("a b", "' ' at position 1"),
        ("ab/c", "'/' at position 2"),
        ("caf\u00e9", "'é' at position 3"),
        ("a\n", "position 1"),
    ],
)
def test_invalid_names(name: str, says: str) -> None:
    with rejected(Reason.INVALID_REQUEST, "name", says=says):
        validate_name(name)


def test_name_field_path_is_the_callers() -> None:
    with rejected(Reason.INVALID_REQUEST, "writes[2].name", says="writes[2].name"):
        validate_name("9", field="writes[2].name")


def test_name_that_is_not_a_string() -> None:
    with rejected(Reason.INVALID_REQUEST, "name", says="must be a string"):
        validate_name(42)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Constraints: accepted


@pytest.mark.parametrize(
    ("type_", "c"),
    [
        (T.FLOAT, NONE),
        (T.FLOAT, C(min=0.0, max=1.0, step=0.1)),
        (T.FLOAT, C(min=-1.5)),
        (T.FLOAT, C(max=2.0)),
        (T.FLOAT, C(min=0.5, max=0.5)),
        (T.FLOAT, C(step=0.25)),
        (T.INTEGER, NONE),
        (T.INTEGER, C(min=1.0, max=10.0, step=3.0)),
        (T.INTEGER, C(min=-5.0)),
        (T.STRING, NONE),
        (T.STRING, C(pattern=r"[a-z]+\d*", min_length=1, max_length=20)),
        (T.STRING, C(choices=("a", "bb"), max_length=2)),
        (T.STRING, C(min_length=0, max_length=0)),
        (T.BOOLEAN, NONE),
        (T.CHOICE, C(choices=("low", "high"))),
        (T.MODULE, NONE),
        (T.MODULE, C(choices=("Predict", "ChainOfThought"))),
        (T.EMBEDDING, NONE),
        (T.EMBEDDING, C(dims=(384,))),
        (T.TENSOR, NONE),
        (T.TENSOR, C(dims=(0, 3), dtype="float32")),
        (T.TENSOR, C(dims=(2, 2, 2))),
        (T.TENSOR, C(dtype="bool")),
        (T.JSON, NONE),
        (T.JSON, C(max_length=1000)),
        (T.JSON, C(max_length=0)),
    ],
)
def test_constraints_accepted(type_: T, c: Constraints) -> None:
    validate_constraints(type_, c)


# --------------------------------------------------------------------------------------------
# Constraints: rejected because they are inconsistent


@pytest.mark.parametrize(
    ("type_", "c", "path", "says"),
    [
        (T.FLOAT, C(min=2.0, max=1.0), "min", "min 2.0 is above max 1.0"),
        (T.INTEGER, C(min=5.0, max=4.0), "min", "above max"),
        (T.FLOAT, C(step=0.0), "step", "greater than 0"),
        (T.FLOAT, C(step=-0.1), "step", "greater than 0"),
        (T.INTEGER, C(step=-1.0), "step", "greater than 0"),
        (T.FLOAT, C(min=math.nan), "min", "finite"),
        (T.FLOAT, C(max=math.inf), "max", "finite"),
        (T.FLOAT, C(step=math.inf), "step", "finite"),
        (T.INTEGER, C(min=0.5), "min", "whole"),
        (T.INTEGER, C(max=9.5), "max", "whole"),
        (T.INTEGER, C(step=0.5), "step", "whole"),
        (T.STRING, C(pattern="("), "pattern", "not a valid regular expression"),
        (T.STRING, C(pattern="[a-"), "pattern", "not a valid regular expression"),
        (T.STRING, C(min_length=-1), "min_length", "0 or more"),
        (T.STRING, C(max_length=-1), "max_length", "0 or more"),
        (T.STRING, C(min_length=5, max_length=4), "min_length", "above max_length 4"),
        (T.STRING, C(choices=("a", "a")), "choices[1]", "listed twice"),
        (T.STRING, C(choices=("a", "")), "choices[1]", "must not be empty"),
        (T.STRING, C(choices=("ab", "c"), pattern="[a-z]"), "choices[0]", "never be stored"),
        (T.STRING, C(choices=("abc",), max_length=2), "choices[0]", "above max_length"),
        (T.STRING, C(choices=("a",), min_length=2), "choices[0]", "below min_length"),
        (T.CHOICE, NONE, "choices", "non-empty list of choices"),
        (T.CHOICE, C(choices=("x", "y", "x")), "choices[2]", "listed twice"),
        (T.CHOICE, C(choices=("",)), "choices[0]", "must not be empty"),
        (T.MODULE, C(choices=("Predict", "not a module")), "choices[1]", "module type name"),
        (T.MODULE, C(choices=("Predict", "Predict")), "choices[1]", "listed twice"),
        (T.EMBEDDING, C(dims=(3, 4)), "dims", "exactly one"),
        (T.EMBEDDING, C(dims=(0,)), "dims[0]", "greater than 0"),
        (T.EMBEDDING, C(dims=(-3,)), "dims[0]", "greater than 0"),
        (T.TENSOR, C(dims=(2, -1)), "dims[1]", "0 (any) or more"),
        (T.TENSOR, C(dtype="complex64"), "dtype", "unknown dtype 'complex64'"),
        (T.JSON, C(max_length=-5), "max_length", "0 or more"),
    ],
)
def test_inconsistent_constraints(type_: T, c: Constraints, path: str, says: str) -> None:
    with rejected(Reason.INVALID_CONSTRAINTS, f"constraints.{path}", says=says):
        validate_constraints(type_, c)


# --------------------------------------------------------------------------------------------
# Constraints: rejected because they do not apply to the type (never silently ignored)

ONE_OF_EACH: dict[str, Constraints] = {
    "min": C(min=0.0),
    "max": C(max=1.0),
    "step": C(step=1.0),
    "choices": C(choices=("a",)),
    "pattern": C(pattern="a"),
    "min_length": C(min_length=1),
    "max_length": C(max_length=1),
    "dims": C(dims=(1,)),
    "dtype": C(dtype="float32"),
}


def test_every_constraint_field_is_covered() -> None:
    assert set(ONE_OF_EACH) == set(Constraints.__dataclass_fields__)


@pytest.mark.parametrize("type_", list(T))
@pytest.mark.parametrize("name", list(ONE_OF_EACH))
def test_constraint_that_does_not_apply_is_rejected(type_: T, name: str) -> None:
    c = ONE_OF_EACH[name]
    if name in APPLICABLE_CONSTRAINTS[type_]:
        validate_constraints(type_, c)
        return
    says = f"{name!r} does not apply to {type_.name}"
    with rejected(Reason.INVALID_CONSTRAINTS, f"constraints.{name}", says=says):
        validate_constraints(type_, c)


def test_applicability_matches_the_proto_comments() -> None:
    expected = {
        T.FLOAT: {"min", "max", "step"},
        T.INTEGER: {"min", "max", "step"},
        T.STRING: {"choices", "pattern", "min_length", "max_length"},
        T.BOOLEAN: set(),
        T.CHOICE: {"choices"},
        T.MODULE: {"choices"},
        T.EMBEDDING: {"dims"},
        T.TENSOR: {"dims", "dtype"},
        T.JSON: {"max_length"},
    }
    assert expected == APPLICABLE_CONSTRAINTS


# --------------------------------------------------------------------------------------------
# Values: accepted, with their canonical form


@pytest.mark.parametrize(
    ("type_", "c", "value", "canonical"),
    [
        (T.FLOAT, NONE, 0.7, 0.7),
        (T.FLOAT, NONE, 3, 3.0),
        (T.FLOAT, NONE, -1e300, -1e300),
        (T.FLOAT, C(min=0.0, max=1.0), 0.0, 0.0),
        (T.FLOAT, C(min=0.0, max=1.0), 1.0, 1.0),
        (T.FLOAT, C(min=0.0, max=1.0), 1, 1.0),
        (T.FLOAT, C(min=0.0, max=1.0, step=0.1), 0.3, 0.3),
        (T.FLOAT, C(min=0.0, max=1.0, step=0.1), 0.7000000000000001, 0.7000000000000001),
        (T.FLOAT, C(min=0.05, step=0.1), 0.95, 0.95),
        (T.FLOAT, C(step=0.25), -0.75, -0.75),
        (T.FLOAT, C(step=0.5), 2, 2.0),
        (T.INTEGER, NONE, 42, 42),
        (T.INTEGER, NONE, 2**63 - 1, 2**63 - 1),
        (T.INTEGER, NONE, -(2**63), -(2**63)),
        (T.INTEGER, C(min=1.0, max=10.0), 1, 1),
        (T.INTEGER, C(min=1.0, max=10.0), 10, 10),
        (T.INTEGER, C(min=1.0, step=3.0), 7, 7),
        (T.INTEGER, C(step=5.0), -15, -15),
        (T.STRING, NONE, "", ""),
        (T.STRING, NONE, "any text ✓", "any text ✓"),
        (T.STRING, C(pattern=r"[a-z]+"), "abc", "abc"),
        (T.STRING, C(pattern=r"\d{3}"), "123", "123"),
        (T.STRING, C(min_length=2, max_length=3), "ab", "ab"),
        (T.STRING, C(min_length=2, max_length=3), "abc", "abc"),
        (T.STRING, C(max_length=1), "é", "é"),
        (T.STRING, C(choices=("a", "b")), "b", "b"),
        (T.BOOLEAN, NONE, True, True),
        (T.BOOLEAN, NONE, False, False),
        (T.CHOICE, C(choices=("low", "high")), "high", "high"),
        (T.MODULE, NONE, "ChainOfThought", "ChainOfThought"),
        (T.MODULE, NONE, "dspy.Predict", "dspy.Predict"),
        (T.MODULE, C(choices=("Predict", "ReAct")), "ReAct", "ReAct"),
        (T.EMBEDDING, NONE, [0.1, 2, -3.5], [0.1, 2.0, -3.5]),
        (T.EMBEDDING, NONE, (1, 2), [1.0, 2.0]),
        (T.EMBEDDING, C(dims=(3,)), [0.0, 0.0, 1.0], [0.0, 0.0, 1.0]),
        (T.EMBEDDING, C(dims=(2,)), f32(0.5, -0.25), [0.5, -0.25]),
        (
            T.EMBEDDING,
            NONE,
            Tensor.from_numpy(np.array([1.5], dtype=np.float16)),
            [1.5],
        ),
        (T.JSON, NONE, None, None),
        (T.JSON, NONE, 5, 5),
        (T.JSON, NONE, "text", "text"),
        (
            T.JSON,
            NONE,
            {"a": [1, 2.5, None, True, {"b": "c"}]},
            {"a": [1, 2.5, None, True, {"b": "c"}]},
        ),
        (T.JSON, NONE, (1, (2, 3)), [1, [2, 3]]),
        (T.JSON, NONE, [], []),
        (T.JSON, C(max_length=7), {"a": 1}, {"a": 1}),
        (T.JSON, C(max_length=4), "é", "é"),
    ],
)
def test_values_accepted(type_: T, c: Constraints, value: Any, canonical: Any) -> None:
    validate_constraints(type_, c)
    out = coerce_value(type_, c, value)
    assert out == canonical
    assert type(out) is type(canonical)
    if isinstance(out, list):
        assert [type(x) for x in out] == [type(x) for x in canonical]


def test_tensor_values_accepted() -> None:
    t = Tensor.from_numpy(np.arange(6, dtype=np.int32).reshape(2, 3))
    assert coerce_value(T.TENSOR, NONE, t) == t
    assert coerce_value(T.TENSOR, C(dims=(0, 3), dtype="int32"), t) == t
    assert coerce_value(T.TENSOR, C(dims=(2, 3)), t) == t
    scalar = Tensor.from_numpy(np.array(3.5, dtype=np.float64))
    assert coerce_value(T.TENSOR, NONE, scalar) == scalar
    empty = Tensor.from_numpy(np.zeros((0, 4), dtype=np.uint8))
    assert coerce_value(T.TENSOR, C(dims=(0, 4)), empty) == empty


def test_tensor_is_canonicalized() -> None:
    loose = Tensor("int8", [2], bytearray(b"\x01\x02"))  # type: ignore[arg-type]
    out = coerce_value(T.TENSOR, NONE, loose)
    assert out == Tensor("int8", (2,), b"\x01\x02")
    assert type(out.data) is bytes


@pytest.mark.parametrize(
    "dtype", ["float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool"]
)
def test_tensor_every_dtype(dtype: str) -> None:
    t = Tensor.from_numpy(np.zeros((2, 2), dtype=dtype))
    assert coerce_value(T.TENSOR, C(dtype=dtype, dims=(2, 0)), t) == t


def test_json_value_is_a_copy() -> None:
    original: dict[str, Any] = {"a": [1, 2]}
    out = coerce_value(T.JSON, NONE, original)
    original["a"].append(3)
    assert out == {"a": [1, 2]}


# --------------------------------------------------------------------------------------------
# Values: wrong kind for the type -> VARIABLE_TYPE_MISMATCH

WRONG_KIND: list[tuple[T, Constraints, Any]] = [
    (T.FLOAT, NONE, "0.5"),
    (T.FLOAT, NONE, True),
    (T.FLOAT, NONE, None),
    (T.FLOAT, NONE, [0.5]),
    (T.INTEGER, NONE, 1.0),
    (T.INTEGER, NONE, 1.5),
    (T.INTEGER, NONE, True),
    (T.INTEGER, NONE, "1"),
    (T.STRING, NONE, 1),
    (T.STRING, NONE, None),
    (T.STRING, NONE, b"bytes"),
    (T.BOOLEAN, NONE, 1),
    (T.BOOLEAN, NONE, "true"),
    (T.CHOICE, C(choices=("a",)), 1),
    (T.MODULE, NONE, 3),
    (T.EMBEDDING, NONE, "0.1,0.2"),
    (T.EMBEDDING, NONE, [0.1, "0.2"]),
    (T.EMBEDDING, NONE, [0.1, True]),
    (T.EMBEDDING, NONE, [[0.1]]),
    (T.EMBEDDING, NONE, Tensor.from_numpy(np.zeros(3, dtype=np.int32))),
    (T.EMBEDDING, NONE, Tensor.from_numpy(np.zeros((1, 3), dtype=np.float32))),
    (T.TENSOR, NONE, [1.0, 2.0]),
    (T.TENSOR, NONE, Tensor("complex64", (1,), b"\0" * 8)),
    (T.JSON, NONE, b"bytes"),
    (T.JSON, NONE, {1: "a"}),
    (T.JSON, NONE, {"a": {2, 3}}),
    (T.JSON, NONE, [math.nan]),
    (T.JSON, NONE, {"x": math.inf}),
    (T.JSON, NONE, 2**53 + 1),
    (T.JSON, NONE, [f32(1.0)]),
]


@pytest.mark.parametrize(("type_", "c", "value"), WRONG_KIND)
def test_wrong_kind(type_: T, c: Constraints, value: Any) -> None:
    with rejected(Reason.VARIABLE_TYPE_MISMATCH, "value", says=type_.name):
        coerce_value(type_, c, value)


def test_type_mismatch_message_names_what_was_given() -> None:
    with rejected(Reason.VARIABLE_TYPE_MISMATCH, "value", says="got string '0.5'") as info:
        coerce_value(T.FLOAT, NONE, "0.5")
    assert info.value.metadata == {"expected_type": "FLOAT", "actual_type": "string"}
    with rejected(Reason.VARIABLE_TYPE_MISMATCH, "value", says="element 1 is string"):
        coerce_value(T.EMBEDDING, NONE, [0.1, "x"])
    with rejected(Reason.VARIABLE_TYPE_MISMATCH, "value", says="at ['a'][1]"):
        coerce_value(T.JSON, NONE, {"a": [1, b"x"]})


def test_json_too_deep() -> None:
    deep: Any = 1
    for _ in range(MAX_JSON_DEPTH):
        deep = [deep]
    assert coerce_value(T.JSON, NONE, deep) == deep
    with rejected(Reason.VARIABLE_TYPE_MISMATCH, "value", says="deeper than"):
        coerce_value(T.JSON, NONE, [deep])


# --------------------------------------------------------------------------------------------
# Values: constraint broken -> VARIABLE_CONSTRAINT_VIOLATION, message says what and what is allowed


@pytest.mark.parametrize(
    ("type_", "c", "value", "constraint", "says"),
    [
        (T.FLOAT, NONE, math.nan, "finite", "nan is not allowed"),
        (T.FLOAT, NONE, math.inf, "finite", "inf is not allowed"),
        (T.FLOAT, NONE, -math.inf, "finite", "-inf"),
        (T.FLOAT, NONE, 10**400, "finite", "too large"),
        (T.FLOAT, C(min=0.0, max=0.8), 0.9, "max", "0.9 is above max 0.8"),
        (T.FLOAT, C(min=0.0, max=0.8), -0.1, "min", "-0.1 is below min 0.0"),
        (T.FLOAT, C(min=0.0, max=0.8), 1, "max", "1.0 is above max 0.8"),
        (T.FLOAT, C(min=0.0, step=0.1), 0.35, "step", "nearest allowed: 0.3 and 0.4"),
        (T.FLOAT, C(min=0.05, step=0.1), 0.1, "step", "min 0.05 + k * step 0.1"),
        (T.FLOAT, C(step=0.25), 0.3, "step", "a multiple of step 0.25"),
        (T.FLOAT, C(step=1.0), 1.0 + 1e-6, "step", "not on the step grid"),
        (T.INTEGER, NONE, 2**63, "int64", "does not fit in 64 bits"),
        (T.INTEGER, NONE, -(2**63) - 1, "int64", "does not fit in 64 bits"),
        (T.INTEGER, C(min=1.0, max=10.0), 11, "max", "11 is above max 10"),
        (T.INTEGER, C(min=1.0, max=10.0), 0, "min", "0 is below min 1"),
        (T.INTEGER, C(min=1.0, step=3.0), 5, "step", "nearest allowed: 4 and 7"),
        (T.INTEGER, C(step=5.0), -3, "step", "nearest allowed: -5 and 0"),
        (T.STRING, C(pattern=r"[a-z]+"), "abc1", "pattern", "'abc1' does not match pattern"),
        (T.STRING, C(pattern=r"[a-z]+"), "", "pattern", "does not match pattern '[a-z]+'"),
        (T.STRING, C(pattern=r"\d"), "12", "pattern", "does not match"),  # fullmatch, not search
        (T.STRING, C(min_length=3), "ab", "min_length", "2 characters long, below min_length 3"),
        (T.STRING, C(max_length=3), "abcd", "max_length", "4 characters long, above max_length 3"),
        (
            T.STRING,
            C(choices=("a", "b")),
            "c",
            "choices",
            "'c' is not one of the choices: 'a', 'b'",
        ),
        (T.CHOICE, C(choices=("low", "high")), "mid", "choices", "not one of the choices"),
        (T.CHOICE, C(choices=("low", "high")), "LOW", "choices", "'low', 'high'"),
        (T.MODULE, NONE, "", "module_type", "is not a module type name"),
        (T.MODULE, NONE, "Chain Of Thought", "module_type", "is not a module type name"),
        (T.MODULE, NONE, "1Predict", "module_type", "is not a module type name"),
        (T.MODULE, C(choices=("Predict",)), "ReAct", "choices", "'ReAct' is not one of"),
        (T.EMBEDDING, C(dims=(3,)), [0.1, 0.2], "dims", "2 elements, dims requires 3"),
        (T.EMBEDDING, C(dims=(1,)), f32(1.0, 2.0), "dims", "2 elements, dims requires 1"),
        (T.EMBEDDING, NONE, [0.1, math.nan], "finite", "element 1 is nan"),
        (T.EMBEDDING, NONE, [math.inf], "finite", "element 0 is inf"),
        (T.EMBEDDING, NONE, [10**400], "finite", "too large"),
        (T.EMBEDDING, NONE, Tensor("float32", (3,), b"\0" * 8), "shape", "8 bytes"),
        (T.JSON, C(max_length=6), {"a": 10}, "max_length", "8 bytes, above max_length 6"),
        (T.JSON, C(max_length=2), "é", "max_length", "4 bytes"),  # bytes, not characters
    ],
)
def test_constraint_violations(
    type_: T, c: Constraints, value: Any, constraint: str, says: str
) -> None:
    validate_constraints(type_, c)
    with rejected(Reason.VARIABLE_CONSTRAINT_VIOLATION, "value", says=says, constraint=constraint):
        coerce_value(type_, c, value)


@pytest.mark.parametrize(
    ("c", "tensor", "constraint", "says"),
    [
        (
            NONE,
            Tensor("float32", (2, 2), b"\0" * 12),
            "shape",
            "12 bytes, but shape [2, 2] of float32 needs 16",
        ),
        (NONE, Tensor("int8", (-1,), b""), "shape", "negative"),
        (C(dtype="float64"), f32(1.0), "dtype", "tensor dtype is float32, dtype requires float64"),
        (C(dims=(2,)), f32(1.0, 2.0, 3.0), "dims", "shape [3] does not fit dims [2]"),
        (C(dims=(0, 3)), f32(1.0, 2.0, 3.0), "dims", "shape [3] does not fit dims [0, 3]"),
        (
            C(dims=(0, 3)),
            Tensor.from_numpy(np.zeros((3, 2), dtype=np.float32)),
            "dims",
            "(0 = any size)",
        ),
    ],
)
def test_tensor_constraint_violations(
    c: Constraints, tensor: Tensor, constraint: str, says: str
) -> None:
    validate_constraints(T.TENSOR, c)
    with rejected(Reason.VARIABLE_CONSTRAINT_VIOLATION, "value", says=says, constraint=constraint):
        coerce_value(T.TENSOR, c, tensor)


def test_violation_metadata_names_the_limit() -> None:
    with rejected(Reason.VARIABLE_CONSTRAINT_VIOLATION, "value") as info:
        coerce_value(T.FLOAT, C(max=0.8), 0.9)
    assert info.value.metadata == {"constraint": "max", "max": "0.8"}
    with rejected(Reason.VARIABLE_CONSTRAINT_VIOLATION, "value") as info:
        coerce_value(T.STRING, C(pattern="x+"), "y")
    assert info.value.metadata == {"constraint": "pattern", "pattern": "x+"}


def test_field_path_is_the_callers() -> None:
    with rejected(Reason.VARIABLE_CONSTRAINT_VIOLATION, "writes[3].value"):
        coerce_value(T.FLOAT, C(max=1.0), 2.0, field="writes[3].value")
    with rejected(Reason.VARIABLE_TYPE_MISMATCH, "initial_value"):
        coerce_value(T.BOOLEAN, NONE, "yes", field="initial_value")


def test_long_values_are_cut_in_messages() -> None:
    with rejected(Reason.VARIABLE_CONSTRAINT_VIOLATION, "value") as info:
        coerce_value(T.STRING, C(pattern="a"), "b" * 10_000)
    assert len(info.value.message) < 200


def test_many_choices_are_summarised() -> None:
    choices = tuple(f"c{i}" for i in range(50))
    with rejected(Reason.VARIABLE_CONSTRAINT_VIOLATION, "value", says="(50 in all)") as info:
        coerce_value(T.CHOICE, C(choices=choices), "nope")
    assert "c49" not in info.value.message


# --------------------------------------------------------------------------------------------
# Step grids (properties)

STEPS = st.sampled_from([0.1, 0.01, 0.25, 0.3, 1e-3, 3.0, 0.7])
BASES = st.sampled_from([None, 0.0, -1.0, 0.3, 0.05, 100.0])


@given(step=STEPS, base=BASES, k=st.integers(-10_000, 10_000))
def test_values_on_the_grid_are_accepted(step: float, base: float | None, k: int) -> None:
    value = (base or 0.0) + k * step
    c = C(min=base, step=step)
    if base is not None and value < base:
        return
    assert coerce_value(T.FLOAT, c, value) == value


@given(step=STEPS, base=BASES, k=st.integers(0, 10_000), frac=st.floats(0.01, 0.99))
def test_values_off_the_grid_are_rejected(
    step: float, base: float | None, k: int, frac: float
) -> None:
    value = (base or 0.0) + (k + frac) * step
    with rejected(Reason.VARIABLE_CONSTRAINT_VIOLATION, "value", constraint="step"):
        coerce_value(T.FLOAT, C(min=base, step=step), value)


@given(step=st.integers(1, 1000), base=st.integers(-1000, 1000), value=st.integers(-(2**62), 2**62))
def test_integer_grid_is_exact(step: int, base: int, value: int) -> None:
    c = C(min=float(base), step=float(step))
    if value < base:
        return
    if (value - base) % step == 0:
        assert coerce_value(T.INTEGER, c, value) == value
    else:
        with rejected(Reason.VARIABLE_CONSTRAINT_VIOLATION, "value", constraint="step"):
            coerce_value(T.INTEGER, c, value)


# --------------------------------------------------------------------------------------------
# Size


def test_size_within_limit() -> None:
    check_value_size("x" * 98, 100)  # 100 bytes with the quotes
    check_value_size({"a": "b"}, 9)
    check_value_size(0.5, 32)
    check_value_size(f32(*range(10)), 200)
    check_value_size("x" * 10_000_000, 0)  # 0: unlimited


@pytest.mark.parametrize(
    ("value", "limit", "size"),
    [
        ("x" * 99, 100, 101),
        ("é" * 10, 20, 22),  # UTF-8 bytes, not characters
        ({"a": "b"}, 8, 9),
        ([1, 2, 3], 6, 7),
        (Tensor("uint8", (1000,), b"\0" * 1000), 1000, None),
        (10**40, 32, 41),
    ],
)
def test_size_above_limit(value: Any, limit: int, size: int | None) -> None:
    with rejected(
        Reason.VALUE_TOO_LARGE,
        "value",
        code=grpc.StatusCode.RESOURCE_EXHAUSTED,
        says=f"above the limit of {limit:,} bytes",
    ) as info:
        check_value_size(value, limit)
    assert info.value.metadata["limit"] == str(limit)
    measured = int(info.value.metadata["size"])
    assert measured > limit
    if size is not None:
        assert measured == size


def test_size_field_path_is_the_callers() -> None:
    with rejected(
        Reason.VALUE_TOO_LARGE, "writes[0].value", code=grpc.StatusCode.RESOURCE_EXHAUSTED
    ):
        check_value_size("x" * 100, 10, field="writes[0].value")


def test_size_of_unstorable_value_does_not_crash() -> None:
    with rejected(Reason.VALUE_TOO_LARGE, "value", code=grpc.StatusCode.RESOURCE_EXHAUSTED):
        check_value_size([b"x" * 100], 10)
