"""Module types a host can create, their config, and how each becomes a DSPy module.

Every type declares its config keys (kind, default, check) so `CreateModule` can reject a bad
config before anything is stored (INVALID_ARGUMENT `INVALID_MODULE_CONFIG`, naming the key), and
so a config key can be bound to a variable of a compatible type (see `params.py`).

Built-in types:

| type | config | outputs beyond the signature |
|---|---|---|
| `Predict` | — | — |
| `ChainOfThought` | — | `reasoning` |
| `ReAct` | `tools` (names, see `tools.py`), `max_iters` | `reasoning`, `trajectory` |
| `ProgramOfThought` | `max_iters` (needs Deno for DSPy's interpreter) | `reasoning` |
| `BestOfN`, `Refine` | `N`, `threshold`, `reward`, `field`, `target`, `target_input`, |  |
|  | `inner`, `fail_count` | inner's |
| `MultiChainComparison` | `M`, `temperature` | `rationale` |
| `Parallel` | `inner`, `max_concurrency` | (see below) |

`Parallel` runs its inner module (`Predict` or `ChainOfThought`) on every element of a list: the
signature describes one item; `Execute` takes one input, `items` (a list of objects, each holding
the signature's inputs) and returns one output, `items` (a list of objects, each holding that
item's outputs, typed as the signature says). Because its inputs and outputs have that different
shape, `Parallel` is never a target of the `module_type` parameter, and its own `module_type`
cannot be bound (bind `inner` instead).

Further types come from entry points in the group `dspy_bridge.modules`: each is a factory
`(signature_cls, config) -> dspy.Module`; it takes any JSON config and may expose
`validate_config(config)` raising `ValueError` to reject one.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import math
import shutil
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import dspy

from dspy_bridge.errors import BridgeError, Reason, failed_precondition, invalid_argument
from dspy_bridge.model import VariableType
from dspy_bridge.runtime import strategies
from dspy_bridge.runtime.host_calls import unavailable
from dspy_bridge.runtime.host_tools import HostToolUnavailable
from dspy_bridge.runtime.tools import ToolConfigError, ToolRegistry, default_registry

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "dspy_bridge.modules"

Kind = Literal["int", "float", "bool", "str", "list", "dict", "module", "any"]

# Variable types a config key of each kind can be bound to.
KIND_VARIABLE_TYPES: dict[Kind, frozenset[VariableType]] = {
    "int": frozenset({VariableType.INTEGER}),
    "float": frozenset({VariableType.FLOAT, VariableType.INTEGER}),
    "bool": frozenset({VariableType.BOOLEAN}),
    "str": frozenset({VariableType.STRING, VariableType.CHOICE}),
    "module": frozenset({VariableType.MODULE, VariableType.CHOICE, VariableType.STRING}),
    "list": frozenset({VariableType.JSON}),
    "dict": frozenset({VariableType.JSON}),
    "any": frozenset(VariableType),
}

_REQUIRED: Any = object()


class ConfigError(ValueError):
    """A config value is wrong; `key` names it (empty: the config as a whole)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key
        self.message = message

    def to_bridge(self, prefix: str = "config") -> BridgeError:
        where = f"{prefix}.{self.key}" if self.key else prefix
        return invalid_argument(
            Reason.INVALID_MODULE_CONFIG,
            f"{where}: {self.message}",
            where,
            metadata={"key": self.key} if self.key else None,
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class ConfigKey:
    """One config key: its kind, default (`_REQUIRED` when it has none), range and meaning."""

    name: str
    kind: Kind
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    doc: str = ""

    def coerce(self, value: Any) -> Any:
        """The normalized value, or `ConfigError`. Integers may arrive as integral floats
        (google.protobuf.Struct has only doubles)."""
        kind = self.kind
        if kind in ("int", "float"):
            if not _is_number(value) or not math.isfinite(value):
                raise ConfigError(self.name, f"must be a number, got {value!r}")
            if kind == "int":
                if float(value) != int(value):
                    raise ConfigError(self.name, f"must be a whole number, got {value!r}")
                value = int(value)
            else:
                value = float(value)
            if self.minimum is not None and value < self.minimum:
                raise ConfigError(self.name, f"must be at least {self.minimum:g}, got {value!r}")
            if self.maximum is not None and value > self.maximum:
                raise ConfigError(self.name, f"must be at most {self.maximum:g}, got {value!r}")
            return value
        if kind == "bool":
            if not isinstance(value, bool):
                raise ConfigError(self.name, f"must be true or false, got {value!r}")
            return value
        if kind in ("str", "module"):
            if not isinstance(value, str):
                raise ConfigError(self.name, f"must be a string, got {value!r}")
            if self.choices and value not in self.choices:
                raise ConfigError(
                    self.name, f"must be one of {', '.join(self.choices)}; got {value!r}"
                )
            return value
        if kind == "list" and not isinstance(value, list):
            raise ConfigError(self.name, f"must be a list, got {value!r}")
        if kind == "dict" and not isinstance(value, dict):
            raise ConfigError(self.name, f"must be an object, got {value!r}")
        return value


@dataclass(frozen=True)
class BuildContext:
    """What building a module may need beyond its spec."""

    session_id: str = ""
    tools: ToolRegistry = field(default_factory=default_registry)


class ModuleType:
    """A module type: config schema, availability, construction and output extras."""

    name: str = ""
    keys: tuple[ConfigKey, ...] = ()
    #: Accept config keys the schema does not list (entry-point types).
    open_config: bool = False
    #: May be selected through the `module_type` parameter (same input/output shape).
    switchable: bool = True
    #: Output fields the module adds in front of the signature's outputs (all typed `str`).
    extra_outputs: tuple[str, ...] = ()

    def key(self, name: str) -> ConfigKey | None:
        return next((k for k in self.keys if k.name == name), None)

    def validate_config(
        self,
        config: Mapping[str, Any],
        inputs: tuple[str, ...],
        outputs: tuple[str, ...],
        ctx: BuildContext,
        *,
        strict: bool = True,
    ) -> dict[str, Any]:
        """The normalized config (defaults filled in), or `ConfigError`.

        `strict` rejects keys the type does not know; non-strict drops them (used when the
        `module_type` parameter switches a module to another type, whose config may differ).
        """
        normalized: dict[str, Any] = {}
        for name, value in config.items():
            key = self.key(name)
            if key is None:
                if self.open_config:
                    normalized[name] = value
                elif strict:
                    known = ", ".join(k.name for k in self.keys) or "none"
                    raise ConfigError(name, f"unknown key for {self.name} (keys: {known})")
                continue
            normalized[name] = key.coerce(value)
        for key in self.keys:
            if key.name not in normalized:
                if key.default is _REQUIRED:
                    raise ConfigError(key.name, f"is required for {self.name}")
                if key.default is not None:
                    normalized[key.name] = key.default
        self.check_config(normalized, inputs, outputs, ctx)
        return normalized

    def check_config(
        self,
        config: dict[str, Any],
        inputs: tuple[str, ...],
        outputs: tuple[str, ...],
        ctx: BuildContext,
    ) -> None:
        """Cross-key checks; `ConfigError` on failure."""

    def check_available(self) -> None:
        """FAILED_PRECONDITION when the type cannot run on this server."""

    def build(
        self, signature: type[dspy.Signature], config: Mapping[str, Any], ctx: BuildContext
    ) -> dspy.Module:
        raise NotImplementedError

    def final_predictor(self, program: dspy.Module) -> dspy.Predict | None:
        """The predictor whose outputs are the module's outputs, for token streaming; None when
        there is no single one that is called as-is."""
        return None


class _Predict(ModuleType):
    name = "Predict"

    def build(
        self, signature: type[dspy.Signature], config: Mapping[str, Any], ctx: BuildContext
    ) -> dspy.Module:
        return dspy.Predict(signature)

    def final_predictor(self, program: dspy.Module) -> dspy.Predict | None:
        return program


class _ChainOfThought(ModuleType):
    name = "ChainOfThought"
    extra_outputs = ("reasoning",)

    def build(
        self, signature: type[dspy.Signature], config: Mapping[str, Any], ctx: BuildContext
    ) -> dspy.Module:
        return dspy.ChainOfThought(signature)

    def final_predictor(self, program: dspy.Module) -> dspy.Predict | None:
        return program.predict


class _ReAct(ModuleType):
    name = "ReAct"
    keys = (
        ConfigKey("tools", "list", [], doc="tool names or {name, options...} (see tools.py)"),
        ConfigKey("max_iters", "int", 10, minimum=1, maximum=50, doc="most tool calls"),
    )
    extra_outputs = ("reasoning", "trajectory")

    def check_config(
        self,
        config: dict[str, Any],
        inputs: tuple[str, ...],
        outputs: tuple[str, ...],
        ctx: BuildContext,
    ) -> None:
        try:
            ctx.tools.validate(config.get("tools", []), ctx.session_id)
        except HostToolUnavailable as exc:
            raise unavailable(
                "tool", Reason.HOST_TOOL_UNAVAILABLE, exc.name, exc.connected
            ) from None
        except ToolConfigError as exc:
            raise ConfigError("tools", str(exc).lstrip(": ")) from None

    def build(
        self, signature: type[dspy.Signature], config: Mapping[str, Any], ctx: BuildContext
    ) -> dspy.Module:
        tools = ctx.tools.build(config.get("tools", []), ctx.session_id)
        return dspy.ReAct(signature, tools=tools, max_iters=config["max_iters"])

    def final_predictor(self, program: dspy.Module) -> dspy.Predict | None:
        return program.extract.predict


@functools.cache
def interpreter_problem() -> str | None:
    """Why DSPy's PythonInterpreter (Deno + Pyodide) cannot run here, or None when it can.

    Mirrors how `dspy.PythonInterpreter` finds Deno: the `deno` Python package's binary, else
    `deno` on PATH; it needs Deno >=2,<3. A configured `interpreter_factory` replaces Deno.
    Cached: probing runs a subprocess.
    """
    if dspy.settings.interpreter_factory is not None:
        return None
    try:
        from dspy.primitives import python_interpreter as pi

        executable = pi._find_deno_executable()
        version = pi._get_deno_version(executable)
        low, high = pi.MIN_DENO_VERSION, pi.MAX_DENO_VERSION
    except (ImportError, AttributeError):  # DSPy moved things: fall back to a PATH check
        return None if shutil.which("deno") else "Deno is not installed"
    if version is None:
        return f"Deno was not found (looked for {executable!r})"
    if not low <= version < high:
        return f"Deno {'.'.join(map(str, version))} is installed, but DSPy needs >=2.0.0,<3.0.0"
    return None


class _ProgramOfThought(ModuleType):
    name = "ProgramOfThought"
    keys = (ConfigKey("max_iters", "int", 3, minimum=1, maximum=10, doc="code attempts"),)
    extra_outputs = ("reasoning",)

    def check_available(self) -> None:
        problem = interpreter_problem()
        if problem is not None:
            raise failed_precondition(
                Reason.INTERPRETER_UNAVAILABLE,
                f"ProgramOfThought runs generated code in DSPy's sandboxed Python interpreter, "
                f"which needs Deno 2.x on the server: {problem}. Install it "
                '(`pip install "dspy[deno]"` or https://deno.com) or use another module type.',
                module_type=self.name,
            )

    def build(
        self, signature: type[dspy.Signature], config: Mapping[str, Any], ctx: BuildContext
    ) -> dspy.Module:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return dspy.ProgramOfThought(signature, max_iters=config["max_iters"])

    def final_predictor(self, program: dspy.Module) -> dspy.Predict | None:
        return program.generate_output.predict


_INNER_TYPES = ("Predict", "ChainOfThought")


def _build_inner(name: str, signature: type[dspy.Signature]) -> dspy.Module:
    return dspy.ChainOfThought(signature) if name == "ChainOfThought" else dspy.Predict(signature)


class _RewardLoop(ModuleType):
    """BestOfN and Refine share their config (an inner module, a reward) and their build;
    `strategy` is the DSPy module class each wraps."""

    strategy: type[strategies.BestOfN] | type[strategies.Refine]

    keys = (
        ConfigKey("N", "int", 3, minimum=1, maximum=20, doc="attempts"),
        ConfigKey("threshold", "float", 1.0, doc="stop at the first attempt reaching it"),
        ConfigKey("reward", "str", "non_empty", choices=strategies.REWARDS),
        ConfigKey("field", "str", doc="output field the reward reads"),
        ConfigKey("target", "any", doc="value for exact_match / contains"),
        ConfigKey("target_input", "str", doc="input field holding the target"),
        ConfigKey("inner", "module", "Predict", choices=_INNER_TYPES),
        ConfigKey("fail_count", "int", minimum=0, maximum=20, doc="failed attempts allowed"),
    )

    def check_config(
        self,
        config: dict[str, Any],
        inputs: tuple[str, ...],
        outputs: tuple[str, ...],
        ctx: BuildContext,
    ) -> None:
        named = config.get("field")
        if named and named not in (*outputs, *self._inner_extras(config)):
            raise ConfigError("field", f"{named!r} is not an output field ({', '.join(outputs)})")
        source = config.get("target_input")
        if source and source not in inputs:
            raise ConfigError(
                "target_input", f"{source!r} is not an input field ({', '.join(inputs)})"
            )
        if source and config.get("target") is not None:
            raise ConfigError("target", "give target or target_input, not both")
        if config["reward"] != "non_empty" and not source and config.get("target") is None:
            raise ConfigError("target", f"reward {config['reward']!r} needs target or target_input")

    @staticmethod
    def _inner_extras(config: Mapping[str, Any]) -> tuple[str, ...]:
        return ("reasoning",) if config.get("inner") == "ChainOfThought" else ()

    def reward(
        self, signature: type[dspy.Signature], config: Mapping[str, Any]
    ) -> strategies.Reward:
        return strategies.Reward(
            config["reward"],
            list(signature.output_fields),
            config.get("field") or "",
            config.get("target"),
            config.get("target_input") or "",
        )

    def build(
        self, signature: type[dspy.Signature], config: Mapping[str, Any], ctx: BuildContext
    ) -> dspy.Module:
        return self.strategy(
            module=_build_inner(config["inner"], signature),
            N=config["N"],
            reward_fn=self.reward(signature, config),
            threshold=config["threshold"],
            fail_count=config.get("fail_count"),
        )


class _BestOfN(_RewardLoop):
    name = "BestOfN"
    strategy = strategies.BestOfN


class _Refine(_RewardLoop):
    name = "Refine"
    strategy = strategies.Refine


class _MultiChainComparison(ModuleType):
    name = "MultiChainComparison"
    keys = (
        ConfigKey("M", "int", 3, minimum=1, maximum=10, doc="reasoning attempts compared"),
        ConfigKey("temperature", "float", 0.7, minimum=0.0, maximum=2.0),
    )
    extra_outputs = ("rationale",)

    def build(
        self, signature: type[dspy.Signature], config: Mapping[str, Any], ctx: BuildContext
    ) -> dspy.Module:
        return strategies.MultiChainComparison(signature, config["M"], config["temperature"])

    def final_predictor(self, program: dspy.Module) -> dspy.Predict | None:
        return program.compare.predict


class _Parallel(ModuleType):
    name = "Parallel"
    keys = (
        ConfigKey("inner", "module", "Predict", choices=_INNER_TYPES),
        ConfigKey("max_concurrency", "int", 4, minimum=1, maximum=64),
    )
    switchable = False

    def build(
        self, signature: type[dspy.Signature], config: Mapping[str, Any], ctx: BuildContext
    ) -> dspy.Module:
        inner = _build_inner(config["inner"], signature)
        return strategies.ParallelItems(inner, config["max_concurrency"])


class _EntryPoint(ModuleType):
    """A module type from an installed plugin; its config is open JSON."""

    open_config = True

    def __init__(self, name: str, factory: Callable[..., Any]) -> None:
        self.name = name
        self._factory = factory

    def check_config(
        self,
        config: dict[str, Any],
        inputs: tuple[str, ...],
        outputs: tuple[str, ...],
        ctx: BuildContext,
    ) -> None:
        validate = getattr(self._factory, "validate_config", None)
        if validate is None:
            return
        try:
            validate(dict(config))
        except ValueError as exc:
            raise ConfigError(getattr(exc, "key", ""), str(exc)) from None

    def build(
        self, signature: type[dspy.Signature], config: Mapping[str, Any], ctx: BuildContext
    ) -> dspy.Module:
        module = self._factory(signature, dict(config))
        if not isinstance(module, dspy.Module):
            raise TypeError(f"module type {self.name!r} returned {type(module).__name__}")
        return module

    def final_predictor(self, program: dspy.Module) -> dspy.Predict | None:
        predictors = program.predictors()
        return predictors[0] if len(predictors) == 1 else None


_BUILTIN: dict[str, ModuleType] = {
    t.name: t
    for t in (
        _Predict(),
        _ChainOfThought(),
        _ReAct(),
        _ProgramOfThought(),
        _BestOfN(),
        _Refine(),
        _MultiChainComparison(),
        _Parallel(),
    )
}


@functools.cache
def _entry_point_types() -> dict[str, ModuleType]:
    found: dict[str, ModuleType] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in _BUILTIN:
            log.warning("module type entry point %s shadows a built-in type; ignored", ep.name)
            continue
        try:
            found[ep.name] = _EntryPoint(ep.name, ep.load())
        except Exception:  # a broken plugin must not take the server down
            log.exception("cannot load module type entry point %s", ep.name)
    return found


def _all_types() -> dict[str, ModuleType]:
    return {**_BUILTIN, **_entry_point_types()}


def module_types() -> list[str]:
    """Every module type name this server can create (built-ins first)."""
    return list(_all_types())


def switchable_types() -> list[str]:
    """Types the `module_type` parameter may select."""
    return [name for name, t in _all_types().items() if t.switchable]


def get_type(name: str, field_name: str = "module_type") -> ModuleType:
    """The type called `name`, or INVALID_ARGUMENT `UNKNOWN_MODULE_TYPE`."""
    found = _all_types().get(name)
    if found is None:
        raise invalid_argument(
            Reason.UNKNOWN_MODULE_TYPE,
            f"unknown module type {name!r}; known types: {', '.join(module_types())}",
            field_name,
            metadata={"module_type": name},
        )
    return found


def output_extras(module_type: ModuleType, config: Mapping[str, Any]) -> tuple[str, ...]:
    """Output fields a built module adds in front of the signature's outputs."""
    if isinstance(module_type, _RewardLoop | _Parallel):
        return ("reasoning",) if config.get("inner") == "ChainOfThought" else ()
    return module_type.extra_outputs
