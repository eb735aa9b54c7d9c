"""DSPy state in DSPy's own format, both ways (`ExportModuleState` / `ImportModuleState`).

`export_state` writes exactly what `module.save("x.json")` writes — `dump_state()` plus
`metadata.dependency_versions`, as indented JSON — so the text loads with plain `load_state()`
(after `json.loads`) or `load()` in Python DSPy, into a module built the same way.

`import_state` takes such text (or `json.dumps(module.dump_state())`) and checks it against the
module's structure before anything is stored: every predictor the module has must be there and
nothing else, each with well-formed demos and a signature state with one entry per field. A
problem is INVALID_ARGUMENT `INVALID_STATE` naming it. The check ends with a trial
`load_state()` into a fresh build, so what is stored is known to load.

LM settings inside a state are dropped: the bridge picks the LM (module, session, server default
and bound parameters), and a state must not redirect a module to another provider or endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dspy
import orjson
from dspy.utils.saving import get_dependency_versions

from dspy_bridge.errors import BridgeError, Reason, invalid_argument
from dspy_bridge.model import ModuleRecord
from dspy_bridge.runtime.program import build_program, predictor_states

MAX_STATE_CHARS = 64 << 20


def export_state(program: dspy.Module) -> str:
    """The JSON `program.save(path)` writes for a `.json` path."""
    state = program.dump_state()
    state["metadata"] = {"dependency_versions": get_dependency_versions()}
    return orjson.dumps(state, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE).decode()


def export_record_state(record: ModuleRecord) -> str:
    """The state of a stored module version, built with its own structure (no parameters)."""
    return export_state(build_program(record, check_available=False).module)


def demo_count(state: Mapping[str, Any] | None) -> int:
    """Few-shot demos held by all predictors of a stored state."""
    if not state:
        return 0
    if isinstance(state.get("demos"), list):  # a bare Predict's flat state
        return len(state["demos"])
    return sum(len(p.get("demos") or []) for p in state.values() if isinstance(p, Mapping))


def _invalid(message: str, **metadata: str) -> BridgeError:
    return invalid_argument(Reason.INVALID_STATE, message, "state_json", metadata=metadata)


def _check_predictor(name: str, raw: Any, n_fields: int) -> dict[str, Any]:
    """A normalized predictor state, or INVALID_STATE saying what is wrong with it."""
    where = f"predictor {name!r}"
    if not isinstance(raw, Mapping):
        raise _invalid(
            f"{where}: state must be an object, got {type(raw).__name__}", predictor=name
        )
    demos = raw.get("demos", [])
    if not isinstance(demos, list):
        raise _invalid(f"{where}: 'demos' must be a list", predictor=name)
    for i, demo in enumerate(demos):
        if not isinstance(demo, Mapping) or not all(isinstance(k, str) for k in demo):
            raise _invalid(
                f"{where}: demos[{i}] must be an object of field name -> value", predictor=name
            )
    for key in ("traces", "train"):
        if not isinstance(raw.get(key, []), list):
            raise _invalid(f"{where}: '{key}' must be a list", predictor=name)
    signature = raw.get("signature")
    if not isinstance(signature, Mapping):
        raise _invalid(f"{where}: 'signature' must be an object", predictor=name)
    if not isinstance(signature.get("instructions"), str):
        raise _invalid(f"{where}: 'signature.instructions' must be a string", predictor=name)
    fields = signature.get("fields")
    if not isinstance(fields, list) or len(fields) != n_fields:
        got = len(fields) if isinstance(fields, list) else "no list"
        raise _invalid(
            f"{where}: 'signature.fields' must list the predictor's {n_fields} fields "
            f"(prefix, description) in order; got {got}. Was the state made for a module with "
            "another signature or type?",
            predictor=name,
        )
    for i, f in enumerate(fields):
        if not (
            isinstance(f, Mapping)
            and isinstance(f.get("prefix"), str)
            and isinstance(f.get("description"), str)
        ):
            raise _invalid(
                f"{where}: signature.fields[{i}] needs string 'prefix' and 'description'",
                predictor=name,
            )
    normalized = {
        "traces": list(raw.get("traces", [])),
        "train": list(raw.get("train", [])),
        "demos": [dict(d) for d in demos],
        "signature": {"instructions": signature["instructions"], "fields": list(fields)},
        "lm": None,
    }
    if isinstance(raw.get("fields"), Mapping):  # DSPy's per-field decision criteria
        normalized["fields"] = dict(raw["fields"])
    return normalized


def _is_predictor_state(raw: Mapping[str, Any]) -> bool:
    return "signature" in raw and "demos" in raw


def _predictors_of(
    module: dspy.Module, raw: dict[str, Any], module_type: str, expected: list[str]
) -> dict[str, Any]:
    """`{predictor: state}` of a raw state, with a clear error when it is the flat state of a
    single Predict given to a composite module, or the other way round."""
    flat = _is_predictor_state(raw)
    if isinstance(module, dspy.Predict) and not flat:
        names = [k for k in raw if k != "metadata"]
        raise _invalid(
            f"this is the state of a module with predictors {', '.join(names) or 'none'}; "
            "a Predict module's state holds 'demos' and 'signature' at the top level",
            predictor=names[0] if names else "",
        )
    if not isinstance(module, dspy.Predict) and flat:
        raise _invalid(
            f"this is the state of a single Predict; this {module_type} module has predictors: "
            f"{', '.join(expected)}"
        )
    return predictor_states(module, raw)


def import_state(record: ModuleRecord, state_json: str) -> dict[str, Any]:
    """The validated state (as `dump_state()` returns it) for `record`'s structure, from DSPy
    JSON; INVALID_ARGUMENT `INVALID_STATE` naming the problem otherwise."""
    if len(state_json) > MAX_STATE_CHARS:
        raise _invalid(f"state_json is larger than {MAX_STATE_CHARS} characters")
    try:
        raw = orjson.loads(state_json)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"state_json is not valid JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise _invalid(f"state_json must be a JSON object, got {type(raw).__name__}")
    fresh = ModuleRecord(record.session_id, record.module_id, record.version, record.spec)
    module = build_program(fresh, check_available=False).module
    expected = {name: len(p.signature.fields) for name, p in module.named_predictors()}
    given = _predictors_of(module, raw, record.spec["module_type"], list(expected))
    for name in given:
        if name not in expected:
            raise _invalid(
                f"unknown predictor {name!r}; this {record.spec['module_type']} module has: "
                f"{', '.join(expected)}",
                predictor=name,
            )
    for name in expected:
        if name not in given:
            raise _invalid(
                f"missing predictor {name!r} (expected: {', '.join(expected)})", predictor=name
            )
    checked = {name: _check_predictor(name, given[name], n) for name, n in expected.items()}
    state: dict[str, Any] = checked["self"] if isinstance(module, dspy.Predict) else checked
    try:
        module.load_state(state)
    except Exception as exc:
        raise _invalid(f"DSPy cannot load this state: {type(exc).__name__}: {exc}") from None
    dumped: dict[str, Any] = module.dump_state()
    return dumped
