"""Helpers for the module runtime tests: records built the way ModuleService stores them."""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

import dspy

from dspy_bridge.model import LMSpec, ModuleRecord
from dspy_bridge.runtime import registry
from dspy_bridge.runtime.lm.offline import OfflineLM
from dspy_bridge.runtime.program import build_program
from dspy_bridge.runtime.signatures import parse_signature

OFFLINE = LMSpec("offline")
#: The variable the `provider` fixture (conftest.py) puts the fake provider's key in.
PROVIDER_KEY_ENV = "PROVIDER_PATH_API_KEY"
_ids = itertools.count(1)


def make_record(
    module_type: str = "Predict",
    signature: str = "question -> answer",
    config: dict[str, Any] | None = None,
    *,
    bindings: dict[str, str] | None = None,
    state: dict[str, Any] | None = None,
    instructions: str = "",
    version: int = 1,
    session_id: str = "s1",
    module_id: str | None = None,
) -> ModuleRecord:
    """A record with a validated, normalized spec (as CreateModule stores it)."""
    spec = parse_signature(signature, instructions=instructions)
    inputs = tuple(f.name for f in spec.inputs)
    outputs = tuple(f.name for f in spec.outputs)
    normalized = registry.get_type(module_type).validate_config(
        config or {}, inputs, outputs, registry.BuildContext(session_id=session_id)
    )
    return ModuleRecord(
        session_id=session_id,
        module_id=module_id or f"m{next(_ids)}",
        version=version,
        spec={
            "module_type": module_type,
            "signature": spec.to_dict(),
            "config": normalized,
            "variable_bindings": dict(bindings or {}),
            "lm": None,
        },
        state=state,
        create_time=1.0,
        update_time=1.0,
    )


def offline_factory(spec: LMSpec | None, params: Mapping[str, Any]) -> dspy.BaseLM:
    """An LM factory that makes an offline LM for *any* model name, so tests can switch the
    `model` parameter and see which model each call used without reaching a provider."""
    options = spec.options if spec else {}
    kwargs = {k: v for k, v in params.items() if k != "model"}
    return OfflineLM(
        model=str(params.get("model") or (spec.model if spec else "offline")),
        latency_ms=float(options.get("latency_ms", 0)),
        **kwargs,
    )


def calculator_react_record() -> ModuleRecord:
    """A ReAct module (version 2) whose demo steers the offline LM into calling the calculator
    on "What is 6 times 7?"."""
    record = make_record("ReAct", config={"tools": ["calculator"], "max_iters": 2})
    program = build_program(record)
    program.module.react.demos = [
        {
            "question": "What is 6 times 7?",
            "trajectory": "",
            "next_thought": "I should compute it.",
            "next_tool_name": "calculator",
            "next_tool_args": {"expression": "6*7"},
        }
    ]
    return ModuleRecord(
        record.session_id, record.module_id, 2, record.spec, program.module.dump_state(), 1.0, 2.0
    )


def provider_spec(fake: Any, engine: str, **options: str) -> LMSpec:
    """An LM on the fake provider (`provider` fixture) through `engine`, DSPy making one
    attempt per call."""
    options = {"engine": engine, "num_retries": "0", **options}
    return LMSpec(
        "openai/fake-model", api_base=fake.url, api_key_env=PROVIDER_KEY_ENV, options=options
    )
