"""A runnable DSPy program from a module record and the parameter values of one execution.

The record's `spec` holds what the host created: `module_type`, `signature`
(`SignatureSpec.to_dict()`), `config`, `variable_bindings` and `lm`; its `state` holds DSPy's
`dump_state()` (demos, instructions from optimization or import). Bound parameters then shape the
program:

- `module_type` builds another strategy from the same signature and config (config keys the
  other type does not know are ignored; keys it needs take their defaults);
- a bound config key replaces the config value;
- `instructions` replaces the signature's instructions (see below);
- `adapter` picks `dspy.ChatAdapter` / `JSONAdapter` / `XMLAdapter` for the call;
- the LM parameters (`temperature`, ..., `model`) only shape the LM, never the program.

DSPy state is loaded as `load_state()` would when the program has the record's own structure.
When parameters change the structure (another module type, another inner module), the state is
carried over predictor by predictor: a predictor takes the stored predictor of the same name, or
else — if it is the new program's final predictor — the old program's final predictor. It takes
that predictor's demos, and its instructions when both predictors work on the user's own
signature (their instructions are the task's, not text the module type generated, as ReAct's
tool-calling predictor or ProgramOfThought's code predictors have).

A bound `instructions` value wins over instructions from the stored state, for every predictor
that works on the user's signature; an empty value means "no override".
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import dspy

from dspy_bridge.errors import (
    BridgeError,
    FieldViolation,
    Reason,
    failed_precondition,
    invalid_argument,
)
from dspy_bridge.model import ModuleRecord, PyValue
from dspy_bridge.runtime import registry
from dspy_bridge.runtime.fields import coerce_inputs, outputs_to_values
from dspy_bridge.runtime.params import LM_PARAMETERS, ParamError, check_value
from dspy_bridge.runtime.signatures import (
    FieldSpec,
    SignatureSpec,
    check_fields_for_module,
    to_dspy_signature,
)
from dspy_bridge.runtime.strategies import ParallelItems

ADAPTER_CLASSES: dict[str, type[dspy.Adapter]] = {
    "chat": dspy.ChatAdapter,
    "json": dspy.JSONAdapter,
    "xml": dspy.XMLAdapter,
}

#: Parameters that change the program (the rest shape the LM or the adapter only).
NON_STRUCTURAL = frozenset({*LM_PARAMETERS, "adapter"})


def make_adapter(name: str | None) -> dspy.Adapter | None:
    """The adapter for a bound `adapter` value; None keeps DSPy's default."""
    return ADAPTER_CLASSES[name]() if name else None


@dataclass(frozen=True)
class Shape:
    """Everything that determines the program's structure, after parameters are applied."""

    module_type: str
    signature: SignatureSpec
    config_json: str

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)  # type: ignore[no-any-return]


@functools.lru_cache(maxsize=1024)
def _signature_from_json(text: str) -> SignatureSpec:
    return SignatureSpec.from_dict(json.loads(text))


def spec_signature(record: ModuleRecord) -> SignatureSpec:
    """The record's signature (parsed once per distinct signature: this is on every call)."""
    return _signature_from_json(json.dumps(record.spec["signature"], sort_keys=True))


def coerce_execution_inputs(
    record: ModuleRecord,
    inputs: Mapping[str, PyValue],
    signature: SignatureSpec | None = None,
) -> dict[str, PyValue]:
    """Inputs coerced to the signature's types (INVALID_ARGUMENT `INVALID_INPUT` otherwise).

    A `Parallel` module takes a single input, `items`: a list of objects, each holding the
    signature's inputs. `signature` is the record's, when the caller has it already.
    """
    signature = signature or spec_signature(record)
    if record.spec["module_type"] != "Parallel":
        return coerce_inputs(signature, inputs)
    extra = sorted(set(inputs) - {"items"})
    items = inputs.get("items")
    if extra or not isinstance(items, list):
        problem = f"unexpected input {extra[0]!r}" if extra else "missing input 'items'"
        raise invalid_argument(
            Reason.INVALID_INPUT,
            f"{problem}: a Parallel module takes one input, 'items', a list of objects "
            f"each holding {', '.join(f.name for f in signature.inputs)}",
            f"inputs.{extra[0]}" if extra else "inputs.items",
        )
    coerced = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid_argument(
                Reason.INVALID_INPUT,
                f"items[{index}] must be an object of input fields, got {type(item).__name__}",
                f"inputs.items[{index}]",
            )
        try:
            coerced.append(coerce_inputs(signature, item))
        except BridgeError as exc:
            raise _in_item(exc, index) from None
    return {"items": coerced}


def _predictor_roles(
    mtype: registry.ModuleType, config: Mapping[str, Any]
) -> tuple[str, tuple[str, ...]]:
    """(final predictor name, names of the predictors working on the user's own signature)."""
    if mtype.name in ("BestOfN", "Refine", "Parallel"):
        holder = "inner" if mtype.name == "Parallel" else "module"
        name = f"{holder}.predict" if config.get("inner") == "ChainOfThought" else holder
        return name, (name,)
    roles: dict[str, tuple[str, tuple[str, ...]]] = {
        "Predict": ("self", ("self",)),
        "ChainOfThought": ("predict", ("predict",)),
        "ReAct": ("extract.predict", ("extract.predict",)),
        "ProgramOfThought": ("generate_output.predict", ()),
        "MultiChainComparison": ("compare.predict", ("generate.predict", "compare.predict")),
    }
    return roles.get(mtype.name, ("", ()))


def predictor_states(program: dspy.Module, state: Mapping[str, Any]) -> dict[str, Any]:
    """`{predictor name: predictor state}` for a program's state: a `dspy.Predict` dumps its own
    state flat, every other module as `{name: state}` (`metadata` from `save()` is dropped)."""
    if isinstance(program, dspy.Predict):
        return {"self": dict(state)}
    return {k: v for k, v in state.items() if k != "metadata"}


def _in_item(exc: BridgeError, index: int) -> BridgeError:
    """An input error of one Parallel item, with paths under `inputs.items[index]`."""
    where = f"inputs.items[{index}]"
    violations = tuple(
        FieldViolation(v.field.replace("inputs", where, 1), v.description) for v in exc.violations
    )
    message = exc.message.replace("inputs.", f"{where}.", 1)
    return BridgeError(exc.code, exc.reason, message, dict(exc.metadata), violations)


@dataclass
class Program:
    """A built DSPy module plus what executing it needs."""

    module: dspy.Module
    module_type: registry.ModuleType
    shape: Shape
    #: Output fields of the signature, with the fields the module type adds in front.
    outputs: tuple[FieldSpec, ...]
    #: The predictor whose output fields can be streamed token by token, if any.
    stream_predictor: dspy.Predict | None

    @property
    def is_async(self) -> bool:
        """True when the module has an async path (otherwise it runs in a thread)."""
        return callable(getattr(type(self.module), "aforward", None))

    @property
    def signature(self) -> SignatureSpec:
        return self.shape.signature

    def output_values(self, prediction: Any) -> dict[str, PyValue]:
        """Every field of the prediction as a Value-able Python value, typed as the signature
        says; fields the module type adds beyond the signature (`trajectory`) as JSON."""
        if isinstance(self.module, ParallelItems):
            return {"items": [self._values(p) for p in prediction["items"]]}
        return self._values(prediction)

    def _values(self, prediction: Any) -> dict[str, PyValue]:
        return outputs_to_values(SignatureSpec(self.outputs), prediction)

    def stream_fields(self) -> list[str]:
        if self.stream_predictor is None:
            return []
        produced = set(self.stream_predictor.signature.output_fields)
        return [f.name for f in self.outputs if f.name in produced]


def shape_of(
    record: ModuleRecord,
    params: Mapping[str, PyValue],
    ctx: registry.BuildContext | None = None,
) -> Shape:
    """The program structure for a record and one execution's parameter values.

    Values are checked here again (variables change after CreateModule): a stored variable
    holding a value the parameter cannot use is FAILED_PRECONDITION `INVALID_MODULE_CONFIG`.
    """
    ctx = ctx or registry.BuildContext(session_id=record.session_id)
    spec = record.spec
    own_type = spec["module_type"]
    config = dict(spec.get("config") or {})
    signature = spec_signature(record)
    inputs = tuple(f.name for f in signature.inputs)
    outputs = tuple(f.name for f in signature.outputs)
    structural: dict[str, PyValue] = {}
    for name, value in params.items():
        if name in NON_STRUCTURAL:
            continue
        try:
            checked = check_value(
                name,
                value,
                module_type=own_type,
                config=config,
                inputs=inputs,
                outputs=outputs,
                ctx=ctx,
            )
        except ParamError as exc:
            raise _bad_param(name, str(exc)) from None
        structural[name] = checked
    module_type = str(structural.pop("module_type", own_type))
    instructions = structural.pop("instructions", None)
    if instructions:
        signature = replace(signature, instructions=str(instructions))
    config.update(structural)
    mtype = registry.get_type(module_type)
    try:
        check_fields_for_module(signature, module_type)
        config = mtype.validate_config(config, inputs, outputs, ctx, strict=module_type == own_type)
    except registry.ConfigError as exc:
        raise _bad_param("module_type", f"config.{exc.key}: {exc.message}") from None
    except BridgeError as exc:
        raise _bad_param("module_type", exc.message) from None
    return Shape(module_type, signature, json.dumps(config, sort_keys=True))


def _bad_param(name: str, message: str) -> BridgeError:
    return failed_precondition(
        Reason.INVALID_MODULE_CONFIG,
        f"parameter {name!r}: {message}",
        parameter=name,
    )


def build_program(
    record: ModuleRecord,
    params: Mapping[str, PyValue] | None = None,
    ctx: registry.BuildContext | None = None,
    *,
    check_available: bool = True,
) -> Program:
    """Build the program for `record` under `params` and load the record's DSPy state.

    `check_available=False` builds a type that cannot run here (to export its state)."""
    ctx = ctx or registry.BuildContext(session_id=record.session_id)
    shape = shape_of(record, params or {}, ctx)
    mtype = registry.get_type(shape.module_type)
    if check_available:
        mtype.check_available()
    config = shape.config
    module = mtype.build(to_dspy_signature(shape.signature), config, ctx)
    if record.state:
        own = record.spec["module_type"]
        same = shape.module_type == own and config == dict(record.spec.get("config") or {})
        if same:
            module.load_state(record.state)
        else:
            _carry_over(module, mtype, config, record)
    override = shape.signature.instructions if (params or {}).get("instructions") else None
    if override:
        _, plain = _predictor_roles(mtype, config)
        for name, predictor in module.named_predictors():
            if name in plain:
                predictor.signature = predictor.signature.with_instructions(override)
    extras = registry.output_extras(mtype, config)
    outputs = tuple(FieldSpec(n, "output", "str") for n in extras if n != "trajectory")
    outputs += tuple(shape.signature.outputs)
    stream = mtype.final_predictor(module)
    return Program(module, mtype, shape, outputs, stream)


def _carry_over(
    module: dspy.Module, mtype: registry.ModuleType, config: Mapping[str, Any], record: ModuleRecord
) -> None:
    """Move demos (and plain instructions) from a state of another structure (module docstring)."""
    assert record.state is not None
    own_type = registry.get_type(record.spec["module_type"])
    own_config = dict(record.spec.get("config") or {})
    src_final, src_plain = _predictor_roles(own_type, own_config)
    dst_final, dst_plain = _predictor_roles(mtype, config)
    stored = record.state
    if src_final == "self":
        stored = {"self": record.state}
    for name, predictor in module.named_predictors():
        source_name = name if name in stored else (src_final if name == dst_final else None)
        source = stored.get(source_name) if source_name else None
        if not isinstance(source, Mapping):
            continue
        predictor.demos = copy.deepcopy(list(source.get("demos") or []))
        instructions = (source.get("signature") or {}).get("instructions")
        if name in dst_plain and source_name in src_plain and isinstance(instructions, str):
            predictor.signature = predictor.signature.with_instructions(instructions)
