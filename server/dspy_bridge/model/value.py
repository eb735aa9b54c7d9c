"""Values as the bridge holds them in Python, and their JSON form for the stores.

A `PyValue` is what a `dspy_bridge.v1.Value` becomes: None, bool, int, float, str, a JSON list
or dict, or a `Tensor`. The stores keep values as JSON text; tensors are tagged so they survive.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, TypeAlias

import numpy as np

# A JSON-compatible value or a Tensor (nested inside lists/dicts is allowed only for JSON values).
PyValue: TypeAlias = Any

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

_TENSOR_TAG = "__tensor__"


@dataclass(frozen=True)
class Tensor:
    """A dense row-major little-endian array, as `dspy_bridge.v1.Tensor` carries it."""

    dtype: str
    shape: tuple[int, ...]
    data: bytes

    def expected_bytes(self) -> int | None:
        """Byte length `data` must have, or None when the dtype is unknown."""
        numpy_dtype = DTYPES.get(self.dtype)
        if numpy_dtype is None:
            return None
        count = 1
        for dim in self.shape:
            count *= dim
        return count * np.dtype(numpy_dtype).itemsize

    def to_numpy(self) -> np.ndarray[Any, Any]:
        return np.frombuffer(self.data, dtype=DTYPES[self.dtype]).reshape(self.shape)

    def to_list(self) -> Any:
        return self.to_numpy().tolist()

    @classmethod
    def from_numpy(cls, array: np.ndarray[Any, Any]) -> Tensor:
        name = next(
            (n for n, d in DTYPES.items() if np.dtype(d) == array.dtype.newbyteorder("<")), None
        )
        if name is None:
            raise ValueError(f"unsupported dtype {array.dtype}")
        little = array.astype(DTYPES[name], copy=False)
        return cls(name, tuple(int(d) for d in array.shape), np.ascontiguousarray(little).tobytes())


def _to_jsonable(value: PyValue) -> Any:
    if isinstance(value, Tensor):
        return {
            _TENSOR_TAG: {
                "dtype": value.dtype,
                "shape": list(value.shape),
                "data": base64.b64encode(value.data).decode("ascii"),
            }
        }
    return value


def _from_jsonable(raw: Any) -> PyValue:
    if isinstance(raw, dict) and len(raw) == 1 and _TENSOR_TAG in raw:
        t = raw[_TENSOR_TAG]
        return Tensor(t["dtype"], tuple(t["shape"]), base64.b64decode(t["data"]))
    return raw


def encode_value(value: PyValue) -> str:
    """JSON text for a value (compact; tensors tagged)."""
    return json.dumps(_to_jsonable(value), separators=(",", ":"), ensure_ascii=False)


def decode_value(text: str) -> PyValue:
    """The inverse of `encode_value`."""
    return _from_jsonable(json.loads(text))
