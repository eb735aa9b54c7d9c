"""Server-side tools for ReAct: safe arithmetic, echo, lookup, plugins, the provider seam."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import dspy
import pytest

from dspy_bridge.runtime import tools
from dspy_bridge.runtime.tools import (
    BuiltinTools,
    EntryPointTools,
    ToolConfigError,
    ToolRegistry,
    calculate,
)


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("1 + 2 * 3", "7"),
        ("(3 + 4) * 2 / sqrt(16)", "3.5"),
        ("2 ** 10", "1024"),
        ("-7 // 2", "-4"),
        ("round(pi, 2)", "3.14"),
        ("max(1, 5, 3) % 4", "1"),
    ],
)
def test_calculator_evaluates_arithmetic(expression: str, expected: str) -> None:
    assert calculate(expression) == expected


@pytest.mark.parametrize(
    "expression",
    [
        "__import__('os').system('true')",
        "open('/etc/passwd').read()",
        "(1).__class__",
        "[x for x in range(3)]",
        "lambda: 1",
        "abs(x=1)",
        "'a' * 3",
    ],
)
def test_calculator_refuses_everything_but_arithmetic(expression: str) -> None:
    assert calculate(expression).startswith("Error")


def test_calculator_refuses_huge_work() -> None:
    assert calculate("9 ** 9 ** 9").startswith("Error")
    assert calculate("10 ** 400").startswith("Error")
    assert calculate("1" * 600).startswith("Error")
    assert calculate("1 / 0") == "Error: division by zero"


def test_builtin_tools_are_dspy_tools() -> None:
    registry = ToolRegistry([BuiltinTools()])
    built = registry.build(["calculator", "echo", {"name": "lookup", "table": {"Paris": "France"}}])
    by_name = {t.name: t for t in built}
    assert set(by_name) == {"calculator", "echo", "lookup"}
    assert by_name["calculator"](expression="6*7") == "42"
    assert by_name["echo"](text="hi") == "hi"
    assert by_name["lookup"](key=" paris ") == "France"
    assert by_name["lookup"](key="Rome") == "not found"
    assert "Paris" in by_name["lookup"].desc


@pytest.mark.parametrize(
    ("entries", "problem"),
    [
        (["nope"], "unknown tool 'nope'"),
        (["echo", "echo"], "listed twice"),
        (["finish"], "reserved"),
        ([{"name": "lookup"}], "needs option 'table'"),
        ([{"name": "echo", "loud": True}], "takes no option 'loud'"),
        ([3], "a name or an object"),
    ],
)
def test_registry_rejects_bad_entries(entries: list[Any], problem: str) -> None:
    with pytest.raises(ToolConfigError, match=problem):
        ToolRegistry([BuiltinTools()]).validate(entries)


def plugin_weather(city: str) -> str:
    """The weather in a city."""
    return f"sunny in {city}"


class _EntryPoint:
    def __init__(self, name: str, obj: Any) -> None:
        self.name = name
        self._obj = obj

    def load(self) -> Any:
        if isinstance(self._obj, Exception):
            raise self._obj
        return self._obj


def test_entry_point_tools_load_functions_and_tools(monkeypatch: pytest.MonkeyPatch) -> None:
    ready = dspy.Tool(lambda q: q.upper(), name="shout", desc="Shout.")
    eps = [
        _EntryPoint("weather", plugin_weather),
        _EntryPoint("shout", ready),
        _EntryPoint("broken", ImportError("missing dependency")),
    ]
    monkeypatch.setattr(tools.importlib.metadata, "entry_points", lambda group: eps)
    registry = ToolRegistry([BuiltinTools(), EntryPointTools()])
    assert registry.names() == ["calculator", "echo", "lookup", "shout", "weather"]
    weather, shout = registry.build(["weather", "shout"])
    assert weather(city="Oslo") == "sunny in Oslo"
    assert weather.desc == "The weather in a city."
    assert shout is ready
    with pytest.raises(ToolConfigError, match="takes no options"):
        registry.validate([{"name": "weather", "units": "C"}])


class HostTools:
    """What host-side tools over Connect will look like: per-session names."""

    def names(self, session_id: str) -> Sequence[str]:
        return ["host_search"] if session_id == "s-host" else []

    def validate(self, name: str, options: Mapping[str, Any], session_id: str) -> None:
        return None

    def make(self, name: str, options: Mapping[str, Any], session_id: str) -> dspy.Tool:
        return dspy.Tool(lambda query: f"{session_id}:{query}", name=name, desc="Search.")


def test_providers_are_pluggable_per_session() -> None:
    registry = ToolRegistry([BuiltinTools()])
    registry.add_provider(HostTools())
    assert isinstance(HostTools(), tools.ToolProvider)
    assert "host_search" in registry.names("s-host")
    assert "host_search" not in registry.names("other")
    with pytest.raises(ToolConfigError, match="unknown tool"):
        registry.validate(["host_search"], "other")
    (tool,) = registry.build(["host_search"], "s-host")
    assert tool(query="q") == "s-host:q"
