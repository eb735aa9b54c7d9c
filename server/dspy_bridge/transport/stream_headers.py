"""When a server stream sends its response headers.

Every server-streaming RPC sends its headers at once rather than with its first event: client
libraries that return a stream only once its headers arrive (grpc-elixir's stub, for one) would
otherwise block on a quiet watch until something happened. `instrument._wrap_stream` sends them
before the handler runs, unless the handler is marked with `sends_headers_when_ready`: such a
handler sends them itself as soon as the request is validated and the stream is live (for
WatchVariables: subscribed), so the headers tell the client that no later change can be missed,
and a bad request still fails with a trailers-only status.
"""

from __future__ import annotations

from typing import Any, TypeVar

from grpc.aio import ServicerContext

F = TypeVar("F")

_MARK = "sends_headers_when_ready"


def sends_headers_when_ready(method: F) -> F:
    """Marks a server-streaming handler that calls `send_headers` itself once it is ready."""
    setattr(method, _MARK, True)
    return method


def handler_sends_headers(behavior: Any) -> bool:
    """True when `behavior` (a servicer method) sends its own headers."""
    return bool(getattr(behavior, _MARK, False))


async def send_headers(context: ServicerContext[Any, Any]) -> None:
    """Sends the response headers (no metadata of their own) now."""
    await context.send_initial_metadata(())
