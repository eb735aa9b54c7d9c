"""A host written against the raw generated stubs: it opens `Connect`, says `hello` and lets a
test read the server's messages and answer them one by one (the Python client's `serve` is
tested separately; this one lets tests misbehave on purpose)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import host_pb2, module_pb2, value_pb2

READ_TIMEOUT_S = 30.0


def schema(properties: dict[str, Any], required: Sequence[str] = ()) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    json_format.ParseDict(
        {"type": "object", "properties": properties, "required": list(required)}, struct
    )
    return struct


def tool(name: str, properties: dict[str, Any] | None = None, **fields: Any) -> host_pb2.HostTool:
    params = schema(properties if properties is not None else {"query": {"type": "string"}})
    fields.setdefault("description", f"the {name} tool")
    return host_pb2.HostTool(name=name, parameters=params, **fields)


def hello(
    session_id: str,
    tools: Sequence[host_pb2.HostTool] = (),
    metrics: Sequence[str] = (),
    lms: Sequence[str] = (),
) -> host_pb2.ConnectRequest:
    return host_pb2.ConnectRequest(
        hello=host_pb2.HostHello(
            session_id=session_id,
            tools=list(tools),
            metrics=[host_pb2.HostMetric(name=m, description=m) for m in metrics],
            lms=[host_pb2.HostLM(name=n) for n in lms],
        )
    )


class RawHost:
    """`async with RawHost(stub, hello(...)) as host:` — connected once `welcome` is read."""

    def __init__(
        self,
        stub: pb_grpc.BridgeServiceStub,
        first: host_pb2.ConnectRequest,
        metadata: Sequence[tuple[str, str]] = (),
    ) -> None:
        self._stub = stub
        self._first = first
        self._metadata = tuple(metadata)
        self.call: Any = None
        self.welcome: host_pb2.HostWelcome | None = None

    async def __aenter__(self) -> RawHost:
        self.call = self._stub.Connect(metadata=self._metadata)
        await self.call.write(self._first)
        first = await self.read()
        assert first.WhichOneof("message") == "welcome", first
        self.welcome = first.welcome
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.call.cancel()

    async def read(self) -> host_pb2.ConnectResponse:
        message = await asyncio.wait_for(self.call.read(), READ_TIMEOUT_S)
        assert message is not grpc.aio.EOF, "the server ended the stream"
        return message  # type: ignore[no-any-return]

    async def answer_tool(self, call_id: str, output: str | None = None, error: str = "") -> None:
        result = host_pb2.HostToolResult(call_id=call_id)
        if error:
            result.error = error
        else:
            result.output.CopyFrom(value_pb2.Value(string_value=output or ""))
        await self.call.write(host_pb2.ConnectRequest(tool_result=result))

    async def answer_metric(self, call_id: str, score: float, feedback: str = "") -> None:
        await self.call.write(
            host_pb2.ConnectRequest(
                metric_result=host_pb2.HostMetricResult(
                    call_id=call_id, score=score, feedback=feedback
                )
            )
        )

    async def close(self) -> None:
        """Ends the host's side: the server ends the stream and the connection is gone."""
        await self.call.done_writing()


async def answer_tools(host: RawHost, handler: Any) -> None:
    """Answers every tool call with `handler(tool, arguments)` (a str output, or an
    `Exception` whose text becomes the tool's error) until the stream ends."""
    await answer_all(host, tools=handler)


ToolHandler = Callable[[str, dict[str, Any]], Any]
MetricHandler = Callable[[host_pb2.HostMetricCall], tuple[float, str]]
LMHandler = Callable[[host_pb2.HostLMCall], str]


async def answer_all(
    host: RawHost,
    tools: ToolHandler | None = None,
    metrics: MetricHandler | None = None,
    lms: LMHandler | None = None,
    seen: list[host_pb2.ConnectResponse] | None = None,
) -> None:
    """Answers every call with the matching handler until the stream ends, recording each
    message in `seen`. Run as a task; cancel it when done."""
    while True:
        message = await host.call.read()
        if message is grpc.aio.EOF:
            return
        if seen is not None:
            seen.append(message)
        which = message.WhichOneof("message")
        if which == "tool_call" and tools is not None:
            call = message.tool_call
            outcome = tools(call.tool, json_format.MessageToDict(call.arguments))
            if isinstance(outcome, Exception):
                await host.answer_tool(call.call_id, error=str(outcome))
            else:
                await host.answer_tool(call.call_id, str(outcome))
        elif which == "metric_call" and metrics is not None:
            score, feedback = metrics(message.metric_call)
            await host.answer_metric(message.metric_call.call_id, score, feedback)
        elif which == "lm_call" and lms is not None:
            text = lms(message.lm_call)
            await host.call.write(
                host_pb2.ConnectRequest(
                    lm_result=host_pb2.HostLMResult(
                        call_id=message.lm_call.call_id,
                        text=text,
                        usage=module_pb2.Usage(prompt_tokens=11, completion_tokens=3),
                    )
                )
            )
