"""Typed, versioned variables."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from dspy_bridge.model.value import PyValue


class VariableType(enum.Enum):
    """Mirrors `dspy_bridge.v1.VariableType` (same numbers)."""

    FLOAT = 1
    INTEGER = 2
    STRING = 3
    BOOLEAN = 4
    CHOICE = 5
    MODULE = 6
    EMBEDDING = 7
    TENSOR = 8
    JSON = 9


@dataclass(frozen=True)
class Constraints:
    """Rules a variable's value must satisfy (see `VariableConstraints` in the proto)."""

    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple[str, ...] = ()
    pattern: str = ""
    min_length: int | None = None
    max_length: int | None = None
    dims: tuple[int, ...] = ()
    dtype: str = ""

    def to_dict(self) -> dict[str, object]:
        """Only the set fields, for storage."""
        out: dict[str, object] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if value not in (None, "", ()):
                out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, raw: dict[str, object]) -> Constraints:
        fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items()}
        return cls(**fixed)  # type: ignore[arg-type]


@dataclass
class Variable:
    """A variable at its current version."""

    id: str
    session_id: str
    name: str
    type: VariableType
    value: PyValue
    constraints: Constraints = field(default_factory=Constraints)
    description: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    version: int = 1
    create_time: float = 0.0
    update_time: float = 0.0
    source: str = ""


@dataclass(frozen=True)
class HistoryEntry:
    """One version of a variable."""

    version: int
    value: PyValue
    source: str
    reason: str
    update_time: float


@dataclass(frozen=True)
class VariableWrite:
    """A validated write the store applies: `value` already satisfies type and constraints."""

    variable_id: str
    value: PyValue
    source: str
    reason: str
    expected_version: int | None = None
