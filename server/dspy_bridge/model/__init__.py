"""Domain types of the bridge: plain dataclasses, no gRPC and no DSPy."""

from dspy_bridge.model.job import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    Job,
    JobProgress,
    JobStatus,
    JobUpdate,
)
from dspy_bridge.model.module import LMSpec, ModuleRecord
from dspy_bridge.model.session import Session
from dspy_bridge.model.value import PyValue, Tensor, decode_value, encode_value
from dspy_bridge.model.variable import (
    Constraints,
    HistoryEntry,
    Variable,
    VariableType,
    VariableWrite,
)

__all__ = [
    "ACTIVE_STATUSES",
    "TERMINAL_STATUSES",
    "Constraints",
    "HistoryEntry",
    "Job",
    "JobProgress",
    "JobStatus",
    "JobUpdate",
    "LMSpec",
    "ModuleRecord",
    "PyValue",
    "Session",
    "Tensor",
    "Variable",
    "VariableType",
    "VariableWrite",
    "decode_value",
    "encode_value",
]
