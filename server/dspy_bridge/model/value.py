"""Values as the bridge holds them in Python, and their JSON form for the stores.

A `PyValue` is what a `dspy_bridge.v1.Value` becomes: None, bool, int, float, str, a JSON list
or dict, or a `Tensor`. `Tensor` and `DTYPES` are the client package's, so a value means the
same thing on both sides of the wire. The stores keep values as JSON text; tensors are tagged
so they survive.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from dspy_bridge_client.values import DTYPES, PyValue, Tensor

__all__ = ["DTYPES", "PyValue", "Tensor", "decode_value", "encode_value"]

_TENSOR_TAG = "__tensor__"


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
