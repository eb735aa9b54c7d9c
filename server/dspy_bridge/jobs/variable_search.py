"""VariableSearch: an Optuna search over a module's bound variables.

What is searched: FLOAT/INTEGER variables over a range (`low`/`high`, default the variable's
`min`/`max`; optional `step`, default the variable's `step` constraint, 1 for INTEGER; optional
`log` scale), and CHOICE, MODULE (strategy: `Predict`, `ChainOfThought`, ...), STRING (e.g.
`model`), BOOLEAN variables over `choices` (default the variable's `choices` constraint;
BOOLEAN: both). Numeric variables may also be given explicit `choices`.

How: Optuna's TPE (default), random or grid sampler, with `n_trials` trials (default 20; grid:
the whole grid, or `n_trials` points of it), on one or several objectives — `metric` (mean
metric score on the valset, or the trainset when no valset was given), `latency_ms` (mean per
example), `tokens` (prompt + completion, total) and `cost_usd` (total) — each maximized or
minimized (default: maximize `metric`, minimize the others). Each trial runs the module on the
dataset with the trial's values as parameter overrides, so nothing is written during the search.
Every trial is recorded; the result holds the Pareto front (Optuna's `best_trials`; for a single
objective, the best trial) and `best`: the best trial, or for several objectives the front's
best by the first objective.

Validation happens before any work (`plan_search`), as INVALID_ARGUMENT with the request path:
an unknown variable or one the module does not bind, a duplicate, a type that cannot be searched
(EMBEDDING, TENSOR, JSON), a range outside the variable's constraints or the parameter's range,
`log` with a non-positive low or with a step, choices the variable or the parameter cannot take,
an unknown objective or sampler, a grid over a continuous range, too many trials.

Applying (`ApplyOptimization`, or `apply=true`) writes the chosen trial's values with
`VariableService.batch_update(atomic=True, source="optimizer:<job_id>")`, so the change shows in
variable history with the job as its source.

Pieces: `plan_search` (validation) and `run_variable_search` (the Optuna loop over an
`evaluate_fn`) are independent of jobs; `VariableSearchKind` plugs them into the job service
(`OptimizationService.register_kind`), with `run_job` as the runner in the job process.
"""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import optuna

from dspy_bridge.errors import BridgeError, Reason, failed_precondition, invalid_argument
from dspy_bridge.jobs.evaluate import (
    CHEAP_METRICS,
    DEFAULT_THREADS,
    EvalExample,
    check_threads,
    judge_lm,
    score_examples,
    with_params,
)
from dspy_bridge.jobs.metrics import resolve_metric
from dspy_bridge.model import LMSpec, PyValue, Variable, VariableType
from dspy_bridge.model.job import SEARCH_RESULT
from dspy_bridge.model.validation import coerce_value
from dspy_bridge.runtime import registry
from dspy_bridge.runtime.executor import ExecutionRequest, InProcessExecutor, configure_runtime
from dspy_bridge.runtime.lm.errors import lm_error_to_bridge
from dspy_bridge.runtime.params import ParamError, check_value
from dspy_bridge.runtime.signatures import SignatureSpec

if TYPE_CHECKING:
    from dspy_bridge.jobs.child import Reporter
    from dspy_bridge.jobs.service import ApplyOutcome, Prepared, StartRequest
    from dspy_bridge.model import Job
    from dspy_bridge.services.variables import VariableService
    from dspy_bridge.store.base import SessionStore

__all__ = [
    "OBJECTIVES",
    "SAMPLERS",
    "Dimension",
    "Measurement",
    "Objective",
    "SearchPlan",
    "SearchSpec",
    "SearchVariableSpec",
    "TrialRecord",
    "VariableSearchKind",
    "VariableSearchOutcome",
    "VariableSearchPayload",
    "plan_search",
    "run_job",
    "run_variable_search",
    "spec_from_proto",
]

KIND_NAME = "VariableSearch"
RUNNER = "dspy_bridge.jobs.variable_search:run_job"
SAMPLERS = ("tpe", "random", "grid")
#: Objective name -> default direction.
OBJECTIVES: dict[str, str] = {
    "metric": "maximize",
    "latency_ms": "minimize",
    "tokens": "minimize",
    "cost_usd": "minimize",
}
DEFAULT_TRIALS = 20
MAX_TRIALS = 1000
MAX_GRID = 10_000
#: Config keys a VariableSearch takes (`StartOptimization.config`).
CONFIG_KEYS = ("num_threads",)
_SEARCHABLE = frozenset(
    {
        VariableType.FLOAT,
        VariableType.INTEGER,
        VariableType.CHOICE,
        VariableType.MODULE,
        VariableType.STRING,
        VariableType.BOOLEAN,
    }
)
_DECIMALS = 10

# --------------------------------------------------------------------------------------------
# The request, independent of the proto


@dataclass(frozen=True)
class SearchVariableSpec:
    """One variable to vary, as requested (see `SearchVariable` in the proto)."""

    name: str
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    choices: tuple[PyValue, ...] = ()


@dataclass(frozen=True)
class SearchSpec:
    """What to search, how and for what (see `VariableSearchSpec` in the proto)."""

    variables: tuple[SearchVariableSpec, ...]
    sampler: str = "tpe"
    n_trials: int = 0
    #: (name, direction) with direction "maximize", "minimize" or "" (the default).
    objectives: tuple[tuple[str, str], ...] = ()
    seed: int | None = None


_SAMPLER_NUMBERS = {0: "tpe", 1: "tpe", 2: "random", 3: "grid"}
_DIRECTION_NUMBERS = {0: "", 1: "maximize", 2: "minimize"}


def spec_from_proto(message: Any) -> SearchSpec:
    """A `SearchSpec` from a `dspy_bridge.v1.VariableSearchSpec` message."""
    from dspy_bridge.transport import convert

    variables = tuple(
        SearchVariableSpec(
            name=v.name,
            low=v.low if v.HasField("low") else None,
            high=v.high if v.HasField("high") else None,
            step=v.step if v.HasField("step") and v.step else None,
            log=v.log,
            choices=tuple(convert.value_from_proto(c) for c in v.choices),
        )
        for v in message.variables
    )
    return SearchSpec(
        variables=variables,
        sampler=_SAMPLER_NUMBERS.get(int(message.sampler), f"#{int(message.sampler)}"),
        n_trials=message.n_trials,
        objectives=tuple(
            (o.name, _DIRECTION_NUMBERS.get(int(o.direction), f"#{int(o.direction)}"))
            for o in message.objectives
        ),
        seed=message.seed if message.HasField("seed") else None,
    )


# --------------------------------------------------------------------------------------------
# The validated plan


@dataclass(frozen=True)
class Dimension:
    """One searched variable: its module parameters and the values it may take."""

    variable: str
    params: tuple[str, ...]
    kind: Literal["float", "int", "categorical"]
    low: float = 0.0
    high: float = 0.0
    step: float | None = None
    log: bool = False
    choices: tuple[PyValue, ...] = ()

    def grid(self) -> list[PyValue] | None:
        """Every value of a finite dimension; None for a continuous range."""
        if self.kind == "categorical":
            return list(self.choices)
        if self.step is None:
            return None
        count = math.floor((self.high - self.low) / self.step + 1e-9) + 1
        if count > MAX_GRID:
            return None
        values = [self.low + i * self.step for i in range(count)]
        if self.kind == "int":
            return [round(v) for v in values]
        return [round(v, _DECIMALS) for v in values]


@dataclass(frozen=True)
class Objective:
    name: str
    direction: Literal["maximize", "minimize"]


@dataclass(frozen=True)
class SearchPlan:
    """A validated search: dimensions, objectives, sampler, trial count and seed."""

    dimensions: tuple[Dimension, ...]
    objectives: tuple[Objective, ...]
    sampler: str
    n_trials: int
    seed: int | None = None


def _bad(message: str, path: str) -> BridgeError:
    return invalid_argument(Reason.INVALID_SEARCH_SPACE, f"{path}: {message}", path)


ParamCheck = Callable[[str, PyValue], PyValue]
"""`(param, value) -> normalized value`; raises `ParamError` when the parameter refuses it."""


def param_checker(
    module_type: str,
    config: Mapping[str, Any],
    signature: SignatureSpec,
    ctx: registry.BuildContext | None = None,
) -> ParamCheck:
    """A `ParamCheck` for a module (its type, config and signature fields)."""
    inputs = tuple(f.name for f in signature.inputs)
    outputs = tuple(f.name for f in signature.outputs)

    def check(param: str, value: PyValue) -> PyValue:
        return check_value(
            param,
            value,
            module_type=module_type,
            config=config,
            inputs=inputs,
            outputs=outputs,
            ctx=ctx,
        )

    return check


def _check_for_params(params: Sequence[str], value: PyValue, check: ParamCheck, path: str) -> None:
    for param in params:
        try:
            check(param, value)
        except ParamError as exc:
            raise _bad(f"parameter {param!r} cannot take {value!r}: {exc}", path) from None


def _coerce(variable: Variable, value: PyValue, path: str) -> PyValue:
    try:
        return coerce_value(variable.type, variable.constraints, value, path)
    except BridgeError as exc:
        raise invalid_argument(
            Reason.INVALID_SEARCH_SPACE,
            f"{path}: {exc.message}",
            path,
            metadata={"variable": variable.name},
        ) from None


def _numeric_dimension(
    item: SearchVariableSpec, variable: Variable, params: tuple[str, ...], path: str
) -> Dimension:
    c = variable.constraints
    is_int = variable.type is VariableType.INTEGER
    low = item.low if item.low is not None else c.min
    high = item.high if item.high is not None else c.max
    if low is None or high is None:
        raise _bad("give low and high (the variable has no min/max constraint to default to)", path)
    if not (math.isfinite(low) and math.isfinite(high)) or low > high:
        raise _bad(f"low ({low:g}) must not be above high ({high:g})", f"{path}.low")
    if c.min is not None and low < c.min:
        raise _bad(f"low {low:g} is below the variable's min {c.min:g}", f"{path}.low")
    if c.max is not None and high > c.max:
        raise _bad(f"high {high:g} is above the variable's max {c.max:g}", f"{path}.high")
    step = item.step if item.step is not None else c.step
    if step is not None and step <= 0:
        raise _bad("step must be greater than 0", f"{path}.step")
    if is_int:
        if not (float(low).is_integer() and float(high).is_integer()):
            raise _bad("an INTEGER range needs whole low and high", path)
        if step is not None and not float(step).is_integer():
            raise _bad("an INTEGER step must be whole", f"{path}.step")
        step = step if step is not None else (None if item.log else 1.0)
    if item.log:
        if low <= 0:
            raise _bad("a log scale needs low > 0", f"{path}.log")
        if step is not None and (not is_int or step != 1):
            raise _bad("a log scale cannot have a step", f"{path}.log")
    return Dimension(
        variable.name,
        params,
        "int" if is_int else "float",
        low=float(low),
        high=float(high),
        step=float(step) if step is not None else None,
        log=item.log,
    )


def _choices_dimension(
    item: SearchVariableSpec, variable: Variable, params: tuple[str, ...], path: str
) -> Dimension:
    raw: Sequence[PyValue] = item.choices
    if not raw:
        if variable.type is VariableType.BOOLEAN:
            raw = (False, True)
        elif variable.constraints.choices:
            raw = variable.constraints.choices
        else:
            raise _bad(
                "give choices (the variable has no choices constraint to default to)",
                f"{path}.choices",
            )
    values: list[PyValue] = []
    for i, choice in enumerate(raw):
        where = f"{path}.choices[{i}]"
        value = _coerce(variable, choice, where)
        if value is not None and not isinstance(value, (bool, int, float, str)):
            raise _bad("choices must be scalars", where)
        if value in values:
            raise _bad(f"{value!r} appears more than once", where)
        values.append(value)
    return Dimension(variable.name, params, "categorical", choices=tuple(values))


def plan_search(
    spec: SearchSpec,
    variables: Sequence[Variable],
    bindings: Mapping[str, str],
    check: ParamCheck,
    where: str = "variable_search",
) -> SearchPlan:
    """Validates a search against the session's variables and the module's bindings
    (parameter -> variable name). Raises INVALID_ARGUMENT; see the module docstring."""
    by_ref = {v.name: v for v in variables} | {v.id: v for v in variables}
    params_of: dict[str, list[str]] = {}
    for param, name in bindings.items():
        params_of.setdefault(name, []).append(param)
    if not spec.variables:
        raise _bad("at least one variable is required", f"{where}.variables")
    dimensions: list[Dimension] = []
    for i, item in enumerate(spec.variables):
        path = f"{where}.variables[{i}]"
        variable = by_ref.get(item.name)
        if variable is None:
            raise _bad(f"unknown variable {item.name!r}", f"{path}.name")
        params = tuple(sorted(params_of.get(variable.name, ())))
        if not params:
            bound = ", ".join(sorted(params_of)) or "none"
            raise _bad(
                f"variable {variable.name!r} is not bound by the module (bound: {bound})",
                f"{path}.name",
            )
        if any(d.variable == variable.name for d in dimensions):
            raise _bad(f"variable {variable.name!r} appears more than once", f"{path}.name")
        if variable.type not in _SEARCHABLE:
            raise _bad(f"a {variable.type.name} variable cannot be searched", f"{path}.name")
        numeric = variable.type in (VariableType.FLOAT, VariableType.INTEGER)
        if not numeric and (item.low is not None or item.high is not None or item.step):
            raise _bad(f"low/high/step apply to FLOAT and INTEGER, not {variable.type.name}", path)
        if numeric and not item.choices:
            dim = _numeric_dimension(item, variable, params, path)
            ends = (dim.low, dim.high) if dim.kind == "float" else (int(dim.low), int(dim.high))
            for end, name in zip(ends, ("low", "high"), strict=True):
                value = _coerce(variable, end, f"{path}.{name}") if dim.step else end
                _check_for_params(params, value, check, f"{path}.{name}")
            if variable.constraints.step is not None and item.step is not None:
                # A step of its own must stay on the variable's step grid (applying writes it).
                for point in dim.grid() or ():
                    _coerce(variable, point, f"{path}.step")
        else:
            dim = _choices_dimension(item, variable, params, path)
            for k, value in enumerate(dim.choices):
                _check_for_params(params, value, check, f"{path}.choices[{k}]")
        dimensions.append(dim)
    objectives = _objectives(spec.objectives, where)
    if spec.sampler not in SAMPLERS:
        raise _bad(f"unknown sampler {spec.sampler!r}", f"{where}.sampler")
    if spec.n_trials < 0 or spec.n_trials > MAX_TRIALS:
        raise _bad(f"n_trials must be 0..{MAX_TRIALS}", f"{where}.n_trials")
    n_trials = spec.n_trials or DEFAULT_TRIALS
    if spec.sampler == "grid":
        size = 1
        for k, dim in enumerate(dimensions):
            grid = dim.grid()
            if grid is None:
                raise _bad(
                    "the grid sampler needs a step (or choices) for every range",
                    f"{where}.variables[{k}].step",
                )
            size *= len(grid)
            if size > MAX_GRID:
                raise _bad(f"the grid has more than {MAX_GRID} points", f"{where}.variables")
        n_trials = size if spec.n_trials == 0 else min(spec.n_trials, size)
    return SearchPlan(tuple(dimensions), objectives, spec.sampler, n_trials, spec.seed)


def _objectives(raw: Sequence[tuple[str, str]], where: str) -> tuple[Objective, ...]:
    if not raw:
        return (Objective("metric", "maximize"),)
    out: list[Objective] = []
    for i, (name, direction) in enumerate(raw):
        path = f"{where}.objectives[{i}]"
        if name not in OBJECTIVES:
            raise _bad(
                f"unknown objective {name!r}; objectives: {', '.join(OBJECTIVES)}", f"{path}.name"
            )
        if any(o.name == name for o in out):
            raise _bad(f"objective {name!r} appears more than once", f"{path}.name")
        chosen = direction or OBJECTIVES[name]
        if chosen not in ("maximize", "minimize"):
            raise _bad(f"unknown direction {direction!r}", f"{path}.direction")
        out.append(Objective(name, chosen))  # type: ignore[arg-type]
    return tuple(out)


# --------------------------------------------------------------------------------------------
# The search


@dataclass(frozen=True)
class Measurement:
    """What one trial measured on the dataset."""

    score: float
    latency_ms: float
    tokens: int
    cost_usd: float

    def objective(self, name: str) -> float:
        return {
            "metric": self.score,
            "latency_ms": self.latency_ms,
            "tokens": float(self.tokens),
            "cost_usd": self.cost_usd,
        }[name]


EvaluateFn = Callable[[dict[str, PyValue]], Measurement]
"""Runs the module with the given variable values (by variable name); raises to fail a trial."""
ProgressFn = Callable[[int, int, "float | None", str], None]
"""`(completed, total, best_metric, message)` after each trial."""


@dataclass
class TrialRecord:
    number: int
    values: dict[str, PyValue]
    objectives: dict[str, float] = field(default_factory=dict)
    state: str = "COMPLETE"
    error_message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "values": dict(self.values),
            "objectives": dict(self.objectives),
            "state": self.state,
            "error_message": self.error_message,
        }


@dataclass
class VariableSearchOutcome:
    """Every trial, the Pareto front (trial numbers) and the best trial's number."""

    trials: list[TrialRecord]
    pareto_front: list[int]
    best: int | None
    objectives: tuple[Objective, ...] = ()

    def trial(self, number: int) -> TrialRecord:
        return next(t for t in self.trials if t.number == number)

    def to_result(self) -> dict[str, Any]:
        """The job result (`model.job.SEARCH_RESULT` shape)."""
        return {
            "kind": SEARCH_RESULT,
            "trials": [t.to_dict() for t in self.trials],
            "pareto_front": list(self.pareto_front),
            "best": self.best,
            "objectives": [{"name": o.name, "direction": o.direction} for o in self.objectives],
        }


def _sampler(plan: SearchPlan) -> optuna.samplers.BaseSampler:
    if plan.sampler == "random":
        return optuna.samplers.RandomSampler(seed=plan.seed)
    if plan.sampler == "grid":
        space = {d.variable: d.grid() or [] for d in plan.dimensions}
        return optuna.samplers.GridSampler(space, seed=plan.seed)
    return optuna.samplers.TPESampler(seed=plan.seed)


def _suggest(trial: optuna.Trial, dim: Dimension, grid: bool) -> PyValue:
    if dim.kind == "categorical" or grid:
        choices = dim.choices if dim.kind == "categorical" else tuple(dim.grid() or ())
        value: PyValue = trial.suggest_categorical(dim.variable, list(choices))
        return value
    if dim.kind == "int":
        step = int(dim.step or 1)
        return trial.suggest_int(
            dim.variable, int(dim.low), int(dim.high), step=step, log=dim.log and step == 1
        )
    raw = trial.suggest_float(dim.variable, dim.low, dim.high, step=dim.step, log=dim.log)
    return round(raw, _DECIMALS)


def _better(a: float, b: float, direction: str) -> bool:
    return a > b if direction == "maximize" else a < b


def run_variable_search(
    plan: SearchPlan,
    evaluate_fn: EvaluateFn,
    progress_cb: ProgressFn | None = None,
    cancel_event: threading.Event | None = None,
) -> VariableSearchOutcome:
    """Runs the search: `plan.n_trials` trials, each `evaluate_fn(values)`; a trial whose
    evaluate_fn raises is recorded FAIL. When `cancel_event` is set the search stops after the
    trial in progress and returns what it has."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.create_study(
        directions=[o.direction for o in plan.objectives], sampler=_sampler(plan)
    )
    grid = plan.sampler == "grid"
    records: dict[int, TrialRecord] = {}
    best_metric: float | None = None
    metric_direction = next((o.direction for o in plan.objectives if o.name == "metric"), None)

    def objective(trial: optuna.Trial) -> list[float]:
        nonlocal best_metric
        values = {d.variable: _suggest(trial, d, grid) for d in plan.dimensions}
        record = TrialRecord(trial.number, values)
        records[trial.number] = record
        try:
            measured = evaluate_fn(dict(values))
        except Exception as exc:
            record.state = "FAIL"
            mapped = exc if isinstance(exc, BridgeError) else lm_error_to_bridge(exc)
            record.error_message = (
                mapped.message if mapped is not None else f"{type(exc).__name__}: {exc}"
            )[:1000]
            raise
        record.objectives = {o.name: measured.objective(o.name) for o in plan.objectives}
        if metric_direction is not None and (
            best_metric is None or _better(measured.score, best_metric, metric_direction)
        ):
            best_metric = measured.score
        return [record.objectives[o.name] for o in plan.objectives]

    def after(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        record = records.get(trial.number)
        if progress_cb is not None and record is not None:
            done = len(records)
            progress_cb(done, plan.n_trials, best_metric, f"trial {trial.number}: {record.state}")
        if cancel_event is not None and cancel_event.is_set():
            study.stop()

    if cancel_event is None or not cancel_event.is_set():
        study.optimize(objective, n_trials=plan.n_trials, catch=(Exception,), callbacks=[after])
    front, best = _front(study, plan)
    trials = [records[n] for n in sorted(records)]
    return VariableSearchOutcome(trials, front, best, plan.objectives)


def _front(study: optuna.Study, plan: SearchPlan) -> tuple[list[int], int | None]:
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        return [], None
    if len(plan.objectives) == 1:
        number = study.best_trial.number
        return [number], number
    front = sorted(t.number for t in study.best_trials)
    first = plan.objectives[0]
    sign = -1.0 if first.direction == "maximize" else 1.0
    values = {t.number: t.values[0] for t in study.best_trials}
    best = min(front, key=lambda n: (sign * values[n], n))
    return front, best


# --------------------------------------------------------------------------------------------
# The job kind


@dataclass
class VariableSearchPayload:
    """What the job process needs (picklable): the plan, the prepared requests (inputs coerced,
    parameters from the variable snapshot at start), labels, the metric and the module's
    parameter context."""

    job_id: str
    session_id: str
    plan: SearchPlan
    requests: list[ExecutionRequest]
    labels: list[dict[str, PyValue]]
    metric_name: str
    metric_options: dict[str, Any]
    signature: SignatureSpec
    lm: LMSpec
    module_type: str
    config: dict[str, Any]
    num_threads: int = DEFAULT_THREADS


def _trial_params(payload: VariableSearchPayload, values: Mapping[str, PyValue]) -> dict[str, Any]:
    check = param_checker(
        payload.module_type,
        payload.config,
        payload.signature,
        registry.BuildContext(session_id=payload.session_id),
    )
    params: dict[str, Any] = {}
    for dim in payload.plan.dimensions:
        for param in dim.params:
            params[param] = check(param, values[dim.variable])
    return params


def measure(
    payload: VariableSearchPayload,
    values: Mapping[str, PyValue],
    executor: Any,
    loop: asyncio.AbstractEventLoop,
    metric: Any,
) -> Measurement:
    """Runs the module on the dataset with a trial's values (one evaluation)."""
    dataset = [
        EvalExample(r.inputs, labels)
        for r, labels in zip(payload.requests, payload.labels, strict=True)
    ]
    requests = with_params(payload.requests, _trial_params(payload, values))
    scored = loop.run_until_complete(
        score_examples(executor, requests, dataset, metric, payload.num_threads)
    )
    errors = [r.error for r in scored.results if r.error is not None]
    if errors and len(errors) == len(scored.results):
        raise errors[0]
    return Measurement(
        scored.score,
        scored.mean_latency_ms,
        scored.usage.prompt_tokens + scored.usage.completion_tokens,
        scored.usage.cost_usd,
    )


def run_job(payload: VariableSearchPayload, reporter: Reporter) -> dict[str, Any]:
    """The job runner (in the job process): the search over an in-process executor."""
    configure_runtime()
    executor = InProcessExecutor()
    lm = judge_lm(payload.lm) if payload.metric_name not in CHEAP_METRICS else None
    metric = resolve_metric(payload.metric_name, payload.metric_options, payload.signature, lm)
    loop = asyncio.new_event_loop()
    total = payload.plan.n_trials
    reporter.progress("trial", 0, total, f"VariableSearch: {total} trials")

    def progress(done: int, total: int, best: float | None, message: str) -> None:
        reporter.progress("trial", done, total, message, best_score=best)

    try:
        outcome = run_variable_search(
            payload.plan, lambda values: measure(payload, values, executor, loop, metric), progress
        )
    finally:
        loop.close()
    return outcome.to_result()


def trial_values(result: Mapping[str, Any], trial_number: int | None) -> dict[str, PyValue]:
    """The values of a trial of a stored result (the best one by default); FAILED_PRECONDITION
    when there is none, INVALID_ARGUMENT for an unknown or failed trial."""
    number = result.get("best") if trial_number is None else trial_number
    if number is None:
        raise failed_precondition(
            Reason.JOB_STATE_CONFLICT, "the search has no completed trial to apply"
        )
    trial = next((t for t in result.get("trials", []) if t.get("number") == number), None)
    if trial is None or trial.get("state") != "COMPLETE":
        raise invalid_argument(
            Reason.INVALID_REQUEST,
            f"trial {number} is not a completed trial of this search",
            "trial_number",
        )
    return dict(trial.get("values") or {})


class VariableSearchKind:
    """The `VariableSearch` job kind for `OptimizationService.register_kind`."""

    runner = RUNNER

    def __init__(self, store: SessionStore, variables: VariableService) -> None:
        self._store = store
        self._variables = variables

    async def payload(
        self, job_id: str, request: StartRequest, prepared: Prepared
    ) -> VariableSearchPayload:
        if request.variable_search is None:
            raise invalid_argument(
                Reason.INVALID_SEARCH_SPACE,
                "VariableSearch needs variable_search (the variables to search)",
                "variable_search",
            )
        spec = (
            request.variable_search
            if isinstance(request.variable_search, SearchSpec)
            else spec_from_proto(request.variable_search)
        )
        config = dict(request.config)
        for key in config:
            if key not in CONFIG_KEYS:
                raise invalid_argument(
                    Reason.INVALID_OPTIMIZER_CONFIG,
                    f"config.{key}: unknown key; VariableSearch takes {', '.join(CONFIG_KEYS)}",
                    f"config.{key}",
                )
        raw_threads = config.get("num_threads", 0)
        if not isinstance(raw_threads, int) or isinstance(raw_threads, bool):
            raise invalid_argument(
                Reason.INVALID_OPTIMIZER_CONFIG,
                "config.num_threads must be an integer",
                "config.num_threads",
            )
        threads = check_threads(raw_threads)
        record = prepared.record
        signature = SignatureSpec.from_dict(record.spec["signature"])
        variables = await self._store.list_variables(request.session_id)
        check = param_checker(
            record.spec["module_type"],
            dict(record.spec.get("config") or {}),
            signature,
            registry.BuildContext(session_id=request.session_id),
        )
        plan = plan_search(spec, variables, record.spec.get("variable_bindings") or {}, check)
        data = prepared.valset or prepared.trainset
        requests = [
            ExecutionRequest(record, prepared.lm, dict(inputs), dict(prepared.params))
            for inputs, _ in data
        ]
        return VariableSearchPayload(
            job_id=job_id,
            session_id=request.session_id,
            plan=plan,
            requests=requests,
            labels=[dict(labels) for _, labels in data],
            metric_name=request.metric_name,
            metric_options=dict(request.metric_options),
            signature=signature,
            lm=prepared.lm,
            module_type=record.spec["module_type"],
            config=dict(record.spec.get("config") or {}),
            num_threads=threads,
        )

    async def apply(self, job: Job, trial_number: int | None) -> ApplyOutcome:
        from dspy_bridge.jobs.service import ApplyOutcome
        from dspy_bridge.services.variables import WriteRequest

        result = dict(job.result or {})
        if result.get("kind") != SEARCH_RESULT:
            raise failed_precondition(
                Reason.JOB_NOT_SUCCEEDED, f"job {job.job_id!r} has no variable search result"
            )
        if job.applied:
            current = [
                await self._variables.get(job.session_id, name)
                for name in trial_values(result, trial_number)
            ]
            return ApplyOutcome(job, variables=current)
        values = trial_values(result, trial_number)
        chosen = trial_number if trial_number is not None else result.get("best")
        written = await self._variables.batch_update(
            job.session_id,
            [WriteRequest(name, value) for name, value in values.items()],
            atomic=True,
            source=f"optimizer:{job.job_id}",
            reason=f"VariableSearch trial {chosen}",
        )
        return ApplyOutcome(
            replace(job, applied=True),
            variables=[v for v in written if isinstance(v, Variable)],
        )
