"""Optimization jobs in the client: typed `Job` views and the request builders the sync and async
session handles share (`start_optimization`, `get_optimization`, `watch_optimization`,
`cancel_optimization`, `list_optimizations`, `apply_optimization`, `revert_module`).

::

    job = session.start_optimization(
        "qa", "BootstrapFewShot", trainset, metric="exact_match", valset=valset, apply=True
    )
    for snapshot in session.watch_optimization(job.job_id):
        print(snapshot.status, snapshot.progress.phase, snapshot.best_score)
    print(snapshot.module_result.score_before, snapshot.module_result.score_after)
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from dspy_bridge_client.errors import BridgeError, from_status
from dspy_bridge_client.types import Module, Variable, _time
from dspy_bridge_client.values import (
    PyValue,
    from_struct,
    from_value_map,
    to_struct,
    update_value_map,
)

__all__ = [
    "ApplyResult",
    "Job",
    "JobProgress",
    "JobStatus",
    "ModuleVersionResult",
    "Trial",
    "VariableSearchResult",
]

Dataset = Iterable[Mapping[str, Mapping[str, Any]] | tuple[Mapping[str, Any], Mapping[str, Any]]]
"""Examples as ``{"inputs": {...}, "labels": {...}}`` mappings or ``(inputs, labels)`` pairs."""


class JobStatus(enum.StrEnum):
    """Where a job is in its life."""

    UNSPECIFIED = "UNSPECIFIED"
    QUEUED = "QUEUED"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    INTERRUPTED = "INTERRUPTED"

    @classmethod
    def _from_proto(cls, number: int) -> JobStatus:
        return cls(job_pb2.JobStatus.Name(number).removeprefix("JOB_STATUS_"))  # type: ignore[arg-type]

    @property
    def terminal(self) -> bool:
        """True for SUCCEEDED, FAILED, CANCELLED and INTERRUPTED: the job will not change."""
        return self in (
            JobStatus.SUCCEEDED,
            JobStatus.FAILED,
            JobStatus.CANCELLED,
            JobStatus.INTERRUPTED,
        )


@dataclass(frozen=True)
class JobProgress:
    """How far a job has come: `phase` (`starting`, `scoring`, `optimizing`, `done`, ...),
    units `completed` of `total` (0 = unknown) and a human-readable `message`."""

    phase: str = ""
    completed: int = 0
    total: int = 0
    message: str = ""


@dataclass(frozen=True)
class ModuleVersionResult:
    """A prompt/demo optimizer's result. `module_version` is 0 until the result is applied."""

    module_version: int
    previous_version: int
    score_before: float | None
    score_after: float | None
    demo_count: int
    instructions: tuple[str, ...]
    state_json: str

    @classmethod
    def _from_proto(cls, message: job_pb2.ModuleVersionResult) -> ModuleVersionResult:
        return cls(
            module_version=message.module_version,
            previous_version=message.previous_version,
            score_before=message.score_before if message.HasField("score_before") else None,
            score_after=message.score_after if message.HasField("score_after") else None,
            demo_count=message.demo_count,
            instructions=tuple(message.instructions),
            state_json=message.state_json,
        )


@dataclass(frozen=True)
class Trial:
    """One VariableSearch trial: the values tried and each objective's score."""

    number: int
    values: dict[str, PyValue]
    objectives: dict[str, float]
    state: str
    error_message: str = ""

    @classmethod
    def _from_proto(cls, message: job_pb2.Trial) -> Trial:
        return cls(
            number=message.number,
            values=from_value_map(message.values),
            objectives=dict(message.objectives),
            state=job_pb2.TrialState.Name(message.state).removeprefix("TRIAL_STATE_"),
            error_message=message.error_message,
        )


@dataclass(frozen=True)
class VariableSearchResult:
    """A VariableSearch's trials, its Pareto front and the proposed (best) trial."""

    trials: tuple[Trial, ...]
    pareto_front: tuple[Trial, ...]
    best: Trial | None

    @classmethod
    def _from_proto(cls, message: job_pb2.VariableSearchResult) -> VariableSearchResult:
        return cls(
            trials=tuple(Trial._from_proto(t) for t in message.trials),
            pareto_front=tuple(Trial._from_proto(t) for t in message.pareto_front),
            best=Trial._from_proto(message.best) if message.HasField("best") else None,
        )


@dataclass(frozen=True)
class Job:
    """An optimization or search job, as of the call that returned it."""

    job_id: str
    session_id: str
    module_id: str
    optimizer: str
    status: JobStatus
    progress: JobProgress
    best_score: float | None
    error: BridgeError | None
    module_result: ModuleVersionResult | None
    variable_search_result: VariableSearchResult | None
    applied: bool
    create_time: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    config: dict[str, Any] = field(default_factory=dict)
    metric: str = ""
    metric_options: dict[str, Any] = field(default_factory=dict)
    apply_requested: bool = False
    trainset_size: int = 0
    valset_size: int = 0

    @property
    def done(self) -> bool:
        """True once the job reached a terminal status."""
        return self.status.terminal

    @classmethod
    def _from_proto(cls, message: job_pb2.Job) -> Job:
        result = message.WhichOneof("result")
        p = message.progress
        return cls(
            job_id=message.job_id,
            session_id=message.session_id,
            module_id=message.module_id,
            optimizer=message.optimizer,
            status=JobStatus._from_proto(message.status),
            progress=JobProgress(p.phase, p.completed, p.total, p.message),
            best_score=message.best_score if message.HasField("best_score") else None,
            error=from_status(message.error) if message.error.code else None,
            module_result=ModuleVersionResult._from_proto(message.module_result)
            if result == "module_result"
            else None,
            variable_search_result=VariableSearchResult._from_proto(message.variable_search_result)
            if result == "variable_search_result"
            else None,
            applied=message.applied,
            create_time=_time(message, "create_time"),
            start_time=_time(message, "start_time"),
            end_time=_time(message, "end_time"),
            config=from_struct(message.config),
            metric=message.metric.name,
            metric_options=from_struct(message.metric.options),
            apply_requested=message.apply_requested,
            trainset_size=message.trainset_size,
            valset_size=message.valset_size,
        )


@dataclass(frozen=True)
class ApplyResult:
    """What `apply_optimization` changed: the job (now applied) and the new module version
    (prompt/demo optimizers) or the variables at their new versions (VariableSearch)."""

    job: Job
    module: Module | None
    variables: tuple[Variable, ...]

    @classmethod
    def _from_proto(cls, message: pb.ApplyOptimizationResponse) -> ApplyResult:
        return cls(
            job=Job._from_proto(message.job),
            module=Module._from_proto(message.module) if message.HasField("module") else None,
            variables=tuple(Variable._from_proto(v) for v in message.variables),
        )


# --------------------------------------------------------------------------- requests


def _examples(target: Any, dataset: Dataset | None) -> None:
    for example in dataset or ():
        if isinstance(example, tuple):
            inputs, labels = example
        else:
            unknown = set(example) - {"inputs", "labels"}
            if unknown:
                raise ValueError(
                    f"a dataset example holds 'inputs' and 'labels', not {sorted(unknown)}"
                )
            inputs, labels = example.get("inputs", {}), example.get("labels", {})
        item = target.add()
        update_value_map(item.inputs, inputs)
        update_value_map(item.labels, labels)


def start_request(
    session_id: str,
    module_id: str,
    optimizer: str,
    trainset: Dataset,
    metric: str,
    *,
    valset: Dataset | None,
    metric_options: Mapping[str, Any] | None,
    config: Mapping[str, Any] | None,
    apply: bool,
    variable_search: job_pb2.VariableSearchSpec | None,
) -> pb.StartOptimizationRequest:
    request = pb.StartOptimizationRequest(
        session_id=session_id,
        module_id=module_id,
        optimizer=optimizer,
        config=to_struct(config or {}),
        metric=job_pb2.MetricSpec(name=metric, options=to_struct(metric_options or {})),
        apply=apply,
    )
    _examples(request.trainset, trainset)
    _examples(request.valset, valset)
    if variable_search is not None:
        request.variable_search.CopyFrom(variable_search)
    return request


def revert_request(
    session_id: str, module_id: str, to_version: int, expected_version: int | None
) -> pb.RevertModuleRequest:
    request = pb.RevertModuleRequest(
        session_id=session_id, module_id=module_id, to_version=to_version
    )
    if expected_version is not None:
        request.expected_version = expected_version
    return request


def apply_request(
    session_id: str, job_id: str, trial_number: int | None
) -> pb.ApplyOptimizationRequest:
    request = pb.ApplyOptimizationRequest(session_id=session_id, job_id=job_id)
    if trial_number is not None:
        request.trial_number = trial_number
    return request


def watch_event(message: pb.WatchOptimizationResponse) -> Job:
    return Job._from_proto(message.job)
