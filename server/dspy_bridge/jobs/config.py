"""Optimizer configs: which keys each DSPy optimizer takes, their types and ranges.

`validate_config(optimizer, config, ...)` runs in the front before any work starts. Unknown keys,
wrong types, out-of-range values and combinations DSPy would refuse later (MIPROv2 without a
budget, GEPA with two budgets, a SIMBA batch larger than the trainset) are INVALID_ARGUMENT
`INVALID_OPTIMIZER_CONFIG` naming the key (`config.<key>`). The result is the normalized config
with defaults filled in where the bridge picks a different default than DSPy (documented in
docs/optimization.md); each key is then routed to the optimizer's constructor or `compile()`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from dspy_bridge.errors import BridgeError, Reason, invalid_argument

Target = Literal["init", "compile", "bridge"]


@dataclass(frozen=True)
class Option:
    """One config key: its kind, range, whether null is allowed, and where it goes."""

    kind: Literal["int", "float", "bool", "choice", "lm"]
    target: Target = "init"
    low: float | None = None
    high: float | None = None
    choices: Sequence[str] = ()
    nullable: bool = False

    def describe(self) -> str:
        if self.kind == "choice":
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        elif self.kind == "bool":
            text = "true or false"
        elif self.kind == "lm":
            text = "a model name or an object {model, api_base, api_key_env, options}"
        else:
            noun = "an integer" if self.kind == "int" else "a number"
            bounds = []
            if self.low is not None:
                bounds.append(f">= {self.low:g}")
            if self.high is not None:
                bounds.append(f"<= {self.high:g}")
            text = noun + (" " + " and ".join(bounds) if bounds else "")
        return text + (" or null" if self.nullable else "")


def _int(low: float | None = 0, high: float | None = None, **kw: Any) -> Option:
    return Option("int", low=low, high=high, **kw)


def _float(low: float | None = None, high: float | None = None, **kw: Any) -> Option:
    return Option("float", low=low, high=high, **kw)


def _bool(**kw: Any) -> Option:
    return Option("bool", **kw)


def _choice(*choices: str, **kw: Any) -> Option:
    return Option("choice", choices=choices, **kw)


_BOOTSTRAP: dict[str, Option] = {
    "metric_threshold": _float(nullable=True),
    "max_bootstrapped_demos": _int(0, 100),
    "max_labeled_demos": _int(0, 100),
    "max_rounds": _int(1, 100),
    "max_errors": _int(0, 1_000_000, nullable=True),
}
_THREADS = _int(1, 64, nullable=True)
_SEED = 2**32 - 1  # numpy and optuna take 32-bit seeds
#: Default cap of a job's metric calls (`--max-job-metric-calls`).
DEFAULT_MAX_METRIC_CALLS = 100_000

#: Every optimizer's keys. `bridge` keys are read by the bridge itself.
OPTIMIZER_OPTIONS: dict[str, dict[str, Option]] = {
    "LabeledFewShot": {
        "k": _int(0, 100),
        "sample": _bool(target="compile"),
    },
    "BootstrapFewShot": dict(_BOOTSTRAP),
    "BootstrapFewShotWithRandomSearch": {
        **_BOOTSTRAP,
        "num_candidate_programs": _int(1, 100),
        "num_threads": _THREADS,
        "stop_at_score": _float(nullable=True),
        "labeled_sample": _bool(target="compile"),
    },
    "KNNFewShot": {
        **_BOOTSTRAP,
        "k": _int(1, 100),
    },
    "COPRO": {
        "breadth": _int(2, 50),
        "depth": _int(1, 20),
        "init_temperature": _float(0.0, 2.0),
        "num_threads": _int(1, 64, target="bridge"),
    },
    "MIPROv2": {
        "auto": _choice("light", "medium", "heavy", nullable=True),
        "max_bootstrapped_demos": _int(0, 100),
        "max_labeled_demos": _int(0, 100),
        "num_candidates": _int(1, 100, nullable=True),
        "num_threads": _THREADS,
        "max_errors": _int(0, 1_000_000, nullable=True),
        "seed": _int(0, _SEED),
        "init_temperature": _float(0.0, 2.0),
        "metric_threshold": _float(nullable=True),
        "num_trials": _int(1, 1_000, target="compile", nullable=True),
        "minibatch": _bool(target="compile"),
        "minibatch_size": _int(1, 10_000, target="compile"),
        "minibatch_full_eval_steps": _int(1, 10_000, target="compile"),
        "program_aware_proposer": _bool(target="compile"),
        "data_aware_proposer": _bool(target="compile"),
        "view_data_batch_size": _int(1, 1000, target="compile"),
        "tip_aware_proposer": _bool(target="compile"),
        "fewshot_aware_proposer": _bool(target="compile"),
    },
    "SIMBA": {
        "bsize": _int(1, 10_000),
        "num_candidates": _int(1, 100),
        "max_steps": _int(1, 100),
        "max_demos": _int(0, 100),
        "demo_input_field_maxlen": _int(1, 1_000_000),
        "num_threads": _THREADS,
        "temperature_for_sampling": _float(0.0, 10.0),
        "temperature_for_candidates": _float(0.0, 10.0),
        "seed": _int(0, _SEED, target="compile"),
    },
    "GEPA": {
        "auto": _choice("light", "medium", "heavy", nullable=True),
        "max_full_evals": _int(1, 1_000, nullable=True),
        "max_metric_calls": _int(1, nullable=True),  # capped by --max-job-metric-calls
        "reflection_minibatch_size": _int(1, 1000),
        "candidate_selection_strategy": _choice("pareto", "current_best"),
        "reflection_lm": Option("lm", target="bridge", nullable=True),
        "skip_perfect_score": _bool(),
        "add_format_failure_as_feedback": _bool(),
        "component_selector": _choice("round_robin", "all"),
        "use_merge": _bool(),
        "max_merge_invocations": _int(0, 100, nullable=True),
        "num_threads": _THREADS,
        "failure_score": _float(),
        "perfect_score": _float(),
        "seed": _int(0, _SEED, nullable=True),
    },
}

#: The DSPy optimizers StartOptimization accepts (besides `VariableSearch`).
OPTIMIZERS: tuple[str, ...] = tuple(OPTIMIZER_OPTIONS)


def _bad(key: str, message: str) -> BridgeError:
    return invalid_argument(
        Reason.INVALID_OPTIMIZER_CONFIG,
        f"config.{key}: {message}",
        f"config.{key}",
        metadata={"key": key},
    )


def _check(key: str, option: Option, value: Any) -> Any:
    if value is None:
        if option.nullable:
            return None
        raise _bad(key, f"must be {option.describe()}")
    if option.kind == "bool":
        if not isinstance(value, bool):
            raise _bad(key, f"must be true or false, not {value!r}")
        return value
    if option.kind == "choice":
        if value not in option.choices:
            raise _bad(key, f"must be {option.describe()}, not {value!r}")
        return value
    if option.kind == "lm":
        if isinstance(value, str) and value:
            return {"model": value}
        if isinstance(value, Mapping) and isinstance(value.get("model"), str):
            extra = set(value) - {"model", "api_base", "api_key_env", "options"}
            if not extra:
                return dict(value)
        raise _bad(key, f"must be {option.describe()}")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(key, f"must be {option.describe()}, not {value!r}")
    if option.kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise _bad(key, f"must be {option.describe()}, not {value!r}")
            value = int(value)
    else:
        value = float(value)
        if not math.isfinite(value):
            raise _bad(key, f"must be a finite number, not {value!r}")
    if (option.low is not None and value < option.low) or (
        option.high is not None and value > option.high
    ):
        raise _bad(key, f"must be {option.describe()}, not {value!r}")
    return value


def validate_config(
    optimizer: str,
    config: Mapping[str, Any],
    *,
    trainset_size: int,
    valset_size: int,
    max_metric_calls: int = DEFAULT_MAX_METRIC_CALLS,
) -> dict[str, Any]:
    """The checked, normalized config of `optimizer` (see module docstring)."""
    options = OPTIMIZER_OPTIONS[optimizer]
    checked: dict[str, Any] = {}
    for key, value in config.items():
        option = options.get(key)
        if option is None:
            known = ", ".join(sorted(options)) or "none"
            raise _bad(key, f"unknown key for {optimizer} (known keys: {known})")
        checked[key] = _check(key, option, value)
    _check_combinations(optimizer, checked, trainset_size, valset_size)
    _check_budget(optimizer, checked, trainset_size + valset_size, max_metric_calls)
    return checked


def _check_budget(
    optimizer: str, config: Mapping[str, Any], examples: int, max_metric_calls: int
) -> None:
    """A GEPA budget past what one job may spend (`--max-job-metric-calls`) is refused: two
    jobs with a 1e12 budget would otherwise hold every job slot for good."""
    if optimizer != "GEPA":
        return
    calls = config.get("max_metric_calls")
    if calls is not None and calls > max_metric_calls:
        raise _bad(
            "max_metric_calls",
            f"{calls} is above the server's limit of {max_metric_calls} metric calls per job "
            "(--max-job-metric-calls)",
        )
    evals = config.get("max_full_evals")
    if evals is not None and evals * max(1, examples) > max_metric_calls:
        raise _bad(
            "max_full_evals",
            f"{evals} full evaluations of {examples} examples exceed the server's limit of "
            f"{max_metric_calls} metric calls per job (--max-job-metric-calls)",
        )


def _check_combinations(
    optimizer: str, config: dict[str, Any], trainset_size: int, valset_size: int
) -> None:
    if optimizer == "MIPROv2":
        auto = config.get("auto", "light")
        if auto is None:
            for key in ("num_candidates", "num_trials"):
                if config.get(key) is None:
                    raise _bad(key, "is required when auto is null")
        else:
            for key in ("num_candidates", "num_trials"):
                if config.get(key) is not None:
                    raise _bad(key, f"cannot be set with auto={auto!r}; set auto to null")
        size = valset_size or max(1, int(trainset_size * 0.8))
        if valset_size == 0 and trainset_size < 2:
            raise _bad("auto", "MIPROv2 needs at least 2 training examples without a valset")
        too_big = config.get("minibatch_size", 0) > size
        if config.get("minibatch", True) and too_big:
            raise _bad("minibatch_size", f"is larger than the validation set ({size})")
    elif optimizer == "GEPA":
        budgets = [k for k in ("auto", "max_full_evals", "max_metric_calls") if config.get(k)]
        if len(budgets) > 1:
            raise _bad(budgets[1], "set only one of auto, max_full_evals, max_metric_calls")
    elif optimizer == "SIMBA":
        if config.get("bsize", 0) > trainset_size:
            raise _bad("bsize", f"is larger than the trainset ({trainset_size} examples)")
    elif optimizer == "COPRO" and config.get("depth", 1) < 1:
        raise _bad("depth", "must be >= 1")


def split(optimizer: str, config: Mapping[str, Any]) -> dict[Target, dict[str, Any]]:
    """The config split by where each key goes: constructor, `compile()` or the bridge."""
    out: dict[Target, dict[str, Any]] = {"init": {}, "compile": {}, "bridge": {}}
    options = OPTIMIZER_OPTIONS[optimizer]
    for key, value in config.items():
        out[options[key].target][key] = value
    return out
