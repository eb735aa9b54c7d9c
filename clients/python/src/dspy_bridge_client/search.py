"""Building a `VariableSearchSpec` for ``start_optimization(..., "VariableSearch")``.

::

    from dspy_bridge_client import search_spec

    spec = search_spec(
        {
            "temperature": {"low": 0.0, "high": 1.0, "step": 0.25},
            "strategy": ["Predict", "ChainOfThought"],
        },
        sampler="grid",
        objectives={"metric": "maximize", "tokens": "minimize"},
    )
    job = session.start_optimization(
        "qa", "VariableSearch", trainset, "exact_match", variable_search=spec
    )
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from dspy_bridge_client.values import to_value

__all__ = ["search_spec"]

SearchRange: TypeAlias = Mapping[str, Any] | Sequence[Any] | None
"""A range ``{"low", "high", "step", "log"}``, a list of choices, ``{"choices": [...]}``, or
None to search what the variable's constraints allow."""

_SAMPLERS = {
    "tpe": job_pb2.SEARCH_SAMPLER_TPE,
    "random": job_pb2.SEARCH_SAMPLER_RANDOM,
    "grid": job_pb2.SEARCH_SAMPLER_GRID,
}
_DIRECTIONS = {
    "": job_pb2.OBJECTIVE_DIRECTION_UNSPECIFIED,
    "maximize": job_pb2.OBJECTIVE_DIRECTION_MAXIMIZE,
    "minimize": job_pb2.OBJECTIVE_DIRECTION_MINIMIZE,
}
_RANGE_KEYS = {"low", "high", "step", "log", "choices"}


def _variable(name: str, spec: SearchRange) -> job_pb2.SearchVariable:
    out = job_pb2.SearchVariable(name=name)
    if spec is None:
        return out
    if isinstance(spec, Mapping):
        unknown = set(spec) - _RANGE_KEYS
        if unknown:
            raise ValueError(f"{name}: unknown keys {sorted(unknown)}; use {sorted(_RANGE_KEYS)}")
        for key in ("low", "high", "step"):
            if spec.get(key) is not None:
                setattr(out, key, float(spec[key]))
        out.log = bool(spec.get("log", False))
        choices: Iterable[Any] = spec.get("choices") or ()
    elif isinstance(spec, str):
        raise ValueError(f"{name}: give a list of choices or a range, not a string")
    else:
        choices = spec
    for choice in choices:
        out.choices.append(to_value(choice))
    return out


def search_spec(
    variables: Mapping[str, SearchRange],
    *,
    sampler: str = "tpe",
    n_trials: int = 0,
    objectives: Mapping[str, str] | Sequence[str] = (),
    seed: int | None = None,
) -> job_pb2.VariableSearchSpec:
    """A `VariableSearchSpec`.

    Args:
        variables: variable name → a range (``{"low": 0, "high": 1, "step": 0.1, "log":
            False}``), a list of choices, or None (the variable's own constraints).
        sampler: ``"tpe"``, ``"random"`` or ``"grid"``.
        n_trials: trials to run; 0 = server default (20; grid: the whole grid).
        objectives: objective names (``metric``, ``latency_ms``, ``tokens``, ``cost_usd``), or
            name → ``"maximize"``/``"minimize"``; empty = maximize ``metric``.
        seed: sampler seed, for reproducible searches.
    """
    if sampler not in _SAMPLERS:
        raise ValueError(f"sampler must be one of {sorted(_SAMPLERS)}, not {sampler!r}")
    pairs = objectives.items() if isinstance(objectives, Mapping) else ((o, "") for o in objectives)
    spec = job_pb2.VariableSearchSpec(sampler=_SAMPLERS[sampler], n_trials=n_trials)
    for name, direction in pairs:
        if direction not in _DIRECTIONS:
            raise ValueError(f"objective {name}: direction must be 'maximize' or 'minimize'")
        spec.objectives.add(name=name, direction=_DIRECTIONS[direction])
    for name, item in variables.items():
        spec.variables.append(_variable(name, item))
    if seed is not None:
        spec.seed = seed
    return spec
