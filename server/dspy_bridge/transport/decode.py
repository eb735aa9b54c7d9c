"""Request bytes that are not a valid message: INVALID_ARGUMENT and one rate-limited log line.

grpc.aio parses a request before any handler runs, and a parse error there becomes UNKNOWN
"Unexpected DecodeError" plus a plain-text traceback in the log, for every such request and
before authentication. So the service is registered with deserializers that never raise: bytes
that do not parse become a `MalformedRequest`, which the instrumented handler (`instrument.py`)
refuses after authenticating the caller — INVALID_ARGUMENT `INVALID_REQUEST` with a field
violation on `request` — and logs as one structured line, at most one per `LOG_EVERY_SECONDS`
(with how many were left out since), so a flood of garbage cannot flood the log.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import message_factory

from dspy_bridge.errors import BridgeError, Reason, invalid_argument
from dspy_bridge.log import RateLimited, get_logger

__all__ = ["LOG_EVERY_SECONDS", "MalformedRequest", "add_service"]

log = get_logger("dspy_bridge.rpc")

LOG_EVERY_SECONDS = 1.0


@dataclass(frozen=True)
class MalformedRequest:
    """What the deserializer gives for bytes that are not a `message` (never a handler's)."""

    rpc: str
    message: str
    size: int
    error_type: str

    def error(self) -> BridgeError:
        return invalid_argument(
            Reason.INVALID_REQUEST,
            f"the request is not a valid {self.message} message ({self.size} bytes)",
            "request",
        )


_malformed_log = RateLimited(log, LOG_EVERY_SECONDS)


def log_malformed(bad: MalformedRequest) -> None:
    """One `malformed request` line per `LOG_EVERY_SECONDS` (see the module docstring)."""
    _malformed_log.warning(
        "malformed request", rpc=bad.rpc, bytes=bad.size, error_type=bad.error_type
    )


def _tolerant(rpc: str, cls: Any) -> Callable[[bytes], Any]:
    name = cls.DESCRIPTOR.full_name

    def deserialize(data: bytes) -> Any:
        try:
            return cls.FromString(data)
        except Exception as exc:  # DecodeError, or a nesting too deep: the host's bytes
            return MalformedRequest(rpc, name, len(data), type(exc).__name__)

    return deserialize


_HANDLER_KINDS = {
    (False, False): grpc.unary_unary_rpc_method_handler,
    (False, True): grpc.unary_stream_rpc_method_handler,
    (True, True): grpc.stream_stream_rpc_method_handler,
}


def add_service(server: grpc.aio.Server, service: Any, servicer: Any) -> None:
    """Registers every RPC of `service` (a ServiceDescriptor) on `server`, taken from
    `servicer` (the instrumented namespace), with deserializers that never raise. Does what the
    generated `add_<Service>Servicer_to_server` does, but for the deserializers."""
    handlers = {}
    for method in service.methods:
        request = message_factory.GetMessageClass(method.input_type)
        response = message_factory.GetMessageClass(method.output_type)
        kind = _HANDLER_KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = kind(
            getattr(servicer, method.name),
            request_deserializer=_tolerant(method.name, request),
            response_serializer=response.SerializeToString,
        )
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(service.full_name, handlers),)
    )
    server.add_registered_method_handlers(service.full_name, handlers)
