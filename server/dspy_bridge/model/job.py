"""Job records: what the store keeps of an optimization or search job.

A job is owned by its session (deleting the session deletes its jobs). Everything in a record is
JSON-able so every backend can store it as is:

- `config` and `metric` are the request's optimizer config and `{"name", "options"}`.
- `error` is `{"code": <grpc code int>, "reason": str, "message": str}` when FAILED.
- `result` is set once SUCCEEDED, one of two shapes (see `MODULE_RESULT`, `SEARCH_RESULT`):

  `{"kind": "module", "module_version": int (0 until applied), "previous_version": int,
  "score_before": float | None, "score_after": float | None, "demo_count": int,
  "instructions": [str], "spec": {...}, "state": {...DSPy dump_state()...}}`

  `{"kind": "variable_search", "trials": [{"number": int, "values": {name: JSON value},
  "objectives": {name: float}, "state": "COMPLETE" | "PRUNED" | "FAIL" | "RUNNING",
  "error_message": str}], "pareto_front": [trial numbers], "best": trial number | None}`
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum
from typing import Any

#: `result["kind"]` of a prompt/demo optimizer's result.
MODULE_RESULT = "module"
#: `result["kind"]` of a VariableSearch result.
SEARCH_RESULT = "variable_search"


class JobStatus(IntEnum):
    """Mirrors `dspy_bridge.v1.JobStatus` (same numbers)."""

    UNSPECIFIED = 0
    QUEUED = 1
    RUNNING = 2
    SUCCEEDED = 3
    FAILED = 4
    CANCELLED = 5
    INTERRUPTED = 6

    @property
    def terminal(self) -> bool:
        return self in TERMINAL_STATUSES


#: Statuses a job never leaves.
TERMINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED, JobStatus.INTERRUPTED}
)
#: Statuses of a job that is not finished yet.
ACTIVE_STATUSES = frozenset({JobStatus.QUEUED, JobStatus.RUNNING})


@dataclass(frozen=True)
class JobProgress:
    """How far a job has come (mirrors `JobProgress`)."""

    phase: str = ""
    completed: int = 0
    total: int = 0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "phase": self.phase,
            "completed": self.completed,
            "total": self.total,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> JobProgress:
        return cls(
            phase=str(raw.get("phase", "")),
            completed=int(raw.get("completed", 0)),
            total=int(raw.get("total", 0)),
            message=str(raw.get("message", "")),
        )


@dataclass
class Job:
    """One optimization or search job of a module."""

    job_id: str
    session_id: str
    module_id: str
    optimizer: str
    status: JobStatus = JobStatus.QUEUED
    progress: JobProgress = field(default_factory=JobProgress)
    best_score: float | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    applied: bool = False
    create_time: float = 0.0
    start_time: float | None = None
    end_time: float | None = None
    config: dict[str, Any] = field(default_factory=dict)
    metric: dict[str, Any] = field(default_factory=dict)
    apply_requested: bool = False
    trainset_size: int = 0
    valset_size: int = 0
    #: The module version the job started from.
    module_version: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form (the sqlite backend stores the non-key fields as one document)."""
        return {
            "job_id": self.job_id,
            "session_id": self.session_id,
            "module_id": self.module_id,
            "optimizer": self.optimizer,
            "status": int(self.status),
            "progress": self.progress.to_dict(),
            "best_score": self.best_score,
            "error": self.error,
            "result": self.result,
            "applied": self.applied,
            "create_time": self.create_time,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "config": self.config,
            "metric": self.metric,
            "apply_requested": self.apply_requested,
            "trainset_size": self.trainset_size,
            "valset_size": self.valset_size,
            "module_version": self.module_version,
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> Job:
        return cls(
            job_id=raw["job_id"],
            session_id=raw["session_id"],
            module_id=raw["module_id"],
            optimizer=raw["optimizer"],
            status=JobStatus(raw.get("status", 1)),
            progress=JobProgress.from_dict(raw.get("progress") or {}),
            best_score=raw.get("best_score"),
            error=raw.get("error"),
            result=raw.get("result"),
            applied=bool(raw.get("applied", False)),
            create_time=float(raw.get("create_time", 0.0)),
            start_time=raw.get("start_time"),
            end_time=raw.get("end_time"),
            config=dict(raw.get("config") or {}),
            metric=dict(raw.get("metric") or {}),
            apply_requested=bool(raw.get("apply_requested", False)),
            trainset_size=int(raw.get("trainset_size", 0)),
            valset_size=int(raw.get("valset_size", 0)),
            module_version=int(raw.get("module_version", 0)),
        )


@dataclass(frozen=True)
class JobUpdate:
    """Changes to a job, applied atomically by `SessionStore.update_job`; unset fields stay."""

    status: JobStatus | None = None
    progress: JobProgress | None = None
    best_score: float | None = None
    error: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    applied: bool | None = None
    start_time: float | None = None
    end_time: float | None = None

    def apply_to(self, job: Job) -> Job:
        """`job` with these changes (a new object)."""
        changes: dict[str, Any] = {}
        for name in (
            "status",
            "progress",
            "best_score",
            "error",
            "result",
            "applied",
            "start_time",
            "end_time",
        ):
            value = getattr(self, name)
            if value is not None:
                changes[name] = value
        return replace(job, **changes)
