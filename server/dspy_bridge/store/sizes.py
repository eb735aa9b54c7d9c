"""What a session keeps, in bytes: the measure behind the per-session byte budget.

Every store counts a session with these same sizes, whether the count lives in the server's
memory (`BudgetedStore`, single server) or in the shared store next to the data (Redis, where
each write's script checks and updates it): a record's texts plus a fixed overhead, each *kept*
history entry (value, source, reason), each module version's spec and state, each job's config
and metric. `measure` counts a stored session from its contents (a session written before the
count existed, or whose count was lost), and `budget_exceeded` is the one error a full session
gives on every store.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dspy_bridge.errors import BridgeError, Reason, resource_exhausted
from dspy_bridge.model import Job, ModuleRecord, PyValue, Session, Variable
from dspy_bridge.model.validation import value_size

if TYPE_CHECKING:
    from dspy_bridge.store.base import SessionStore

#: Bytes counted for a record's fixed fields (ids, times, version numbers) on top of its texts.
RECORD_OVERHEAD = 256
#: Bytes counted for a job record beyond its config and metric (progress, times, its result's
#: summary); a job's result is the server's output and is not refused.
JOB_OVERHEAD = 1_024


def _json_size(data: Any) -> int:
    if not data:
        return 0
    return len(json.dumps(data, separators=(",", ":"), default=str).encode("utf-8", "replace"))


def _texts_size(*texts: str) -> int:
    return sum(len(t.encode("utf-8", "replace")) for t in texts)


def entry_size(value: PyValue, source: str, reason: str) -> int:
    """One kept history entry (every version a variable keeps, its current one included)."""
    return value_size(value) + _texts_size(source, reason) + 32


def variable_size(v: Variable) -> int:
    """A variable's record without its values: name, description, metadata, constraints."""
    meta = sum(_texts_size(k, x) for k, x in v.metadata.items())
    return (
        RECORD_OVERHEAD
        + _texts_size(v.name, v.description)
        + meta
        + _json_size(v.constraints.to_dict())
    )


def module_size(record: ModuleRecord) -> int:
    """One module version: its spec and DSPy state."""
    return RECORD_OVERHEAD + _json_size(record.spec) + _json_size(record.state)


def job_size(job: Job) -> int:
    return JOB_OVERHEAD + _json_size(job.config) + _json_size(job.metric)


def session_size(session: Session) -> int:
    return RECORD_OVERHEAD + sum(_texts_size(k, v) for k, v in session.metadata.items())


@dataclass
class SessionUsage:
    """What one session keeps, in bytes, kept per item so deletes and trims give bytes back."""

    base: int = 0  # the session record and its metadata
    variables: dict[str, int] = field(default_factory=dict)  # id -> record bytes
    history: dict[str, deque[int]] = field(default_factory=dict)  # id -> kept entry bytes
    history_bytes: dict[str, int] = field(default_factory=dict)
    modules: dict[str, int] = field(default_factory=dict)  # module_id -> all its versions
    jobs: int = 0

    def total(self) -> int:
        return (
            self.base
            + sum(self.variables.values())
            + sum(self.history_bytes.values())
            + sum(self.modules.values())
            + self.jobs
        )


async def measure(store: SessionStore, session_id: str, keep: int | None) -> SessionUsage:
    """The usage of a session as `store` holds it (read from its contents); `keep` is the
    number of history versions the store keeps per variable (None: all)."""
    session = await store.get_session(session_id)
    usage = SessionUsage(base=session_size(session))
    for variable in await store.list_variables(session_id):
        usage.variables[variable.id] = variable_size(variable)
        entries = await store.variable_history(session_id, variable.id, limit=0)
        sizes = deque(
            (entry_size(e.value, e.source, e.reason) for e in reversed(entries)), maxlen=keep
        )
        usage.history[variable.id] = sizes
        usage.history_bytes[variable.id] = sum(sizes)
    for module in await store.list_modules(session_id):
        total = 0
        for version in range(1, module.version + 1):
            try:
                total += module_size(await store.get_module(session_id, module.module_id, version))
            except BridgeError:
                continue
        usage.modules[module.module_id] = total
    usage.jobs = sum(job_size(j) for j in await store.list_jobs(session_id))
    return usage


def budget_exceeded(session_id: str, used: int, needed: int, limit: int) -> BridgeError:
    """RESOURCE_EXHAUSTED `SESSION_BUDGET_EXCEEDED` (with `limit`, `used`, `needed`)."""
    return resource_exhausted(
        Reason.SESSION_BUDGET_EXCEEDED,
        f"session {session_id!r} keeps {used:,} bytes; this write needs {needed:,} more "
        f"and the per-session budget is {limit:,} bytes (--max-session-bytes). "
        "Delete variables, modules or the session, or write smaller values",
        limit=str(limit),
        used=str(used),
        needed=str(needed),
    )
