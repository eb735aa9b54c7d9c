"""The Redis store's pipelined connection for hot reads (`redis_pipe`), on a real redis-server:
replies reach their own callers however many are in flight (cancelled ones included), a lost or
silent connection fails what is pending and the next call reconnects, an idle connection is
replaced, and password, database and TLS come from the same URL as the rest of the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import redis.asyncio as aioredis
import trustme
from redis.asyncio.connection import Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from dspy_bridge.store import RedisStore, open_store
from dspy_bridge.store.redis_pipe import RedisPipe
from tests.redis_server import RedisServer, free_port, started_redis
from tests.store.test_conformance import a_module, a_session, a_variable

#: Bounds every wait on the server (generous: the machine is shared).
WAIT_S = 30


def _settings(url: str) -> Connection:
    connection = aioredis.Redis.from_url(url).connection_pool.make_connection()  # type: ignore[no-untyped-call]
    assert isinstance(connection, Connection)
    return connection


@pytest_asyncio.fixture
async def pipe(redis_server: RedisServer) -> AsyncIterator[RedisPipe]:
    opened = RedisPipe(_settings(redis_server.url), timeout=WAIT_S)
    yield opened
    await opened.close()


async def test_replies_reach_their_own_callers_however_many_are_in_flight(
    pipe: RedisPipe,
) -> None:
    await pipe.call("SET", "pipe:text", "not a number")

    async def call(n: int) -> Any:
        if n % 50 == 7:  # an error reply in the middle is its caller's alone
            with pytest.raises(ResponseError):
                await pipe.call("INCR", "pipe:text")
            return "failed"
        return await pipe.call("ECHO", f"reply {n}")

    replies = await asyncio.gather(*(call(n) for n in range(300)))
    assert replies == ["failed" if n % 50 == 7 else f"reply {n}" for n in range(300)]


async def test_a_cancelled_caller_leaves_every_other_reply_in_its_place(pipe: RedisPipe) -> None:
    assert await pipe.call("PING") == "PONG"  # connected: each call below sends at its first step
    calls = [asyncio.create_task(pipe.call("ECHO", str(n))) for n in range(60)]
    await asyncio.sleep(0)  # one loop step: every call has sent, none can have its reply yet
    for task in calls[::3]:
        task.cancel()
    done = await asyncio.gather(*calls, return_exceptions=True)
    for n, outcome in enumerate(done):
        if n % 3 == 0:
            assert isinstance(outcome, asyncio.CancelledError)
        else:
            assert outcome == str(n)
    assert await pipe.call("ECHO", "after") == "after"


async def test_a_lost_connection_fails_what_is_pending_and_the_next_call_reconnects(
    pipe: RedisPipe, redis_server: RedisServer
) -> None:
    first = await pipe.call("CLIENT", "ID")
    # Never answered (it blocks on the server): still pending when the connection is killed.
    pending = asyncio.create_task(pipe.call("BLPOP", "pipe:never", 0))
    await asyncio.sleep(0)  # one loop step: sent
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await admin.execute_command("CLIENT", "KILL", "ID", first)  # type: ignore[no-untyped-call]
    finally:
        await admin.aclose()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(pending, WAIT_S)
    assert await pipe.call("CLIENT", "ID") != first


async def test_an_idle_connection_is_replaced_before_it_is_used(
    redis_server: RedisServer,
) -> None:
    kept = RedisPipe(_settings(redis_server.url), timeout=WAIT_S)
    replaced = RedisPipe(_settings(redis_server.url), timeout=WAIT_S, max_idle=0.0)
    try:
        assert await kept.call("CLIENT", "ID") == await kept.call("CLIENT", "ID")
        assert await replaced.call("CLIENT", "ID") != await replaced.call("CLIENT", "ID")
    finally:
        await kept.close()
        await replaced.close()


async def test_a_silent_server_times_out_what_is_pending_then_a_new_connection_works(
    tmp_path: Path,
) -> None:
    with started_redis(tmp_path / "redis") as server:
        pipe = RedisPipe(_settings(server.url), timeout=0.5)
        try:
            first = await pipe.call("CLIENT", "ID")
            server.pause()
            try:
                calls = [asyncio.create_task(pipe.call("PING")) for _ in range(3)]
                for call in calls:
                    with pytest.raises(RedisTimeoutError):
                        await asyncio.wait_for(call, WAIT_S)
            finally:
                server.resume()
            assert await pipe.call("CLIENT", "ID") != first
        finally:
            await pipe.close()


async def test_a_closed_pipe_fails_what_is_pending(pipe: RedisPipe) -> None:
    await pipe.call("PING")
    pending = asyncio.create_task(pipe.call("BLPOP", "pipe:never", 0))
    await asyncio.sleep(0)  # sent
    await pipe.close()
    with pytest.raises(RedisConnectionError):
        await asyncio.wait_for(pending, WAIT_S)


async def test_password_database_and_tls_come_from_the_store_url(tmp_path: Path) -> None:
    """A `rediss://` store with a password on database 3: the pipe's reads (an execution view,
    an owner) see what the client wrote there, so they took the same way in."""
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", "localhost")
    files = {
        "ca.pem": ca.cert_pem.bytes(),
        "cert.pem": b"".join(p.bytes() for p in leaf.cert_chain_pems),
        "key.pem": leaf.private_key_pem.bytes(),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    tls_port = free_port()
    tls = ["--tls-port", str(tls_port), "--tls-auth-clients", "no"]
    for option, name in (("cert", "cert.pem"), ("key", "key.pem"), ("ca-cert", "ca.pem")):
        tls += [f"--tls-{option}-file", str(tmp_path / name)]
    url = f"rediss://:s3cret@127.0.0.1:{tls_port}/3?ssl_ca_certs={tmp_path / 'ca.pem'}"
    with started_redis(tmp_path / "redis", extra_args=["--requirepass", "s3cret", *tls]):
        store = await open_store(f"{url}&key_prefix=tls")
        try:
            assert isinstance(store, RedisStore)
            await store.create_session(a_session(owner="alice"), max_sessions=0)
            await store.create_variable(a_variable(), max_variables=0)
            await store.create_module(a_module())
            _, record, variables = await store.execution_view("s1", "qa")
            assert (record.module_id, [v.value for v in variables]) == ("qa", [0.5])
            assert await store.session_owner("s1") == "alice"
        finally:
            await store.close()
