"""Every field a BridgeService request can reach has a limit rule (new RPCs and fields too)."""

from __future__ import annotations

from google.protobuf.descriptor import Descriptor, FieldDescriptor

from dspy_bridge.transport.convert import timestamp_from_seconds
from dspy_bridge.transport.request_limits import RequestLimits
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from tests.conftest import test_settings

_SCALAR_NUMBERS = {
    FieldDescriptor.TYPE_INT32,
    FieldDescriptor.TYPE_INT64,
    FieldDescriptor.TYPE_UINT32,
    FieldDescriptor.TYPE_UINT64,
    FieldDescriptor.TYPE_SINT32,
    FieldDescriptor.TYPE_SINT64,
    FieldDescriptor.TYPE_FIXED32,
    FieldDescriptor.TYPE_FIXED64,
    FieldDescriptor.TYPE_SFIXED32,
    FieldDescriptor.TYPE_SFIXED64,
    FieldDescriptor.TYPE_DOUBLE,
    FieldDescriptor.TYPE_FLOAT,
}


def _reachable(limits: RequestLimits) -> list[tuple[Descriptor, FieldDescriptor]]:
    """Every (message, field) of our own messages a request reaches through walked fields."""
    out: list[tuple[Descriptor, FieldDescriptor]] = []
    seen: set[str] = set()

    def walk(message: Descriptor) -> None:
        if message.full_name in seen or message.full_name.startswith("google."):
            return
        seen.add(message.full_name)
        for field in message.fields:
            out.append((message, field))
            rule = limits.rule(message, field)
            target = field.message_type
            if target is not None and target.GetOptions().map_entry:
                target = target.fields_by_name["value"].message_type
            if target is not None and rule is not None and rule.walk:
                walk(target)

    for method in pb.DESCRIPTOR.services_by_name["BridgeService"].methods:
        if method.client_streaming:
            continue  # Connect: each message is bounded by the host hub (`host_max_*` settings)
        walk(method.input_type)
    return out


def test_every_request_field_has_a_rule() -> None:
    limits = RequestLimits(test_settings())
    missing = [f"{m.name}.{f.name}" for m, f in _reachable(limits) if limits.rule(m, f) is None]
    assert not missing, f"fields without a limit rule in request_limits.build_rules: {missing}"


def test_numbers_texts_and_lists_are_bounded_unless_declared_free() -> None:
    limits = RequestLimits(test_settings())
    for message, field in _reachable(limits):
        rule = limits.rule(message, field)
        assert rule is not None
        where = f"{message.name}.{field.name}"
        if rule.free:
            continue
        if field.type in _SCALAR_NUMBERS:
            assert rule.ints is not None or rule.finite, f"{where} has no numeric range"
        if field.type == FieldDescriptor.TYPE_STRING:
            assert rule.chars is not None, f"{where} has no length limit"
        if field.is_repeated and not (
            field.message_type is not None and field.message_type.GetOptions().map_entry
        ):
            assert rule.items is not None, f"{where} has no item limit"
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            assert rule.entries is not None, f"{where} has no entry limit"


def test_a_time_beyond_the_timestamp_range_is_sent_as_the_latest_one() -> None:
    assert timestamp_from_seconds(2.0**63).seconds == 253_402_300_799
