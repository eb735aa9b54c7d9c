"""The per-session byte budget and the per-caller shares at the store level, on every backend:
what a server enforces through `with_session_budget`, `create_session(max_per_owner)` and
`create_job(owner, max_active_per_owner)`. On Redis each check runs through a second handle (as
another replica would) and must see what the first one counted; the Redis count equals what
`sizes.measure` reads from the contents after any mix of writes, trims, batches and deletes,
and is rebuilt from the contents when it is missing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
import pytest_asyncio

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import Job, JobStatus, JobUpdate, Tensor, VariableType
from dspy_bridge.store import RedisStore, SessionStore
from dspy_bridge.store.budget import with_session_budget
from dspy_bridge.store.sizes import measure
from tests.conftest import redis_store_url
from tests.redis_server import RedisServer
from tests.store.conftest import StoreFactory
from tests.store.test_conformance import a_module, a_session, a_variable, a_write

BUDGET = 20_000
CHUNK = "w" * 3_000


async def _pair(make_store: StoreFactory, *, history_limit: int = 1000) -> list[SessionStore]:
    """Two servers' handles on one store, each with the byte budget as a server sets it up (a
    single-server backend has one handle, so both are it)."""
    first = await make_store(history_limit=history_limit)
    second = await make_store(history_limit=history_limit, share_with=first)
    budgeted = with_session_budget(first, max_bytes=BUDGET, history_limit=history_limit)
    if second is first:
        return [budgeted, budgeted]
    return [budgeted, with_session_budget(second, max_bytes=BUDGET, history_limit=history_limit)]


def _refused(err: BridgeError, reason: str) -> None:
    assert err.code == grpc.StatusCode.RESOURCE_EXHAUSTED, err
    assert err.reason == reason, err


async def test_a_session_full_through_one_server_is_full_through_the_other(
    make_store: StoreFactory,
) -> None:
    a, b = await _pair(make_store)
    await a.create_session(a_session("s1"), max_sessions=0)
    x = await a.create_variable(a_variable("x", "v", kind=VariableType.STRING), max_variables=0)
    written = 0
    for _ in range(20):  # bounded: the budget holds 6 such entries
        try:
            await a.write_variables("s1", [a_write(x.id, CHUNK)], now=2000.0)
        except BridgeError as err:
            _refused(err, Reason.SESSION_BUDGET_EXCEEDED)
            break
        written += 1
    assert 3 <= written < 10
    with pytest.raises(BridgeError) as caught:
        await b.write_variables("s1", [a_write(x.id, CHUNK)], now=2001.0)
    _refused(caught.value, Reason.SESSION_BUDGET_EXCEEDED)
    assert int(caught.value.metadata["limit"]) == BUDGET
    assert (await b.get_variable("s1", "x")).version == written + 1  # nothing changed
    with pytest.raises(BridgeError) as caught:
        await b.create_module(a_module("big", state={"demos": [CHUNK] * 3}))
    _refused(caught.value, Reason.SESSION_BUDGET_EXCEEDED)
    assert await b.list_modules("s1") == []
    # Deleting through the other server gives the bytes back to both.
    await b.delete_variable("s1", x.id)
    y = await a.create_variable(a_variable("y", "v", kind=VariableType.STRING), max_variables=0)
    await b.write_variables("s1", [a_write(y.id, CHUNK)], now=2002.0)
    await a.write_variables("s1", [a_write(y.id, CHUNK)], now=2003.0)


async def test_a_callers_live_sessions_are_capped_across_servers(
    make_store: StoreFactory,
) -> None:
    a, b = await _pair(make_store)
    await a.create_session(a_session("a1", owner="ana"), max_sessions=0, max_per_owner=2)
    # An expired session does not count (expire_time before the next create_time).
    await b.create_session(
        a_session("old", create_time=10.0, expire_time=20.0, owner="ana"),
        max_sessions=0,
        max_per_owner=2,
    )
    await b.create_session(a_session("a2", owner="ana"), max_sessions=0, max_per_owner=2)
    before = await a.list_sessions(offset=0, limit=0)
    for handle in (a, b):
        with pytest.raises(BridgeError) as caught:
            await handle.create_session(
                a_session("a3", owner="ana"), max_sessions=0, max_per_owner=2
            )
        _refused(caught.value, Reason.SESSION_QUOTA_EXCEEDED)
        assert caught.value.metadata["limit"] == "2"
    assert await a.list_sessions(offset=0, limit=0) == before
    await a.create_session(a_session("b1", owner="bo"), max_sessions=0, max_per_owner=2)
    await a.create_session(a_session("n1"), max_sessions=0, max_per_owner=2)  # no owner
    await b.delete_session("a1")
    await a.create_session(a_session("a3", owner="ana"), max_sessions=0, max_per_owner=2)
    # The server-wide cap counts every session, whoever made it through whichever server.
    with pytest.raises(BridgeError) as caught:
        await b.create_session(a_session("b2", owner="bo"), max_sessions=5)
    assert caught.value.reason == Reason.SESSION_LIMIT


async def test_a_session_counts_for_its_caller_until_it_expires_and_a_heartbeat_extends_it(
    make_store: StoreFactory,
) -> None:
    a, b = await _pair(make_store)
    one = {"max_sessions": 0, "max_per_owner": 1}
    await a.create_session(a_session("a1", expire_time=1500.0, owner="ana"), **one)
    with pytest.raises(BridgeError) as caught:
        await b.create_session(a_session("a2", create_time=1400.0, owner="ana"), **one)
    _refused(caught.value, Reason.SESSION_QUOTA_EXCEEDED)
    await b.set_session_expiry("a1", 3000.0)  # a heartbeat through the other server
    with pytest.raises(BridgeError) as caught:
        await a.create_session(a_session("a2", create_time=2000.0, owner="ana"), **one)
    _refused(caught.value, Reason.SESSION_QUOTA_EXCEEDED)
    # Expired (not yet swept): it no longer counts.
    await a.create_session(a_session("a2", create_time=3000.0, owner="ana"), **one)


def _job(session_id: str, job_id: str) -> Job:
    return Job(job_id=job_id, session_id=session_id, module_id="qa", optimizer="BootstrapFewShot")


@pytest_asyncio.fixture
async def redis_pair(redis_server: RedisServer) -> AsyncIterator[list[RedisStore]]:
    """Two replicas' handles on one fresh Redis store (a key prefix of its own)."""
    url = redis_store_url(redis_server)
    pair = [await RedisStore.open(url, history_limit=3) for _ in range(2)]
    yield pair
    for store in pair:
        await store.close()


async def test_a_callers_active_jobs_are_counted_on_every_replica(
    redis_pair: list[RedisStore],
) -> None:
    a, b = redis_pair
    await a.create_session(a_session("s1"), max_sessions=0)
    await a.create_job(_job("s1", "j1"), owner="ana", max_active_per_owner=2)
    await b.create_job(_job("s1", "j2"), owner="ana", max_active_per_owner=2)
    with pytest.raises(BridgeError) as caught:
        await a.create_job(_job("s1", "j3"), owner="ana", max_active_per_owner=2)
    _refused(caught.value, Reason.JOB_QUOTA_EXCEEDED)
    assert caught.value.metadata["active"] == "2"
    assert [j.job_id for j in await b.list_jobs("s1")] == ["j1", "j2"]  # nothing stored
    await b.create_job(_job("s1", "k1"), owner="bo", max_active_per_owner=2)
    # A finished job frees its share at once, whichever replica finishes it.
    await b.update_job("s1", "j1", JobUpdate(status=JobStatus.SUCCEEDED, end_time=3.0))
    await a.create_job(_job("s1", "j3"), owner="ana", max_active_per_owner=2)
    # A dead replica's job stops counting when its lease lapses (here: the lease key is gone,
    # as Redis drops it when its TTL ends), before any survivor has marked it INTERRUPTED.
    await a.call("DEL", a.key("lease", "s1", "j2"))
    await b.create_job(_job("s1", "j4"), owner="ana", max_active_per_owner=2)
    with pytest.raises(BridgeError) as caught:
        await b.create_job(_job("s1", "j5"), owner="ana", max_active_per_owner=2)
    _refused(caught.value, Reason.JOB_QUOTA_EXCEEDED)
    # Deleting the session ends its jobs' shares too.
    await a.delete_session("s1")
    await b.create_session(a_session("s2"), max_sessions=0)
    await b.create_job(_job("s2", "j6"), owner="ana", max_active_per_owner=2)
    await b.create_job(_job("s2", "j7"), owner="ana", max_active_per_owner=2)


async def _stored_count(store: RedisStore, session_id: str) -> int | None:
    raw: Any = await store.call("HGET", store.session_key(session_id), "bytes")
    return None if raw is None else int(raw)


async def test_the_redis_count_is_what_the_session_keeps_and_is_rebuilt_when_missing(
    redis_pair: list[RedisStore],
) -> None:
    store = redis_pair[0]  # history_limit 3
    store.keep_budget(0)
    await store.create_session(a_session("s1", metadata={"k": "v" * 100}), max_sessions=0)
    x = await store.create_variable(a_variable("x", "v", kind=VariableType.STRING), max_variables=0)
    t = await store.create_variable(
        a_variable("t", Tensor("float32", (4,), bytes(16)), kind=VariableType.TENSOR),
        max_variables=0,
    )
    gone = await store.create_variable(a_variable("gone", 1.0), max_variables=0)
    for n in range(5):  # past the history limit: the oldest entries are trimmed
        await store.write_variables("s1", [a_write(x.id, "a" * (100 * n), reason="r" * n)], now=2.0)
    # One batch that writes x three times (each trims one of its kept entries) and t once.
    await store.write_variables(
        "s1",
        [a_write(x.id, "b"), a_write(x.id, "c" * 700), a_write(t.id, t.value), a_write(x.id, "d")],
        now=3.0,
    )
    await store.create_module(a_module("qa"))
    record = await store.get_module("s1", "qa")
    await store.put_module_version(record, expected_version=1)
    await store.create_module(a_module("other"))
    await store.delete_module("s1", "other")
    await store.delete_variable("s1", gone.id)
    await store.create_job(_job("s1", "j1"))
    expected = (await measure(store, "s1", 3)).total()
    assert await _stored_count(store, "s1") == expected

    # A session stored before the count existed (or whose count was lost): the next write
    # counts it from its contents first, then admits itself against that count.
    await store.call("HDEL", store.session_key("s1"), "bytes")
    await store.write_variables("s1", [a_write(x.id, "e" * 50)], now=4.0)
    assert await _stored_count(store, "s1") == (await measure(store, "s1", 3)).total()
    await store.call("HDEL", store.session_key("s1"), "bytes")
    store.keep_budget(expected // 2)  # now over its budget: a growing write is refused
    with pytest.raises(BridgeError) as caught:
        await store.write_variables("s1", [a_write(x.id, "f" * 5_000)], now=5.0)
    _refused(caught.value, Reason.SESSION_BUDGET_EXCEEDED)
    assert (await store.get_variable("s1", "x")).value == "e" * 50  # nothing changed
    assert await _stored_count(store, "s1") == (await measure(store, "s1", 3)).total()
    # A write that gives bytes back (its trimmed entry is larger) is let through.
    await store.write_variables("s1", [a_write(x.id, "g")], now=6.0)
    assert await _stored_count(store, "s1") == (await measure(store, "s1", 3)).total()
