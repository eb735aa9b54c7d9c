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

BACKENDS = ["memory", "sqlite"]


class StoreFactory(Protocol):
    """Opens another store of the test's backend (fresh, empty)."""

    def __call__(self, *, history_limit: int = 1000) -> Awaitable[SessionStore]: ...


@pytest_asyncio.fixture(params=BACKENDS)
async def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreFactory]:
    """A factory for stores of one backend; closes everything it opened at teardown."""
    opened: list[SessionStore] = []

    async def factory(*, history_limit: int = 1000) -> SessionStore:
        if request.param == "memory":
            url = "memory://"
        else:
            # tmp_path is absolute, so this is the four-slash absolute form.
            url = f"sqlite:///{tmp_path / f'store-{len(opened)}.db'}"
        store = await open_store(url, history_limit=history_limit)
        opened.append(store)
        return store

    yield factory
    for store in opened:
        await store.close()


@pytest_asyncio.fixture
async def store(make_store: StoreFactory) -> SessionStore:
    """A fresh store with the default history limit."""
    return await make_store()
