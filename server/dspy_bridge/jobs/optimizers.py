"""DSPy's optimizers, run inside a job process (`run_optimization` is the job runner).

The program is built from the stored module version with its own structure (so the optimized
state loads back into it), under the module's LM with its bound LM parameters and adapter. The
job scores the program on the valset (the trainset when no valset was given) before and after,
with DSPy's `Evaluate`, and returns the optimized state as a module-version result.

Progress: a DSPy callback sees every `Evaluate` call the optimizer makes (candidate programs,
trials) and reports its score as the current best when it is better; a metric wrapper counts
metric calls. Scores are the metric's mean in [0, 1] (DSPy's `Evaluate` reports percent).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from typing import Any

import dspy
import tqdm.std
from dspy.utils.callback import BaseCallback

from dspy_bridge.jobs import config as cfg
from dspy_bridge.jobs.child import Reporter
from dspy_bridge.jobs.embedder import hashing_embed
from dspy_bridge.jobs.metrics import resolve_metric
from dspy_bridge.jobs.payload import ExampleData, OptimizationPayload
from dspy_bridge.model.job import MODULE_RESULT
from dspy_bridge.runtime import registry
from dspy_bridge.runtime.executor import configure_runtime
from dspy_bridge.runtime.host_calls import PROCESS_HOST
from dspy_bridge.runtime.host_tools import with_host_tools
from dspy_bridge.runtime.lm.factory import build_lm
from dspy_bridge.runtime.params import LM_PARAMETERS
from dspy_bridge.runtime.program import build_program, make_adapter, spec_signature
from dspy_bridge.runtime.state import demo_count

Metric = Callable[..., float]


class _Progress(BaseCallback):  # type: ignore[misc]
    """Turns DSPy's Evaluate calls and the metric-call count into progress reports.

    While scoring (before and after optimizing) `completed` / `total` count the examples scored
    out of the devset; otherwise they count the optimizer's metric calls out of its budget when
    the optimizer has one (GEPA's `max_metric_calls`; 0 = unknown)."""

    def __init__(self, reporter: Reporter, optimizer: str, budget: int) -> None:
        super().__init__()
        self.reporter = reporter
        self.optimizer = optimizer
        self.budget = budget
        self.evaluations = 0
        self.metric_calls = 0
        self.phase = "starting"
        self.scored = 0
        self.to_score = 0

    def report(self, message: str = "", best: float | None = None) -> None:
        scoring = self.phase == "scoring"
        self.reporter.progress(
            self.phase,
            completed=self.scored if scoring else self.metric_calls,
            total=self.to_score if scoring else self.budget,
            message=message or self.summary(),
            best_score=best,
        )

    def summary(self) -> str:
        if self.phase == "scoring":
            return f"scored {self.scored} of {self.to_score} examples"
        return f"{self.optimizer}: {self.evaluations} evaluations, {self.metric_calls} metric calls"

    def scoring(self, examples: int, message: str) -> None:
        """Starts a scoring phase over `examples` examples."""
        self.phase = "scoring"
        self.scored = 0
        self.to_score = examples
        self.report(message)

    def on_evaluate_end(
        self, call_id: str, outputs: Any, exception: BaseException | None = None
    ) -> None:
        if exception is not None or outputs is None:
            return
        self.evaluations += 1
        raw = getattr(outputs, "score", outputs)
        if isinstance(raw, int | float):
            self.report(best=float(raw) / 100.0)

    def counted(self, metric: Metric) -> Metric:
        """`metric`, counted as the optimizer's metric calls."""

        def wrapped(example: Any, prediction: Any, trace: Any = None, *args: Any) -> float:
            self.metric_calls += 1
            score = metric(example, prediction, trace)
            self.report()
            return score

        return wrapped

    def scored_by(self, metric: Metric) -> Metric:
        """`metric`, counted as examples scored in a scoring phase."""

        def wrapped(example: Any, prediction: Any, trace: Any = None, *args: Any) -> float:
            score = metric(example, prediction, trace)
            self.scored += 1
            self.report()
            return score

        return wrapped


def to_examples(data: list[ExampleData], inputs: list[str]) -> list[dspy.Example]:
    return [dspy.Example(**labels, **values).with_inputs(*inputs) for values, labels in data]


def evaluate(program: dspy.Module, devset: list[dspy.Example], metric: Metric) -> float:
    """The mean metric over `devset`, in [0, 1]; failures score 0."""
    result = dspy.Evaluate(
        devset=devset,
        metric=metric,
        num_threads=1,
        display_progress=False,
        max_errors=len(devset) + 1,
        provide_traceback=False,
    )(program)
    return float(result.score) / 100.0


def _gepa_metric(metric: Metric) -> Callable[..., float]:
    def gepa_metric(
        gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> float:
        return metric(gold, pred, trace)

    return gepa_metric


class _RecordingKNN:
    """Wraps KNNFewShot's retriever to remember which training examples it picked."""

    def __init__(self, knn: Any) -> None:
        self.knn = knn
        self.picked: list[dspy.Example] = []

    def __call__(self, **kwargs: Any) -> list[dspy.Example]:
        found: list[dspy.Example] = self.knn(**kwargs)
        for example in found:
            if all(example is not seen for seen in self.picked):
                self.picked.append(example)
        return found


def _compile(
    payload: OptimizationPayload,
    student: dspy.Module,
    trainset: list[dspy.Example],
    valset: list[dspy.Example],
    metric: Metric,
    lm: dspy.BaseLM,
) -> tuple[dspy.Module, _RecordingKNN | None]:
    parts = cfg.split(payload.optimizer, payload.config)
    init, comp, bridge = parts["init"], parts["compile"], parts["bridge"]
    name = payload.optimizer
    tp = dspy.teleprompt
    if name == "LabeledFewShot":
        return tp.LabeledFewShot(**init).compile(student, trainset=trainset, **comp), None
    if name == "BootstrapFewShot":
        optimizer = tp.BootstrapFewShot(metric=metric, **init)
        return optimizer.compile(student, trainset=trainset), None
    if name == "BootstrapFewShotWithRandomSearch":
        init.setdefault("num_threads", 1)
        optimizer = tp.BootstrapFewShotWithRandomSearch(metric=metric, **init)
        return optimizer.compile(student, trainset=trainset, valset=valset or None, **comp), None
    if name == "KNNFewShot":
        k = init.pop("k", 3)
        embedder = dspy.Embedder(hashing_embed, caching=False)
        optimizer = tp.KNNFewShot(k, trainset, vectorizer=embedder, metric=metric, **init)
        recorder = _RecordingKNN(optimizer.KNN)
        optimizer.KNN = recorder
        return optimizer.compile(student), recorder
    if name == "COPRO":
        optimizer = tp.COPRO(prompt_model=lm, metric=metric, **init)
        eval_kwargs = {"num_threads": bridge.get("num_threads", 1), "display_progress": False}
        return optimizer.compile(student, trainset=trainset, eval_kwargs=eval_kwargs), None
    if name == "MIPROv2":
        init.setdefault("auto", "light")
        init.setdefault("num_threads", 1)
        optimizer = tp.MIPROv2(
            metric=metric, prompt_model=lm, task_model=lm, verbose=False, track_stats=False, **init
        )
        size = len(valset) if valset else max(1, int(len(trainset) * 0.8))
        comp.setdefault("minibatch_size", min(35, size))
        compiled = optimizer.compile(
            student,
            trainset=trainset,
            valset=valset or None,
            requires_permission_to_run=False,
            **comp,
        )
        return compiled, None
    if name == "SIMBA":
        init.setdefault("bsize", min(32, len(trainset)))
        init.setdefault("num_threads", 1)
        optimizer = tp.SIMBA(metric=metric, prompt_model=lm, **init)
        return optimizer.compile(student, trainset=trainset, **comp), None
    if name == "GEPA":
        if not any(init.get(k) for k in ("auto", "max_full_evals", "max_metric_calls")):
            init["auto"] = "light"
        init.setdefault("num_threads", 1)
        reflection = build_lm(payload.reflection_lm) if payload.reflection_lm else lm
        optimizer = tp.GEPA(
            metric=_gepa_metric(metric), reflection_lm=reflection, track_stats=False, **init
        )
        return optimizer.compile(student, trainset=trainset, valset=valset or None), None
    raise ValueError(f"unknown optimizer {name!r}")


def _budget(payload: OptimizationPayload) -> int:
    """Metric calls the job will make, when the budget says so (GEPA); 0 = unknown."""
    if payload.optimizer == "GEPA":
        return int(payload.config.get("max_metric_calls") or 0)
    return 0


def _labeled_state(student: dspy.Module, demos: list[dspy.Example]) -> dict[str, Any]:
    """The student's state with `demos` (KNNFewShot: what its retriever picked) on every
    predictor."""
    program = student.reset_copy()
    for predictor in program.predictors():
        predictor.demos = list(demos)
    return dict(program.dump_state())


def _instructions(program: dspy.Module) -> list[str]:
    return [str(p.signature.instructions) for _, p in program.named_predictors()]


def quiet_dspy() -> None:
    """No progress bars or INFO chatter from DSPy in a job process: its stderr is the
    server's, whose log lines are structured. Progress goes through the reporter instead."""
    logging.getLogger("dspy").setLevel(logging.WARNING)
    original = tqdm.std.tqdm.__init__

    def silent_init(self: Any, *args: Any, **kwargs: Any) -> None:
        kwargs["disable"] = True
        original(self, *args, **kwargs)

    tqdm.std.tqdm.__init__ = silent_init
    # DSPy prints some progress to stdout; a job has nothing to say there.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def run_optimization(payload: OptimizationPayload, reporter: Reporter) -> dict[str, Any]:
    """The job runner for DSPy optimizers (see module docstring)."""
    configure_runtime()
    quiet_dspy()
    record = payload.record
    signature = spec_signature(record)
    inputs = [f.name for f in signature.inputs]
    # The module's host tools are called from DSPy's threads through the job's channel.
    ctx = with_host_tools(
        registry.BuildContext(session_id=record.session_id),
        payload.host_tools,
        None,
        PROCESS_HOST.caller,
        record.module_id,
        payload.job_id,
    )
    program = build_program(record, None, ctx).module
    lm_params = {k: payload.params[k] for k in LM_PARAMETERS if k in payload.params}
    lm = build_lm(payload.lm, lm_params)
    adapter = make_adapter(str(payload.params.get("adapter") or ""))
    base_metric = resolve_metric(payload.metric_name, payload.metric_options, signature, lm)
    trainset = to_examples(payload.trainset, inputs)
    valset = to_examples(payload.valset, inputs)
    devset = valset or trainset
    progress = _Progress(reporter, payload.optimizer, _budget(payload))
    metric = progress.counted(base_metric)
    scoring_metric = progress.scored_by(base_metric)
    with dspy.context(lm=lm, adapter=adapter, callbacks=[progress]):
        progress.scoring(len(devset), "scoring the module before optimization")
        before = evaluate(program, devset, scoring_metric)
        progress.report(f"score before: {before:.3f}", best=before)
        progress.phase = "optimizing"
        progress.report(f"running {payload.optimizer}")
        compiled, knn = _compile(payload, program, trainset, valset, metric, lm)
        progress.scoring(len(devset), "scoring the optimized module")
        after = evaluate(compiled, devset, scoring_metric)
    state = _labeled_state(program, knn.picked) if knn else dict(compiled.dump_state())
    state = json.loads(json.dumps(state, default=str))
    progress.phase = "done"
    progress.report(f"score after: {after:.3f}", best=after)
    reporter.flush()
    return {
        "kind": MODULE_RESULT,
        "module_version": 0,
        "previous_version": record.version,
        "score_before": before,
        "score_after": after,
        "demo_count": demo_count(state),
        "instructions": _instructions(compiled),
        "spec": record.spec,
        "state": state,
    }
