"""A scriptable in-process `BridgeService` on grpc.aio for the client tests.

The server runs on its own event loop in a background thread, so both the sync client (which
blocks its thread) and the async client (on the test's loop) can talk to it. Each RPC records
what it received and answers with what the test configured in `FakeBridge.replies`:

* a response message (unary) or a list of them (server streams);
* a `google.rpc.Status` (or, in a stream, a list ending with one): the call is aborted with
  that rich status;
* a callable taking the request and returning one of the above.

Unconfigured unary RPCs answer an empty response; unconfigured streams end at once. A stream
listed in `hold_open` stays open after its replies until the client cancels it; the server
then sets `stream_cancelled`.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2  # type: ignore[import-untyped]
from grpc_status import rpc_status

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc

_SERVICE = pb.DESCRIPTOR.services_by_name["BridgeService"]
METHODS: dict[str, bool] = {m.name: m.server_streaming for m in _SERVICE.methods}
"""Every RPC name → whether it is a server stream."""


def rich_status(
    code: grpc.StatusCode,
    message: str,
    *,
    reason: str = "",
    metadata: Mapping[str, str] | None = None,
    violations: Iterable[tuple[str, str]] = (),
    retry_delay_s: float | None = None,
    domain: str = "dspy-bridge",
) -> status_pb2.Status:
    """A `google.rpc.Status` as the sidecar sends it: ErrorInfo, BadRequest, RetryInfo."""
    details: list[any_pb2.Any] = []
    if reason:
        info = any_pb2.Any()
        info.Pack(
            error_details_pb2.ErrorInfo(reason=reason, domain=domain, metadata=dict(metadata or {}))
        )
        details.append(info)
    violations = list(violations)
    if violations:
        bad = any_pb2.Any()
        bad.Pack(
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
                    for f, d in violations
                ]
            )
        )
        details.append(bad)
    if retry_delay_s is not None:
        retry = any_pb2.Any()
        delay = duration_pb2.Duration()
        delay.FromMilliseconds(int(retry_delay_s * 1000))
        retry.Pack(error_details_pb2.RetryInfo(retry_delay=delay))
        details.append(retry)
    return status_pb2.Status(code=code.value[0], message=message, details=details)


@dataclass
class Received:
    """One call the fake received."""

    method: str
    request: Any
    metadata: dict[str, str]
    time_remaining: float | None


class FakeBridge(pb_grpc.BridgeServiceServicer):
    """The scriptable servicer; see the module docstring."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.calls: list[Received] = []
        self.replies: dict[str, Any] = {}
        self.hold_open: set[str] = set()
        self.stream_cancelled = threading.Event()
        self.raw_abort: dict[str, tuple[grpc.StatusCode, str, tuple[tuple[str, Any], ...]]] = {}

    def requests(self, method: str) -> list[Any]:
        """The requests received by `method`, in order."""
        return [c.request for c in self.calls if c.method == method]

    def last(self, method: str) -> Any:
        """The last request received by `method`."""
        found = self.requests(method)
        assert found, f"{method} was not called"
        return found[-1]

    def _record(self, method: str, request: Message, context: Any) -> Any:
        self.calls.append(
            Received(
                method,
                request,
                {k: v for k, v in context.invocation_metadata() or ()},
                context.time_remaining(),
            )
        )
        reply = self.replies.get(method)
        if callable(reply) and not isinstance(reply, Message):
            reply = reply(request)
        return reply

    async def _abort(self, method: str, context: Any, status: status_pb2.Status | None) -> None:
        if method in self.raw_abort:
            code, details, trailing = self.raw_abort[method]
            await context.abort(code, details, trailing_metadata=trailing)
        if status is not None:
            await context.abort_with_status(rpc_status.to_status(status))


def _unary(name: str) -> Callable[..., Any]:
    output = getattr(pb, _SERVICE.methods_by_name[name].output_type.name)

    async def handler(self: FakeBridge, request: Message, context: Any) -> Any:
        reply = self._record(name, request, context)
        await self._abort(name, context, reply if isinstance(reply, status_pb2.Status) else None)
        return reply if reply is not None else output()

    return handler


def _stream(name: str) -> Callable[..., Any]:
    async def handler(self: FakeBridge, request: Message, context: Any) -> Any:
        reply = self._record(name, request, context)
        held = name in self.hold_open
        try:
            await self._abort(
                name, context, reply if isinstance(reply, status_pb2.Status) else None
            )
            for item in reply or ():
                if isinstance(item, status_pb2.Status):
                    await context.abort_with_status(rpc_status.to_status(item))
                yield item
            if held:
                await asyncio.Event().wait()  # until the client cancels
        except (asyncio.CancelledError, GeneratorExit):
            # A held stream ends only by the client's cancel: mid-wait (CancelledError) or, under
            # load, while a reply is still being written (the generator is closed at `yield`).
            if held:
                self.stream_cancelled.set()
            raise

    return handler


for _name, _streaming in METHODS.items():
    setattr(FakeBridge, _name, (_stream if _streaming else _unary)(_name))


class FakeServer:
    """Runs a `FakeBridge` on 127.0.0.1 (a free port) on a background event loop."""

    def __init__(self) -> None:
        self.bridge = FakeBridge()  # type: ignore[abstract]  # handlers are set below the class
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._server: grpc.aio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FakeServer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        self._server = grpc.aio.server()
        pb_grpc.add_BridgeServiceServicer_to_server(self.bridge, self._server)
        self.port = self._server.add_insecure_port("127.0.0.1:0")
        await self._server.start()

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.stop(None), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._loop.close()
