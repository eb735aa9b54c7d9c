"""Fixtures for the client tests: one fake sidecar per test session, reset for each test."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from dspy_bridge_client import AsyncBridgeClient, BridgeClient

from .fake_server import FakeBridge, FakeServer


@pytest.fixture(scope="session")
def fake_server() -> Iterator[FakeServer]:
    server = FakeServer().start()
    yield server
    server.stop()


@pytest.fixture
def fake(fake_server: FakeServer) -> FakeBridge:
    fake_server.bridge.reset()
    return fake_server.bridge


@pytest.fixture
def target(fake_server: FakeServer, fake: FakeBridge) -> str:
    return fake_server.target


class Api:
    """Drives the sync or the async client with one test body: ``await api(fn, ...)`` calls
    `fn` and awaits the result when it is awaitable."""

    def __init__(self, client: BridgeClient | AsyncBridgeClient) -> None:
        self.client: Any = client
        self.is_async = isinstance(client, AsyncBridgeClient)

    async def __call__(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        result = fn(*args, **kwargs)
        if inspect.isawaitable(result):
            return await result
        return result

    async def collect(self, iterable: Any) -> list[Any]:
        """Every item of a sync or async iterable."""
        if hasattr(iterable, "__aiter__"):
            return [item async for item in iterable]
        return list(iterable)

    async def next(self, stream: Any) -> Any:
        """The next item of a sync or async iterator."""
        if hasattr(stream, "__anext__"):
            return await stream.__anext__()
        return next(stream)


@pytest.fixture(params=["sync", "async"])
async def api(request: pytest.FixtureRequest, target: str) -> AsyncIterator[Api]:
    if request.param == "sync":
        client = BridgeClient(target, timeout=10)
        try:
            yield Api(client)
        finally:
            client.close()
    else:
        async with AsyncBridgeClient(target, timeout=10) as aclient:
            yield Api(aclient)
