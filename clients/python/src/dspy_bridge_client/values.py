"""Conversion between Python values and `dspy_bridge.v1.Value`.

The mapping, both ways:

==========================  ==================  ==========================================
Python                      `Value` kind        notes
==========================  ==================  ==========================================
``bool``                    ``bool_value``      checked before ``int`` (bool is an int)
``int``                     ``int_value``       64-bit signed; larger ints are rejected
``float``                   ``float_value``
``str``                     ``string_value``
`Tensor`                    ``tensor_value``    numpy arrays are converted to a `Tensor`
``None`` / list / dict      ``json_value``      JSON numbers that are whole come back as int
`Json` (any JSON value)     ``json_value``      forces JSON, e.g. a JSON variable set to "a"
unset kind                  ``None``
==========================  ==================  ==========================================

This module depends only on protobuf (numpy is imported lazily by `Tensor.to_numpy` /
`Tensor.from_numpy`), so the server and the client share it.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from google.protobuf import struct_pb2

from dspy_bridge_client._proto.dspy_bridge.v1 import value_pb2

if TYPE_CHECKING:
    import numpy as np

__all__ = [
    "DTYPES",
    "Json",
    "PyValue",
    "Tensor",
    "from_json_value",
    "from_struct",
    "from_value",
    "from_value_map",
    "to_json_value",
    "to_struct",
    "to_value",
    "to_value_map",
    "update_value_map",
    "write_value",
]

PyValue: TypeAlias = Any
"""What a `Value` becomes in Python: None, bool, int, float, str, JSON list/dict, or `Tensor`."""

DTYPES: dict[str, str] = {
    "float16": "<f2",
    "float32": "<f4",
    "float64": "<f8",
    "int8": "i1",
    "int16": "<i2",
    "int32": "<i4",
    "int64": "<i8",
    "uint8": "u1",
    "bool": "?",
}
"""Tensor element types the protocol allows, with their little-endian numpy type strings."""

# `struct` format character and size of each element type.
_STRUCT_FORMATS: dict[str, tuple[str, int]] = {
    "float16": ("e", 2),
    "float32": ("f", 4),
    "float64": ("d", 8),
    "int8": ("b", 1),
    "int16": ("h", 2),
    "int32": ("i", 4),
    "int64": ("q", 8),
    "uint8": ("B", 1),
    "bool": ("?", 1),
}

_Value = value_pb2.Value
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


@dataclass(frozen=True, slots=True)
class Tensor:
    """A dense n-dimensional array, row-major and little-endian, as `dspy_bridge.v1.Tensor`.

    `dtype` is one of `DTYPES` (``float32``, ``int64``, ...), `shape` the size of each dimension
    and `data` the raw elements. Build one from numpy with `Tensor.from_numpy` or from nested
    lists with `Tensor.from_list`; neither the class nor `to_list` needs numpy.
    """

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    def __post_init__(self) -> None:
        if type(self.shape) is not tuple:
            object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if type(self.data) is not bytes:
            object.__setattr__(self, "data", bytes(self.data))

    def __repr__(self) -> str:
        return f"Tensor(dtype={self.dtype!r}, shape={self.shape!r}, nbytes={len(self.data)})"

    @property
    def size(self) -> int:
        """Number of elements (the product of `shape`; 1 for a scalar)."""
        return math.prod(self.shape)

    @property
    def itemsize(self) -> int | None:
        """Bytes per element, or None when `dtype` is not one of `DTYPES`."""
        entry = _STRUCT_FORMATS.get(self.dtype)
        return entry[1] if entry else None

    def expected_bytes(self) -> int | None:
        """The byte length `data` must have, or None when `dtype` is unknown."""
        itemsize = self.itemsize
        return None if itemsize is None else itemsize * self.size

    def to_list(self) -> Any:
        """The elements as nested Python lists (a bare number for a 0-d tensor); no numpy needed."""
        fmt, itemsize = _format(self.dtype)
        if len(self.data) != itemsize * self.size:
            raise ValueError(
                f"tensor data has {len(self.data)} bytes; dtype {self.dtype} and shape "
                f"{self.shape} need {itemsize * self.size}"
            )
        flat = list(struct.unpack(f"<{self.size}{fmt}", self.data))
        if not self.shape:
            return flat[0]
        return _nest(flat, self.shape)

    @classmethod
    def from_list(cls, values: Any, dtype: str = "float32") -> Tensor:
        """A tensor from a number or (nested, rectangular) lists of numbers; no numpy needed."""
        fmt, _ = _format(dtype)
        shape = _infer_shape(values)
        flat = list(_flatten(values, shape))
        try:
            data = struct.pack(f"<{len(flat)}{fmt}", *flat)
        except struct.error as exc:
            raise ValueError(f"cannot pack values as {dtype}: {exc}") from None
        return cls(dtype, shape, data)

    def to_numpy(self) -> np.ndarray[Any, Any]:
        """The tensor as a read-only numpy array (imports numpy, which must be installed)."""
        import numpy as np

        _format(self.dtype)
        return np.frombuffer(self.data, dtype=DTYPES[self.dtype]).reshape(self.shape)

    @classmethod
    def from_numpy(cls, array: Any) -> Tensor:
        """A tensor holding a copy of a numpy array (or anything `numpy.asarray` accepts)."""
        import numpy as np

        arr = np.asarray(array)
        name = arr.dtype.name
        if name not in DTYPES:
            raise ValueError(
                f"unsupported tensor dtype {arr.dtype}; use one of {', '.join(DTYPES)}"
            )
        little = np.ascontiguousarray(arr, dtype=np.dtype(DTYPES[name]))
        return cls(name, tuple(int(d) for d in arr.shape), little.tobytes())


@dataclass(frozen=True, slots=True)
class Json:
    """Marks a value to be sent as ``json_value`` whatever its Python type.

    Plain lists, dicts and None already go as JSON; wrap scalars when the receiver expects JSON,
    e.g. ``session.update_variable("config", Json("fast"))`` for a JSON variable.
    """

    value: Any


def _format(dtype: str) -> tuple[str, int]:
    entry = _STRUCT_FORMATS.get(dtype)
    if entry is None:
        raise ValueError(f"unsupported tensor dtype {dtype!r}; use one of {', '.join(DTYPES)}")
    return entry


def _nest(flat: list[Any], shape: tuple[int, ...]) -> list[Any]:
    if len(shape) == 1:
        return flat
    step = math.prod(shape[1:])
    return [_nest(flat[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _infer_shape(values: Any) -> tuple[int, ...]:
    shape: list[int] = []
    probe = values
    while isinstance(probe, list | tuple):
        shape.append(len(probe))
        if not probe:
            break
        probe = probe[0]
    return tuple(shape)


def _flatten(values: Any, shape: tuple[int, ...]) -> Iterable[Any]:
    if not shape:
        if isinstance(values, list | tuple):
            raise ValueError("ragged nested lists: every row must have the same length")
        yield values
        return
    if not isinstance(values, list | tuple) or len(values) != shape[0]:
        raise ValueError("ragged nested lists: every row must have the same length")
    for item in values:
        yield from _flatten(item, shape[1:])


# --------------------------------------------------------------------------- Python -> Value


def to_value(obj: Any, *, json: bool = False) -> value_pb2.Value:
    """The `Value` for a Python object (see the module docstring for the mapping).

    With ``json=True`` the object goes as ``json_value`` even when it is a scalar. A `Value`
    is returned as is. Raises `TypeError` for objects with no mapping and `ValueError` for
    ints outside the 64-bit range.
    """
    if not json:
        # Exact-type fast paths: constructing with a keyword is ~2x cheaper than set-after.
        t = type(obj)
        if t is str:
            return _Value(string_value=obj)
        if t is float:
            return _Value(float_value=obj)
        if t is bool:
            return _Value(bool_value=obj)
        if t is int and _INT64_MIN <= obj <= _INT64_MAX:
            return _Value(int_value=obj)
        if t is _Value:
            return cast(value_pb2.Value, obj)
    out = _Value()
    write_value(out, obj, json=json)
    return out


def write_value(target: value_pb2.Value, obj: Any, *, json: bool = False) -> None:
    """Set `target` (an empty or reused `Value`) to the encoding of `obj`, in place."""
    t = type(obj)
    if not json:
        # Exact-type fast paths first; subclasses and foreign types below.
        if t is str:
            target.string_value = obj
            return
        if t is float:
            target.float_value = obj
            return
        if t is bool:
            target.bool_value = obj
            return
        if t is int:
            target.int_value = _check_int64(obj)
            return
        if t is Tensor:
            _write_tensor(target.tensor_value, obj)
            return
        if obj is None or t is list or t is dict:
            _write_json(target.json_value, obj, "")
            return
    if t is Json:
        _write_json(target.json_value, obj.value, "")
        return
    if t is value_pb2.Value:
        target.CopyFrom(obj)
        return
    if json:
        if isinstance(obj, Tensor):
            _write_tensor(target.tensor_value, obj)
        else:
            _write_json(target.json_value, obj, "")
        return
    if isinstance(obj, bool):
        target.bool_value = bool(obj)
    elif isinstance(obj, int):
        target.int_value = _check_int64(int(obj))
    elif isinstance(obj, float):
        target.float_value = float(obj)
    elif isinstance(obj, str):
        target.string_value = str(obj)
    elif isinstance(obj, Tensor):
        _write_tensor(target.tensor_value, obj)
    elif isinstance(obj, Mapping | list | tuple):
        _write_json(target.json_value, obj, "")
    elif _is_numpy(obj):
        if type(obj).__name__ == "ndarray":
            _write_tensor(target.tensor_value, Tensor.from_numpy(obj))
        else:
            write_value(target, obj.item())
    else:
        raise TypeError(
            f"cannot convert {t.__name__} to a Value; use bool, int, float, str, None, "
            "a list or dict of JSON values, or a Tensor"
        )


def _check_int64(value: int) -> int:
    if _INT64_MIN <= value <= _INT64_MAX:
        return value
    raise ValueError(
        f"{value} does not fit in a 64-bit integer; send it as a float or a string instead"
    )


def _write_tensor(target: value_pb2.Tensor, tensor: Tensor) -> None:
    target.dtype = tensor.dtype
    target.shape.extend(tensor.shape)
    target.data = tensor.data


def _is_numpy(obj: Any) -> bool:
    return type(obj).__module__ == "numpy"


def to_json_value(obj: Any) -> struct_pb2.Value:
    """A `google.protobuf.Value` for a JSON-compatible Python object (None, bool, number, str,
    list/tuple, dict with str keys). Raises `TypeError` naming the path of an offending item."""
    out = struct_pb2.Value()
    _write_json(out, obj, "")
    return out


def _write_json(target: struct_pb2.Value, obj: Any, path: str) -> None:
    if obj is None:
        target.null_value = struct_pb2.NULL_VALUE
    elif isinstance(obj, bool):
        target.bool_value = obj
    elif isinstance(obj, int | float):
        target.number_value = obj
    elif isinstance(obj, str):
        target.string_value = obj
    elif isinstance(obj, Mapping):
        fields = target.struct_value.fields
        target.struct_value.SetInParent()
        for key, item in obj.items():
            if not isinstance(key, str):
                raise TypeError(
                    f"JSON object keys must be str, got {type(key).__name__} at {path or '$'}"
                )
            _write_json(fields[key], item, f"{path}.{key}" if path else key)
    elif isinstance(obj, list | tuple):
        items = target.list_value.values
        target.list_value.SetInParent()
        for index, item in enumerate(obj):
            _write_json(items.add(), item, f"{path}[{index}]")
    elif _is_numpy(obj):
        _write_json(target, obj.tolist(), path)
    else:
        raise TypeError(
            f"{type(obj).__name__} at {path or '$'} is not JSON-compatible; use None, bool, "
            "int, float, str, list or dict"
        )


def to_struct(mapping: Mapping[str, Any]) -> struct_pb2.Struct:
    """A `google.protobuf.Struct` for a dict of JSON-compatible values."""
    out = struct_pb2.Struct()
    for key, item in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"JSON object keys must be str, got {type(key).__name__}")
        _write_json(out.fields[key], item, key)
    return out


def to_value_map(mapping: Mapping[str, Any]) -> dict[str, value_pb2.Value]:
    """``{name: Value}`` for a dict of Python values."""
    return {key: to_value(item) for key, item in mapping.items()}


def update_value_map(
    target: MutableMapping[str, value_pb2.Value], mapping: Mapping[str, Any]
) -> None:
    """Write a dict of Python values into a proto ``map<string, Value>`` field, in place."""
    for key, item in mapping.items():
        if not isinstance(key, str):
            raise TypeError(f"names must be str, got {type(key).__name__}")
        entry = target[key]
        entry.Clear()
        write_value(entry, item)


# --------------------------------------------------------------------------- Value -> Python


def from_value(value: value_pb2.Value) -> PyValue:
    """The Python object for a `Value` (see the module docstring for the mapping)."""
    kind = value.WhichOneof("kind")
    if kind in _SCALAR_KINDS:
        return getattr(value, kind)
    if kind == "json_value":
        return from_json_value(value.json_value)
    if kind == "tensor_value":
        t = value.tensor_value
        return Tensor(t.dtype, tuple(t.shape), t.data)
    return None


_SCALAR_KINDS = frozenset({"string_value", "float_value", "int_value", "bool_value"})


def from_json_value(value: struct_pb2.Value) -> Any:
    """The Python object for a `google.protobuf.Value`; whole numbers come back as int."""
    kind = value.WhichOneof("kind")
    if kind == "number_value":
        number = value.number_value
        return int(number) if number.is_integer() else number
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return value.bool_value
    if kind == "struct_value":
        return {key: from_json_value(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [from_json_value(item) for item in value.list_value.values]
    return None


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """The dict for a `google.protobuf.Struct`; whole numbers come back as int."""
    return {key: from_json_value(item) for key, item in struct.fields.items()}


def from_value_map(mapping: Mapping[str, value_pb2.Value]) -> dict[str, PyValue]:
    """``{name: python value}`` for a proto ``map<string, Value>``."""
    return {key: from_value(item) for key, item in mapping.items()}
