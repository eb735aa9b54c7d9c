"""Fixtures for the store conformance suite: every test runs once per backend.

Stores are opened through `open_store` with the URL a deployment would use, so the URL parsing
is exercised by every test too.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from pathlib import Path
from typing import Protocol

import pytest
import pytest_asyncio

from dspy_bridge.store import SessionStore, open_store
from tests.conftest import redis_store_url

BACKENDS = ["memory", "sqlite", "redis"]


class StoreFactory(Protocol):
    """Opens another store of the test's backend (fresh, empty). With `share_with`, another
    server's handle on that store's data when the backend is shared (redis); a single-server
    backend has only the one handle, returned as is."""

    def __call__(
        self, *, history_limit: int = 1000, share_with: SessionStore | None = None
    ) -> Awaitable[SessionStore]: ...


@pytest_asyncio.fixture(params=BACKENDS)
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A factory for stores of one backend; closes everything it opened at teardown."""
    opened: list[SessionStore] = []
    urls: dict[int, str] = {}

    async def factory(
        *, history_limit: int = 1000, share_with: SessionStore | None = None
    ) -> SessionStore:
        if share_with is not None:
            if not share_with.shared:
                return share_with
            url = urls[id(share_with)]
        elif request.param == "memory":
            url = "memory://"
        elif request.param == "redis":  # a key prefix of its own on the session's Redis
            url = redis_store_url(request.getfixturevalue("redis_server"))
        else:
            # tmp_path is absolute, so this is the four-slash absolute form.
            url = f"sqlite:///{tmp_path / f'store-{len(opened)}.db'}"
        store = await open_store(url, history_limit=history_limit)
        opened.append(store)
        urls[id(store)] = url
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest_asyncio.fixture
async def store(make_store: StoreFactory) -> SessionStore:
    """A fresh store with the default history limit."""
    return await make_store()
