"""Module inputs and outputs: host values checked against the signature, DSPy values made plain.

`coerce_inputs` is the gate between a host's `map<string, Value>` and a DSPy module call. Every
input field must be present (an Optional one may be left out), no other key is allowed, and
each value must already have its field's type: the bridge never guesses (`"3"` is not an int, a
str is not a `list[str]`). The only conversions are the lossless ones a typed transport needs:
an int where a float is expected, an integral float (`2.0`) where an int is expected (JSON
numbers inside a `json_value` arrive as doubles), a JSON array for a tuple, JSON object keys
for `dict[int, ...]`, and a Tensor for a list. Validation runs pydantic in strict JSON mode,
with one `TypeAdapter` per type, cached.

`outputs_to_values` turns a `dspy.Prediction` into plain values that map onto `Value`s: every
field of the prediction (ChainOfThought's `reasoning` included), pydantic models as dicts,
tuples and sets as lists, enums as their values, dict keys as strings.
"""

from __future__ import annotations

import enum
import functools
import json
import math
import types
import typing
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, TypeAdapter, ValidationError

from dspy_bridge.errors import BridgeError, Reason, invalid_argument
from dspy_bridge.model.value import PyValue, Tensor
from dspy_bridge.runtime.signatures import FieldSpec, SignatureSpec, resolve_type

__all__ = ["coerce_inputs", "outputs_to_values"]

_MAX_DEPTH = 64


def _bad_input(name: str, problem: str) -> BridgeError:
    path = f"inputs.{name}"
    return invalid_argument(Reason.INVALID_INPUT, f"{path}: {problem}", path)


def _allows_none(tp: Any) -> bool:
    if tp is Any or tp is type(None):
        return True
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return any(_allows_none(a) for a in typing.get_args(tp))
    return False


def _kind(value: Any) -> str:
    """A value's type in the host's terms (the `Value` kinds)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, Mapping):
        return "dict"
    if isinstance(value, Tensor):
        return "tensor"
    return type(value).__name__


@functools.lru_cache(maxsize=512)
def _adapter(type_text: str) -> TypeAdapter[Any]:
    return TypeAdapter(resolve_type(type_text))


def _integral_floats_to_ints(value: Any, depth: int = 0) -> Any:
    """`2.0` -> `2` throughout (JSON numbers in a json_value are doubles); other values as is."""
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_integral_floats_to_ints(v, depth + 1) for v in value]
    if isinstance(value, dict):
        return {k: _integral_floats_to_ints(v, depth + 1) for k, v in value.items()}
    return value


def _plain_input(value: Any, depth: int = 0) -> Any:
    """JSON-able form of a host value: tensors become nested lists."""
    if isinstance(value, Tensor):
        return value.to_list()
    if depth > _MAX_DEPTH:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain_input(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain_input(v, depth + 1) for k, v in value.items()}
    return value


def _describe(error: ValidationError) -> str:
    """Where inside a nested value the first problem is (` (at [1]: ...)`), or nothing."""
    first = error.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.get("loc", ()))
    return f" (at {loc}: {first.get('msg', 'invalid')})" if loc else ""


def _coerce(field: FieldSpec, value: PyValue) -> Any:
    tp = resolve_type(field.type)
    if tp is Any:
        return _plain_input(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _bad_input(field.name, f"expected str, got {_kind(value)}")
    if isinstance(value, Tensor) and not (
        tp is list or typing.get_origin(tp) in (list, tuple) or tp is tuple
    ):
        raise _bad_input(field.name, f"expected {field.type}, got tensor")
    plain = _plain_input(value)
    adapter = _adapter(field.type)
    try:
        text = json.dumps(plain, allow_nan=False)
    except (TypeError, ValueError):
        raise _bad_input(field.name, f"expected {field.type}, got {_kind(value)}") from None
    try:
        return adapter.validate_json(text, strict=True)
    except ValidationError as first:
        # Only on the error path: try again with integral floats as ints (`2.0` for an int).
        try:
            return adapter.validate_json(json.dumps(_integral_floats_to_ints(plain)), strict=True)
        except ValidationError:
            pass
        raise _bad_input(
            field.name, f"expected {field.type}, got {_kind(value)}{_describe(first)}"
        ) from None


def coerce_inputs(spec: SignatureSpec, inputs: Mapping[str, PyValue]) -> dict[str, Any]:
    """The keyword arguments for a module call, each value checked against its field's type.

    Raises INVALID_ARGUMENT (reason INVALID_INPUT, field violation `inputs.<name>`) for an
    unknown or missing field or a value of the wrong type; the message names the field, what it
    expects and what it got.
    """
    expected = [f.name for f in spec.inputs]
    for name in inputs:
        if name not in expected:
            declared = spec.field(name)
            why = (
                "it is an output field"
                if declared is not None
                else f"the signature's inputs are {', '.join(expected)}"
            )
            raise _bad_input(name, f"unknown input field {name!r}: {why}")
    coerced: dict[str, Any] = {}
    for field in spec.inputs:
        if field.name not in inputs:
            if _allows_none(resolve_type(field.type)):
                coerced[field.name] = None
                continue
            raise _bad_input(field.name, f"missing input field {field.name!r} ({field.type})")
        coerced[field.name] = _coerce(field, inputs[field.name])
    return coerced


def _to_value(value: Any, depth: int = 0) -> PyValue:
    """A DSPy output value as a plain `PyValue` (JSON-compatible, or a Tensor)."""
    if value is None or isinstance(value, (bool, int, str, Tensor)):
        return value
    if isinstance(value, float):
        return value
    if depth > _MAX_DEPTH:
        return str(value)
    if isinstance(value, enum.Enum):
        return _to_value(value.value, depth + 1)
    if isinstance(value, BaseModel):
        return _to_value(value.model_dump(mode="json"), depth + 1)
    if isinstance(value, Mapping):
        return {str(k): _to_value(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_to_value(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return [_to_value(v, depth + 1) for v in sorted(value, key=repr)]
    item = getattr(value, "item", None)  # numpy scalars
    if callable(item):
        try:
            return _to_value(item(), depth + 1)
        except Exception:
            return str(value)
    return str(value)


def outputs_to_values(spec: SignatureSpec, prediction: Any) -> dict[str, PyValue]:
    """Every field of a prediction as plain values, `reasoning` included, in DSPy's order.

    Output fields of `spec` the prediction lacks (DSPy leaves out an Optional field the LM did
    not give) come back as None so the host always sees the whole signature.
    """
    values = {str(k): _to_value(prediction[k]) for k in prediction.keys()}  # noqa: SIM118
    for field in spec.outputs:
        values.setdefault(field.name, None)
    return values
