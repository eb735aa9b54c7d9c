"""`dspy_bridge_client.values`: Python ↔ `Value` conversion and `Tensor`."""

from __future__ import annotations

import math
import struct
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import value_pb2
from dspy_bridge_client.values import (
    DTYPES,
    Json,
    Tensor,
    from_json_value,
    from_struct,
    from_value,
    from_value_map,
    to_json_value,
    to_struct,
    to_value,
    to_value_map,
    update_value_map,
)

REPO = Path(__file__).resolve().parents[2]
INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# JSON numbers travel as doubles: whole ones come back as int, so stay where doubles are exact.
JSON_INT = st.integers(min_value=-(2**53), max_value=2**53)
JSON_SCALAR = st.none() | st.booleans() | JSON_INT | st.floats(allow_nan=False) | st.text()
JSON = st.recursive(
    JSON_SCALAR,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
ITEMSIZE = {name: struct.calcsize("<" + fmt) for name, fmt in [
    ("float16", "e"), ("float32", "f"), ("float64", "d"), ("int8", "b"), ("int16", "h"),
    ("int32", "i"), ("int64", "q"), ("uint8", "B"), ("bool", "?"),
]}  # fmt: skip


@st.composite
def tensors(draw: st.DrawFn) -> Tensor:
    dtype = draw(st.sampled_from(sorted(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    data = draw(st.binary(min_size=0, max_size=0)) if 0 in shape else None
    if data is None:
        count = math.prod(shape)
        if dtype == "bool":
            data = bytes(draw(st.lists(st.sampled_from([0, 1]), min_size=count, max_size=count)))
        else:
            size = ITEMSIZE[dtype] * count
            data = draw(st.binary(min_size=size, max_size=size))
    return Tensor(dtype, shape, data)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON: numbers compare by value (1 == 1.0) but bools are not numbers."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return bool(a == b)


# --------------------------------------------------------------------------- mapping


@pytest.mark.parametrize(
    ("obj", "kind"),
    [
        (True, "bool_value"),
        (False, "bool_value"),
        (0, "int_value"),
        (-(2**63), "int_value"),
        (1.5, "float_value"),
        (3.0, "float_value"),
        ("", "string_value"),
        ("héllo", "string_value"),
        (None, "json_value"),
        ([1, "a"], "json_value"),
        ((1, 2), "json_value"),
        ({"a": [1]}, "json_value"),
        ([], "json_value"),
        ({}, "json_value"),
        (Tensor("float32", (1,), b"\0\0\0\0"), "tensor_value"),
    ],
)
def test_to_value_picks_the_kind(obj: Any, kind: str) -> None:
    assert to_value(obj).WhichOneof("kind") == kind


def test_bool_is_checked_before_int() -> None:
    value = to_value(True)
    assert value.WhichOneof("kind") == "bool_value"
    assert from_value(value) is True


def test_int_subclasses_and_float_subclasses_are_accepted() -> None:
    class MyInt(int):
        pass

    class MyFloat(float):
        pass

    assert to_value(MyInt(7)).int_value == 7
    assert to_value(MyFloat(0.5)).float_value == 0.5


def test_top_level_floats_stay_floats() -> None:
    result = from_value(to_value(3.0))
    assert result == 3.0
    assert type(result) is float


def test_whole_json_numbers_come_back_as_int() -> None:
    decoded = from_value(to_value({"n": 3, "f": 3.0, "half": 2.5, "list": [1.0, 2]}))
    assert decoded == {"n": 3, "f": 3, "half": 2.5, "list": [1, 2]}
    assert type(decoded["f"]) is int
    assert type(decoded["half"]) is float


def test_empty_containers_are_set_not_null() -> None:
    assert from_value(to_value([])) == []
    assert from_value(to_value({})) == {}
    assert from_value(to_value({"a": []})) == {"a": []}


def test_unset_value_is_none() -> None:
    assert from_value(value_pb2.Value()) is None
    assert from_json_value(struct_pb2.Value()) is None


def test_value_passes_through() -> None:
    value = value_pb2.Value(int_value=3)
    assert to_value(value) is value


def test_json_marker_and_flag_force_json() -> None:
    for encoded in (to_value(Json("fast")), to_value("fast", json=True)):
        assert encoded.WhichOneof("kind") == "json_value"
        assert from_value(encoded) == "fast"
    assert from_value(to_value(Json(3))) == 3
    assert to_value(Json(None)).json_value.WhichOneof("kind") == "null_value"
    assert to_value(True, json=True).json_value.bool_value is True


def test_int_outside_int64_is_rejected_with_advice() -> None:
    with pytest.raises(ValueError, match="64-bit"):
        to_value(2**63)


@pytest.mark.parametrize("obj", [object(), b"bytes", {1, 2}, 1j])
def test_unsupported_types_say_what_is_supported(obj: Any) -> None:
    with pytest.raises(TypeError, match="use bool, int, float, str"):
        to_value(obj)


def test_json_errors_name_the_path() -> None:
    with pytest.raises(TypeError, match=r"a\.b\[1\]"):
        to_value({"a": {"b": [1, object()]}})
    with pytest.raises(TypeError, match="keys must be str"):
        to_value({"a": {1: "x"}})
    with pytest.raises(TypeError, match="not JSON-compatible"):
        to_value([Tensor("int8", (1,), b"\x01")])


# --------------------------------------------------------------------------- round trips


@given(st.booleans() | INT64 | st.floats(allow_nan=False) | st.text())
def test_scalar_round_trip(obj: Any) -> None:
    back = from_value(to_value(obj))
    assert back == obj
    assert type(back) is type(obj)


def test_nan_round_trip() -> None:
    assert math.isnan(from_value(to_value(math.nan)))


@given(JSON)
def test_json_round_trip(obj: Any) -> None:
    if obj is None or isinstance(obj, list | dict):
        assert same_json(from_value(to_value(obj)), obj)
    assert same_json(from_value(to_value(Json(obj))), obj)


@given(JSON)
def test_json_round_trip_survives_serialization(obj: Any) -> None:
    wire = to_value(Json(obj)).SerializeToString()
    assert same_json(from_value(value_pb2.Value.FromString(wire)), obj)


@given(tensors())
def test_tensor_round_trip(tensor: Tensor) -> None:
    wire = to_value(tensor).SerializeToString()
    back = from_value(value_pb2.Value.FromString(wire))
    assert back == tensor
    assert back.expected_bytes() == len(back.data)


@given(st.dictionaries(st.text(max_size=5), st.integers(-5, 5) | st.text() | st.none()))
def test_value_map_round_trip(mapping: dict[str, Any]) -> None:
    assert from_value_map(to_value_map(mapping)) == mapping


# --------------------------------------------------------------------------- helpers


def test_update_value_map_writes_in_place() -> None:
    request = pb.ExecuteRequest()
    request.inputs["stale"].string_value = "x"
    update_value_map(request.inputs, {"question": "why?", "k": 3, "stale": [1]})
    assert from_value_map(request.inputs) == {"question": "why?", "k": 3, "stale": [1]}
    with pytest.raises(TypeError, match="names must be str"):
        update_value_map(request.inputs, {1: "x"})  # type: ignore[dict-item]


def test_struct_helpers() -> None:
    config = {"max_iters": 5, "tools": ["search"], "nested": {"t": 0.5, "on": True}}
    assert from_struct(to_struct(config)) == config
    assert from_json_value(to_json_value([1, None])) == [1, None]
    with pytest.raises(TypeError):
        to_struct({1: 2})  # type: ignore[dict-item]


# --------------------------------------------------------------------------- Tensor


def test_tensor_lists_without_numpy() -> None:
    tensor = Tensor.from_list([[1, 2, 3], [4, 5, 6]], dtype="int32")
    assert tensor.shape == (2, 3)
    assert tensor.size == 6
    assert tensor.itemsize == 4
    assert tensor.data == struct.pack("<6i", 1, 2, 3, 4, 5, 6)
    assert tensor.to_list() == [[1, 2, 3], [4, 5, 6]]
    assert Tensor.from_list(2.5, "float64").to_list() == 2.5
    assert Tensor.from_list([], "float32").to_list() == []
    assert Tensor("int8", (2, 0), b"").to_list() == [[], []]


def test_tensor_validation_messages() -> None:
    with pytest.raises(ValueError, match="ragged"):
        Tensor.from_list([[1, 2], [3]], "int8")
    with pytest.raises(ValueError, match="unsupported tensor dtype 'complex64'"):
        Tensor.from_list([1], "complex64")
    with pytest.raises(ValueError, match="cannot pack"):
        Tensor.from_list([300], "int8")
    with pytest.raises(ValueError, match="need 8"):
        Tensor("float32", (2,), b"\0").to_list()
    assert Tensor("complex64", (1,), b"").expected_bytes() is None


def test_tensor_normalizes_shape_and_data_and_has_short_repr() -> None:
    tensor = Tensor("uint8", [3], bytearray(b"abc"))  # type: ignore[arg-type]
    assert tensor.shape == (3,)
    assert type(tensor.data) is bytes
    assert repr(tensor) == "Tensor(dtype='uint8', shape=(3,), nbytes=3)"
    assert hash(tensor) == hash(Tensor("uint8", (3,), b"abc"))


def test_tensor_numpy_round_trip() -> None:
    np = pytest.importorskip("numpy")
    big_endian = np.arange(6, dtype=">i4").reshape(2, 3)
    tensor = Tensor.from_numpy(big_endian)
    assert tensor.dtype == "int32"
    assert tensor.data == np.arange(6, dtype="<i4").tobytes()
    assert (tensor.to_numpy() == big_endian).all()
    assert tensor.to_list() == big_endian.tolist()
    for dtype in DTYPES:
        array = np.ones((2, 2), dtype=dtype)
        assert (Tensor.from_numpy(array).to_numpy() == array).all()
    with pytest.raises(ValueError, match="unsupported tensor dtype"):
        Tensor.from_numpy(np.zeros(2, dtype="complex64"))


def test_numpy_objects_convert() -> None:
    np = pytest.importorskip("numpy")
    array = np.linspace(0, 1, 4, dtype="float32")
    assert from_value(to_value(array)) == Tensor.from_numpy(array)
    assert to_value(np.int64(3)).int_value == 3
    assert to_value(np.float32(0.5)).float_value == 0.5
    assert to_value(np.bool_(True)).bool_value is True
    assert from_value(to_value({"v": np.arange(3)})) == {"v": [0, 1, 2]}


# --------------------------------------------------------------------------- packaging


def test_package_works_without_numpy_or_dspy() -> None:
    script = textwrap.dedent(
        """
        import sys

        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("numpy", "dspy", "litellm"):
                    raise ImportError(f"blocked: {name}")

        sys.meta_path.insert(0, Block())
        import dspy_bridge_client as c
        from dspy_bridge_client.values import Tensor, from_value, to_value

        t = Tensor.from_list([[1.0, 2.0]], "float32")
        assert from_value(to_value(t)).to_list() == [[1.0, 2.0]]
        assert from_value(to_value({"a": [1, 2.5]})) == {"a": [1, 2.5]}
        c.BridgeClient("127.0.0.1:1").close()
        try:
            t.to_numpy()
        except ImportError:
            pass
        else:
            raise AssertionError("numpy should be blocked")
        assert not any(m.split(".")[0] in ("numpy", "dspy") for m in sys.modules)
        print("ok")
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_client_distribution_depends_only_on_grpc_and_protobuf() -> None:
    project = tomllib.loads((REPO / "clients/python/pyproject.toml").read_text())["project"]
    names = {
        dep.split(">")[0].split("=")[0].split("<")[0].strip() for dep in project["dependencies"]
    }
    assert names == {"grpcio", "grpcio-status", "protobuf"}
