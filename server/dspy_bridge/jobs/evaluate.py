"""Evaluate: run a module over a dataset and score every prediction with a metric.

Everything is checked before the first execution, so a bad request does no work and changes
nothing: the session and module (and `module_version`), the variable overrides (exactly as
Execute checks them), a non-empty dataset within `MAX_DATASET`, every example's inputs (coerced
to the signature's types, as Execute does) and labels (each key an output field of the
signature, and the metric's `label` field present in every example), `num_threads`, and the
metric with its options (`jobs.metrics.resolve_metric`).

Execution goes through the module service's executor with one variable snapshot for the whole
evaluation, so variables resolve as for Execute and the response reports the versions used.
At most `num_threads` examples run at once (an asyncio semaphore over the executor). A failed
example (an LM error, a deadline, a metric that cannot score it) keeps its error and scores 0;
it never fails the evaluation. The aggregate score is the mean over all examples.

Progress: `progress(completed, total)` is called after each example (EvaluateStream turns it
into events); long evaluations also write a structured log line every `LOG_EVERY` examples.

`score_examples` is the store-free core (prepared requests in, scored results out); job
processes use it with their own executor.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import dspy
import grpc

from dspy_bridge.errors import BridgeError, Reason, invalid_argument
from dspy_bridge.jobs.host_metrics import HostMetric, check_offered
from dspy_bridge.jobs.metrics import BuiltinMetric, Metric, resolve_metric
from dspy_bridge.log import get_logger
from dspy_bridge.model import LMSpec, PyValue
from dspy_bridge.observability import count_lm_usage
from dspy_bridge.runtime.executor import ExecutionRequest, Executor
from dspy_bridge.runtime.host_calls import HostUnavailable, host_name
from dspy_bridge.runtime.lm.errors import lm_error_to_bridge
from dspy_bridge.runtime.lm.factory import build_lm
from dspy_bridge.runtime.signatures import SignatureSpec
from dspy_bridge.runtime.usage import CallRecorder, UsageStats
from dspy_bridge.services.modules import ExecuteOptions, ModuleService, VariableUse

log = get_logger(__name__)

DEFAULT_THREADS = 4
MAX_THREADS = 64
MAX_DATASET = 10_000
LOG_EVERY = 50
# Metrics that never call an LM (no judge LM is built for them).
CHEAP_METRICS = frozenset(
    {"exact_match", "answer_exact_match", "answer_passage_match", "f1", "contains", "regex"}
    | {"numeric_close"}
)

Progress = Callable[[int, int], Awaitable[None] | None]
"""`progress(completed, total)`, called after each example; may be sync or async."""


@dataclass(frozen=True)
class EvalExample:
    """One example: the module's inputs and the expected values of output fields."""

    inputs: Mapping[str, PyValue]
    labels: Mapping[str, PyValue] = field(default_factory=dict)


@dataclass
class ExampleResult:
    """One example's outcome: outputs and score, or the error (score 0)."""

    index: int
    outputs: dict[str, PyValue]
    score: float
    error: BridgeError | None
    latency_ms: float
    usage: UsageStats = field(default_factory=UsageStats)


@dataclass
class Scored:
    """What `score_examples` returns: per-example results, the mean score, summed usage."""

    results: list[ExampleResult]
    score: float
    usage: UsageStats
    latency_ms: float

    @property
    def mean_latency_ms(self) -> float:
        return sum(r.latency_ms for r in self.results) / len(self.results) if self.results else 0


@dataclass
class EvaluationOutcome:
    """An evaluation: the scores plus what it ran (module version, variable snapshot)."""

    score: float
    results: list[ExampleResult]
    usage: UsageStats
    module_version: int
    variables_used: dict[str, VariableUse]
    latency_ms: float


# --------------------------------------------------------------------------------------------
# Validation helpers (also used by optimization jobs)


def check_dataset(
    dataset: Sequence[EvalExample], signature: SignatureSpec, where: str = "dataset"
) -> None:
    """Non-empty, within `MAX_DATASET`, every label key an output field of the signature."""
    if not dataset:
        raise invalid_argument(
            Reason.INVALID_DATASET, f"{where} must hold at least one example", where
        )
    if len(dataset) > MAX_DATASET:
        raise invalid_argument(
            Reason.INVALID_DATASET, f"{where} holds more than {MAX_DATASET} examples", where
        )
    outputs = [f.name for f in signature.outputs]
    for i, example in enumerate(dataset):
        for name in example.labels:
            if name not in outputs:
                path = f"{where}[{i}].labels.{name}"
                raise invalid_argument(
                    Reason.INVALID_DATASET,
                    f"{path}: {name!r} is not an output field of the signature "
                    f"(outputs: {', '.join(outputs)})",
                    path,
                )


def check_metric_labels(
    metric: Metric, dataset: Sequence[EvalExample], where: str = "dataset"
) -> None:
    """Every example holds the label field the metric compares against (built-in metrics)."""
    if not isinstance(metric, BuiltinMetric) or metric.name == "regex":
        return
    label = metric.options.label
    for i, example in enumerate(dataset):
        if label not in example.labels:
            path = f"{where}[{i}].labels"
            raise invalid_argument(
                Reason.INVALID_DATASET,
                f"{path}: metric {metric.name!r} compares against label {label!r}, "
                "which this example lacks",
                path,
                metadata={"label": label},
            )


def check_threads(num_threads: int) -> int:
    if num_threads < 0 or num_threads > MAX_THREADS:
        raise invalid_argument(
            Reason.INVALID_REQUEST, f"num_threads must be 0..{MAX_THREADS}", "num_threads"
        )
    return num_threads or DEFAULT_THREADS


def judge_lm(spec: LMSpec | None) -> dspy.BaseLM | None:
    """The LM LM-judged metrics use (the module's); None when it cannot be built."""
    try:
        lm: dspy.BaseLM = build_lm(spec)
    except BridgeError:
        return None
    return lm


# --------------------------------------------------------------------------------------------
# The core


def _metric_error(exc: BaseException) -> BridgeError:
    if isinstance(exc, BridgeError):
        return exc
    mapped = lm_error_to_bridge(exc)  # an LM judge's failure: never the provider's text
    if mapped is not None:
        return mapped
    text = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
    return BridgeError(
        grpc.StatusCode.UNKNOWN,
        Reason.EXECUTION_FAILED,
        f"the metric could not score this example: {type(exc).__name__}"
        f"{': ' + text if text else ''}",
        {"error_type": type(exc).__name__, "stage": "metric"},
    )


async def score_examples(
    executor: Executor,
    requests: Sequence[ExecutionRequest],
    dataset: Sequence[EvalExample],
    metric: Metric,
    num_threads: int = DEFAULT_THREADS,
    progress: Progress | None = None,
    log_fields: Mapping[str, Any] | None = None,
) -> Scored:
    """Runs `requests[i]` (the module on `dataset[i]`'s inputs) and scores it, `num_threads`
    at once. Failures stay per example (score 0). See the module docstring."""
    start = time.perf_counter()
    gate = asyncio.Semaphore(max(1, num_threads))
    total = len(requests)
    done = 0

    async def one(index: int) -> ExampleResult:
        nonlocal done
        example = dataset[index]
        began = time.perf_counter()
        async with gate:
            try:
                result = await executor.execute(requests[index])
            except asyncio.CancelledError:
                raise
            except BridgeError as exc:
                outcome = ExampleResult(index, {}, 0.0, exc, (time.perf_counter() - began) * 1000)
            except Exception as exc:  # a bug must not fail the other examples
                log.exception("evaluation example failed", example=index)
                bug = BridgeError(
                    grpc.StatusCode.INTERNAL, Reason.INTERNAL, f"internal error: {exc!r}"
                )
                outcome = ExampleResult(index, {}, 0.0, bug, (time.perf_counter() - began) * 1000)
            else:
                values = dict(requests[index].inputs)
                ex = dspy.Example(**values, **example.labels).with_inputs(*values)
                pred = dspy.Prediction(**result.outputs)
                score = 0.0
                error: BridgeError | None = None
                try:
                    score = float(await _score(metric, ex, pred))
                except HostUnavailable as signal:  # never scored without the metric
                    raise signal.error from None
                except Exception as exc:
                    error = _metric_error(exc)
                outcome = ExampleResult(
                    index, result.outputs, score, error, result.latency_ms, result.usage
                )
        done += 1
        if progress is not None:
            maybe = progress(done, total)
            if maybe is not None:
                await maybe
        if done % LOG_EVERY == 0 and done < total:
            log.info("evaluation progress", completed=done, total=total, **(log_fields or {}))
        return outcome

    results = list(await asyncio.gather(*(one(i) for i in range(total))))
    usage = UsageStats()
    for r in results:
        usage = usage + r.usage
    score = sum(r.score for r in results) / total if total else 0.0
    return Scored(results, score, usage, (time.perf_counter() - start) * 1000)


async def _score(metric: Metric, example: dspy.Example, prediction: dspy.Prediction) -> Any:
    """A host metric is awaited (its call is cancelled with the evaluation and holds no
    thread); any other metric is sync code (an LM judge, a plugin) and runs in a thread."""
    if isinstance(metric, HostMetric):
        return await metric.acall(example, prediction)
    return await asyncio.to_thread(metric, example, prediction, None)


def with_params(
    requests: Sequence[ExecutionRequest], params: Mapping[str, PyValue]
) -> list[ExecutionRequest]:
    """The same requests with some parameter values replaced (a VariableSearch trial)."""
    return [replace(r, params={**r.params, **params}) for r in requests]


# --------------------------------------------------------------------------------------------
# The front-process service


class Evaluator:
    """Evaluate over a `ModuleService` (its store, variable resolution and executor)."""

    def __init__(self, modules: ModuleService) -> None:
        self._modules = modules

    async def evaluate(
        self,
        session_id: str,
        module_id: str,
        dataset: Sequence[EvalExample],
        metric_name: str,
        metric_options: Mapping[str, Any],
        num_threads: int = 0,
        overrides: Mapping[str, PyValue] | None = None,
        module_version: int = 0,
        progress: Progress | None = None,
    ) -> EvaluationOutcome:
        prepared = await self.prepare(
            session_id,
            module_id,
            dataset,
            metric_name,
            metric_options,
            overrides,
            module_version,
            num_threads,
        )
        scored = await score_examples(
            self._modules.executor,
            prepared.requests,
            dataset,
            prepared.metric,
            prepared.num_threads,
            progress,
            {"session_id": session_id, "module_id": module_id},
        )
        count_lm_usage(
            prepared.model,
            scored.usage.lm_calls,
            scored.usage.prompt_tokens,
            scored.usage.completion_tokens,
        )
        if prepared.judge is not None:  # the LM-judged metric's own calls, made here
            judged = prepared.judge.usage()
            count_lm_usage(
                prepared.judge_model,
                judged.lm_calls,
                judged.prompt_tokens,
                judged.completion_tokens,
            )
        log.info(
            "evaluated",
            session_id=session_id,
            module_id=module_id,
            examples=len(dataset),
            score=round(scored.score, 4),
            latency_ms=round(scored.latency_ms, 1),
        )
        return EvaluationOutcome(
            scored.score,
            scored.results,
            scored.usage,
            prepared.module_version,
            prepared.variables_used,
            scored.latency_ms,
        )

    async def prepare(
        self,
        session_id: str,
        module_id: str,
        dataset: Sequence[EvalExample],
        metric_name: str,
        metric_options: Mapping[str, Any],
        overrides: Mapping[str, PyValue] | None = None,
        module_version: int = 0,
        num_threads: int = 0,
    ) -> PreparedEvaluation:
        """Every check of an evaluation (see the module docstring); no execution."""
        modules = self._modules
        threads = check_threads(num_threads)
        if module_version < 0:
            raise invalid_argument(
                Reason.INVALID_REQUEST, "module_version must not be negative", "module_version"
            )
        prepared = await modules.prepare(session_id, module_id, overrides or {}, module_version)
        signature = prepared.signature
        check_dataset(dataset, signature)
        host = host_name(metric_name)
        lm = judge_lm(prepared.lm) if metric_name not in CHEAP_METRICS and not host else None
        judge = CallRecorder() if lm is not None else None  # counts the judge's LM calls
        if judge is not None and lm is not None:
            lm = judge.bind(lm)
        if host is not None:  # the session's host metric: offered now, called through the hub
            check_offered(modules.hosts.names(session_id, "metric") if modules.hosts else [], host)
        metric = resolve_metric(
            metric_name, metric_options, signature, lm, session_id=session_id, host=modules.hosts
        )
        check_metric_labels(metric, dataset)
        requests: list[ExecutionRequest] = []
        for i, example in enumerate(dataset):
            try:
                requests.append(
                    modules.execution_request(prepared, example.inputs, ExecuteOptions())
                )
            except BridgeError as exc:
                raise exc.at(f"dataset[{i}]") from None
        return PreparedEvaluation(
            requests,
            metric,
            signature,
            prepared.record.version,
            dict(prepared.used),
            threads,
            model=prepared.model,
            judge=judge,
            judge_model=str(getattr(lm, "model", "")),
        )


@dataclass
class PreparedEvaluation:
    """A validated evaluation, ready to run with `score_examples`."""

    requests: list[ExecutionRequest]
    metric: Metric
    signature: SignatureSpec
    module_version: int
    variables_used: dict[str, VariableUse]
    num_threads: int = DEFAULT_THREADS
    #: The model the module runs with, and the LM-judged metric's usage and model (metrics).
    model: str = ""
    judge: CallRecorder | None = None
    judge_model: str = ""
