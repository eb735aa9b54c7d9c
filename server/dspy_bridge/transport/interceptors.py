"""One interceptor for every RPC: request ids, structured access logs, Prometheus metrics, and
turning a `BridgeError` raised anywhere in a handler into a rich gRPC status."""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import structlog
from grpc.aio import ServicerContext

from dspy_bridge.errors import BridgeError
from dspy_bridge.log import get_logger
from dspy_bridge.observability import RPC_LATENCY
from dspy_bridge.transport.status import to_grpc_status

log = get_logger("dspy_bridge.rpc")

_REQUEST_ID_KEY = "x-request-id"


def _request_id(context: ServicerContext[Any, Any]) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == _REQUEST_ID_KEY and isinstance(value, str):
            return value[:64]
    return secrets.token_hex(8)


def _bind(rpc: str, request: Any, context: ServicerContext[Any, Any]) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(
        request_id=_request_id(context),
        rpc=rpc,
        session_id=getattr(request, "session_id", "") or None,
    )


async def _abort(context: ServicerContext[Any, Any], err: BridgeError) -> None:
    await context.abort_with_status(to_grpc_status(err))


def _finish(rpc: str, started: float, code: grpc.StatusCode, err: BaseException | None) -> None:
    elapsed = time.perf_counter() - started
    RPC_LATENCY.labels(rpc, code.name).observe(elapsed)
    fields = {"status": code.name, "latency_ms": round(elapsed * 1000, 3)}
    if isinstance(err, BridgeError):
        log.info("rpc failed", reason=err.reason, error=err.message, **fields)
    elif err is not None:
        log.error("rpc crashed", exc_info=err, **fields)
    else:
        log.debug("rpc", **fields)


def _wrap_unary(rpc: str, behavior: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
    async def handler(request: Any, context: ServicerContext[Any, Any]) -> Any:
        _bind(rpc, request, context)
        started = time.perf_counter()
        try:
            response = await behavior(request, context)
        except BridgeError as err:
            _finish(rpc, started, err.code, err)
            await _abort(context, err)
        except grpc.aio.AbortError:  # the handler aborted with a status of its own
            _finish(rpc, started, context.code() or grpc.StatusCode.UNKNOWN, None)
            raise
        except Exception as err:
            _finish(rpc, started, grpc.StatusCode.INTERNAL, err)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}")
        _finish(rpc, started, grpc.StatusCode.OK, None)
        return response

    return handler


def _wrap_stream(
    rpc: str, behavior: Callable[..., AsyncIterator[Any]]
) -> Callable[..., AsyncIterator[Any]]:
    async def handler(request: Any, context: ServicerContext[Any, Any]) -> AsyncIterator[Any]:
        _bind(rpc, request, context)
        started = time.perf_counter()
        try:
            async for response in behavior(request, context):
                yield response
        except BridgeError as err:
            _finish(rpc, started, err.code, err)
            await _abort(context, err)
        except grpc.aio.AbortError:
            _finish(rpc, started, context.code() or grpc.StatusCode.UNKNOWN, None)
            raise
        except Exception as err:
            _finish(rpc, started, grpc.StatusCode.INTERNAL, err)
            await context.abort(grpc.StatusCode.INTERNAL, f"internal error: {type(err).__name__}")
        _finish(rpc, started, grpc.StatusCode.OK, None)

    return handler


class BridgeInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]  # grpc is untyped
    """Wraps each handler once (cached per method) so the per-call cost is one function layer."""

    def __init__(self) -> None:
        self._cache: dict[str, grpc.RpcMethodHandler] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method: str = handler_call_details.method
        cached = self._cache.get(method)
        if cached is not None:
            return cached
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith("/dspy_bridge."):
            return handler
        rpc = method.rsplit("/", 1)[-1]
        if handler.unary_unary is not None:
            wrapped = grpc.unary_unary_rpc_method_handler(
                _wrap_unary(rpc, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        elif handler.unary_stream is not None:
            wrapped = grpc.unary_stream_rpc_method_handler(
                _wrap_stream(rpc, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        else:
            return handler
        self._cache[method] = wrapped
        return wrapped
