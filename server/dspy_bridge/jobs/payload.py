"""What the front sends to a job process (picklable, validated before it is sent)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dspy_bridge.model import LMSpec, ModuleRecord, PyValue
from dspy_bridge.runtime.host_calls import HostToolSpec

#: One example: (inputs coerced to the signature's types, labels).
ExampleData = tuple[dict[str, PyValue], dict[str, PyValue]]


@dataclass
class OptimizationPayload:
    """A DSPy optimizer run: the module version, its LM, data, metric and checked config."""

    job_id: str
    optimizer: str
    record: ModuleRecord
    lm: LMSpec
    #: Values of the module's bound parameters at start (LM parameters and `adapter` are used).
    params: dict[str, PyValue]
    config: dict[str, Any]
    trainset: list[ExampleData]
    valset: list[ExampleData]
    metric_name: str
    metric_options: dict[str, Any]
    #: GEPA's reflection LM (default: `lm`).
    reflection_lm: LMSpec | None = None
    #: The module's `host:` tools as the session's host offered them at start (their calls go
    #: through the job's channel to the front).
    host_tools: tuple[HostToolSpec, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
