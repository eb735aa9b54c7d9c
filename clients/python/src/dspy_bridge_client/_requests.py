"""Request building shared by the sync and async clients, so both behave the same."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeAlias

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import module_pb2, value_pb2
from dspy_bridge_client.types import Constraints, LMConfig, Signature, VariableType
from dspy_bridge_client.values import Tensor, to_struct, to_value, update_value_map

Metadata: TypeAlias = Sequence[tuple[str, str | bytes]]

# How much longer than ``timeout_ms`` the gRPC deadline is, so the server's own timeout fires first.
SERVER_TIMEOUT_GRACE_S = 2.0

BatchUpdates: TypeAlias = (
    Mapping[str, Any] | Iterable[tuple[str, Any] | tuple[str, Any, int | None]]
)
"""``{name: value}``, or ``(name, value)`` / ``(name, value, expected_version)`` tuples."""


def normalize_metadata(metadata: Mapping[str, str] | Iterable[tuple[str, str | bytes]]) -> Metadata:
    """Call metadata as the tuple of pairs grpc wants; keys must be lowercase."""
    pairs = metadata.items() if isinstance(metadata, Mapping) else metadata
    return tuple((str(key).lower(), value) for key, value in pairs)


def call_timeout(timeout: float | None, timeout_ms: int = 0) -> float | None:
    """The gRPC deadline for a call: the client timeout, extended to cover ``timeout_ms``."""
    if timeout is None or timeout_ms <= 0:
        return timeout
    return max(timeout, timeout_ms / 1000 + SERVER_TIMEOUT_GRACE_S)


def typed_value(type_: VariableType, value: Any) -> value_pb2.Value:
    """Encode a value for a variable of a known type (JSON variables always get JSON)."""
    if type_ is VariableType.JSON and not isinstance(value, Tensor | value_pb2.Value):
        return to_value(value, json=True)
    if type_ is VariableType.FLOAT and type(value) is int:
        return to_value(float(value))
    return to_value(value)


def names(value: str | Iterable[str]) -> list[str]:
    """A list of names; a lone string is one name, not its characters."""
    return [value] if isinstance(value, str) else list(value)


def create_session(
    session_id: str | None, metadata: Mapping[str, str] | None, ttl_seconds: int
) -> pb.CreateSessionRequest:
    return pb.CreateSessionRequest(
        session_id=session_id or "", metadata=dict(metadata or {}), ttl_seconds=ttl_seconds
    )


def lm_config(
    model: str | LMConfig, api_base: str, api_key_env: str, options: Mapping[str, Any]
) -> LMConfig:
    if isinstance(model, LMConfig):
        if api_base or api_key_env or options:
            raise TypeError("pass either an LMConfig or model/api_base/api_key_env/options")
        return model
    return LMConfig(model, api_base, api_key_env, dict(options))


def register_variable(
    session_id: str,
    name: str,
    type_: VariableType | str,
    initial_value: Any,
    constraints: Constraints,
    description: str,
    metadata: Mapping[str, str] | None,
) -> pb.RegisterVariableRequest:
    vtype = VariableType(type_)
    return pb.RegisterVariableRequest(
        session_id=session_id,
        name=name,
        type=vtype._to_proto(),
        initial_value=typed_value(vtype, initial_value),
        constraints=constraints._to_proto(),
        description=description,
        metadata=dict(metadata or {}),
    )


def update_variable(
    session_id: str,
    name: str,
    value: Any,
    expected_version: int | None,
    source: str,
    reason: str,
) -> pb.UpdateVariableRequest:
    request = pb.UpdateVariableRequest(
        session_id=session_id, name=name, value=to_value(value), source=source, reason=reason
    )
    if expected_version is not None:
        request.expected_version = expected_version
    return request


def batch_update(
    session_id: str, updates: BatchUpdates, atomic: bool, source: str, reason: str
) -> pb.BatchUpdateVariablesRequest:
    request = pb.BatchUpdateVariablesRequest(
        session_id=session_id, atomic=atomic, source=source, reason=reason
    )
    items: Iterable[Any] = updates.items() if isinstance(updates, Mapping) else updates
    for item in items:
        if not isinstance(item, tuple) or len(item) not in (2, 3):
            raise TypeError(
                "batch_update takes {name: value} or (name, value[, expected_version]) tuples, "
                f"got {item!r}"
            )
        write = request.writes.add(name=item[0], value=to_value(item[1]))
        if len(item) == 3 and item[2] is not None:
            write.expected_version = item[2]
    return request


def rollback(
    session_id: str,
    name: str,
    target_version: int,
    expected_version: int | None,
    source: str,
    reason: str,
) -> pb.RollbackVariableRequest:
    request = pb.RollbackVariableRequest(
        session_id=session_id,
        name=name,
        target_version=target_version,
        source=source,
        reason=reason,
    )
    if expected_version is not None:
        request.expected_version = expected_version
    return request


def create_module(
    session_id: str,
    module_type: str,
    signature: str | Signature,
    module_id: str | None,
    config: Mapping[str, Any] | None,
    bindings: Mapping[str, str] | None,
    lm: LMConfig | str | None,
) -> pb.CreateModuleRequest:
    sig = Signature(text=signature) if isinstance(signature, str) else signature
    request = pb.CreateModuleRequest(
        session_id=session_id,
        module_id=module_id or "",
        module_type=module_type,
        signature=sig._to_proto(),
        variable_bindings=dict(bindings or {}),
    )
    if config:
        request.config.CopyFrom(to_struct(config))
    if lm is not None:
        request.lm.CopyFrom((LMConfig(lm) if isinstance(lm, str) else lm)._to_proto())
    return request


def merge_inputs(
    inputs: Mapping[str, Any] | None, input_kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    merged = dict(inputs or {})
    for key, value in input_kwargs.items():
        if key in merged:
            raise TypeError(f"input {key!r} given both in `inputs` and as a keyword argument")
        merged[key] = value
    return merged


def _options(timeout_ms: int, include_trace: bool) -> module_pb2.ExecuteOptions:
    return module_pb2.ExecuteOptions(timeout_ms=timeout_ms, include_trace=include_trace)


def _fill_execution(
    request: pb.ExecuteRequest | pb.ExecuteStreamRequest,
    inputs: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
    timeout_ms: int,
    include_trace: bool,
) -> None:
    request.options.CopyFrom(_options(timeout_ms, include_trace))
    update_value_map(request.inputs, inputs)
    update_value_map(request.variable_overrides, overrides or {})


def execute(
    session_id: str,
    module_id: str,
    inputs: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
    timeout_ms: int,
    include_trace: bool,
) -> pb.ExecuteRequest:
    request = pb.ExecuteRequest(session_id=session_id, module_id=module_id)
    _fill_execution(request, inputs, overrides, timeout_ms, include_trace)
    return request


def execute_stream(
    session_id: str,
    module_id: str,
    inputs: Mapping[str, Any],
    overrides: Mapping[str, Any] | None,
    timeout_ms: int,
    include_trace: bool,
) -> pb.ExecuteStreamRequest:
    request = pb.ExecuteStreamRequest(session_id=session_id, module_id=module_id)
    _fill_execution(request, inputs, overrides, timeout_ms, include_trace)
    return request


def execute_batch(
    session_id: str,
    module_id: str,
    items: Iterable[Mapping[str, Any]],
    max_concurrency: int,
    overrides: Mapping[str, Any] | None,
    timeout_ms: int,
    include_trace: bool,
) -> pb.ExecuteBatchRequest:
    request = pb.ExecuteBatchRequest(
        session_id=session_id,
        module_id=module_id,
        max_concurrency=max_concurrency,
        options=_options(timeout_ms, include_trace),
    )
    for item in items:
        update_value_map(request.items.add().inputs, item)
    update_value_map(request.variable_overrides, overrides or {})
    return request


def import_state(
    session_id: str,
    module_id: str,
    state: str | Mapping[str, Any],
    expected_version: int | None,
) -> pb.ImportModuleStateRequest:
    state_json = state if isinstance(state, str) else json.dumps(state)
    request = pb.ImportModuleStateRequest(
        session_id=session_id, module_id=module_id, state_json=state_json
    )
    if expected_version is not None:
        request.expected_version = expected_version
    return request


Dataset: TypeAlias = Iterable[
    Mapping[str, Mapping[str, Any]] | tuple[Mapping[str, Any], Mapping[str, Any]]
]
"""Examples as ``{"inputs": {...}, "labels": {...}}`` mappings or ``(inputs, labels)`` pairs."""


def evaluate(
    session_id: str,
    module_id: str,
    dataset: Dataset,
    metric: str,
    metric_options: Mapping[str, Any] | None,
    num_threads: int,
    overrides: Mapping[str, Any] | None,
    module_version: int,
) -> pb.EvaluateRequest:
    from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2

    request = pb.EvaluateRequest(
        session_id=session_id,
        module_id=module_id,
        metric=job_pb2.MetricSpec(name=metric, options=to_struct(metric_options or {})),
        num_threads=num_threads,
        module_version=module_version,
    )
    for example in dataset:
        if isinstance(example, tuple):
            inputs, labels = example
        else:
            unknown = set(example) - {"inputs", "labels"}
            if unknown:
                raise ValueError(
                    f"a dataset example holds 'inputs' and 'labels', not {sorted(unknown)}"
                )
            inputs, labels = example.get("inputs", {}), example.get("labels", {})
        item = request.dataset.add()
        update_value_map(item.inputs, inputs)
        update_value_map(item.labels, labels)
    update_value_map(request.variable_overrides, overrides or {})
    return request


EvaluationProgress: TypeAlias = Callable[[int, int], object]
"""``progress(completed, total)``, called as examples finish."""


EvaluationEvent: TypeAlias = tuple[int, int] | pb.EvaluateResponse
"""An EvaluateStream event: ``(completed, total)`` or the final response."""


def evaluation_event(message: pb.EvaluateStreamResponse) -> EvaluationEvent:
    """An EvaluateStream message as ``(completed, total)`` or the final response."""
    if message.HasField("result"):
        return message.result
    return (message.progress.completed, message.progress.total)
