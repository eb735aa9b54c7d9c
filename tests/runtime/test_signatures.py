"""Signatures: both host forms, every supported type, errors that say where, no evaluation."""

from __future__ import annotations

import sys
import typing
from typing import Any, Literal

import dspy
import grpc
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.runtime.signatures import (
    RESERVED_FIELD_NAMES,
    FieldSpec,
    SignatureSpec,
    check_fields_for_module,
    parse_signature,
    resolve_type,
    to_dspy_signature,
)


def _error(**kwargs: Any) -> BridgeError:
    with pytest.raises(BridgeError) as info:
        parse_signature(**kwargs)
    err = info.value
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == Reason.INVALID_SIGNATURE
    return err


# -- the string form -----------------------------------------------------------------------


def test_text_form_parses_fields_in_order_with_types() -> None:
    spec = parse_signature("context: list[str], question -> answer, confidence: float")

    assert [(f.name, f.role, f.type) for f in spec.fields] == [
        ("context", "input", "list[str]"),
        ("question", "input", "str"),
        ("answer", "output", "str"),
        ("confidence", "output", "float"),
    ]
    assert [f.name for f in spec.inputs] == ["context", "question"]
    assert [f.name for f in spec.outputs] == ["answer", "confidence"]


def test_text_round_trips_and_leaves_out_str() -> None:
    text = "context: list[str], question -> answer, confidence: float"
    spec = parse_signature(text)
    assert spec.text() == text
    assert parse_signature(spec.text()) == spec


def test_types_are_canonicalised_so_equal_signatures_are_equal() -> None:
    a = parse_signature("q:list[ str ],x:int|None->a:dict[str,int]")
    b = parse_signature("q: list[str], x: int | None -> a: dict[str, int]")
    assert a == b
    assert hash(a) == hash(b)
    assert a.text() == "q: list[str], x: int | None -> a: dict[str, int]"


def test_explicit_str_type_is_the_same_as_none() -> None:
    assert parse_signature("q: str -> a: str") == parse_signature("q -> a")


def test_separators_inside_literals_do_not_split_fields() -> None:
    spec = parse_signature("q: Literal['a->b', 'c,d', \"e:f\"] -> a")
    assert [f.name for f in spec.fields] == ["q", "a"]
    assert resolve_type(spec.fields[0].type) == Literal["a->b", "c,d", "e:f"]
    assert parse_signature(spec.text()) == spec


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("str", str),
        ("int", int),
        ("float", float),
        ("bool", bool),
        ("Any", Any),
        ("list[str]", list[str]),
        ("List[int]", list[int]),
        ("list", list),
        ("dict[str, int]", dict[str, int]),
        ("Dict[str, Any]", dict[str, Any]),
        ("dict[int, list[str]]", dict[int, list[str]]),
        ("dict", dict),
        ("tuple[int, str]", tuple[int, str]),
        ("tuple[float, ...]", tuple[float, ...]),
        ("Tuple[int, int]", tuple[int, int]),
        ("Literal['a', 'b']", Literal["a", "b"]),
        ("Literal[1, 2, -3, True]", Literal[1, 2, -3, True]),
        ("Optional[int]", typing.Optional[int]),  # noqa: UP045 - the host's notation
        ("int | None", typing.Optional[int]),  # noqa: UP045
        ("None | str", typing.Optional[str]),  # noqa: UP045
        ("Union[int, str]", typing.Union[int, str]),  # noqa: UP007
        ("Union[int, str, None]", typing.Union[int, str, None]),  # noqa: UP007
        ("list[dict[str, list[Optional[float]]]]", list[dict[str, list[typing.Optional[float]]]]),  # noqa: UP045
        ("dict[Literal['x', 'y'], int]", dict[Literal["x", "y"], int]),
    ],
)
def test_every_supported_type_resolves(text: str, expected: Any) -> None:
    assert resolve_type(text) == expected
    spec = parse_signature(f"q: {text} -> a: {text}")
    signature = to_dspy_signature(spec)
    assert signature.input_fields["q"].annotation == expected
    assert signature.output_fields["a"].annotation == expected


# -- the structured form -------------------------------------------------------------------


def test_structured_form_keeps_descriptions_and_instructions() -> None:
    spec = parse_signature(
        fields=[
            FieldSpec("question", "input", description="What the user asks"),
            FieldSpec("answer", "output", "", "A short answer"),
            FieldSpec("score", "output", "Literal[1, 2, 3]"),
        ],
        instructions="Answer briefly.",
    )

    assert spec.fields[1].type == "str"
    assert spec.text() == "question -> answer, score: Literal[1, 2, 3]"
    signature = to_dspy_signature(spec)
    assert signature.instructions == "Answer briefly."
    assert signature.input_fields["question"].json_schema_extra["desc"] == "What the user asks"
    assert signature.output_fields["answer"].json_schema_extra["desc"] == "A short answer"
    assert signature.output_fields["score"].annotation == Literal[1, 2, 3]


def test_to_dict_round_trips() -> None:
    spec = parse_signature(
        fields=[FieldSpec("q", "input", "list[str]", "docs"), FieldSpec("a", "output", "int")],
        instructions="Count.",
    )
    raw = spec.to_dict()
    assert raw == {
        "fields": [
            {"name": "q", "role": "input", "type": "list[str]", "description": "docs"},
            {"name": "a", "role": "output", "type": "int", "description": ""},
        ],
        "instructions": "Count.",
    }
    assert SignatureSpec.from_dict(raw) == spec


def test_from_dict_validates_again() -> None:
    raw = {"fields": [{"name": "q", "role": "input", "type": "nope"}], "instructions": ""}
    with pytest.raises(BridgeError):
        SignatureSpec.from_dict(raw)


# -- DSPy ----------------------------------------------------------------------------------


def test_dspy_signature_gets_default_instructions_when_none_are_given() -> None:
    signature = to_dspy_signature(parse_signature("question -> answer"))
    assert signature.instructions == "Given the fields `question`, produce the fields `answer`."
    assert list(signature.input_fields) == ["question"]
    assert list(signature.output_fields) == ["answer"]


def test_dspy_signature_is_cached_by_spec() -> None:
    a = to_dspy_signature(parse_signature("q: list[str] -> a: int"))
    b = to_dspy_signature(parse_signature("q:list[str]->a:int"))
    c = to_dspy_signature(parse_signature("q: list[str] -> a: int", instructions="Other."))
    assert a is b
    assert c is not a


def test_dspy_signature_works_in_a_module() -> None:
    signature = to_dspy_signature(parse_signature("question -> answer"))
    predict = dspy.ChainOfThought(signature)
    assert list(predict.predict.signature.output_fields) == ["reasoning", "answer"]


# -- errors say where ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (
            "context: lisst[str], question -> answer",
            "unknown type 'lisst[str]' for field 'context': 'lisst' is not a supported type",
        ),
        ("question -> ", "no output fields: put outputs after '->'"),
        ("question ->", "no output fields: put outputs after '->'"),
        (" -> answer", "no input fields: put inputs before '->'"),
        ("question, answer", "no '->'"),
        ("a -> b -> c", "more than one '->'"),
        ("q -> a, q", "field 'q' appears twice"),
        ("q, a -> a", "field 'a' appears twice"),
        ("class -> a", "field name 'class' is a Python keyword"),
        ("q -> instructions", "field name 'instructions' clashes with DSPy"),
        ("q -> reasoning, a", "field name 'reasoning' clashes with DSPy"),
        ("demos -> a", "field name 'demos' clashes with DSPy"),
        ("q -> completed", "field name 'completed' clashes with DSPy"),
        ("_q -> a", "field name '_q' is not valid"),
        ("q, , r -> a", "empty input field #2"),
        ("q a -> b", "input field #1 'q a' is not 'name' or 'name: type'"),
        ("q=1 -> a", "is not 'name' or 'name: type'"),
        ("q: -> a", "field 'q' has ':' but no type"),
        ("q: list[str, int] -> a", "list takes exactly 1 type argument"),
        ("q: dict[str] -> a", "dict takes exactly 2 type arguments"),
        ("q: dict[list[int], str] -> a", "dict keys must be"),
        ("q: Literal[1.5] -> a", "Literal values must be str, int or bool constants"),
        ("q: Literal -> a", "Literal needs arguments"),
        ("q: int[str] -> a", "int takes no type arguments"),
        ("q: tuple[..., int] -> a", "'...' is only allowed as tuple[T, ...]"),
        ("q: 'str' -> a", "a constant (\"'str'\") is not a type"),
        ("q: list[str -> a", "'[' is never closed"),
        ("q: list[str]] -> a", "unexpected ']'"),
        ("q: Literal['a] -> a", "a quoted string is never closed"),
        ("q: list[str)] -> a", "unexpected ')'"),
        ("q: " + "list[" * 12 + "str" + "]" * 12 + " -> a", "at most 8 levels deep"),
    ],
)
def test_malformed_text_is_invalid_argument_naming_the_problem(text: str, problem: str) -> None:
    err = _error(text=text)
    assert err.message.startswith("signature.text: ")
    assert problem in err.message
    assert [v.field for v in err.violations] == ["signature.text"]


@pytest.mark.parametrize(
    ("fields", "path", "problem"),
    [
        (
            [FieldSpec("q", "input"), FieldSpec("a", "output"), FieldSpec("b", "inptu")],  # type: ignore[arg-type]
            "signature.fields[2].role",
            "role of field 'b' must be 'input' or 'output', got 'inptu'",
        ),
        (
            [FieldSpec("q", "input"), FieldSpec("a", "output", "lisst[str]")],
            "signature.fields[1].type",
            "unknown type 'lisst[str]' for field 'a'",
        ),
        (
            [FieldSpec("", "input"), FieldSpec("a", "output")],
            "signature.fields[0].name",
            "a field needs a name",
        ),
        (
            [FieldSpec("q", "input"), FieldSpec("my-answer", "output")],
            "signature.fields[1].name",
            "field name 'my-answer' is not valid",
        ),
        (
            [FieldSpec("q", "input"), FieldSpec("q", "output")],
            "signature.fields[1].name",
            "field 'q' appears twice",
        ),
        (
            [FieldSpec("q", "input")],
            "signature.fields",
            "no output fields: add at least one field with role 'output'",
        ),
        (
            [FieldSpec("a", "output")],
            "signature.fields",
            "no input fields: add at least one field with role 'input'",
        ),
    ],
)
def test_malformed_fields_name_the_field(fields: list[FieldSpec], path: str, problem: str) -> None:
    err = _error(fields=fields)
    assert err.message.startswith(f"{path}: ")
    assert problem in err.message
    assert [v.field for v in err.violations] == [path]


def test_text_and_fields_together_are_refused() -> None:
    err = _error(text="q -> a", fields=[FieldSpec("q", "input"), FieldSpec("a", "output")])
    assert "either text or fields, not both" in err.message


def test_an_empty_signature_is_refused() -> None:
    err = _error(text="   ")
    assert err.message.startswith("signature: empty")


def test_limits_on_size() -> None:
    many = ", ".join(f"f{i}" for i in range(150))
    assert "at most 100 are allowed" in _error(text=f"{many} -> a").message
    assert "longer than" in _error(text="q -> a" + " " * 20_000).message


def test_every_reserved_name_is_refused() -> None:
    for name in RESERVED_FIELD_NAMES:
        with pytest.raises(BridgeError):
            parse_signature(f"q -> {name}")


# -- never evaluated -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "type_text",
    [
        "os.system",
        "__import__('os').system('echo pwned')",
        "eval('1')",
        "(lambda: 1)()",
        "[x for x in ()]",
        "list[__import__('os')]",
        "typing.List[str]",
        "str.__class__",
        "this",
    ],
)
def test_host_text_is_never_evaluated(type_text: str) -> None:
    before = set(sys.modules)
    with pytest.raises(BridgeError) as info:
        parse_signature(f"q: {type_text} -> a")
    assert info.value.reason == Reason.INVALID_SIGNATURE
    # DSPy's own parser would import a module named like an unknown type; this one never does.
    assert set(sys.modules) == before


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80))
def test_any_text_either_parses_or_is_invalid_signature(text: str) -> None:
    try:
        spec = parse_signature(text)
    except BridgeError as err:
        assert err.reason == Reason.INVALID_SIGNATURE
        assert err.violations
    else:
        assert spec.inputs and spec.outputs
        assert parse_signature(spec.text()) == spec


# -- module-specific names -------------------------------------------------------------------


def test_module_specific_names_are_checked_per_module() -> None:
    spec = parse_signature("question, trajectory -> answer")
    check_fields_for_module(spec, "Predict")
    with pytest.raises(BridgeError) as info:
        check_fields_for_module(spec, "ReAct")
    assert info.value.violations[0].field == "signature.fields[1].name"
    assert "ReAct" in info.value.message

    mcc = parse_signature("question -> answer, reasoning_attempt_2")
    check_fields_for_module(mcc, "ChainOfThought")
    with pytest.raises(BridgeError):
        check_fields_for_module(mcc, "MultiChainComparison")
