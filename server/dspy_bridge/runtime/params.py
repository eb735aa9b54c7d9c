"""Bindable module parameters: which exist, which variable types may feed them, which values
they accept, and how a set of values becomes the parameters an execution uses.

Parameters: the LM options `temperature`, `max_tokens`, `top_p`, `n`, `stop`, `model`; `adapter`
(`chat` | `json` | `xml`); `module_type` (switches the strategy without recreating the module);
`instructions` (replaces the signature's instructions); and any config key of the module's type
(for a built-in type, every key its schema lists, given in the config or not).

A binding's variable type is checked at `CreateModule` (FAILED_PRECONDITION
`BINDING_TYPE_MISMATCH`), together with the variable's current value and, for CHOICE and MODULE
variables, every choice — so a module never gets bound to a variable that could not work. A value
is checked again whenever it is used, because variables change after the module is created.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import grpc

from dspy_bridge.errors import BridgeError, FieldViolation, Reason, invalid_argument
from dspy_bridge.model import PyValue, Variable, VariableType
from dspy_bridge.runtime import registry
from dspy_bridge.runtime.signatures import FieldSpec, SignatureSpec, check_fields_for_module

F, INT, S, C, M, J = (
    VariableType.FLOAT,
    VariableType.INTEGER,
    VariableType.STRING,
    VariableType.CHOICE,
    VariableType.MODULE,
    VariableType.JSON,
)

#: Parameters that configure the LM call (handed to `build_lm`).
LM_PARAMETERS = ("temperature", "max_tokens", "top_p", "n", "stop", "model")

#: Variable types each fixed parameter accepts.
PARAMETER_TYPES: dict[str, frozenset[VariableType]] = {
    "temperature": frozenset({F, INT}),
    "max_tokens": frozenset({INT}),
    "top_p": frozenset({F}),
    "n": frozenset({INT}),
    "stop": frozenset({S, J}),
    "model": frozenset({S, C}),
    "adapter": frozenset({C, S}),
    "module_type": frozenset({M, C}),
    "instructions": frozenset({S}),
}

ADAPTERS = ("chat", "json", "xml")


class ParamError(ValueError):
    """A value a parameter cannot take; the message says what it accepts."""


def _number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
        raise ParamError(f"{name} must be a number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bound = "(" if low_open else "["
        raise ParamError(f"{name} must be in {bound}{low:g}, {high:g}], got {value!r}")
    return float(value)


def _integer(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ParamError(f"{name} must be a whole number, got {value!r}")
    if not low <= value <= high:
        raise ParamError(f"{name} must be between {low} and {high}, got {value}")
    return value


def _stop(value: Any) -> str | list[str]:
    if isinstance(value, str) and value:
        return value
    if (
        isinstance(value, list)
        and 0 < len(value) <= 16
        and all(isinstance(s, str) and s for s in value)
    ):
        return list(value)
    raise ParamError(f"stop must be a non-empty string or a list of 1-16 strings, got {value!r}")


def _text(name: str, value: Any, *, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty_ok):
        raise ParamError(f"{name} must be a non-empty string, got {value!r}")
    return value


def parameter_names(module_type: str, config: Mapping[str, Any]) -> list[str]:
    """Every parameter a module of this type and config can bind."""
    mtype = registry.get_type(module_type)
    fixed = [p for p in PARAMETER_TYPES if not (p == "module_type" and not mtype.switchable)]
    keys = [k.name for k in mtype.keys] + [k for k in config if mtype.open_config]
    return fixed + [k for k in dict.fromkeys(keys) if k not in PARAMETER_TYPES]


def allowed_types(
    name: str, module_type: str, config: Mapping[str, Any]
) -> frozenset[VariableType]:
    """Variable types parameter `name` accepts; `ParamError` when there is no such parameter."""
    mtype = registry.get_type(module_type)
    if name in PARAMETER_TYPES and not (name == "module_type" and not mtype.switchable):
        return PARAMETER_TYPES[name]
    key = mtype.key(name)
    if key is not None:
        return registry.KIND_VARIABLE_TYPES[key.kind]
    if mtype.open_config and name in config:
        return _types_for_json(config[name])
    if name == "module_type":
        raise ParamError(
            f"module_type cannot be bound on a {module_type} module "
            "(its inputs and outputs have another shape); bind `inner` instead"
        )
    known = ", ".join(parameter_names(module_type, config))
    raise ParamError(f"{name!r} is not a parameter of {module_type} (parameters: {known})")


def _types_for_json(value: Any) -> frozenset[VariableType]:
    if isinstance(value, bool):
        return frozenset({VariableType.BOOLEAN})
    if isinstance(value, int):
        return frozenset({INT})
    if isinstance(value, float):
        return frozenset({F, INT})
    if isinstance(value, str):
        return frozenset({S, C, M})
    return frozenset({J})


def check_value(
    name: str,
    value: PyValue,
    *,
    module_type: str,
    config: Mapping[str, Any],
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    ctx: registry.BuildContext | None = None,
) -> PyValue:
    """The normalized value of parameter `name`, or `ParamError` saying what it accepts.

    `module_type`/`config` are the module's own (the record's), `inputs`/`outputs` its signature
    field names (needed to check config keys that name fields), `ctx` the session's build
    context (its tools).
    """
    ctx = ctx or registry.BuildContext()
    if name == "temperature":
        return _number(name, value, 0.0, 2.0)
    if name == "top_p":
        return _number(name, value, 0.0, 1.0, low_open=True)
    if name == "max_tokens":
        return _integer(name, value, 1, 10_000_000)
    if name == "n":
        return _integer(name, value, 1, 128)
    if name == "stop":
        return _stop(value)
    if name == "model":
        return _text(name, value)
    if name == "instructions":
        return _text(name, value, empty_ok=True)
    if name == "adapter":
        if value not in ADAPTERS:
            raise ParamError(f"adapter must be one of {', '.join(ADAPTERS)}, got {value!r}")
        return value
    if name == "module_type":
        return _check_module_type(value, config, inputs, outputs, ctx)
    mtype = registry.get_type(module_type)
    key = mtype.key(name)
    if key is None:
        return value  # open config of an entry-point type: checked when built
    try:
        coerced = key.coerce(value)
        mtype.validate_config({**config, name: coerced}, inputs, outputs, ctx, strict=False)
    except registry.ConfigError as exc:
        raise ParamError(f"config key {name}: {exc.message}") from None
    return coerced


def _check_module_type(
    value: Any,
    config: Mapping[str, Any],
    inputs: tuple[str, ...],
    outputs: tuple[str, ...],
    ctx: registry.BuildContext,
) -> str:
    allowed = registry.switchable_types()
    if value not in allowed:
        raise ParamError(f"module_type must be one of {', '.join(allowed)}, got {value!r}")
    target = registry.get_type(value)
    try:
        target.validate_config(config, inputs, outputs, ctx, strict=False)
    except registry.ConfigError as exc:
        raise ParamError(
            f"module_type {value!r} does not work with this module's config: "
            f"config.{exc.key}: {exc.message}"
        ) from None
    fields = tuple(FieldSpec(n, "input") for n in inputs)
    fields += tuple(FieldSpec(n, "output") for n in outputs)
    try:
        check_fields_for_module(SignatureSpec(fields), value)
    except BridgeError as exc:
        raise ParamError(
            f"module_type {value!r} does not work with this module's signature: "
            f"{exc.message.split(': ', 1)[-1]}"
        ) from None
    target.check_available()
    return str(value)


def _mismatch(param: str, variable: Variable, message: str, **extra: str) -> BridgeError:
    field = f"variable_bindings[{param}]"
    return BridgeError(
        grpc.StatusCode.FAILED_PRECONDITION,
        Reason.BINDING_TYPE_MISMATCH,
        message,
        {
            "parameter": param,
            "variable": variable.name,
            "variable_type": variable.type.name,
            **extra,
        },
        (FieldViolation(field, message),),
    )


def check_bindings(
    bindings: Mapping[str, str],
    variables: Mapping[str, Variable],
    config: Mapping[str, Any],
    *,
    module_type: str = "Predict",
    inputs: tuple[str, ...] = (),
    outputs: tuple[str, ...] = (),
    ctx: registry.BuildContext | None = None,
) -> None:
    """Check every binding `param -> variable` (variables keyed as the bindings name them).

    Unknown parameter: INVALID_ARGUMENT `UNKNOWN_PARAMETER`. A variable of a type the parameter
    does not take, or whose value (or any of whose choices) the parameter cannot use:
    FAILED_PRECONDITION `BINDING_TYPE_MISMATCH`.
    """
    for param, ref in bindings.items():
        try:
            types = allowed_types(param, module_type, config)
        except ParamError as exc:
            raise invalid_argument(
                Reason.UNKNOWN_PARAMETER,
                str(exc),
                f"variable_bindings[{param}]",
                metadata={"parameter": param},
            ) from None
        variable = variables[ref]
        if variable.type not in types:
            wanted = " or ".join(sorted(t.name for t in types))
            raise _mismatch(
                param,
                variable,
                f"parameter {param!r} needs a {wanted} variable; "
                f"{variable.name!r} is {variable.type.name}",
                allowed_types=",".join(sorted(t.name for t in types)),
            )
        candidates: list[Any] = [variable.value]
        if variable.type in (C, M) and variable.constraints.choices:
            candidates += [c for c in variable.constraints.choices if c != variable.value]
        for candidate in candidates:
            try:
                check_value(
                    param,
                    candidate,
                    module_type=module_type,
                    config=config,
                    inputs=inputs,
                    outputs=outputs,
                    ctx=ctx,
                )
            except ParamError as exc:
                which = "value" if candidate is variable.value else "choice"
                raise _mismatch(
                    param,
                    variable,
                    f"variable {variable.name!r} has {which} {candidate!r}, "
                    f"which parameter {param!r} cannot use: {exc}",
                ) from None
            except BridgeError as exc:  # e.g. a module type that cannot run here
                raise _mismatch(
                    param,
                    variable,
                    f"variable {variable.name!r} offers {candidate!r}: {exc.message}",
                ) from None
