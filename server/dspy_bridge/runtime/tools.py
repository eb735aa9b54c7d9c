"""Tools a `ReAct` module may call, resolved by name on the server.

No RPC ever executes code sent by a host, so a ReAct module's config names its tools
(`{"tools": ["calculator", {"name": "lookup", "table": {...}}]}`) and the server supplies them from
`ToolProvider`s:

- `BuiltinTools` — `calculator` (arithmetic parsed with `ast`, never `eval`), `echo` and
  `lookup` (answers from a table given in the tool's config entry);
- `EntryPointTools` — tools installed as Python entry points in the group `dspy_bridge.tools`
  (each entry point names a function with a docstring and typed arguments, or a `dspy.Tool`);
- `HostTools` (`host_tools.py`) — `host:<name>` tools a host offers over `Connect`, whose calls
  forward to the host's stream. That is the reason for the `session_id` argument — a host's
  tools belong to its session — and for the protocol being the only thing `ToolRegistry` knows
  about providers (plus an optional `claims(name)`: a provider owning a namespace explains a
  name it lacks).

A tool entry in config is a name, or an object with `name` and tool options. Options are checked
when the module is created (`validate`), and tools are instantiated when it is built (`make`).
"""

from __future__ import annotations

import ast
import importlib.metadata
import logging
import math
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

import dspy

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dspy_bridge.tools"


class ToolConfigError(ValueError):
    """A tool entry is unknown or its options are wrong; the message says which and why."""


@runtime_checkable
class ToolProvider(Protocol):
    """A source of named tools. Providers are asked in order; the first that knows a name wins."""

    def names(self, session_id: str) -> Sequence[str]:
        """Tool names this provider offers to `session_id`."""
        ...

    def validate(self, name: str, options: Mapping[str, Any], session_id: str) -> None:
        """Raise `ToolConfigError` when `options` do not suit tool `name`."""
        ...

    def make(self, name: str, options: Mapping[str, Any], session_id: str) -> dspy.Tool:
        """A fresh `dspy.Tool` for `name` configured with `options` (already validated)."""
        ...


# --------------------------------------------------------------------------------------------
# Built-in tools

_MAX_EXPRESSION_CHARS = 500
_MAX_EXPONENT = 1_000
_MAX_MAGNITUDE = 1e300

_BINARY: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY: dict[type[ast.unaryop], Callable[[Any], Any]] = {
    ast.UAdd: operator.pos,
    ast.USub: operator.neg,
}
#: Most digits `round` takes either way: values stay within 1e300, so more round to the same
#: result, and an int rounded to -n digits computes 10**n (n = 10**12 is hours of work).
_MAX_ROUND_DIGITS = 300


def _round(number: int | float, ndigits: int | None = None) -> int | float:
    if ndigits is not None and (not isinstance(ndigits, int) or abs(ndigits) > _MAX_ROUND_DIGITS):
        raise ValueError(f"round: ndigits must be an integer within ±{_MAX_ROUND_DIGITS}")
    return round(number, ndigits)


_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "abs": abs,
    "round": _round,
    "min": min,
    "max": max,
    "sqrt": math.sqrt,
    "log": math.log,
    "exp": math.exp,
    "floor": math.floor,
    "ceil": math.ceil,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e}


def _evaluate(node: ast.AST) -> int | float:
    """Arithmetic over numbers only: any other syntax (names, attributes, calls to anything but
    the few math functions) is refused, and huge powers are refused before they are computed."""
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        number: int | float = node.value  # type: ignore[assignment]
        return number
    if isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_evaluate(node.operand))  # type: ignore[no-any-return]
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and (
            abs(right) > _MAX_EXPONENT
            or (abs(left) > 1 and abs(right) * math.log10(abs(left)) > 300)
        ):
            raise ValueError("power too large")
        result = _BINARY[type(node.op)](left, right)
        if isinstance(result, complex) or abs(result) > _MAX_MAGNITUDE:
            raise ValueError("result out of range")
        return result  # type: ignore[no-any-return]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _FUNCTIONS
        and not node.keywords
    ):
        args = [_evaluate(a) for a in node.args]
        return _FUNCTIONS[node.func.id](*args)  # type: ignore[no-any-return]
    raise ValueError(f"unsupported syntax: {ast.dump(node)[:60]}")


def calculate(expression: str) -> str:
    """Evaluate an arithmetic expression, e.g. `(3 + 4) * 2 / sqrt(16)`. Supports + - * / // % **,
    parentheses, pi, e and abs, round, min, max, sqrt, log, exp, floor, ceil."""
    text = str(expression).strip()
    if len(text) > _MAX_EXPRESSION_CHARS:
        return f"Error: expression longer than {_MAX_EXPRESSION_CHARS} characters"
    try:
        result = _evaluate(ast.parse(text, mode="eval"))
    except ZeroDivisionError:
        return "Error: division by zero"
    except (SyntaxError, ValueError, TypeError, OverflowError) as exc:
        return f"Error: cannot evaluate {text!r}: {exc}"
    if isinstance(result, float) and result.is_integer() and abs(result) < 2**53:
        return str(int(result))
    return str(result)


def echo(text: str) -> str:
    """Return the given text unchanged."""
    return str(text)


def _lookup_tool(table: Mapping[str, Any]) -> dspy.Tool:
    folded = {str(k).strip().casefold(): v for k, v in table.items()}
    keys = ", ".join(sorted(str(k) for k in table)[:20])

    def lookup(key: str) -> str:
        value = folded.get(str(key).strip().casefold())
        return "not found" if value is None else str(value)

    return dspy.Tool(
        lookup,
        name="lookup",
        desc=f"Look a key up in a reference table and return its value. Known keys: {keys}.",
    )


class BuiltinTools:
    """`calculator`, `echo` and `lookup` (option `table`: an object of key → value)."""

    _NAMES = ("calculator", "echo", "lookup")

    def names(self, session_id: str) -> Sequence[str]:
        return self._NAMES

    def validate(self, name: str, options: Mapping[str, Any], session_id: str) -> None:
        allowed = {"table"} if name == "lookup" else set()
        extra = sorted(set(options) - allowed)
        if extra:
            raise ToolConfigError(f"tool {name!r} takes no option {extra[0]!r}")
        if name == "lookup":
            table = options.get("table")
            if not isinstance(table, Mapping) or not table:
                raise ToolConfigError("tool 'lookup' needs option 'table': a non-empty object")

    def make(self, name: str, options: Mapping[str, Any], session_id: str) -> dspy.Tool:
        if name == "calculator":
            return dspy.Tool(calculate, name="calculator")
        if name == "echo":
            return dspy.Tool(echo, name="echo")
        return _lookup_tool(options["table"])


class EntryPointTools:
    """Tools installed as entry points (group `dspy_bridge.tools`), loaded once on first use.

    An entry point's object is a `dspy.Tool` or a plain function (its name, docstring and type
    hints describe it to the LM). Entry-point tools take no options.
    """

    def __init__(self, group: str = ENTRY_POINT_GROUP) -> None:
        self._group = group
        self._loaded: dict[str, Any] | None = None

    def _tools(self) -> dict[str, Any]:
        if self._loaded is None:
            loaded: dict[str, Any] = {}
            for ep in importlib.metadata.entry_points(group=self._group):
                try:
                    loaded[ep.name] = ep.load()
                except Exception:  # a broken plugin must not take the server down
                    log.exception("cannot load tool entry point %s", ep.name)
            self._loaded = loaded
        return self._loaded

    def names(self, session_id: str) -> Sequence[str]:
        return sorted(self._tools())

    def validate(self, name: str, options: Mapping[str, Any], session_id: str) -> None:
        if options:
            raise ToolConfigError(f"tool {name!r} takes no options")

    def make(self, name: str, options: Mapping[str, Any], session_id: str) -> dspy.Tool:
        obj = self._tools()[name]
        if isinstance(obj, dspy.Tool):
            return obj
        return dspy.Tool(obj, name=name)


# --------------------------------------------------------------------------------------------
# Registry


def tool_entry(entry: Any) -> tuple[str, dict[str, Any]]:
    """(name, options) of one config entry: `"name"` or `{"name": ..., <options>}`."""
    if isinstance(entry, str) and entry:
        return entry, {}
    if isinstance(entry, Mapping) and isinstance(entry.get("name"), str) and entry["name"]:
        return entry["name"], {k: v for k, v in entry.items() if k != "name"}
    raise ToolConfigError('a tool is a name or an object with a "name"')


class ToolRegistry:
    """Resolves tool entries against providers, in order (built-ins first)."""

    def __init__(self, providers: Sequence[ToolProvider] | None = None) -> None:
        self._providers: list[ToolProvider] = (
            list(providers) if providers is not None else [BuiltinTools(), EntryPointTools()]
        )

    def add_provider(self, provider: ToolProvider) -> None:
        """Adds a provider after the existing ones (e.g. host tools over `Connect`)."""
        self._providers.append(provider)

    def with_provider(self, provider: ToolProvider) -> ToolRegistry:
        """A new registry: these providers, then `provider` (host tools of one execution)."""
        return ToolRegistry([*self._providers, provider])

    def names(self, session_id: str = "") -> list[str]:
        seen: dict[str, None] = {}
        for provider in self._providers:
            seen.update(dict.fromkeys(provider.names(session_id)))
        return list(seen)

    def _provider(self, name: str, session_id: str) -> ToolProvider:
        for provider in self._providers:
            if name in provider.names(session_id):
                return provider
        for provider in self._providers:
            # A provider may own a whole namespace (`host:`) and explain a name it lacks.
            claims = getattr(provider, "claims", None)
            if claims is not None and claims(name):
                return provider
        known = ", ".join(self.names(session_id)) or "none"
        raise ToolConfigError(f"unknown tool {name!r} (available: {known})")

    def validate(self, entries: Sequence[Any], session_id: str = "") -> None:
        """Raise `ToolConfigError` (message prefixed with the entry index) for a bad entry."""
        seen: set[str] = set()
        for index, entry in enumerate(entries):
            try:
                name, options = tool_entry(entry)
                if name == "finish":
                    raise ToolConfigError("'finish' is reserved: ReAct adds it itself")
                if name in seen:
                    raise ToolConfigError(f"tool {name!r} is listed twice")
                seen.add(name)
                self._provider(name, session_id).validate(name, options, session_id)
            except ToolConfigError as exc:
                if type(exc) is not ToolConfigError:  # a specific error (host tool unavailable)
                    raise
                raise ToolConfigError(f"[{index}]: {exc}") from None

    def build(self, entries: Sequence[Any], session_id: str = "") -> list[dspy.Tool]:
        tools = []
        for entry in entries:
            name, options = tool_entry(entry)
            tools.append(self._provider(name, session_id).make(name, options, session_id))
        return tools


_default_registry: ToolRegistry | None = None


def default_registry() -> ToolRegistry:
    """The process-wide registry (built-ins and entry points)."""
    global _default_registry
    if _default_registry is None:
        _default_registry = ToolRegistry()
    return _default_registry
