"""The Redis store's hot reads (execution views, owners) through its pipe, on a real
redis-server: a Redis that forgot its scripts (flushed, restarted) is answered by loading them
again; a Redis down, restarting or silent is UNAVAILABLE `STORE_UNAVAILABLE` and the reads
recover by themselves; views of many sessions read at once are each their own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import grpc

from dspy_bridge.store import RedisStore, SessionStore
from tests.conftest import redis_store_url
from tests.redis_server import RedisServer, started_redis
from tests.store.test_conformance import a_module, a_session, a_variable, expect_error

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE
#: Bounds every wait on the server (generous: the machine is shared).
WAIT_S = 30


async def _filled(store: SessionStore, session_id: str = "s1", value: float = 0.5) -> None:
    await store.create_session(a_session(session_id, owner=f"owner-{session_id}"), max_sessions=0)
    await store.create_variable(
        a_variable(session_id=session_id, value=value, var_id=f"t-{session_id}"), max_variables=0
    )
    await store.create_module(a_module(session_id=session_id))


@asynccontextmanager
async def _store(url: str, timeout_seconds: float = 5.0) -> AsyncIterator[RedisStore]:
    """A store on `url` with session s1 filled in, closed at the end."""
    store = await RedisStore.open(url, timeout_seconds=timeout_seconds)
    try:
        await _filled(store)
        yield store
    finally:
        await store.close()


async def _value(store: SessionStore, session_id: str = "s1") -> object:
    _, _, variables = await store.execution_view(session_id, "qa")
    return variables[0].value


async def test_flushed_scripts_are_loaded_again_by_the_next_view(
    redis_server: RedisServer,
) -> None:
    async with _store(redis_store_url(redis_server)) as store:
        assert await _value(store) == 0.5
        await store.call("SCRIPT", "FLUSH")  # as a restart does: EVALSHA answers NOSCRIPT
        assert await _value(store) == 0.5  # the kept view, its stamp checked by the reloaded script
        await store.call("SCRIPT", "FLUSH")
        await store.delete_session("s1")  # a stale view is never served, scripts or not
        await expect_error(
            store.execution_view("s1", "qa"), grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND"
        )


async def test_views_and_owners_of_a_restarting_redis_are_unavailable_then_recover(
    tmp_path: Path,
) -> None:
    with started_redis(tmp_path / "redis") as server:
        async with _store(f"{server.url}?key_prefix=restart") as store:
            assert await _value(store) == 0.5
            server.kill()
            await expect_error(store.execution_view("s1", "qa"), UNAVAILABLE, "STORE_UNAVAILABLE")
            await expect_error(store.session_owner("s1"), UNAVAILABLE, "STORE_UNAVAILABLE")
            server.start()  # same port and data (AOF): scripts forgotten, connection new
            assert await _value(store) == 0.5
            assert await store.session_owner("s1") == "owner-s1"


async def test_a_view_from_a_silent_redis_is_unavailable_within_the_timeout(
    tmp_path: Path,
) -> None:
    with started_redis(tmp_path / "redis") as server:
        async with _store(f"{server.url}?key_prefix=silent", timeout_seconds=0.5) as store:
            server.pause()
            try:
                read = store.execution_view("s1", "qa")
                await expect_error(asyncio.wait_for(read, WAIT_S), UNAVAILABLE, "STORE_UNAVAILABLE")
            finally:
                server.resume()
            assert await _value(store) == 0.5


async def test_views_and_owners_of_many_sessions_read_at_once_are_each_their_own(
    redis_server: RedisServer,
) -> None:
    async with _store(redis_store_url(redis_server)) as store:
        sessions = [f"s{n}" for n in range(1, 41)]  # s1 is filled already
        for n, sid in enumerate(sessions[1:], start=1):
            await _filled(store, sid, value=n / 10)
        expected = [0.5, *(n / 10 for n in range(1, 40))]
        for _ in range(2):  # read anew, then from the kept views (stamps unchanged)
            values = await asyncio.gather(*(_value(store, sid) for sid in sessions * 2))
            assert values == expected * 2
            owners = await asyncio.gather(*(store.session_owner(sid) for sid in sessions))
            assert owners == [f"owner-{sid}" for sid in sessions]
