"""Proto <-> domain conversion for values, variables, sessions and LM configs.

These run on every RPC (and are benchmarked), so they fill messages in place rather than
building sub-messages and copying them, convert `google.protobuf.Value` trees by hand rather
than through `json_format`, and do no validation: checking values against types and
constraints is `dspy_bridge.model.validation`'s job, done once before anything is stored.

JSON numbers are doubles on the wire; an integral one within ±2**53 comes back as a Python
int, so `{"n": 3}` survives a round trip as `{"n": 3}` and not `{"n": 3.0}`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.internal.containers import MessageMap

from dspy_bridge.errors import Reason, invalid_argument
from dspy_bridge.model.module import LMSpec
from dspy_bridge.model.session import Session
from dspy_bridge.model.value import PyValue, Tensor
from dspy_bridge.model.variable import Constraints, HistoryEntry, Variable, VariableType
from dspy_bridge_client._proto.dspy_bridge.v1 import (
    lm_pb2,
    session_pb2,
    value_pb2,
    variable_pb2,
)

__all__ = [
    "constraints_from_proto",
    "constraints_to_proto",
    "history_entry_to_proto",
    "lm_from_proto",
    "lm_to_proto",
    "session_to_proto",
    "timestamp_from_seconds",
    "timestamp_to_seconds",
    "value_from_proto",
    "value_to_proto",
    "values_from_proto",
    "values_to_proto",
    "variable_to_proto",
    "variable_type_from_proto",
    "variable_value_to_proto",
]

# Integral JSON numbers up to this magnitude are exact in a double and come back as ints.
_JSON_SAFE_INT = 2**53
_NULL = struct_pb2.NULL_VALUE
_MAX_TIMESTAMP_SECONDS = 253_402_300_799.0  # 9999-12-31T23:59:59Z, the largest Timestamp
_NO_CONSTRAINTS = Constraints()
_TYPES: dict[int, VariableType] = {t.value: t for t in VariableType}
_TYPE_NAMES = ", ".join(f"VARIABLE_TYPE_{t.name}" for t in VariableType)


# --------------------------------------------------------------------------------------------
# Values


def value_from_proto(v: value_pb2.Value) -> PyValue:
    """The Python form of a `Value`: an unset kind is None, a tensor a `Tensor`."""
    kind = v.WhichOneof("kind")
    if kind is None:
        return None
    if kind == "json_value":
        return _from_json(v.json_value)
    if kind == "tensor_value":
        t = v.tensor_value
        return Tensor(t.dtype, tuple(t.shape), t.data)
    return getattr(v, kind)  # float_value, int_value, string_value, bool_value


def value_to_proto(v: PyValue) -> value_pb2.Value:
    """A `Value` holding `v` (None, lists and dicts go as `json_value`).

    Raises TypeError for what a `Value` cannot hold (bytes, sets, non-string keys, a tensor
    nested in JSON) and ValueError for a number out of range (an int beyond int64).
    """
    out = value_pb2.Value()
    _fill_value(out, v)
    return out


def values_from_proto(values: Mapping[str, value_pb2.Value]) -> dict[str, PyValue]:
    """A `map<string, Value>` (module inputs/outputs) as a plain dict."""
    return {name: value_from_proto(v) for name, v in values.items()}


def values_to_proto(
    values: Mapping[str, PyValue], target: MessageMap[str, value_pb2.Value]
) -> None:
    """Write `values` into a `map<string, Value>` field of a message being built."""
    for name, v in values.items():
        _fill_value(target[name], v)


def variable_value_to_proto(type: VariableType, value: PyValue) -> value_pb2.Value:
    """A variable's value as the proto documents it for `type` (see `VariableType`)."""
    out = value_pb2.Value()
    _fill_variable_value(out, type, value)
    return out


def _fill_value(out: value_pb2.Value, v: PyValue) -> None:
    kind = type(v)  # exact-type fast path for the common scalars; subclasses go the long way
    if kind is float:
        out.float_value = v
    elif kind is str:
        out.string_value = v
    elif kind is int:
        out.int_value = v
    elif kind is bool:
        out.bool_value = v
    else:
        _fill_other_value(out, v)


def _fill_other_value(out: value_pb2.Value, v: PyValue) -> None:
    # bool first: it is an int subclass, and a bool must stay a bool.
    if isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, int):
        out.int_value = v
    elif isinstance(v, float):
        out.float_value = v
    elif isinstance(v, str):
        out.string_value = v
    elif v is None or isinstance(v, (list, tuple, dict)):
        _fill_json(out.json_value, v)
    elif isinstance(v, Tensor):
        _fill_tensor(out.tensor_value, v)
    elif isinstance(v, np.generic):
        _fill_value(out, v.item())  # numpy scalars from module outputs
    else:
        raise TypeError(f"a {type(v).__name__} cannot be sent as a Value")


def _fill_variable_value(out: value_pb2.Value, type: VariableType, value: PyValue) -> None:
    if type is VariableType.FLOAT and isinstance(value, int) and not isinstance(value, bool):
        out.float_value = value
    elif type is VariableType.JSON:
        _fill_json(out.json_value, value)  # always json_value, even for a bare number or string
    elif type is VariableType.EMBEDDING and value is not None:
        vector = value.to_list() if isinstance(value, Tensor) else value
        items = out.json_value.list_value
        items.SetInParent()
        for x in vector:
            items.values.add().number_value = x
    elif value is not None:
        _fill_value(out, value)


def _fill_tensor(out: value_pb2.Tensor, t: Tensor) -> None:
    out.dtype = t.dtype
    out.shape.extend(t.shape)
    out.data = t.data


def _fill_json(out: struct_pb2.Value, v: Any) -> None:
    """Write a JSON-compatible Python value into a `google.protobuf.Value`."""
    if v is None:
        out.null_value = _NULL
    elif isinstance(v, bool):
        out.bool_value = v
    elif isinstance(v, (int, float)):
        try:
            out.number_value = v
        except OverflowError:
            raise ValueError(f"{v} is out of range for a JSON number (a double)") from None
    elif isinstance(v, str):
        out.string_value = v
    elif isinstance(v, dict):
        struct = out.struct_value
        struct.SetInParent()
        fields = struct.fields
        for key, x in v.items():
            if not isinstance(key, str):
                raise TypeError(f"JSON object keys must be strings, got {type(key).__name__}")
            _fill_json(fields[key], x)
    elif isinstance(v, (list, tuple)):
        items = out.list_value
        items.SetInParent()
        values = items.values
        for x in v:
            _fill_json(values.add(), x)
    elif isinstance(v, np.generic):
        _fill_json(out, v.item())
    else:
        raise TypeError(f"a {type(v).__name__} cannot be part of a JSON value")


def _from_json(v: struct_pb2.Value) -> Any:
    """The Python form of a `google.protobuf.Value` (integral numbers become ints)."""
    kind = v.WhichOneof("kind")
    if kind == "number_value":
        n = v.number_value
        if n.is_integer() and -_JSON_SAFE_INT <= n <= _JSON_SAFE_INT:
            return int(n)
        return n
    if kind == "string_value":
        return v.string_value
    if kind == "bool_value":
        return v.bool_value
    if kind == "struct_value":
        return {key: _from_json(x) for key, x in v.struct_value.fields.items()}
    if kind == "list_value":
        return [_from_json(x) for x in v.list_value.values]
    return None  # null_value, or no kind at all


# --------------------------------------------------------------------------------------------
# Variables


def variable_type_from_proto(value: int) -> VariableType:
    """The domain type for a proto `VariableType`; UNSPECIFIED or unknown is a bad request."""
    found = _TYPES.get(value)
    if found is None:
        what = "not set" if value == 0 else f"unknown ({value})"
        raise invalid_argument(
            Reason.INVALID_REQUEST, f"type is {what}; use one of {_TYPE_NAMES}", "type"
        )
    return found


def constraints_from_proto(c: variable_pb2.VariableConstraints) -> Constraints:
    """Domain constraints; an unset optional field is None (not 0)."""
    if not c.ByteSize():
        return _NO_CONSTRAINTS
    return Constraints(
        min=c.min if c.HasField("min") else None,
        max=c.max if c.HasField("max") else None,
        step=c.step if c.HasField("step") else None,
        choices=tuple(c.choices),
        pattern=c.pattern,
        min_length=c.min_length if c.HasField("min_length") else None,
        max_length=c.max_length if c.HasField("max_length") else None,
        dims=tuple(c.dims),
        dtype=c.dtype,
    )


def constraints_to_proto(c: Constraints) -> variable_pb2.VariableConstraints:
    """Proto constraints with only the set fields present."""
    out = variable_pb2.VariableConstraints()
    _fill_constraints(out, c)
    return out


def _fill_constraints(out: variable_pb2.VariableConstraints, c: Constraints) -> None:
    if c.min is not None:
        out.min = c.min
    if c.max is not None:
        out.max = c.max
    if c.step is not None:
        out.step = c.step
    if c.choices:
        out.choices.extend(c.choices)
    if c.pattern:
        out.pattern = c.pattern
    if c.min_length is not None:
        out.min_length = c.min_length
    if c.max_length is not None:
        out.max_length = c.max_length
    if c.dims:
        out.dims.extend(c.dims)
    if c.dtype:
        out.dtype = c.dtype


def variable_to_proto(v: Variable) -> variable_pb2.Variable:
    """The `Variable` message for a variable at its current version."""
    out = variable_pb2.Variable(
        id=v.id,
        session_id=v.session_id,
        name=v.name,
        type=v.type.value,  # type: ignore[arg-type]  # same numbers as the proto enum
        description=v.description,
        version=v.version,
        source=v.source,
    )
    if v.metadata:
        out.metadata.update(v.metadata)
    _fill_variable_value(out.value, v.type, v.value)
    _fill_constraints(out.constraints, v.constraints)  # sets nothing when there are none
    _fill_timestamp(out.create_time, v.create_time)
    _fill_timestamp(out.update_time, v.update_time)
    return out


def history_entry_to_proto(
    type: VariableType, entry: HistoryEntry
) -> variable_pb2.VariableHistoryEntry:
    """One history entry; `type` is the variable's, which decides how the value is sent."""
    out = variable_pb2.VariableHistoryEntry(
        version=entry.version, source=entry.source, reason=entry.reason
    )
    _fill_variable_value(out.value, type, entry.value)
    _fill_timestamp(out.update_time, entry.update_time)
    return out


# --------------------------------------------------------------------------------------------
# Sessions and LMs


def session_to_proto(s: Session) -> session_pb2.Session:
    """The `Session` message; `expire_time` stays unset for a session that never expires."""
    out = session_pb2.Session(
        session_id=s.session_id,
        ttl_seconds=s.ttl_seconds,
        variable_count=s.variable_count,
        module_count=s.module_count,
    )
    if s.metadata:
        out.metadata.update(s.metadata)
    _fill_timestamp(out.create_time, s.create_time)
    if s.expire_time is not None:
        _fill_timestamp(out.expire_time, s.expire_time)
    if s.lm is not None:
        _fill_lm(out.lm, s.lm)
    return out


def lm_from_proto(lm: lm_pb2.LMConfig) -> LMSpec | None:
    """The LM a request asks for; an empty `model` means none (use the default)."""
    if not lm.model.strip():
        return None
    return LMSpec(
        model=lm.model,
        api_base=lm.api_base,
        api_key_env=lm.api_key_env,
        options=dict(lm.options),
    )


def lm_to_proto(lm: LMSpec) -> lm_pb2.LMConfig:
    """The `LMConfig` message for an LM choice (it names the key's env var, never the key)."""
    out = lm_pb2.LMConfig()
    _fill_lm(out, lm)
    return out


def _fill_lm(out: lm_pb2.LMConfig, lm: LMSpec) -> None:
    out.model = lm.model
    out.api_base = lm.api_base
    out.api_key_env = lm.api_key_env
    out.options.update(lm.options)


# --------------------------------------------------------------------------------------------
# Timestamps


def timestamp_from_seconds(seconds: float) -> timestamp_pb2.Timestamp:
    """A `Timestamp` for float Unix seconds (the domain's time representation)."""
    out = timestamp_pb2.Timestamp()
    _fill_timestamp(out, seconds)
    return out


def timestamp_to_seconds(ts: timestamp_pb2.Timestamp) -> float:
    """Float Unix seconds for a `Timestamp` (an unset one is 0.0)."""
    return ts.seconds + ts.nanos / 1e9


def _fill_timestamp(out: timestamp_pb2.Timestamp, seconds: float) -> None:
    """Set `out` to `seconds`; 0.0 means "not known" in the domain and leaves `out` unset."""
    if not seconds:
        return
    # A stored time beyond what a Timestamp holds (year 9999; e.g. a session stored with a
    # huge TTL by an older server) is sent as the latest one, never as a failing read.
    seconds = min(seconds, _MAX_TIMESTAMP_SECONDS)
    whole = math.floor(seconds)
    nanos = round((seconds - whole) * 1e9)
    if nanos >= 1_000_000_000:
        whole, nanos = whole + 1, nanos - 1_000_000_000
    out.seconds = whole
    out.nanos = nanos
