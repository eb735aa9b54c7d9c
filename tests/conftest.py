"""Shared fixtures: a real server on a loopback port, reached through a real channel."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import grpc
import pytest
import pytest_asyncio
from hypothesis import settings as hypothesis_settings

from dspy_bridge.config import Settings
from dspy_bridge.log import configure_logging
from dspy_bridge.transport.server import RunningServer, start_server
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from tests.redis_server import RedisServer

configure_logging("warning", "console")

# Property tests check behaviour, not speed: on a loaded 2-core machine a single example can take
# far longer than hypothesis's 200 ms default deadline, which made them flaky.
hypothesis_settings.register_profile("dspy-bridge", deadline=None)
hypothesis_settings.load_profile("dspy-bridge")

# Tests never reach a provider: make sure no inherited key switches the default LM.
os.environ.pop("OPENAI_API_KEY", None)


def test_settings(**overrides: object) -> Settings:
    """Settings for an in-test server: free port, quiet logs, execution in-process."""
    base: dict[str, object] = {
        "host": "127.0.0.1",
        "port": 0,
        "workers": 0,
        "store": "memory://",
        "lm": "offline",
        "log_level": "warning",
        "log_format": "console",
        "grace_seconds": 1.0,
    }
    base.update(overrides)
    return Settings(**base)  # type: ignore[arg-type]


test_settings.__test__ = False  # a helper, not a test


# -- a real Redis for the shared store: one server per test session ------------------------


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A real redis-server on a free loopback port (AOF, appendfsync always)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.kill()


def redis_store_url(server: RedisServer) -> str:
    """A URL of the shared Redis with a key prefix of its own: a fresh, empty store."""
    return f"{server.url}?key_prefix=t{uuid.uuid4().hex[:12]}"


@pytest.fixture(params=["memory"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Store backend for the server fixture; parametrize indirectly with
    ["memory", "sqlite", "redis"]."""
    if request.param == "redis":
        return redis_store_url(request.getfixturevalue("redis_server"))
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'bridge.db'}"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    """Override in a test module to change the server's settings."""
    return {}


@pytest_asyncio.fixture
async def server(
    store_url: str, settings_overrides: dict[str, object]
) -> AsyncIterator[RunningServer]:
    running = await start_server(test_settings(store=store_url, **settings_overrides))
    try:
        yield running
    finally:
        await running.stop(grace=0)


@pytest_asyncio.fixture
async def stub(server: RunningServer) -> AsyncIterator[pb_grpc.BridgeServiceStub]:
    async with grpc.aio.insecure_channel(server.target) as channel:
        yield pb_grpc.BridgeServiceStub(channel)
