"""Domain types of the bridge: plain dataclasses, no gRPC and no DSPy."""

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
    "Constraints",
    "HistoryEntry",
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
