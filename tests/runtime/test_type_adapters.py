"""DSPy's adapters build one pydantic TypeAdapter per class (runtime/type_adapters.py): the same
answers as a fresh adapter, one adapter per plain class, everything else built afresh, bounded."""

from __future__ import annotations

import datetime
from typing import Any, Literal

import pydantic
from dspy.adapters import utils, xml_adapter

from dspy_bridge.runtime.executor import configure_runtime
from dspy_bridge.runtime.type_adapters import MAX_TYPES, TypeAdapterCache


class Point(pydantic.BaseModel):
    x: int
    y: int


def test_the_serving_setup_routes_dspys_adapters_through_one_cache() -> None:
    configure_runtime()
    assert isinstance(utils.TypeAdapter, TypeAdapterCache)
    assert xml_adapter.TypeAdapter is utils.TypeAdapter


def test_answers_equal_a_fresh_adapters() -> None:
    cache = TypeAdapterCache()
    values: list[Any] = ["text", 3, 2.5, Point(x=1, y=2), datetime.date(2026, 12, 5), [1, "a"]]
    for value in values:
        expected = pydantic.TypeAdapter(type(value)).dump_python(value, mode="json")
        assert cache(type(value)).dump_python(value, mode="json") == expected
        assert cache(type(value)) is cache(type(value))  # one per class
    assert cache(Point).validate_python({"x": "4", "y": 5}) == Point(x=4, y=5)


def test_what_is_not_a_plain_class_is_built_afresh() -> None:
    built: list[Any] = []

    def build(annotation: Any, **options: Any) -> Any:
        built.append(annotation)
        return pydantic.TypeAdapter(annotation, **options)

    cache = TypeAdapterCache(build)
    for annotation in (list[int], Literal["a", "b"], list[int]):
        assert cache(annotation).validate_python(["1"] if annotation == list[int] else "a")
    cache(int, config=pydantic.ConfigDict(strict=True))
    cache(int, config=pydantic.ConfigDict(strict=True))
    assert len(built) == 5  # nothing kept: generic aliases, literals, calls with options
    assert cache(list[int]).validate_python(["2"]) == [2]


def test_the_cache_is_bounded() -> None:
    cache = TypeAdapterCache()
    # Classes come from hosts' signatures: the cache never grows past its bound.
    for i in range(MAX_TYPES + 10):
        cache(pydantic.create_model(f"Model{i}", value=(int, 0)))
    assert len(cache._adapters) == MAX_TYPES
