"""The rules for variables: names, constraints and values, in pure Python.

Everything a host sends about a variable passes through here before the store sees it, so a
bad request is rejected before it can change state. Each failure is a `BridgeError`
with a stable reason and a field violation naming the offending field, and its message says
both what was wrong and what is allowed, because hosts show these messages to people.

- `validate_name` — the variable name grammar.
- `validate_constraints` — constraints that make sense for the type; one that does not apply
  is rejected, never silently ignored, so a host learns about its mistake at registration.
- `coerce_value` — a value checked against type and constraints and turned into the one
  canonical form the store keeps (FLOAT always a float, EMBEDDING always a list of floats, ...).
- `check_value_size` — the per-value size limit.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from typing import Any, NoReturn

import grpc

from dspy_bridge.errors import BridgeError, FieldViolation, Reason, invalid_argument
from dspy_bridge.model.patterns import PatternError, compile_pattern
from dspy_bridge.model.value import DTYPES, PyValue, Tensor, encode_value
from dspy_bridge.model.variable import Constraints, VariableType

__all__ = [
    "APPLICABLE_CONSTRAINTS",
    "MAX_JSON_DEPTH",
    "MAX_NAME_LENGTH",
    "check_value_size",
    "coerce_value",
    "validate_constraints",
    "validate_name",
    "value_size",
]

MAX_NAME_LENGTH = 128
# Each JSON nesting level costs two protobuf message levels (Value -> ListValue/Struct) and
# protobuf parsers stop at 100, so deeper values could be stored but never read back.
MAX_JSON_DEPTH = 32
# Relative tolerance of the step grid check: decimal steps (0.1) are not exact in binary.
STEP_TOLERANCE = 1e-9
# Integers beyond ±2**53 do not survive a JSON number (a double) on the wire.
_JSON_SAFE_INT = 2**53
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# Bytes counted for a tensor's dtype and shape on top of its raw data.
_TENSOR_OVERHEAD = 64
_FLOAT_DTYPES = frozenset({"float16", "float32", "float64"})

_NAME_RE = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")
_NAME_CHAR_RE = re.compile(r"[^A-Za-z0-9_.\-]")
_MODULE_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")

_NUMERIC = frozenset({"min", "max", "step"})
APPLICABLE_CONSTRAINTS: dict[VariableType, frozenset[str]] = {
    VariableType.FLOAT: _NUMERIC,
    VariableType.INTEGER: _NUMERIC,
    VariableType.STRING: frozenset({"choices", "pattern", "min_length", "max_length"}),
    VariableType.BOOLEAN: frozenset(),
    VariableType.CHOICE: frozenset({"choices"}),
    VariableType.MODULE: frozenset({"choices"}),
    VariableType.EMBEDDING: frozenset({"dims"}),
    VariableType.TENSOR: frozenset({"dims", "dtype"}),
    VariableType.JSON: frozenset({"max_length"}),
}
"""Which `Constraints` fields each type honours (mirrors the comments in variable.proto)."""

_CONSTRAINT_FIELDS = tuple(Constraints.__dataclass_fields__)
_NO_CONSTRAINTS = Constraints()


# --------------------------------------------------------------------------------------------
# Names


def validate_name(name: str, field: str = "name") -> None:
    """Reject a name outside the grammar of variable.proto (letters, digits, `_`, `.`, `-`)."""
    if isinstance(name, str) and len(name) <= MAX_NAME_LENGTH and _NAME_RE.fullmatch(name):
        return
    raise invalid_argument(Reason.INVALID_REQUEST, _name_problem(name, field), field)


def _name_problem(name: object, field: str) -> str:
    """Say exactly why `name` is not a valid name."""
    rule = "letters, digits, '_', '.', '-', starting with a letter"
    if not isinstance(name, str):
        return f"{field} must be a string, got {_kind(name)}"
    if not name:
        return f"{field} is empty; it needs 1 to {MAX_NAME_LENGTH} characters: {rule}"
    if len(name) > MAX_NAME_LENGTH:
        return f"{field} is {len(name)} characters long; at most {MAX_NAME_LENGTH} are allowed"
    if not name[0].isascii() or not name[0].isalpha():
        return f"{field} {_show(name)} must start with a letter (A-Z or a-z)"
    bad = _NAME_CHAR_RE.search(name)
    position = bad.start() if bad else 0
    return (
        f"{field} {_show(name)} has {name[position]!r} at position {position}; allowed are {rule}"
    )


# --------------------------------------------------------------------------------------------
# Constraints


def validate_constraints(type: VariableType, c: Constraints) -> None:
    """Reject constraints that are inconsistent or that do not apply to `type`."""
    if c == _NO_CONSTRAINTS:
        if type is VariableType.CHOICE:
            _bad_constraint("choices", "a CHOICE variable needs a non-empty list of choices")
        return
    _check_applicable(type, c)
    if type is VariableType.FLOAT or type is VariableType.INTEGER:
        _check_numeric_constraints(type, c)
    elif type is VariableType.STRING:
        _check_length_constraints(c)
        _check_pattern(c.pattern)
        _check_choices(type, c)
    elif type is VariableType.CHOICE or type is VariableType.MODULE:
        _check_choices(type, c)
    elif type is VariableType.EMBEDDING:
        _check_embedding_dims(c.dims)
    elif type is VariableType.TENSOR:
        _check_tensor_constraints(c)
    elif type is VariableType.JSON:
        _check_length_constraints(c)


def _bad_constraint(path: str, message: str) -> NoReturn:
    raise invalid_argument(Reason.INVALID_CONSTRAINTS, message, f"constraints.{path}")


def _check_applicable(type: VariableType, c: Constraints) -> None:
    allowed = APPLICABLE_CONSTRAINTS[type]
    for name in _CONSTRAINT_FIELDS:
        if name not in allowed and getattr(c, name) not in (None, "", ()):
            applies = ", ".join(sorted(allowed)) or "none"
            _bad_constraint(
                name,
                f"constraint {name!r} does not apply to {type.name} variables "
                f"(constraints for {type.name}: {applies})",
            )


def _check_numeric_constraints(type: VariableType, c: Constraints) -> None:
    for name in ("min", "max", "step"):
        bound = getattr(c, name)
        if bound is None:
            continue
        if not math.isfinite(bound):
            _bad_constraint(name, f"{name} must be a finite number, got {bound!r}")
        if type is VariableType.INTEGER and not float(bound).is_integer():
            _bad_constraint(name, f"{name} of an INTEGER variable must be whole, got {bound!r}")
    if c.min is not None and c.max is not None and c.min > c.max:
        _bad_constraint("min", f"min {c.min!r} is above max {c.max!r}")
    if c.step is not None and c.step <= 0:
        _bad_constraint("step", f"step must be greater than 0, got {c.step!r}")


def _check_length_constraints(c: Constraints) -> None:
    for name in ("min_length", "max_length"):
        length = getattr(c, name)
        if length is not None and length < 0:
            _bad_constraint(name, f"{name} must be 0 or more, got {length}")
    if c.min_length is not None and c.max_length is not None and c.min_length > c.max_length:
        _bad_constraint(
            "min_length", f"min_length {c.min_length} is above max_length {c.max_length}"
        )


def _check_pattern(pattern: str) -> None:
    if not pattern:
        return
    try:
        compile_pattern(pattern)
    except PatternError as exc:
        _bad_constraint("pattern", f"pattern {_show(pattern)} {exc}")


def _check_choices(type: VariableType, c: Constraints) -> None:
    if not c.choices:
        if type is VariableType.CHOICE:
            _bad_constraint("choices", "a CHOICE variable needs a non-empty list of choices")
        return
    seen: set[str] = set()
    for i, choice in enumerate(c.choices):
        path = f"choices[{i}]"
        if not choice:
            _bad_constraint(path, "a choice must not be empty")
        if choice in seen:
            _bad_constraint(path, f"choice {choice!r} is listed twice; choices must be unique")
        seen.add(choice)
        if type is VariableType.MODULE and not _MODULE_NAME_RE.fullmatch(choice):
            _bad_constraint(path, f"choice {choice!r} is not a module type name")
        if type is VariableType.STRING:
            # A choice the other string constraints reject could never be stored.
            try:
                _check_string(c, choice, "")
            except BridgeError as exc:
                _bad_constraint(path, f"choice {choice!r} can never be stored: {exc.message}")


def _check_embedding_dims(dims: tuple[int, ...]) -> None:
    if not dims:
        return
    if len(dims) != 1:
        _bad_constraint(
            "dims", f"an EMBEDDING takes exactly one dims entry (its length), got {list(dims)}"
        )
    if dims[0] <= 0:
        _bad_constraint("dims[0]", f"the embedding length must be greater than 0, got {dims[0]}")


def _check_tensor_constraints(c: Constraints) -> None:
    for i, dim in enumerate(c.dims):
        if dim < 0:
            _bad_constraint(f"dims[{i}]", f"a dimension must be 0 (any) or more, got {dim}")
    if c.dtype and c.dtype not in DTYPES:
        _bad_constraint("dtype", f"unknown dtype {c.dtype!r}; known: {', '.join(DTYPES)}")


# --------------------------------------------------------------------------------------------
# Values


def coerce_value(
    type: VariableType, c: Constraints, value: PyValue, field: str = "value"
) -> PyValue:
    """The canonical stored form of `value`, or a BridgeError saying why it is not allowed.

    `c` is assumed to have passed `validate_constraints` for `type`.
    """
    return _COERCERS[type](c, value, field)


def _mismatch(type: VariableType, wanted: str, value: object, field: str) -> BridgeError:
    return invalid_argument(
        Reason.VARIABLE_TYPE_MISMATCH,
        f"a {type.name} variable needs {wanted}, got {_kind(value)} {_show(value)}".rstrip(),
        field,
        metadata={"expected_type": type.name, "actual_type": _kind(value)},
    )


def _violation(constraint: str, message: str, field: str, **extra: str) -> BridgeError:
    return invalid_argument(
        Reason.VARIABLE_CONSTRAINT_VIOLATION,
        message,
        field,
        metadata={"constraint": constraint, **extra},
    )


def _coerce_float(c: Constraints, value: PyValue, field: str) -> float:
    if type(value) is float:
        x = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            x = float(value)
        except OverflowError:
            raise _violation("finite", f"{value} is too large for a float", field) from None
    else:
        raise _mismatch(VariableType.FLOAT, "a number", value, field)
    if not math.isfinite(x):
        raise _violation("finite", f"{x!r} is not allowed; a FLOAT must be finite", field)
    if c is not _NO_CONSTRAINTS:
        _check_range(c, x, repr, field)
    return x


def _coerce_integer(c: Constraints, value: PyValue, field: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise _mismatch(VariableType.INTEGER, "a whole number (int)", value, field)
    if not _INT64_MIN <= value <= _INT64_MAX:
        raise _violation(
            "int64", f"{value} does not fit in 64 bits ({_INT64_MIN} to {_INT64_MAX})", field
        )
    if c is not _NO_CONSTRAINTS:
        _check_range(c, value, _whole, field)
    return int(value)


def _whole(bound: float) -> str:
    """An INTEGER variable's bound as a whole number (they are validated whole)."""
    return str(int(bound)) if float(bound).is_integer() else repr(bound)


def _check_range(c: Constraints, x: float, show: Callable[[float], str], field: str) -> None:
    if c.min is not None and x < c.min:
        raise _violation("min", f"{x!r} is below min {show(c.min)}", field, min=show(c.min))
    if c.max is not None and x > c.max:
        raise _violation("max", f"{x!r} is above max {show(c.max)}", field, max=show(c.max))
    if c.step is not None:
        _check_step(x, c.min, c.step, show, field)


def _check_step(
    x: float, low: float | None, step: float, show: Callable[[float], str], field: str
) -> None:
    base = 0.0 if low is None else low
    if isinstance(x, int) and float(base).is_integer() and float(step).is_integer():
        offset, whole_step = x - int(base), int(step)
        if offset % whole_step == 0:
            return
        below: float = int(base) + offset // whole_step * whole_step
        nearest = f"{below} and {below + whole_step}"
    else:
        distance = x - base
        if math.isfinite(distance):
            off_grid = abs(math.remainder(distance, step))
            if off_grid <= STEP_TOLERANCE * max(abs(x), abs(base), step):
                return
        nearest = _float_neighbours(base, distance, step)
    grid = f"min {show(low)} + k * step" if low is not None else "a multiple of step"
    raise _violation(
        "step",
        f"{x!r} is not on the step grid ({grid} {show(step)}); nearest allowed: {nearest}",
        field,
        step=show(step),
    )


def _float_neighbours(base: float, offset: float, step: float) -> str:
    """The grid values either side of a rejected float, rounded to hide binary noise."""
    try:
        below = base + math.floor(offset / step) * step
    except (OverflowError, ValueError):
        return "none near enough to name"
    return f"{float(f'{below:.12g}')!r} and {float(f'{below + step:.12g}')!r}"


def _coerce_string(c: Constraints, value: PyValue, field: str) -> str:
    if not isinstance(value, str):
        raise _mismatch(VariableType.STRING, "a string", value, field)
    if c is not _NO_CONSTRAINTS:
        if c.choices and value not in c.choices:
            raise _not_a_choice(c, value, field)
        _check_string(c, value, field)
    return str(value)


def _check_string(c: Constraints, value: str, field: str) -> None:
    """Length and pattern rules shared by values and (at registration) STRING choices."""
    if c.min_length is not None and len(value) < c.min_length:
        raise _violation(
            "min_length",
            f"{_show(value)} is {len(value)} characters long, below min_length {c.min_length}",
            field,
            min_length=str(c.min_length),
        )
    if c.max_length is not None and len(value) > c.max_length:
        raise _violation(
            "max_length",
            f"{_show(value)} is {len(value)} characters long, above max_length {c.max_length}",
            field,
            max_length=str(c.max_length),
        )
    if c.pattern and not compile_pattern(c.pattern).fullmatch(value):
        raise _violation(
            "pattern",
            f"{_show(value)} does not match pattern {c.pattern!r}",
            field,
            pattern=c.pattern,
        )


def _not_a_choice(c: Constraints, value: str, field: str) -> BridgeError:
    shown = ", ".join(repr(choice) for choice in c.choices[:20])
    if len(c.choices) > 20:
        shown += f", ... ({len(c.choices)} in all)"
    return _violation("choices", f"{_show(value)} is not one of the choices: {shown}", field)


def _coerce_boolean(c: Constraints, value: PyValue, field: str) -> bool:
    if not isinstance(value, bool):
        raise _mismatch(VariableType.BOOLEAN, "a boolean", value, field)
    return value


def _coerce_choice(c: Constraints, value: PyValue, field: str) -> str:
    if not isinstance(value, str):
        raise _mismatch(VariableType.CHOICE, "a string (one of the choices)", value, field)
    if value not in c.choices:
        raise _not_a_choice(c, value, field)
    return str(value)


def _coerce_module(c: Constraints, value: PyValue, field: str) -> str:
    if not isinstance(value, str):
        raise _mismatch(VariableType.MODULE, "a module type name (string)", value, field)
    if not _MODULE_NAME_RE.fullmatch(value):
        raise _violation(
            "module_type",
            f"{_show(value)} is not a module type name (e.g. 'Predict', 'ChainOfThought')",
            field,
        )
    if c.choices and value not in c.choices:
        raise _not_a_choice(c, value, field)
    return str(value)


def _coerce_embedding(c: Constraints, value: PyValue, field: str) -> list[float]:
    if isinstance(value, Tensor):
        vector = _embedding_from_tensor(value, field)
    elif isinstance(value, (list, tuple)):
        vector = _embedding_from_list(value, field)
    else:
        raise _mismatch(VariableType.EMBEDDING, "a list of numbers or a 1-D tensor", value, field)
    for i, x in enumerate(vector):
        if not math.isfinite(x):
            raise _violation("finite", f"element {i} is {x!r}; embeddings must be finite", field)
    if c.dims and len(vector) != c.dims[0]:
        raise _violation(
            "dims",
            f"embedding has {len(vector)} elements, dims requires {c.dims[0]}",
            field,
            dims=str(c.dims[0]),
        )
    return vector


def _embedding_from_list(value: list[Any] | tuple[Any, ...], field: str) -> list[float]:
    vector: list[float] = []
    for i, x in enumerate(value):
        if isinstance(x, bool) or not isinstance(x, (int, float)):
            raise invalid_argument(
                Reason.VARIABLE_TYPE_MISMATCH,
                f"an EMBEDDING needs numbers, element {i} is {_kind(x)} {_show(x)}",
                field,
                metadata={"expected_type": "EMBEDDING", "actual_type": _kind(x)},
            )
        try:
            vector.append(float(x))
        except OverflowError:
            raise _violation("finite", f"element {i} is too large for a float", field) from None
    return vector


def _embedding_from_tensor(value: Tensor, field: str) -> list[float]:
    if value.dtype not in _FLOAT_DTYPES or len(value.shape) != 1:
        raise invalid_argument(
            Reason.VARIABLE_TYPE_MISMATCH,
            "an EMBEDDING tensor must be 1-D with a float dtype "
            f"({', '.join(sorted(_FLOAT_DTYPES))}), got {value.dtype} of shape {list(value.shape)}",
            field,
            metadata={"expected_type": "EMBEDDING", "actual_type": "tensor"},
        )
    _check_tensor_data(value, field)
    return [float(x) for x in value.to_numpy().tolist()]


def _coerce_tensor(c: Constraints, value: PyValue, field: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise _mismatch(VariableType.TENSOR, "a tensor", value, field)
    if value.dtype not in DTYPES:
        raise invalid_argument(
            Reason.VARIABLE_TYPE_MISMATCH,
            f"a TENSOR variable needs a known dtype, got {value.dtype!r}; "
            f"known: {', '.join(DTYPES)}",
            field,
            metadata={"expected_type": "TENSOR", "actual_type": "tensor"},
        )
    tensor = Tensor(value.dtype, tuple(int(d) for d in value.shape), bytes(value.data))
    _check_tensor_data(tensor, field)
    if c.dtype and tensor.dtype != c.dtype:
        raise _violation(
            "dtype",
            f"tensor dtype is {tensor.dtype}, dtype requires {c.dtype}",
            field,
            dtype=c.dtype,
        )
    if c.dims and not _shape_fits(tensor.shape, c.dims):
        raise _violation(
            "dims",
            f"tensor shape {list(tensor.shape)} does not fit dims {list(c.dims)} (0 = any size)",
            field,
            dims=json.dumps(list(c.dims)),
        )
    return tensor


def _shape_fits(shape: tuple[int, ...], dims: tuple[int, ...]) -> bool:
    return len(shape) == len(dims) and all(d in (0, s) for s, d in zip(shape, dims, strict=True))


def _check_tensor_data(tensor: Tensor, field: str) -> None:
    """A tensor whose shape and data disagree is malformed whatever the constraints."""
    if any(d < 0 for d in tensor.shape):
        raise _violation("shape", f"tensor shape {list(tensor.shape)} has a negative size", field)
    expected = tensor.expected_bytes()
    if expected is not None and expected != len(tensor.data):
        raise _violation(
            "shape",
            f"tensor data is {len(tensor.data)} bytes, but shape {list(tensor.shape)} of "
            f"{tensor.dtype} needs {expected}",
            field,
        )


def _coerce_json(c: Constraints, value: PyValue, field: str) -> PyValue:
    canonical = _canonical_json(value, 0, "", field)
    if c.max_length is not None:
        size = len(encode_value(canonical).encode("utf-8", "surrogatepass"))
        if size > c.max_length:
            raise _violation(
                "max_length",
                f"the JSON value serializes to {size} bytes, above max_length {c.max_length}",
                field,
                max_length=str(c.max_length),
            )
    return canonical


def _canonical_json(value: Any, depth: int, where: str, field: str) -> Any:
    """A fresh copy of a JSON-compatible value (tuples become lists), or a type mismatch."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        if -_JSON_SAFE_INT <= value <= _JSON_SAFE_INT:
            return int(value)
        raise _json_mismatch(
            f"integer {value} is beyond ±2**53 and not exact in JSON", where, field
        )
    if isinstance(value, float):
        if math.isfinite(value):
            return float(value)
        raise _json_mismatch(f"{value!r} is not a JSON number", where, field)
    if depth >= MAX_JSON_DEPTH:
        raise _json_mismatch(f"nesting is deeper than {MAX_JSON_DEPTH} levels", where, field)
    if isinstance(value, (list, tuple)):
        return [_canonical_json(x, depth + 1, f"{where}[{i}]", field) for i, x in enumerate(value)]
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, x in value.items():
            if not isinstance(key, str):
                raise _json_mismatch(f"key {key!r} is not a string", where, field)
            out[key] = _canonical_json(x, depth + 1, f"{where}[{key!r}]", field)
        return out
    raise _json_mismatch(
        f"{_kind(value)} is not JSON (allowed: null, boolean, number, string, list, object)",
        where,
        field,
    )


def _json_mismatch(problem: str, where: str, field: str) -> BridgeError:
    at = f" at {where}" if where else ""
    return invalid_argument(
        Reason.VARIABLE_TYPE_MISMATCH,
        f"a JSON variable needs a JSON value{at}: {problem}",
        field,
        metadata={"expected_type": "JSON"},
    )


_COERCERS: dict[VariableType, Callable[[Constraints, PyValue, str], PyValue]] = {
    VariableType.FLOAT: _coerce_float,
    VariableType.INTEGER: _coerce_integer,
    VariableType.STRING: _coerce_string,
    VariableType.BOOLEAN: _coerce_boolean,
    VariableType.CHOICE: _coerce_choice,
    VariableType.MODULE: _coerce_module,
    VariableType.EMBEDDING: _coerce_embedding,
    VariableType.TENSOR: _coerce_tensor,
    VariableType.JSON: _coerce_json,
}


# --------------------------------------------------------------------------------------------
# Size


def check_value_size(value: PyValue, max_bytes: int, field: str = "value") -> None:
    """Reject a value whose stored form is larger than `max_bytes` (0 or less: no limit)."""
    if max_bytes <= 0:
        return
    if max_bytes >= 32 and _is_small_scalar(value):
        return  # a scalar's JSON text is at most ~25 bytes; skip the encoding on the hot path
    size = value_size(value)
    if size > max_bytes:
        message = f"{field} is {size:,} bytes, above the limit of {max_bytes:,} bytes"
        raise BridgeError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            Reason.VALUE_TOO_LARGE,
            message,
            {"limit": str(max_bytes), "size": str(size)},
            (FieldViolation(field, message),),
        )


def _is_small_scalar(value: PyValue) -> bool:
    kind = type(value)
    if kind is float or kind is bool or value is None:
        return True
    return kind is int and _INT64_MIN <= value <= _INT64_MAX


def value_size(value: PyValue) -> int:
    """Bytes of the value's stored JSON text; a tensor counts its raw data plus a little."""
    if _is_small_scalar(value):
        return 32  # a scalar's JSON text is at most ~25 bytes
    if isinstance(value, Tensor):
        return len(value.data) + _TENSOR_OVERHEAD
    try:
        text = encode_value(value)
    except (TypeError, ValueError):
        # Not storable as it is (coerce_value rejects it); still give the limit a fair measure.
        text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=repr)
    if text.isascii():
        return len(text)
    return len(text.encode("utf-8", "surrogatepass"))


# --------------------------------------------------------------------------------------------
# Message helpers


def _kind(value: object) -> str:
    """The JSON-ish name of a value's kind, for messages."""
    if value is None:
        return "no value"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "list"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, Tensor):
        return "tensor"
    return type(value).__name__


def _show(value: object, limit: int = 60) -> str:
    """A short repr of a value for messages (long values are cut)."""
    if value is None:
        return ""
    if isinstance(value, Tensor):
        return f"{value.dtype}{list(value.shape)}"
    text = repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."
