"""Server streams wrapped as typed, cancellable iterators (sync and asyncio)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import grpc

from dspy_bridge_client.errors import InternalError, from_rpc_error
from dspy_bridge_client.types import ExecuteResult, StreamEvent

__all__ = ["AsyncExecutionStream", "AsyncStream", "ExecutionStream", "Stream"]

T = TypeVar("T")


def _no_result() -> InternalError:
    return InternalError(
        "the execution stream ended without a result",
        hint="this is a server bug; please report it",
    )


class Stream(Generic[T]):
    """A stream of typed events from the sidecar (`watch`, `execute_stream`).

    Iterate it to receive events; iteration ends when the server ends the stream or after
    `cancel`. `cancel` may be called from any thread, also while another thread waits for the
    next event. Used as a context manager, the stream is cancelled on exit::

        with session.watch(["temperature"]) as events:
            for event in events:
                ...

    A failure of the stream raises a `BridgeError` subclass from the iteration.
    """

    def __init__(self, call: Any, convert: Callable[[Any], T | None], target: str) -> None:
        self._call = call
        self._convert = convert
        self._target = target
        self._cancelled = False
        self._done = False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        while not self._done:
            try:
                message = next(self._call)
            except StopIteration:
                self._done = True
                break
            except grpc.RpcError as exc:
                self._done = True
                if self._cancelled and exc.code() == grpc.StatusCode.CANCELLED:
                    break
                raise from_rpc_error(exc, target=self._target) from None
            event = self._convert(message)
            if event is not None:
                return event
        raise StopIteration

    def cancel(self) -> None:
        """Stop the stream: the server is told to stop, and iteration ends quietly."""
        if not self._done:
            self._cancelled = True
            self._call.cancel()

    @property
    def cancelled(self) -> bool:
        """True once `cancel` was called before the stream ended."""
        return self._cancelled

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()


class ExecutionStream(Stream[StreamEvent]):
    """The events of `execute_stream`: `OutputChunk` and `ExecutionStatus` events, then the
    final `ExecuteResult`. `result()` skips to the end."""

    def result(self) -> ExecuteResult:
        """Consume the remaining events and return the final `ExecuteResult`."""
        for event in self:
            if isinstance(event, ExecuteResult):
                return event
        raise _no_result()


def _task_is_being_cancelled() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


class AsyncStream(Generic[T]):
    """A stream of typed events from the sidecar, for asyncio (`watch`, `execute_stream`).

    ``async for`` over it to receive events; iteration ends when the server ends the stream
    or after `cancel`. Used as an async context manager, the stream is cancelled on exit::

        async with session.watch(["temperature"]) as events:
            async for event in events:
                ...

    A failure of the stream raises a `BridgeError` subclass from the iteration.
    """

    def __init__(self, call: Any, convert: Callable[[Any], T | None], target: str) -> None:
        self._call = call
        self._convert = convert
        self._target = target
        self._cancelled = False
        self._done = False

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        while not self._done:
            try:
                message = await self._call.read()
            except asyncio.CancelledError:
                # grpc.aio reports a locally cancelled call as CancelledError; end quietly
                # unless it is this task that is being cancelled.
                if self._cancelled and not _task_is_being_cancelled():
                    self._done = True
                    break
                raise
            except grpc.RpcError as exc:
                self._done = True
                if self._cancelled and exc.code() == grpc.StatusCode.CANCELLED:
                    break
                raise from_rpc_error(exc, target=self._target) from None
            if message is grpc.aio.EOF:
                self._done = True
                break
            event = self._convert(message)
            if event is not None:
                return event
        raise StopAsyncIteration

    def cancel(self) -> None:
        """Stop the stream: the server is told to stop, and iteration ends quietly."""
        if not self._done:
            self._cancelled = True
            self._call.cancel()

    @property
    def cancelled(self) -> bool:
        """True once `cancel` was called before the stream ended."""
        return self._cancelled

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.cancel()


class AsyncExecutionStream(AsyncStream[StreamEvent]):
    """The events of `execute_stream` for asyncio: `OutputChunk` and `ExecutionStatus` events,
    then the final `ExecuteResult`. ``await result()`` skips to the end."""

    async def result(self) -> ExecuteResult:
        """Consume the remaining events and return the final `ExecuteResult`."""
        async for event in self:
            if isinstance(event, ExecuteResult):
                return event
        raise _no_result()
