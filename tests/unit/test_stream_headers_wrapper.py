"""The stream wrapper sends response headers before the handler's first event, or leaves them
to a handler marked `sends_headers_when_ready`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from dspy_bridge.transport.instrument import _wrap_stream
from dspy_bridge.transport.stream_headers import send_headers, sends_headers_when_ready


class _Context:
    def __init__(self) -> None:
        self.log: list[str] = []

    def invocation_metadata(self) -> tuple[()]:
        return ()

    async def send_initial_metadata(self, metadata: Any) -> None:
        self.log.append("headers")


async def _drain(handler: Any, context: _Context) -> None:
    async for item in handler(object(), context):
        context.log.append(item)


async def test_headers_go_out_before_the_handler_runs() -> None:
    async def quiet(request: Any, context: _Context) -> AsyncIterator[str]:
        context.log.append("handler started")
        yield "event"

    context = _Context()
    await _drain(_wrap_stream("Quiet", quiet, None, None, None), context)
    assert context.log == ["headers", "handler started", "event"]


async def test_a_marked_handler_sends_its_own_headers_once() -> None:
    @sends_headers_when_ready
    async def ready_later(request: Any, context: _Context) -> AsyncIterator[str]:
        context.log.append("subscribed")
        await send_headers(context)  # type: ignore[arg-type]
        yield "event"

    context = _Context()
    await _drain(_wrap_stream("Watch", ready_later, None, None, None), context)
    assert context.log == ["subscribed", "headers", "event"]
