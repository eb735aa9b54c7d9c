"""Copies of stored records for callers, so nobody outside a store changes what it keeps.

Shallow dataclass copies plus copies of mutable containers: scalars, strings and `Tensor`s are
immutable and are shared rather than copied, which keeps the execution hot path (every Execute
reads its module and variables) free of deep copies. Used by the memory store for everything it
hands out and by the Redis store for the execution views it keeps between Executes.
"""

from __future__ import annotations

from typing import Any, TypeVar

from dspy_bridge.model import LMSpec, ModuleRecord, PyValue, Session, Tensor, Variable

# Values of these types cannot be mutated in place, so sharing them is safe.
IMMUTABLE: frozenset[type] = frozenset({type(None), bool, int, float, str, bytes, Tensor})


def copy_json(value: Any) -> Any:
    """A deep copy of a JSON-like tree; much cheaper than `copy.deepcopy` for this shape."""
    kind = type(value)
    if kind in IMMUTABLE:
        return value
    if kind is dict:
        return {key: copy_json(item) for key, item in value.items()}
    if kind is list or kind is tuple:
        return [copy_json(item) for item in value]
    return value


def copy_value(value: PyValue) -> PyValue:
    """Shares immutable values (the common case) and deep-copies JSON containers."""
    return value if type(value) in IMMUTABLE else copy_json(value)


_T = TypeVar("_T")


def shallow(obj: _T, **changes: Any) -> _T:
    """What `dataclasses.replace` gives, at a third of its cost: copies are made on every read
    of the execution hot path, and none of the copied types has a `__post_init__` that
    re-running `__init__` would serve. Works for frozen dataclasses too."""
    copy = object.__new__(type(obj))
    copy.__dict__.update(obj.__dict__, **changes)
    return copy


def copy_lm(lm: LMSpec | None) -> LMSpec | None:
    """LMSpec is frozen but holds a dict; give each side its own."""
    return None if lm is None else shallow(lm, options=dict(lm.options))


def copy_variable(variable: Variable) -> Variable:
    return shallow(variable, value=copy_value(variable.value), metadata=dict(variable.metadata))


def copy_module(record: ModuleRecord) -> ModuleRecord:
    state = None if record.state is None else copy_json(record.state)
    return shallow(record, spec=copy_json(record.spec), state=state)


def copy_session(session: Session, **changes: Any) -> Session:
    """The session with its own metadata and LM (and `changes` applied)."""
    return shallow(session, metadata=dict(session.metadata), lm=copy_lm(session.lm), **changes)
