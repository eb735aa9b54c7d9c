"""The module RPCs of `BridgeService`: protos in, `ModuleService` calls, protos out.

A mixin for `BridgeServicer` (which sets `self.modules`). Handlers raise `BridgeError`; the
interceptor turns it into a rich status. Per-item batch failures travel inside the response as
`google.rpc.Status` with the same ErrorInfo/BadRequest details.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, TypeAlias

import grpc
from google.protobuf import struct_pb2
from grpc.aio import ServicerContext

from dspy_bridge.errors import BridgeError, Reason, invalid_argument
from dspy_bridge.model import LMSpec, ModuleRecord, PyValue
from dspy_bridge.runtime.executor import ChunkEvent, ExecutionResult, ResultEvent, StatusEvent
from dspy_bridge.runtime.signatures import FieldSpec, SignatureSpec
from dspy_bridge.runtime.state import demo_count
from dspy_bridge.runtime.usage import UsageStats
from dspy_bridge.services import paging
from dspy_bridge.services.modules import (
    ExecuteOptions,
    ModuleService,
    SignatureInput,
    VariableUse,
)
from dspy_bridge.services.offload import convert_sized
from dspy_bridge.transport import convert
from dspy_bridge.transport.status import ok_status, to_status_proto
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import module_pb2, value_pb2

Ctx: TypeAlias = ServicerContext[Any, Any]

_ROLES = {module_pb2.FIELD_ROLE_INPUT: "input", module_pb2.FIELD_ROLE_OUTPUT: "output"}
_ROLE_NUMBERS = {"input": module_pb2.FIELD_ROLE_INPUT, "output": module_pb2.FIELD_ROLE_OUTPUT}


# --------------------------------------------------------------------------------------------
# Conversion


def struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as plain JSON (integral numbers as ints, as `convert` does for values)."""
    value = convert.value_from_proto(
        value_pb2.Value(json_value=struct_pb2.Value(struct_value=struct))
    )
    return value if isinstance(value, dict) else {}


def _fill_struct(out: struct_pb2.Struct, data: Mapping[str, Any]) -> None:
    if data:
        out.CopyFrom(convert.value_to_proto(dict(data)).json_value.struct_value)


def signature_from_proto(sig: module_pb2.Signature) -> SignatureInput:
    fields = [
        FieldSpec(f.name, _ROLES.get(f.role, ""), f.type or "str", f.description)  # type: ignore[arg-type]
        for f in sig.fields
    ]
    return SignatureInput(sig.text, fields, sig.instructions)


def signature_to_proto(spec: SignatureSpec, out: module_pb2.Signature) -> None:
    out.text = spec.text()
    out.instructions = spec.instructions
    for f in spec.fields:
        out.fields.add(
            name=f.name, role=_ROLE_NUMBERS[f.role], type=f.type, description=f.description
        )


def module_to_proto(record: ModuleRecord) -> module_pb2.Module:
    spec = record.spec
    out = module_pb2.Module(
        module_id=record.module_id,
        session_id=record.session_id,
        module_type=spec["module_type"],
        version=record.version,
        demo_count=demo_count(record.state),
    )
    signature_to_proto(SignatureSpec.from_dict(spec["signature"]), out.signature)
    _fill_struct(out.config, spec.get("config") or {})
    out.variable_bindings.update(spec.get("variable_bindings") or {})
    if spec.get("lm"):
        out.lm.CopyFrom(convert.lm_to_proto(LMSpec.from_dict(dict(spec["lm"]))))
    if record.create_time:
        out.create_time.CopyFrom(convert.timestamp_from_seconds(record.create_time))
    if record.update_time:
        out.update_time.CopyFrom(convert.timestamp_from_seconds(record.update_time))
    return out


def _values_in(values: Mapping[str, value_pb2.Value], field: str) -> dict[str, PyValue]:
    try:
        return convert.values_from_proto(values)
    except (TypeError, ValueError) as exc:  # e.g. a malformed tensor
        raise invalid_argument(Reason.INVALID_INPUT, f"{field}: {exc}", field) from None


async def _inputs_and_overrides(
    request: pb.ExecuteRequest | pb.ExecuteStreamRequest,
) -> tuple[dict[str, PyValue], dict[str, PyValue]]:
    """An execution's `inputs` and `variable_overrides` as Python (off the loop when large)."""
    return await convert_sized(
        request.ByteSize(),
        lambda: (
            _values_in(request.inputs, "inputs"),
            _values_in(request.variable_overrides, "variable_overrides"),
        ),
    )


def _options(options: module_pb2.ExecuteOptions, context: Ctx | None = None) -> ExecuteOptions:
    """The call's gRPC deadline, when sooner than `timeout_ms`, becomes the execution's timeout,
    so the executor (or a worker) cancels the LM call at it."""
    timeout_ms = options.timeout_ms
    remaining = context.time_remaining() if context is not None else None
    if remaining is not None and timeout_ms >= 0:
        left = max(1, int(remaining * 1000))
        timeout_ms = min(timeout_ms, left) if timeout_ms > 0 else left
    return ExecuteOptions(timeout_ms=timeout_ms, include_trace=options.include_trace)


def usage_to_proto(usage: UsageStats, out: module_pb2.Usage) -> None:
    out.lm_calls = usage.lm_calls
    out.prompt_tokens = usage.prompt_tokens
    out.completion_tokens = usage.completion_tokens
    out.cost_usd = usage.cost_usd


def _fill_trace(trace: list[dict[str, Any]], out: Any) -> None:
    for call in trace:
        item = out.add(model=call.get("model", ""), completions=call.get("completions", []))
        for message in call.get("messages", []):
            _fill_struct(
                item.messages.add(), message if isinstance(message, dict) else {"content": message}
            )
        _fill_struct(item.options, call.get("options") or {})


def _fill_outputs(outputs: Mapping[str, PyValue], target: Any) -> None:
    try:
        convert.values_to_proto(outputs, target)
    except (TypeError, ValueError) as exc:
        raise BridgeError(
            grpc.StatusCode.INTERNAL, Reason.INTERNAL, f"an output cannot be sent as a Value: {exc}"
        ) from None


def _fill_variables_used(used: Mapping[str, VariableUse], target: Any) -> None:
    for name, use in used.items():
        item = target[name]
        item.value.CopyFrom(convert.value_to_proto(use.value))
        item.version = use.version
        item.overridden = use.overridden


def _result_to_proto(
    result: ExecutionResult, used: Mapping[str, VariableUse], version: int
) -> pb.ExecuteResponse:
    out = pb.ExecuteResponse(
        latency_ms=result.latency_ms, module_version=version, first_chunk_ms=result.first_chunk_ms
    )
    _fill_outputs(result.outputs, out.outputs)
    _fill_variables_used(used, out.variables_used)
    usage_to_proto(result.usage, out.usage)
    _fill_trace(result.trace, out.trace)
    return out


# --------------------------------------------------------------------------------------------
# Handlers


class ModuleRpcs:
    """Module RPC handlers; the servicer that mixes this in provides `self.modules`."""

    modules: ModuleService
    #: Bytes one page of a list may take (`paging.page_bytes` of the message limit).
    page_bytes: int

    async def CreateModule(
        self, request: pb.CreateModuleRequest, context: Ctx
    ) -> pb.CreateModuleResponse:
        record = await self.modules.create(
            request.session_id,
            request.module_id,
            request.module_type,
            signature_from_proto(request.signature),
            struct_to_dict(request.config),
            dict(request.variable_bindings),
            convert.lm_from_proto(request.lm) if request.HasField("lm") else None,
        )
        return pb.CreateModuleResponse(module=module_to_proto(record))

    async def GetModule(self, request: pb.GetModuleRequest, context: Ctx) -> pb.GetModuleResponse:
        record = await self.modules.get(request.session_id, request.module_id, request.version)
        return pb.GetModuleResponse(module=module_to_proto(record))

    async def ListModules(
        self, request: pb.ListModulesRequest, context: Ctx
    ) -> pb.ListModulesResponse:
        records = await self.modules.list(request.session_id)
        page = paging.page_of("m", records, request.page_token, request.page_size)
        modules = paging.fit(page.items, module_to_proto, self.page_bytes)
        return pb.ListModulesResponse(
            modules=modules, next_page_token=page.token_after(len(modules))
        )

    async def DeleteModule(
        self, request: pb.DeleteModuleRequest, context: Ctx
    ) -> pb.DeleteModuleResponse:
        await self.modules.delete(request.session_id, request.module_id)
        return pb.DeleteModuleResponse()

    async def Execute(self, request: pb.ExecuteRequest, context: Ctx) -> pb.ExecuteResponse:
        inputs, overrides = await _inputs_and_overrides(request)
        outcome = await self.modules.execute(
            request.session_id,
            request.module_id,
            inputs,
            overrides,
            _options(request.options, context),
        )
        return _result_to_proto(outcome.result, outcome.variables_used, outcome.module_version)

    async def ExecuteBatch(
        self, request: pb.ExecuteBatchRequest, context: Ctx
    ) -> pb.ExecuteBatchResponse:
        items, overrides = await convert_sized(
            request.ByteSize(),
            lambda: (
                [
                    _values_in(item.inputs, f"items[{i}].inputs")
                    for i, item in enumerate(request.items)
                ],
                _values_in(request.variable_overrides, "variable_overrides"),
            ),
        )
        outcome = await self.modules.execute_batch(
            request.session_id,
            request.module_id,
            items,
            overrides,
            _options(request.options, context),
            request.max_concurrency,
        )
        out = pb.ExecuteBatchResponse(
            latency_ms=outcome.latency_ms, module_version=outcome.module_version
        )
        for result in outcome.results:
            item = out.results.add()
            if isinstance(result, BridgeError):
                item.error.CopyFrom(to_status_proto(result))
                continue
            item.error.CopyFrom(ok_status())
            item.latency_ms = result.latency_ms
            _fill_outputs(result.outputs, item.outputs)
            usage_to_proto(result.usage, item.usage)
            _fill_trace(result.trace, item.trace)
        _fill_variables_used(outcome.variables_used, out.variables_used)
        usage_to_proto(outcome.usage, out.usage)
        return out

    async def ExecuteStream(
        self, request: pb.ExecuteStreamRequest, context: Ctx
    ) -> AsyncIterator[pb.ExecuteStreamResponse]:
        inputs, overrides = await _inputs_and_overrides(request)
        handle = await self.modules.execute_stream(
            request.session_id,
            request.module_id,
            inputs,
            overrides,
            _options(request.options, context),
        )
        events = handle.events
        try:
            async for event in events:
                if isinstance(event, ChunkEvent):
                    yield pb.ExecuteStreamResponse(
                        chunk=pb.OutputChunk(field=event.field, text=event.text, last=event.last)
                    )
                elif isinstance(event, StatusEvent):
                    yield pb.ExecuteStreamResponse(status=pb.ExecutionStatus(message=event.message))
                elif isinstance(event, ResultEvent):
                    yield pb.ExecuteStreamResponse(
                        result=_result_to_proto(
                            event.result, handle.variables_used, handle.module_version
                        )
                    )
        finally:
            close = getattr(events, "aclose", None)
            if close is not None:
                await close()

    async def ExportModuleState(
        self, request: pb.ExportModuleStateRequest, context: Ctx
    ) -> pb.ExportModuleStateResponse:
        state_json, version = await self.modules.export_state(
            request.session_id, request.module_id, request.version
        )
        return pb.ExportModuleStateResponse(state_json=state_json, version=version)

    async def ImportModuleState(
        self, request: pb.ImportModuleStateRequest, context: Ctx
    ) -> pb.ImportModuleStateResponse:
        record = await self.modules.import_state(
            request.session_id,
            request.module_id,
            request.state_json,
            request.expected_version if request.HasField("expected_version") else None,
        )
        return pb.ImportModuleStateResponse(module=module_to_proto(record))
