"""The `Connect` RPC: a host's bidirectional stream, turned into `HostHub` calls and back.

A mixin for `BridgeServicer` (which sets `self.sessions` and `self.hosts`). The per-RPC wrapper
(`instrument.py`) has already authenticated the caller and, reading the first message, checked
that it owns the session its `hello` names. Here: the `hello` is read and validated, the
connection registered, and then two things run until either side ends the stream — this
generator writes what the hub queues for the host (welcome, calls, cancels), and a reader task
hands the host's answers to the hub.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from google.protobuf import struct_pb2
from grpc.aio import ServicerContext

from dspy_bridge.errors import BridgeError, Reason, invalid_argument
from dspy_bridge.log import get_logger
from dspy_bridge.runtime.host_calls import (
    HostReply,
    HostToolSpec,
    LMCall,
    LMReply,
    MetricCall,
    MetricReply,
    ToolCall,
    ToolReply,
)
from dspy_bridge.services.host_hub import (
    CallOut,
    CancelOut,
    End,
    HostConnection,
    HostHub,
    Offer,
    OfferedTool,
    Outgoing,
    Welcome,
)
from dspy_bridge.services.sessions import SessionService
from dspy_bridge.transport import convert
from dspy_bridge_client._proto.dspy_bridge.v1 import host_pb2, value_pb2

Ctx: TypeAlias = ServicerContext[Any, Any]

log = get_logger(__name__)


def _struct_to_dict(struct: struct_pb2.Struct) -> dict[str, Any]:
    value = convert.value_from_proto(
        value_pb2.Value(json_value=struct_pb2.Value(struct_value=struct))
    )
    return value if isinstance(value, dict) else {}


def _dict_to_struct(data: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    if data:
        try:
            struct.update(data)  # protobuf's own conversion: the hot path of every tool call
        except (ValueError, TypeError):  # a value JSON cannot hold (a tensor): the bridge's own
            struct.CopyFrom(convert.value_to_proto(dict(data)).json_value.struct_value)
    return struct


def offer_from_proto(hello: host_pb2.HostHello) -> Offer:
    return Offer(
        session_id=hello.session_id,
        tools=[
            OfferedTool(
                HostToolSpec(
                    t.name,
                    t.description,
                    _struct_to_dict(t.parameters) if t.HasField("parameters") else {},
                    int(t.timeout_ms),
                ),
                int(t.max_concurrency),
            )
            for t in hello.tools
        ],
        metrics=[(m.name, m.description) for m in hello.metrics],
        lms=[lm.name for lm in hello.lms],
    )


def outgoing_to_proto(message: Outgoing) -> host_pb2.ConnectResponse:
    if isinstance(message, Welcome):
        return host_pb2.ConnectResponse(
            welcome=host_pb2.HostWelcome(
                connection_id=message.connection_id,
                tools=message.tools,
                metrics=message.metrics,
                lms=message.lms,
            )
        )
    if isinstance(message, CancelOut):
        return host_pb2.ConnectResponse(cancel=host_pb2.HostCancel(call_id=message.call_id))
    assert isinstance(message, CallOut)
    deadline = convert.timestamp_from_seconds(message.deadline)
    request = message.request
    if isinstance(request, ToolCall):
        return host_pb2.ConnectResponse(
            tool_call=host_pb2.HostToolCall(
                call_id=message.call_id,
                tool=request.tool,
                arguments=_dict_to_struct(request.arguments),
                deadline=deadline,
                module_id=request.module_id,
                timeout_ms=message.timeout_ms,
                job_id=request.job_id,
            )
        )
    if isinstance(request, MetricCall):
        metric_call = host_pb2.HostMetricCall(
            call_id=message.call_id,
            metric=request.metric,
            deadline=deadline,
            job_id=request.job_id,
            timeout_ms=message.timeout_ms,
            options=_dict_to_struct(request.options),
        )
        convert.values_to_proto(request.inputs, metric_call.inputs)
        convert.values_to_proto(request.labels, metric_call.labels)
        convert.values_to_proto(request.prediction, metric_call.prediction)
        return host_pb2.ConnectResponse(metric_call=metric_call)
    assert isinstance(request, LMCall)
    return host_pb2.ConnectResponse(
        lm_call=host_pb2.HostLMCall(
            call_id=message.call_id,
            lm=request.lm,
            messages=[_dict_to_struct(m) for m in request.messages],
            options=_dict_to_struct(request.options),
            deadline=deadline,
            timeout_ms=message.timeout_ms,
        )
    )


def reply_from_proto(request: host_pb2.ConnectRequest) -> tuple[str, HostReply] | None:
    """(call_id, answer) of an answer message; None for anything else."""
    which = request.WhichOneof("message")
    if which == "tool_result":
        result = request.tool_result
        if result.WhichOneof("outcome") == "error":
            return result.call_id, ToolReply(error=result.error)
        output = convert.value_from_proto(result.output) if result.HasField("output") else None
        return result.call_id, ToolReply(output=output)
    if which == "metric_result":
        m = request.metric_result
        return m.call_id, MetricReply(m.score, m.feedback, m.error)
    if which == "lm_result":
        lm = request.lm_result
        return lm.call_id, LMReply(
            lm.text, int(lm.usage.prompt_tokens), int(lm.usage.completion_tokens), lm.error
        )
    return None


class ConnectRpcs:
    """`Connect` (see the module docstring)."""

    sessions: SessionService
    hosts: HostHub

    async def Connect(
        self, requests: AsyncIterator[host_pb2.ConnectRequest], context: Ctx
    ) -> AsyncIterator[host_pb2.ConnectResponse]:
        first = await anext(aiter(requests), None)
        if first is None or first.WhichOneof("message") != "hello":
            raise invalid_argument(
                Reason.HOST_PROTOCOL_ERROR,
                "the first message of Connect must be `hello`",
                "hello",
            )
        hello = first.hello
        if not hello.session_id:
            raise invalid_argument(
                Reason.INVALID_REQUEST, "hello.session_id is required", "hello.session_id"
            )
        await self.sessions.get(hello.session_id)  # NOT_FOUND for an unknown or expired one
        offer = offer_from_proto(hello)
        self.hosts.validate(offer)
        connection = self.hosts.register(offer)
        reader = asyncio.create_task(self._answers(requests, connection))
        try:
            while True:
                message = await connection.outbox.get()
                if isinstance(message, End):
                    if message.error is not None:
                        raise message.error
                    return
                yield outgoing_to_proto(message)
        finally:
            self.hosts.unregister(connection)
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader

    async def _answers(
        self, requests: AsyncIterator[host_pb2.ConnectRequest], connection: HostConnection
    ) -> None:
        """Hands the host's answers to the hub until the host ends its side (then the stream
        ends OK) or breaks the protocol (then it ends with the error)."""
        end = End()
        try:
            async for request in requests:
                answer = reply_from_proto(request)
                if answer is None:
                    end = End(
                        invalid_argument(
                            Reason.HOST_PROTOCOL_ERROR,
                            "`hello` may only be the first message of Connect",
                            "hello",
                        )
                    )
                    return
                call_id, reply = answer
                self.hosts.deliver(connection, call_id, reply, request.ByteSize())
        except BridgeError as exc:
            end = End(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the stream broke (host gone): unregister quietly
            log.debug("host stream ended", connection_id=connection.id, error=repr(exc))
        finally:
            self.hosts.unregister(connection)
            connection.outbox.put_nowait(end)
