"""Hypothesis strategies that build any request message from its proto descriptor.

Nothing here names an RPC or a field of ours: `requests(descriptor)` walks the descriptor, so a
new RPC or field is generated as soon as it is in the proto. Values lean to what breaks
servers: edge numbers (0, -1, int64 extremes, NaN, infinities), empty and oversized strings
(past the id, text and metadata limits), unknown enum numbers, deep Structs, and — for fields
whose name says they hold an id or name — the ids of a live "victim" session, so generated
requests reach real state and not only NOT_FOUND.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import struct_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import Message
from hypothesis import strategies as st

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["BridgeService"]
#: The victim session every run keeps alive, with a variable `x`, a string `s` and a module `m`.
VICTIM = "victim"
VICTIM_NAMES = ("x", "s", "m", "missing", "job_0000000000000000")
MAX_DEPTH = 4

_F = FieldDescriptor
_INT_RANGES = {
    _F.TYPE_INT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _F.TYPE_INT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _F.TYPE_UINT32: (0, 2**32 - 1),
    _F.TYPE_FIXED32: (0, 2**32 - 1),
    _F.TYPE_UINT64: (0, 2**64 - 1),
    _F.TYPE_FIXED64: (0, 2**64 - 1),
}
#: Lengths just past the limits a host meets (ids 128, metadata 1,024, descriptions 4,096,
#: config 65,536) and a 200,000-character one.
_LONG = (129, 1_025, 4_097, 70_000, 200_000)


def _ints(low: int, high: int) -> st.SearchStrategy[int]:
    edges = [v for v in (0, 1, -1, 2, 3, 100, 2**31 - 1, -(2**31), 2**53 + 1, high, low)]
    return st.one_of(
        st.sampled_from([v for v in edges if low <= v <= high]), st.integers(low, high)
    )


_DOUBLES = st.one_of(
    st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 1e308, -1e308, 5e-324]),
    st.just(float("nan")),
    st.sampled_from([float("inf"), float("-inf")]),
    st.floats(allow_nan=True, allow_infinity=True),
)
_SHORT_TEXT = st.text(max_size=24)
_LONG_TEXT = st.builds(
    lambda c, n: c * n, st.sampled_from(["a", "é", "\x00", "9"]), st.sampled_from(_LONG)
)
_TEXT = st.one_of(
    st.sampled_from(["", " ", "x", "q -> a", "Predict", "offline", "*", "exact_match"]),
    _SHORT_TEXT,
    _LONG_TEXT,
)
_ID_TEXT = st.one_of(st.sampled_from([VICTIM, *VICTIM_NAMES, ""]), _TEXT)

_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False, allow_infinity=False) | _SHORT_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_SHORT_TEXT, inner, max_size=3),
    max_leaves=8,
)


def _deep_struct(depth: int) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    node = out
    for _ in range(depth):
        node = node.fields["d"].struct_value
    return out


def _structs() -> st.SearchStrategy[struct_pb2.Struct]:
    def build(data: dict[str, Any]) -> struct_pb2.Struct:
        out = struct_pb2.Struct()
        out.update(data)
        return out

    return st.one_of(
        st.dictionaries(_SHORT_TEXT, _JSON, max_size=4).map(build),
        st.sampled_from([21, 30]).map(_deep_struct),  # past the config depth limit of 20
        _LONG_TEXT.map(lambda t: build({"big": t})),
    )


def _values() -> st.SearchStrategy[struct_pb2.Value]:
    def build(data: Any) -> struct_pb2.Value:
        out = struct_pb2.Value()
        if data is None:
            out.null_value = struct_pb2.NULL_VALUE
        elif isinstance(data, bool):
            out.bool_value = data
        elif isinstance(data, float):
            out.number_value = data
        elif isinstance(data, str):
            out.string_value = data
        elif isinstance(data, list):
            out.list_value.extend(data)
        else:
            out.struct_value.update(data)
        return out

    return _JSON.map(build)


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    kind = field.type
    if kind in _INT_RANGES:
        return _ints(*_INT_RANGES[kind])
    if kind in (_F.TYPE_DOUBLE, _F.TYPE_FLOAT):
        return _DOUBLES if kind == _F.TYPE_DOUBLE else st.floats(width=32)
    if kind == _F.TYPE_BOOL:
        return st.booleans()
    if kind == _F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-5, 1_000))
    if kind == _F.TYPE_BYTES:
        return st.binary(max_size=64)
    name = field.name
    if name.endswith("_id") or name in ("name", "names", "module_type", "optimizer"):
        return _ID_TEXT
    return _TEXT


def _message(descriptor: Descriptor, depth: int) -> st.SearchStrategy[Message]:
    full = descriptor.full_name
    if full == "google.protobuf.Struct":
        return _structs()
    if full == "google.protobuf.Value":
        return _values()
    return st.deferred(lambda: _fields(descriptor, depth))


@st.composite
def _fields(draw: st.DrawFn, descriptor: Descriptor, depth: int) -> Message:
    message = _class_of(descriptor)()
    for field in descriptor.fields:
        if not draw(st.booleans()):
            continue
        if depth >= MAX_DEPTH and field.message_type is not None:
            continue
        _fill(draw, message, field, depth)
    return message


def _fill(draw: st.DrawFn, message: Message, field: FieldDescriptor, depth: int) -> None:
    target = getattr(message, field.name)
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        key_field, value_field = entry.fields_by_name["key"], entry.fields_by_name["value"]
        count = draw(st.sampled_from([0, 1, 2, 3, 300]))  # 300: past the entry limits
        for i in range(count):
            key = draw(_scalar(key_field)) if count < 10 else f"k{i}"
            if value_field.message_type is not None:
                target[key].CopyFrom(draw(_message(value_field.message_type, depth + 1)))
            else:
                target[key] = draw(_scalar(value_field)) if count < 10 else "v"
        return
    if field.is_repeated:
        count = draw(st.integers(0, 3))
        for _ in range(count):
            if field.message_type is not None:
                target.add().CopyFrom(draw(_message(field.message_type, depth + 1)))
            else:
                target.append(draw(_scalar(field)))
        return
    if field.message_type is not None:
        target.CopyFrom(draw(_message(field.message_type, depth + 1)))
        return
    setattr(message, field.name, draw(_scalar(field)))


def _class_of(descriptor: Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


def requests(descriptor: Descriptor) -> st.SearchStrategy[Message]:
    """Any message of this type (see module docstring)."""
    return _message(descriptor, 0)


def garbled(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Bytes that are, or are almost, a serialized message of this type: random bytes, and
    valid serializations cut short or with bytes flipped."""

    @st.composite
    def damaged(draw: st.DrawFn) -> bytes:
        data = bytearray(draw(requests(descriptor)).SerializeToString())
        if not data:
            return b"\xff"
        how = draw(st.sampled_from(["cut", "flip", "append"]))
        if how == "cut":
            return bytes(data[: draw(st.integers(0, len(data) - 1))])
        if how == "flip":
            at = draw(st.integers(0, len(data) - 1))
            data[at] ^= draw(st.integers(1, 255))
            return bytes(data)
        return bytes(data) + draw(st.binary(min_size=1, max_size=16))

    return st.one_of(st.binary(max_size=128), damaged())
