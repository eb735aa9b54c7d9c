"""Typed, read-only views of what the sidecar returns.

Every class here is a frozen dataclass (or enum) built from the generated protobuf messages;
values are plain Python (see `dspy_bridge_client.values`), timestamps are timezone-aware UTC
`datetime` objects and unset timestamps are None. A few classes (`LMConfig`, `Signature`,
`SignatureField`) are also built by callers and sent.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple, TypeAlias, overload

from google.protobuf import timestamp_pb2

from dspy_bridge_client._proto.dspy_bridge.v1 import (
    bridge_service_pb2 as pb,
)
from dspy_bridge_client._proto.dspy_bridge.v1 import (
    lm_pb2,
    module_pb2,
    session_pb2,
    variable_pb2,
)
from dspy_bridge_client.errors import BridgeError, from_status
from dspy_bridge_client.limits import ServerLimits
from dspy_bridge_client.values import PyValue, from_struct, from_value, from_value_map

__all__ = [
    "BatchResult",
    "BatchResults",
    "Constraints",
    "Evaluation",
    "EvaluationResult",
    "ExecuteResult",
    "ExecutionStatus",
    "FieldRole",
    "HistoryEntry",
    "LMCallTrace",
    "LMConfig",
    "Module",
    "OutputChunk",
    "PingResult",
    "PoolInfo",
    "ServerInfo",
    "ServerLimits",
    "Session",
    "SessionEnded",
    "Signature",
    "SignatureField",
    "StreamEvent",
    "Usage",
    "Variable",
    "VariableChange",
    "VariableChangeKind",
    "VariableType",
    "VariableUsage",
    "WatchEvent",
    "WatchResync",
    "WriteResult",
]


def _time(message: Any, name: str) -> datetime | None:
    if not message.HasField(name):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(message, name)
    return stamp.ToDatetime(tzinfo=UTC)


# --------------------------------------------------------------------------- enums


class VariableType(enum.StrEnum):
    """The type of a variable. Accepts its name in any case, with or without the
    ``VARIABLE_TYPE_`` prefix, and the aliases ``int``, ``bool``, ``str``:
    ``VariableType("float") is VariableType.FLOAT``."""

    UNSPECIFIED = "unspecified"
    """Not set, or a type this client version does not know."""
    FLOAT = "float"
    """A double. Constraints: min, max, step."""
    INTEGER = "integer"
    """A 64-bit integer. Constraints: min, max, step."""
    STRING = "string"
    """Text. Constraints: pattern, min_length, max_length, choices."""
    BOOLEAN = "boolean"
    """True or False."""
    CHOICE = "choice"
    """One of `Constraints.choices` (required)."""
    MODULE = "module"
    """A DSPy module type name (``Predict``, ``ChainOfThought``, ...)."""
    EMBEDDING = "embedding"
    """A vector of floats (a list or a 1-D `Tensor`). Constraints: dims."""
    TENSOR = "tensor"
    """A dense array (`Tensor`). Constraints: dtype, dims."""
    JSON = "json"
    """Any JSON value. Constraints: max_length (of the serialized JSON)."""

    @classmethod
    def _missing_(cls, value: object) -> VariableType | None:
        if not isinstance(value, str):
            return None
        key = value.strip().lower().removeprefix("variable_type_")
        key = {"int": "integer", "bool": "boolean", "str": "string"}.get(key, key)
        for member in cls:
            if member.value == key:
                return member
        return None

    @classmethod
    def _from_proto(cls, number: int) -> VariableType:
        return _VARIABLE_TYPE_BY_NUMBER.get(number, cls.UNSPECIFIED)

    def _to_proto(self) -> variable_pb2.VariableType.ValueType:
        return variable_pb2.VariableType.Value(f"VARIABLE_TYPE_{self.name}")


_VARIABLE_TYPE_BY_NUMBER: dict[int, VariableType] = {
    variable_pb2.VariableType.Value(f"VARIABLE_TYPE_{m.name}"): m for m in VariableType
}


class VariableChangeKind(enum.StrEnum):
    """What happened to a watched variable."""

    UNSPECIFIED = "unspecified"
    """Not set, or a kind this client version does not know."""
    INITIAL = "initial"
    """The current value, sent first when watching with ``include_initial=True``."""
    REGISTERED = "registered"
    """A new variable was registered (only when watching all variables)."""
    UPDATED = "updated"
    """A new version was written."""
    DELETED = "deleted"
    """The variable was deleted."""

    @classmethod
    def _from_proto(cls, number: int) -> VariableChangeKind:
        return _CHANGE_KIND_BY_NUMBER.get(number, cls.UNSPECIFIED)


_CHANGE_KIND_BY_NUMBER: dict[int, VariableChangeKind] = {
    variable_pb2.VariableChangeKind.Value(f"VARIABLE_CHANGE_KIND_{m.name}"): m
    for m in VariableChangeKind
}


class FieldRole(enum.StrEnum):
    """Whether a signature field is an input or an output."""

    UNSPECIFIED = "unspecified"
    """Not set; the server rejects it."""
    INPUT = "input"
    """Given by the caller in ``inputs``."""
    OUTPUT = "output"
    """Produced by the module in ``outputs``."""

    @classmethod
    def _from_proto(cls, number: int) -> FieldRole:
        if number == module_pb2.FIELD_ROLE_INPUT:
            return cls.INPUT
        if number == module_pb2.FIELD_ROLE_OUTPUT:
            return cls.OUTPUT
        return cls.UNSPECIFIED

    def _to_proto(self) -> module_pb2.FieldRole.ValueType:
        return module_pb2.FieldRole.Value(f"FIELD_ROLE_{self.name}")


# --------------------------------------------------------------------------- LM, sessions


@dataclass(frozen=True, slots=True)
class LMConfig:
    """Which language model to call and how.

    `model` is any LiteLLM model string (``openai/gpt-4o-mini``) or ``offline`` (the built-in
    deterministic test double). The API key is never sent: `api_key_env` names an environment
    variable *of the server*. `options` are provider options (``temperature``, ``max_tokens``,
    ``latency_ms`` for ``offline``, ...); values are sent as strings (bools as true/false).
    """

    model: str
    api_base: str = ""
    api_key_env: str = ""
    options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def _from_proto(cls, message: lm_pb2.LMConfig) -> LMConfig:
        return cls(message.model, message.api_base, message.api_key_env, dict(message.options))

    def _to_proto(self) -> lm_pb2.LMConfig:
        return lm_pb2.LMConfig(
            model=self.model,
            api_base=self.api_base,
            api_key_env=self.api_key_env,
            options={k: _option_text(v) for k, v in self.options.items()},
        )


def _option_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True)
class Session:
    """A session: the unit of ownership; variables and modules live in it and go with it."""

    session_id: str
    """The session's identifier."""
    metadata: dict[str, str]
    """Labels attached at creation."""
    ttl_seconds: int
    """Idle time after which the session expires; 0 means never."""
    create_time: datetime | None
    """When it was created."""
    expire_time: datetime | None
    """When it expires unless used or heartbeated; None when it never expires."""
    variable_count: int
    """How many variables it holds."""
    module_count: int
    """How many modules it holds."""
    lm: LMConfig | None
    """Its language model (`configure_lm`); None means the server default."""

    @classmethod
    def _from_proto(cls, message: session_pb2.Session) -> Session:
        return cls(
            session_id=message.session_id,
            metadata=dict(message.metadata),
            ttl_seconds=message.ttl_seconds,
            create_time=_time(message, "create_time"),
            expire_time=_time(message, "expire_time"),
            variable_count=message.variable_count,
            module_count=message.module_count,
            lm=LMConfig._from_proto(message.lm) if message.HasField("lm") else None,
        )


# --------------------------------------------------------------------------- variables


@dataclass(frozen=True, slots=True)
class Constraints:
    """Rules a variable's value must satisfy; which apply depends on the `VariableType`.
    Unset numeric bounds are None."""

    min: float | None = None
    """Inclusive lower bound (FLOAT, INTEGER)."""
    max: float | None = None
    """Inclusive upper bound (FLOAT, INTEGER)."""
    step: float | None = None
    """Values must be ``min + k * step`` (FLOAT, INTEGER)."""
    choices: tuple[str, ...] = ()
    """Allowed values (CHOICE: required; STRING, MODULE: optional)."""
    pattern: str = ""
    """A regular expression the whole string must match (STRING)."""
    min_length: int | None = None
    """Minimum length in characters (STRING)."""
    max_length: int | None = None
    """Maximum length in characters (STRING) or serialized bytes (JSON)."""
    dims: tuple[int, ...] = ()
    """EMBEDDING: the vector length. TENSOR: the shape, 0 meaning any size."""
    dtype: str = ""
    """Required element type of a TENSOR."""

    @classmethod
    def _from_proto(cls, message: variable_pb2.VariableConstraints) -> Constraints:
        has = message.HasField
        return cls(
            min=message.min if has("min") else None,
            max=message.max if has("max") else None,
            step=message.step if has("step") else None,
            choices=tuple(message.choices),
            pattern=message.pattern,
            min_length=message.min_length if has("min_length") else None,
            max_length=message.max_length if has("max_length") else None,
            dims=tuple(message.dims),
            dtype=message.dtype,
        )

    def _to_proto(self) -> variable_pb2.VariableConstraints:
        message = variable_pb2.VariableConstraints(
            choices=list(self.choices), pattern=self.pattern, dims=list(self.dims), dtype=self.dtype
        )
        if self.min is not None:
            message.min = self.min
        if self.max is not None:
            message.max = self.max
        if self.step is not None:
            message.step = self.step
        if self.min_length is not None:
            message.min_length = self.min_length
        if self.max_length is not None:
            message.max_length = self.max_length
        return message


@dataclass(frozen=True, slots=True)
class Variable:
    """A typed, versioned value inside a session."""

    id: str
    """Server-made identifier; accepted wherever a name is."""
    session_id: str
    """The session it belongs to."""
    name: str
    """Unique name within the session."""
    type: VariableType
    """Its type, fixed at registration."""
    value: PyValue
    """The current value, as a Python object."""
    constraints: Constraints
    """Its constraints, fixed at registration."""
    description: str
    """Human-readable description."""
    metadata: dict[str, str]
    """Free-form labels."""
    version: int
    """1 at registration, +1 with every write."""
    create_time: datetime | None
    """When it was registered."""
    update_time: datetime | None
    """When the current version was written."""
    source: str
    """Who wrote the current version (``host``, ``optimizer:<job_id>``, ...)."""

    @classmethod
    def _from_proto(cls, message: variable_pb2.Variable) -> Variable:
        return cls(
            id=message.id,
            session_id=message.session_id,
            name=message.name,
            type=VariableType._from_proto(message.type),
            value=from_value(message.value),
            constraints=Constraints._from_proto(message.constraints),
            description=message.description,
            metadata=dict(message.metadata),
            version=message.version,
            create_time=_time(message, "create_time"),
            update_time=_time(message, "update_time"),
            source=message.source,
        )


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One version of a variable, as `history` returns it (newest first)."""

    version: int
    """The version number."""
    value: PyValue
    """The value at that version."""
    source: str
    """Who wrote it."""
    reason: str
    """Why, as told by the writer."""
    update_time: datetime | None
    """When it was written."""

    @classmethod
    def _from_proto(cls, message: variable_pb2.VariableHistoryEntry) -> HistoryEntry:
        return cls(
            version=message.version,
            value=from_value(message.value),
            source=message.source,
            reason=message.reason,
            update_time=_time(message, "update_time"),
        )


@dataclass(frozen=True, slots=True)
class WriteResult:
    """The outcome of one write of `batch_update`: `variable` on success, `error` otherwise."""

    name: str
    """The name (or id) the write addressed."""
    variable: Variable | None
    """The variable at its new version; None when the write failed."""
    error: BridgeError | None
    """Why the write failed; None on success."""

    @property
    def ok(self) -> bool:
        """True when the write succeeded."""
        return self.error is None

    def unwrap(self) -> Variable:
        """The written variable, or raise the write's error."""
        if self.error is not None:
            raise self.error
        assert self.variable is not None
        return self.variable

    @classmethod
    def _from_proto(cls, name: str, message: pb.VariableWriteResult) -> WriteResult:
        if message.HasField("error") and message.error.code != 0:
            return cls(name, None, from_status(message.error))
        return cls(name, Variable._from_proto(message.variable), None)


# --------------------------------------------------------------------------- watch events


@dataclass(frozen=True, slots=True)
class VariableChange:
    """A watch event: one change to one variable."""

    kind: VariableChangeKind
    """What happened."""
    variable: Variable
    """The variable after the change (for DELETED, as it was last)."""
    reason: str
    """Why, as told by the writer."""
    resume_token: str = ""
    """Pass to ``watch(resume_token=...)`` to continue right after this event."""


@dataclass(frozen=True, slots=True)
class WatchResync:
    """A watch event sent instead of changes a slow watcher missed: the current state of every
    watched variable. Later changes follow as usual."""

    variables: tuple[Variable, ...]
    """The current value of every watched variable."""
    skipped_changes: int
    """How many changes were skipped."""
    resume_token: str = ""
    """Pass to ``watch(resume_token=...)`` to continue right after this event."""
    more: bool = False
    """True when the state continues in the next `WatchResync` (a state larger than one gRPC
    message comes in parts of whole variables; it is complete with the part where this is
    False)."""


@dataclass(frozen=True, slots=True)
class SessionEnded:
    """The last watch event: the session was deleted or expired; the stream ends after it."""

    reason: str
    """``deleted`` or ``expired``."""


WatchEvent: TypeAlias = VariableChange | WatchResync | SessionEnded
"""One event of a variable watch."""


def _watch_event(message: pb.WatchVariablesResponse) -> WatchEvent | None:
    kind = message.WhichOneof("event")
    if kind == "change":
        change = message.change
        return VariableChange(
            VariableChangeKind._from_proto(change.kind),
            Variable._from_proto(change.variable),
            change.reason,
            message.resume_token,
        )
    if kind == "resync":
        return WatchResync(
            tuple(Variable._from_proto(v) for v in message.resync.variables),
            message.resync.skipped_changes,
            message.resume_token,
            message.resync.more,
        )
    if kind == "session_ended":
        return SessionEnded(message.session_ended.reason)
    return None  # an event kind newer than this client: skipped


# --------------------------------------------------------------------------- modules


@dataclass(frozen=True, slots=True, init=False)
class SignatureField:
    """One field of a signature: ``SignatureField("question")``,
    ``SignatureField("answer", "output", "int", "the result")``.

    `role` is `FieldRole.INPUT` / ``"input"`` (the default) or `FieldRole.OUTPUT` /
    ``"output"``; `type` is in DSPy's notation (``str``, ``list[str]``, ``Literal['a', 'b']``,
    ``Optional[int]``, ...); `description` goes into the prompt.
    """

    name: str
    role: FieldRole
    type: str
    description: str

    def __init__(
        self,
        name: str,
        role: FieldRole | str = FieldRole.INPUT,
        type: str = "str",
        description: str = "",
    ) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "role", role if isinstance(role, FieldRole) else FieldRole(role))
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "description", description)

    @classmethod
    def _from_proto(cls, message: module_pb2.SignatureField) -> SignatureField:
        return cls(
            message.name, FieldRole._from_proto(message.role), message.type, message.description
        )

    def _to_proto(self) -> module_pb2.SignatureField:
        return module_pb2.SignatureField(
            name=self.name,
            role=self.role._to_proto(),
            type=self.type,
            description=self.description,
        )


@dataclass(frozen=True, slots=True, init=False)
class Signature:
    """A DSPy signature. Give `text` (DSPy's string form, e.g.
    ``"context: list[str], question -> answer, confidence: float"``) or `fields` (any
    iterable of `SignatureField`, kept as a tuple); the server returns both. `instructions`
    are the task description (the signature's docstring in Python DSPy)."""

    text: str
    fields: tuple[SignatureField, ...]
    instructions: str

    def __init__(
        self, text: str = "", fields: Iterable[SignatureField] = (), instructions: str = ""
    ) -> None:
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "fields", tuple(fields))
        object.__setattr__(self, "instructions", instructions)

    @property
    def inputs(self) -> tuple[SignatureField, ...]:
        """The input fields, in order."""
        return tuple(f for f in self.fields if f.role is FieldRole.INPUT)

    @property
    def outputs(self) -> tuple[SignatureField, ...]:
        """The output fields, in order."""
        return tuple(f for f in self.fields if f.role is FieldRole.OUTPUT)

    @classmethod
    def _from_proto(cls, message: module_pb2.Signature) -> Signature:
        return cls(
            message.text,
            tuple(SignatureField._from_proto(f) for f in message.fields),
            message.instructions,
        )

    def _to_proto(self) -> module_pb2.Signature:
        return module_pb2.Signature(
            text=self.text,
            fields=[f._to_proto() for f in self.fields],
            instructions=self.instructions,
        )


@dataclass(frozen=True, slots=True)
class Module:
    """A DSPy module held by the sidecar."""

    module_id: str
    """Identifier, unique within the session."""
    session_id: str
    """The session it belongs to."""
    module_type: str
    """``Predict``, ``ChainOfThought``, ``ReAct``, ..."""
    signature: Signature
    """Its signature, normalized (both text and fields)."""
    config: dict[str, Any]
    """Type-specific configuration."""
    variable_bindings: dict[str, str]
    """Module parameter → variable name."""
    lm: LMConfig | None
    """Per-module LM override; None uses the session's LM."""
    version: int
    """1 at creation, +1 with every change."""
    create_time: datetime | None
    """When it was created."""
    update_time: datetime | None
    """When the current version was made."""
    demo_count: int
    """Few-shot demonstrations its predictors hold in this version."""

    @classmethod
    def _from_proto(cls, message: module_pb2.Module) -> Module:
        return cls(
            module_id=message.module_id,
            session_id=message.session_id,
            module_type=message.module_type,
            signature=Signature._from_proto(message.signature),
            config=from_struct(message.config),
            variable_bindings=dict(message.variable_bindings),
            lm=LMConfig._from_proto(message.lm) if message.HasField("lm") else None,
            version=message.version,
            create_time=_time(message, "create_time"),
            update_time=_time(message, "update_time"),
            demo_count=message.demo_count,
        )


# --------------------------------------------------------------------------- execution


@dataclass(frozen=True, slots=True)
class Usage:
    """LM usage of an execution."""

    lm_calls: int = 0
    """LM calls made (cache hits included)."""
    prompt_tokens: int = 0
    """Prompt tokens, as the provider reported."""
    completion_tokens: int = 0
    """Completion tokens, as the provider reported."""
    cost_usd: float = 0.0
    """Cost in US dollars where the price is known; 0 otherwise."""

    @classmethod
    def _from_proto(cls, message: module_pb2.Usage) -> Usage:
        return cls(
            message.lm_calls, message.prompt_tokens, message.completion_tokens, message.cost_usd
        )


class VariableUsage(NamedTuple):
    """The value and version of a bound variable an execution used; unpacks as
    ``value, version, overridden``."""

    value: PyValue
    """The value used."""
    version: int
    """The version used; 0 when the value came from ``overrides``."""
    overridden: bool
    """True when the value came from the call's ``overrides``."""

    @classmethod
    def _from_proto(cls, message: module_pb2.VariableUsage) -> VariableUsage:
        return cls(from_value(message.value), message.version, message.overridden)


def _variables_used(
    mapping: Mapping[str, module_pb2.VariableUsage],
) -> dict[str, VariableUsage]:
    return {name: VariableUsage._from_proto(usage) for name, usage in mapping.items()}


@dataclass(frozen=True, slots=True)
class LMCallTrace:
    """One LM call of an execution (with ``include_trace=True``)."""

    model: str
    """The model called."""
    messages: tuple[dict[str, Any], ...]
    """The chat messages sent (each with ``role`` and ``content``)."""
    completions: tuple[str, ...]
    """The raw completions returned."""
    options: dict[str, Any]
    """Call options (temperature, max_tokens, ...)."""

    @classmethod
    def _from_proto(cls, message: module_pb2.LMCallTrace) -> LMCallTrace:
        return cls(
            message.model,
            tuple(from_struct(m) for m in message.messages),
            tuple(message.completions),
            from_struct(message.options),
        )


@dataclass(frozen=True, slots=True)
class ExecuteResult:
    """The result of one execution. ``result["answer"]`` reads an output field."""

    outputs: dict[str, PyValue]
    """Every field of the prediction (``reasoning`` included), typed as the signature says."""
    variables_used: dict[str, VariableUsage]
    """Bound variable name → (value, version, overridden) actually used."""
    usage: Usage
    """LM usage."""
    latency_ms: float
    """Server-side time in milliseconds."""
    module_version: int
    """The module version that ran."""
    trace: tuple[LMCallTrace, ...]
    """The LM calls, when ``include_trace=True`` was passed."""

    def __getitem__(self, name: str) -> PyValue:
        return self.outputs[name]

    @classmethod
    def _from_proto(cls, message: pb.ExecuteResponse) -> ExecuteResult:
        return cls(
            outputs=from_value_map(message.outputs),
            variables_used=_variables_used(message.variables_used),
            usage=Usage._from_proto(message.usage),
            latency_ms=message.latency_ms,
            module_version=message.module_version,
            trace=tuple(LMCallTrace._from_proto(t) for t in message.trace),
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The outcome of one item of `execute_batch`: `outputs` on success, `error` otherwise."""

    outputs: dict[str, PyValue]
    """The item's outputs; empty when it failed."""
    error: BridgeError | None
    """Why the item failed (a `BridgeError` subclass, not raised); None on success."""
    usage: Usage
    """The item's LM usage."""
    latency_ms: float
    """The item's server-side time in milliseconds."""
    trace: tuple[LMCallTrace, ...]
    """The item's LM calls, when ``include_trace=True`` was passed."""

    @property
    def ok(self) -> bool:
        """True when the item succeeded."""
        return self.error is None

    def unwrap(self) -> dict[str, PyValue]:
        """The item's outputs, or raise its error."""
        if self.error is not None:
            raise self.error
        return self.outputs

    def __getitem__(self, name: str) -> PyValue:
        return self.unwrap()[name]

    @classmethod
    def _from_proto(cls, message: pb.ExecuteBatchResult) -> BatchResult:
        failed = message.HasField("error") and message.error.code != 0
        return cls(
            outputs=from_value_map(message.outputs),
            error=from_status(message.error) if failed else None,
            usage=Usage._from_proto(message.usage),
            latency_ms=message.latency_ms,
            trace=tuple(LMCallTrace._from_proto(t) for t in message.trace),
        )


@dataclass(frozen=True, slots=True)
class BatchResults(Sequence[BatchResult]):
    """The results of `execute_batch`: a sequence of `BatchResult` in item order, plus what
    the whole batch shared."""

    results: tuple[BatchResult, ...]
    """One result per item, in request order."""
    variables_used: dict[str, VariableUsage]
    """The variables every item used (one snapshot for the whole batch)."""
    usage: Usage
    """Summed LM usage."""
    latency_ms: float
    """Server-side time of the whole batch in milliseconds."""
    module_version: int
    """The module version that ran."""

    @overload
    def __getitem__(self, index: int) -> BatchResult: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[BatchResult]: ...
    def __getitem__(self, index: int | slice) -> BatchResult | Sequence[BatchResult]:
        return self.results[index]

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[BatchResult]:
        return iter(self.results)

    @property
    def errors(self) -> list[tuple[int, BridgeError]]:
        """``(index, error)`` of every failed item."""
        return [(i, r.error) for i, r in enumerate(self.results) if r.error is not None]

    @classmethod
    def _from_proto(cls, message: pb.ExecuteBatchResponse) -> BatchResults:
        return cls(
            results=tuple(BatchResult._from_proto(r) for r in message.results),
            variables_used=_variables_used(message.variables_used),
            usage=Usage._from_proto(message.usage),
            latency_ms=message.latency_ms,
            module_version=message.module_version,
        )


@dataclass(frozen=True, slots=True)
class OutputChunk:
    """A stream event: a piece of an output field's text as the LM produces it."""

    field: str
    """The output field the text belongs to."""
    text: str
    """The new text."""
    last: bool
    """True on the field's last chunk."""


@dataclass(frozen=True, slots=True)
class ExecutionStatus:
    """A stream event: a progress message (``Calling LM...``)."""

    message: str
    """Human-readable progress."""


StreamEvent: TypeAlias = OutputChunk | ExecutionStatus | ExecuteResult
"""One event of `execute_stream`; the last one is always the `ExecuteResult`."""


def _stream_event(message: pb.ExecuteStreamResponse) -> StreamEvent | None:
    kind = message.WhichOneof("event")
    if kind == "chunk":
        return OutputChunk(message.chunk.field, message.chunk.text, message.chunk.last)
    if kind == "status":
        return ExecutionStatus(message.status.message)
    if kind == "result":
        return ExecuteResult._from_proto(message.result)
    return None  # an event kind newer than this client: skipped


# --------------------------------------------------------------------------- server


@dataclass(frozen=True, slots=True)
class PingResult:
    """The answer to `ping`."""

    message: str
    """The message sent, echoed."""
    server_time: datetime | None
    """The server's clock."""
    version: str
    """The dspy-bridge version."""
    round_trip_ms: float
    """Time the call took as measured by the client, in milliseconds."""

    @classmethod
    def _from_proto(cls, message: pb.PingResponse, round_trip_ms: float) -> PingResult:
        return cls(message.message, _time(message, "server_time"), message.version, round_trip_ms)


@dataclass(frozen=True, slots=True)
class PoolInfo:
    """Worker pool figures."""

    workers: int
    """Configured worker processes; 0 means execution runs in the front process."""
    workers_alive: int
    """Workers alive now."""
    restarts: int
    """Worker restarts since the server started."""
    queue_depth: int
    """Calls waiting for a worker."""
    in_flight: int
    """Calls being executed now."""


@dataclass(frozen=True, slots=True)
class ServerInfo:
    """What the server offers and how it is configured (`server_info`)."""

    bridge_version: str
    """The dspy-bridge version."""
    dspy_version: str
    """The DSPy version it runs."""
    python_version: str
    """The Python version it runs."""
    module_types: tuple[str, ...]
    """Module types `create_module` accepts."""
    optimizers: tuple[str, ...]
    """Optimizers it offers."""
    metrics: tuple[str, ...]
    """Built-in metric names."""
    variable_types: tuple[VariableType, ...]
    """Variable types `register_variable` accepts."""
    store_backend: str
    """``memory``, ``sqlite`` or ``redis``."""
    pool: PoolInfo
    """Worker pool figures."""
    limits: ServerLimits
    """Enforced limits."""
    default_lm_model: str
    """The default LM model (``offline`` when no provider is configured)."""
    start_time: datetime | None
    """When the server started."""

    @classmethod
    def _from_proto(cls, message: pb.GetServerInfoResponse) -> ServerInfo:
        pool, limits = message.pool, message.limits
        return cls(
            bridge_version=message.bridge_version,
            dspy_version=message.dspy_version,
            python_version=message.python_version,
            module_types=tuple(message.module_types),
            optimizers=tuple(message.optimizers),
            metrics=tuple(message.metrics),
            variable_types=tuple(VariableType._from_proto(t) for t in message.variable_types),
            store_backend=message.store_backend,
            pool=PoolInfo(
                pool.workers, pool.workers_alive, pool.restarts, pool.queue_depth, pool.in_flight
            ),
            limits=ServerLimits._from_proto(limits),
            default_lm_model=message.default_lm_model,
            start_time=_time(message, "start_time"),
        )


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class EvaluationResult:
    """One example of `evaluate`: the module's outputs and the metric's score, or the error."""

    index: int
    """Position of the example in the dataset."""
    outputs: dict[str, PyValue]
    """Every field of the prediction; empty when the example failed."""
    score: float
    """The metric's score (0 when the example failed)."""
    error: BridgeError | None
    """Why the example failed (not raised); None on success."""
    latency_ms: float
    """Server-side time of the example in milliseconds."""

    @property
    def ok(self) -> bool:
        """True when the example ran and was scored."""
        return self.error is None

    @classmethod
    def _from_proto(cls, message: Any) -> EvaluationResult:
        failed = message.HasField("error") and message.error.code != 0
        return cls(
            index=message.index,
            outputs=from_value_map(message.outputs),
            score=message.score,
            error=from_status(message.error) if failed else None,
            latency_ms=message.latency_ms,
        )


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The outcome of `evaluate`: the mean score and one `EvaluationResult` per example."""

    score: float
    """Mean score over the dataset (failed examples count as 0)."""
    results: tuple[EvaluationResult, ...]
    """One result per example, in dataset order."""
    usage: Usage
    """Summed LM usage."""
    module_version: int
    """The module version evaluated."""
    variables_used: dict[str, VariableUsage]
    """The variables every example used (one snapshot for the whole evaluation)."""
    latency_ms: float
    """Server-side time of the whole evaluation in milliseconds."""

    @property
    def errors(self) -> list[tuple[int, BridgeError]]:
        """``(index, error)`` of every failed example."""
        return [(r.index, r.error) for r in self.results if r.error is not None]

    @classmethod
    def _from_proto(cls, message: pb.EvaluateResponse) -> Evaluation:
        return cls(
            score=message.score,
            results=tuple(EvaluationResult._from_proto(r) for r in message.results),
            usage=Usage._from_proto(message.usage),
            module_version=message.module_version,
            variables_used=_variables_used(message.variables_used),
            latency_ms=message.latency_ms,
        )
