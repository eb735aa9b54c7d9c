"""Proto <-> domain conversion: every value kind survives the wire, and so do the records.

Round trips go through `SerializeToString` / `FromString`, so they also prove the messages are
valid on the wire (e.g. no int64 overflow, no empty list lost because its kind was never set).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import (
    Constraints,
    HistoryEntry,
    LMSpec,
    Session,
    Tensor,
    Variable,
)
from dspy_bridge.model import VariableType as T
from dspy_bridge.model.validation import coerce_value
from dspy_bridge.model.value import DTYPES
from dspy_bridge.transport.convert import (
    constraints_from_proto,
    constraints_to_proto,
    history_entry_to_proto,
    lm_from_proto,
    lm_to_proto,
    session_to_proto,
    timestamp_from_seconds,
    timestamp_to_seconds,
    value_from_proto,
    value_to_proto,
    values_from_proto,
    values_to_proto,
    variable_to_proto,
    variable_type_from_proto,
    variable_value_to_proto,
)
from dspy_bridge_client._proto.dspy_bridge.v1 import (
    bridge_service_pb2,
    lm_pb2,
    session_pb2,
    value_pb2,
    variable_pb2,
)


def wire(v: value_pb2.Value) -> value_pb2.Value:
    """The message as the other side parses it."""
    return value_pb2.Value.FromString(v.SerializeToString())


def through(v: Any) -> Any:
    return value_from_proto(wire(value_to_proto(v)))


# --------------------------------------------------------------------------------------------
# Strategies

SAFE_INTS = st.integers(-(2**53), 2**53)
FINITE = st.floats(allow_nan=False, allow_infinity=False)
JSON_SCALARS = st.none() | st.booleans() | SAFE_INTS | FINITE | st.text()
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=25,
)
JSON_CONTAINERS = (
    st.none() | st.lists(JSON, max_size=4) | st.dictionaries(st.text(), JSON, max_size=4)
)


@st.composite
def tensors(draw: st.DrawFn, dtype: str | None = None) -> Tensor:
    name = dtype or draw(st.sampled_from(sorted(DTYPES)))
    array = draw(
        hnp.arrays(
            np.dtype(DTYPES[name]), hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4)
        )
    )
    return Tensor.from_numpy(array)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON, and ints/floats/bools not confused (1 == 1.0 is fine, True == 1 is not)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


# --------------------------------------------------------------------------------------------
# Values


@given(st.booleans() | st.integers(-(2**63), 2**63 - 1) | FINITE | st.text())
def test_scalars_round_trip_with_their_kind(v: Any) -> None:
    back = through(v)
    assert back == v
    assert type(back) is type(v)


def test_scalar_kinds() -> None:
    assert value_to_proto(True).WhichOneof("kind") == "bool_value"
    assert value_to_proto(1).WhichOneof("kind") == "int_value"
    assert value_to_proto(1.0).WhichOneof("kind") == "float_value"
    assert value_to_proto("1").WhichOneof("kind") == "string_value"
    assert value_to_proto(None).WhichOneof("kind") == "json_value"
    assert value_to_proto([]).WhichOneof("kind") == "json_value"
    assert value_to_proto({}).WhichOneof("kind") == "json_value"
    assert value_to_proto(Tensor("int8", (0,), b"")).WhichOneof("kind") == "tensor_value"


@pytest.mark.parametrize("v", [math.nan, math.inf, -math.inf, -0.0])
def test_special_floats(v: float) -> None:
    back = through(v)
    assert type(back) is float
    assert (
        math.isnan(back)
        if math.isnan(v)
        else (back == v and math.copysign(1, back) == math.copysign(1, v))
    )


@given(JSON_CONTAINERS)
def test_json_round_trips(v: Any) -> None:
    assert same_json(through(v), v)


@given(st.lists(SAFE_INTS, max_size=5))
def test_integral_json_numbers_come_back_as_ints(v: list[int]) -> None:
    back = through(v)
    assert back == v
    assert all(type(x) is int for x in back)


def test_json_number_types() -> None:
    assert through([3.0, 2.5, 2**53, 2.0**60, 1e300]) == [3, 2.5, 2**53, 2.0**60, 1e300]
    assert [type(x) for x in through([3.0, 2.5, 2.0**60])] == [int, float, float]


def test_empty_containers_survive() -> None:
    assert through([]) == []
    assert through({}) == {}
    assert through({"a": [], "b": {}, "c": [[]]}) == {"a": [], "b": {}, "c": [[]]}
    assert through(None) is None
    assert through((1, (2,))) == [1, [2]]


def test_unset_value_is_none() -> None:
    assert value_from_proto(value_pb2.Value()) is None


@pytest.mark.parametrize("dtype", sorted(DTYPES))
@given(data=st.data())
def test_tensors_round_trip_for_every_dtype(dtype: str, data: st.DataObject) -> None:
    t = data.draw(tensors(dtype))
    back = through(t)
    assert isinstance(back, Tensor)
    assert back == t
    assert back.expected_bytes() == len(back.data)


def test_numpy_scalars_are_sent_as_python_scalars() -> None:
    assert through(np.float32(0.5)) == 0.5
    assert type(through(np.int64(3))) is int
    assert type(through(np.bool_(True))) is bool
    assert through([np.float64(1.5)]) == [1.5]


@pytest.mark.parametrize(
    "v",
    [b"bytes", {1: "a"}, [b"x"], {"a": {1, 2}}, [Tensor("int8", (0,), b"")], object()],
)
def test_unsendable_values(v: Any) -> None:
    with pytest.raises(TypeError):
        value_to_proto(v)


@pytest.mark.parametrize("v", [2**63, -(2**63) - 1, [10**400], {"a": -(10**400)}])
def test_out_of_range_numbers(v: Any) -> None:
    with pytest.raises(ValueError):
        value_to_proto(v)


@given(st.dictionaries(st.text(), JSON | st.integers(-(2**63), 2**63 - 1) | tensors(), max_size=5))
def test_value_maps_round_trip(values: dict[str, Any]) -> None:
    request = bridge_service_pb2.ExecuteRequest()
    values_to_proto(values, request.inputs)
    parsed = bridge_service_pb2.ExecuteRequest.FromString(request.SerializeToString())
    back = values_from_proto(parsed.inputs)
    assert back.keys() == values.keys()
    for name, v in values.items():
        if isinstance(v, Tensor):
            assert back[name] == v
        else:
            assert same_json(back[name], v)


# --------------------------------------------------------------------------------------------
# Variable values: what a host registers comes back, after the wire, as the same stored value

EMBEDDINGS = st.lists(FINITE.map(float), max_size=8)
BY_TYPE: dict[T, st.SearchStrategy[Any]] = {
    T.FLOAT: FINITE | SAFE_INTS,
    T.INTEGER: st.integers(-(2**63), 2**63 - 1),
    T.STRING: st.text(),
    T.BOOLEAN: st.booleans(),
    T.CHOICE: st.sampled_from(["a", "b", "c"]),
    T.MODULE: st.sampled_from(["Predict", "ChainOfThought", "ReAct", "dspy.Predict"]),
    T.EMBEDDING: EMBEDDINGS,
    T.TENSOR: tensors(),
    T.JSON: JSON,
}
CHOICES = Constraints(choices=("a", "b", "c"))


@pytest.mark.parametrize("type_", list(T))
@given(data=st.data())
def test_variable_values_round_trip(type_: T, data: st.DataObject) -> None:
    c = CHOICES if type_ is T.CHOICE else Constraints()
    stored = coerce_value(type_, c, data.draw(BY_TYPE[type_]))
    back = coerce_value(type_, c, value_from_proto(wire(variable_value_to_proto(type_, stored))))
    if type_ is T.JSON:
        assert same_json(back, stored)
    else:
        assert back == stored
        assert type(back) is type(stored)


@pytest.mark.parametrize(
    ("type_", "value", "kind"),
    [
        (T.FLOAT, 1.5, "float_value"),
        (T.FLOAT, 2, "float_value"),
        (T.INTEGER, 2, "int_value"),
        (T.STRING, "s", "string_value"),
        (T.BOOLEAN, False, "bool_value"),
        (T.CHOICE, "a", "string_value"),
        (T.MODULE, "Predict", "string_value"),
        (T.EMBEDDING, [0.5, 1.0], "json_value"),
        (T.EMBEDDING, [], "json_value"),
        (T.TENSOR, Tensor("uint8", (1,), b"\x07"), "tensor_value"),
        (T.JSON, 5, "json_value"),
        (T.JSON, "text", "json_value"),
        (T.JSON, True, "json_value"),
        (T.JSON, None, "json_value"),
        (T.JSON, {"a": 1}, "json_value"),
    ],
)
def test_variable_value_kind_follows_the_type(type_: T, value: Any, kind: str) -> None:
    """Each type goes out in the `Value` kind variable.proto documents for it."""
    assert wire(variable_value_to_proto(type_, value)).WhichOneof("kind") == kind


def test_embedding_goes_out_as_a_json_list_of_floats() -> None:
    v = variable_value_to_proto(T.EMBEDDING, [0.5, -2.0])
    assert [x.number_value for x in v.json_value.list_value.values] == [0.5, -2.0]
    t = Tensor.from_numpy(np.array([0.25, 4.0], dtype=np.float32))
    assert value_from_proto(variable_value_to_proto(T.EMBEDDING, t)) == [0.25, 4]


def test_missing_variable_value_is_an_unset_value() -> None:
    assert variable_value_to_proto(T.FLOAT, None).WhichOneof("kind") is None


# --------------------------------------------------------------------------------------------
# Types and constraints


@pytest.mark.parametrize("type_", list(T))
def test_variable_types_map_by_number(type_: T) -> None:
    proto_value = variable_pb2.VariableType.Value(f"VARIABLE_TYPE_{type_.name}")
    assert variable_type_from_proto(proto_value) is type_


def test_every_proto_type_has_a_domain_type() -> None:
    names = set(variable_pb2.VariableType.keys()) - {"VARIABLE_TYPE_UNSPECIFIED"}
    assert names == {f"VARIABLE_TYPE_{t.name}" for t in T}


@pytest.mark.parametrize(
    ("number", "says"), [(0, "not set"), (99, "unknown (99)"), (-1, "unknown")]
)
def test_unspecified_or_unknown_type_is_rejected(number: int, says: str) -> None:
    with pytest.raises(BridgeError) as info:
        variable_type_from_proto(number)
    err = info.value
    assert err.reason == Reason.INVALID_REQUEST
    assert [v.field for v in err.violations] == ["type"]
    assert says in err.message and "VARIABLE_TYPE_FLOAT" in err.message


OPT_FLOAT = st.none() | FINITE
OPT_LEN = st.none() | st.integers(0, 2**40)
CONSTRAINTS = st.builds(
    Constraints,
    min=OPT_FLOAT,
    max=OPT_FLOAT,
    step=OPT_FLOAT,
    choices=st.lists(st.text(), max_size=4).map(tuple),
    pattern=st.text(),
    min_length=OPT_LEN,
    max_length=OPT_LEN,
    dims=st.lists(st.integers(0, 2**20), max_size=4).map(tuple),
    dtype=st.sampled_from(["", *DTYPES]),
)


@given(CONSTRAINTS)
def test_constraints_round_trip(c: Constraints) -> None:
    proto = variable_pb2.VariableConstraints.FromString(constraints_to_proto(c).SerializeToString())
    assert constraints_from_proto(proto) == c


def test_zero_is_not_unset() -> None:
    """`min=0` is a real bound; only an absent optional field is None."""
    c = Constraints(min=0.0, max=0.0, step=None, min_length=0, max_length=0)
    assert constraints_from_proto(constraints_to_proto(c)) == c
    assert constraints_from_proto(variable_pb2.VariableConstraints()) == Constraints()
    proto = constraints_to_proto(Constraints())
    assert not proto.HasField("min") and not proto.HasField("max_length")


# --------------------------------------------------------------------------------------------
# Records


def test_variable_to_proto() -> None:
    v = Variable(
        id="var_1",
        session_id="s1",
        name="temperature",
        type=T.FLOAT,
        value=0.7,
        constraints=Constraints(min=0.0, max=2.0, step=0.1),
        description="sampling temperature",
        metadata={"owner": "host"},
        version=4,
        create_time=1_700_000_000.25,
        update_time=1_700_000_100.5,
        source="optimizer:job1",
    )
    p = variable_pb2.Variable.FromString(variable_to_proto(v).SerializeToString())
    assert (p.id, p.session_id, p.name, p.description) == (
        "var_1",
        "s1",
        "temperature",
        "sampling temperature",
    )
    assert p.type == variable_pb2.VARIABLE_TYPE_FLOAT
    assert value_from_proto(p.value) == 0.7
    assert constraints_from_proto(p.constraints) == v.constraints
    assert dict(p.metadata) == {"owner": "host"}
    assert p.version == 4
    assert p.source == "optimizer:job1"
    assert timestamp_to_seconds(p.create_time) == 1_700_000_000.25
    assert timestamp_to_seconds(p.update_time) == 1_700_000_100.5


@pytest.mark.parametrize("type_", list(T))
@given(data=st.data())
def test_variable_round_trips_for_every_type(type_: T, data: st.DataObject) -> None:
    c = CHOICES if type_ is T.CHOICE else Constraints()
    value = coerce_value(type_, c, data.draw(BY_TYPE[type_]))
    v = Variable(id="i", session_id="s", name="n", type=type_, value=value, constraints=c)
    p = variable_pb2.Variable.FromString(variable_to_proto(v).SerializeToString())
    assert variable_type_from_proto(p.type) is type_
    back = coerce_value(type_, constraints_from_proto(p.constraints), value_from_proto(p.value))
    assert same_json(back, value) if type_ is T.JSON else back == value
    assert not p.HasField("create_time")  # 0.0 = not known


def test_history_entry_to_proto() -> None:
    entry = HistoryEntry(
        version=3, value=[0.5, 1.0], source="host", reason="tuning", update_time=12.5
    )
    p = variable_pb2.VariableHistoryEntry.FromString(
        history_entry_to_proto(T.EMBEDDING, entry).SerializeToString()
    )
    assert (p.version, p.source, p.reason) == (3, "host", "tuning")
    assert p.value.WhichOneof("kind") == "json_value"
    assert value_from_proto(p.value) == [0.5, 1.0]
    assert timestamp_to_seconds(p.update_time) == 12.5


def test_session_to_proto() -> None:
    s = Session(
        session_id="sess_abc",
        metadata={"team": "x"},
        ttl_seconds=600,
        create_time=1_700_000_000.0,
        expire_time=1_700_000_600.75,
        lm=LMSpec("openai/gpt-4o-mini", api_key_env="OPENAI_API_KEY", options={"temperature": "0"}),
        variable_count=3,
        module_count=1,
    )
    p = session_pb2.Session.FromString(session_to_proto(s).SerializeToString())
    assert p.session_id == "sess_abc"
    assert dict(p.metadata) == {"team": "x"}
    assert (p.ttl_seconds, p.variable_count, p.module_count) == (600, 3, 1)
    assert timestamp_to_seconds(p.create_time) == 1_700_000_000.0
    assert timestamp_to_seconds(p.expire_time) == 1_700_000_600.75
    assert lm_from_proto(p.lm) == s.lm


def test_session_that_never_expires() -> None:
    p = session_to_proto(Session(session_id="s", create_time=5.0))
    assert not p.HasField("expire_time")
    assert not p.HasField("lm")


@given(
    st.builds(
        LMSpec,
        model=st.text(min_size=1).filter(str.strip),
        api_base=st.text(),
        api_key_env=st.text(),
        options=st.dictionaries(st.text(), st.text(), max_size=4),
    )
)
def test_lm_round_trips(spec: LMSpec) -> None:
    proto = lm_pb2.LMConfig.FromString(lm_to_proto(spec).SerializeToString())
    assert lm_from_proto(proto) == spec


@pytest.mark.parametrize("model", ["", "  "])
def test_lm_without_a_model_is_none(model: str) -> None:
    assert lm_from_proto(lm_pb2.LMConfig(model=model, api_base="http://x")) is None


# --------------------------------------------------------------------------------------------
# Timestamps


@given(st.floats(min_value=1e-3, max_value=4e9))
def test_timestamps_round_trip(seconds: float) -> None:
    ts = timestamp_from_seconds(seconds)
    assert 0 <= ts.nanos < 1_000_000_000
    assert abs(timestamp_to_seconds(ts) - seconds) <= 1e-6


def test_timestamp_rounding_carries_into_seconds() -> None:
    ts = timestamp_from_seconds(1.9999999999)
    assert (ts.seconds, ts.nanos) == (2, 0)
    before_epoch = timestamp_from_seconds(-1.5)
    assert (before_epoch.seconds, before_epoch.nanos) == (-2, 500_000_000)
