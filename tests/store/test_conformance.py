"""The session store conformance suite: runs unchanged against every backend (see conftest).

Each documented error is checked for its status code and reason, and for having changed nothing:
`expect_unchanged` takes a full snapshot of the store before and after the failing call.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import (
    Constraints,
    HistoryEntry,
    Job,
    JobProgress,
    JobStatus,
    JobUpdate,
    LMSpec,
    ModuleRecord,
    PyValue,
    Session,
    Tensor,
    Variable,
    VariableType,
    VariableWrite,
)
from dspy_bridge.store import MemoryStore, RedisStore, SessionStore, SqliteStore, open_store
from tests.redis_server import RedisServer, free_port

# Mirrors conftest's `make_store` fixture: opens a fresh store of the backend under test.
StoreFactory = Callable[..., Awaitable[SessionStore]]

NOT_FOUND = grpc.StatusCode.NOT_FOUND
ALREADY_EXISTS = grpc.StatusCode.ALREADY_EXISTS
ABORTED = grpc.StatusCode.ABORTED
RESOURCE_EXHAUSTED = grpc.StatusCode.RESOURCE_EXHAUSTED

# -- builders -------------------------------------------------------------------------------


def a_session(session_id: str = "s1", create_time: float = 1000.0, **kw: Any) -> Session:
    return Session(session_id=session_id, create_time=create_time, **kw)


def a_variable(
    name: str = "temperature",
    value: PyValue = 0.5,
    *,
    session_id: str = "s1",
    var_id: str | None = None,
    kind: VariableType = VariableType.FLOAT,
    **kw: Any,
) -> Variable:
    return Variable(
        id=var_id or f"id-{name}",
        session_id=session_id,
        name=name,
        type=kind,
        value=value,
        create_time=1001.0,
        update_time=1001.0,
        source="host",
        **kw,
    )


def a_module(module_id: str = "qa", *, session_id: str = "s1", **kw: Any) -> ModuleRecord:
    fields: dict[str, Any] = {
        "spec": {"module_type": "Predict", "signature": "question -> answer", "config": {"n": 1}},
        "state": {"demos": [{"question": "2+2?", "answer": "4"}], "instructions": "Be brief."},
        "create_time": 1002.0,
        "update_time": 1002.0,
    }
    fields.update(kw)
    return ModuleRecord(session_id=session_id, module_id=module_id, version=1, **fields)


def a_write(
    variable_id: str, value: PyValue, expected_version: int | None = None, reason: str = ""
) -> VariableWrite:
    return VariableWrite(variable_id, value, "host", reason, expected_version)


async def with_session(store: SessionStore, session_id: str = "s1") -> Session:
    return await store.create_session(a_session(session_id), max_sessions=0)


async def with_variable(store: SessionStore, *args: Any, **kw: Any) -> Variable:
    return await store.create_variable(a_variable(*args, **kw), max_variables=0)


# -- checking errors and "nothing changed" --------------------------------------------------


async def snapshot(store: SessionStore) -> dict[str, Any]:
    """Everything observable in the store, for before/after comparisons."""
    state: dict[str, Any] = {}
    for session in await store.list_sessions(offset=0, limit=0):
        sid = session.session_id
        variables = await store.list_variables(sid)
        modules = await store.list_modules(sid)
        state[sid] = {
            "session": session,
            "variables": variables,
            "history": {v.id: await store.variable_history(sid, v.id, limit=0) for v in variables},
            "modules": {
                m.module_id: [
                    await store.get_module(sid, m.module_id, n) for n in range(1, m.version + 1)
                ]
                for m in modules
            },
        }
    return state


async def expect_error(call: Awaitable[Any], code: grpc.StatusCode, reason: str) -> BridgeError:
    with pytest.raises(BridgeError) as caught:
        await call
    assert (caught.value.code, caught.value.reason) == (code, reason), str(caught.value)
    return caught.value


async def expect_unchanged(
    store: SessionStore, call: Awaitable[Any], code: grpc.StatusCode, reason: str
) -> BridgeError:
    """The call fails with `code`/`reason` and the store is exactly as it was before."""
    before = await snapshot(store)
    error = await expect_error(call, code, reason)
    assert await snapshot(store) == before
    return error


def assert_same(actual: Any, expected: Any) -> None:
    """Equal *and* of the same types all the way down (1 == 1.0 == True in plain Python)."""
    assert type(actual) is type(expected), (actual, expected)
    if isinstance(expected, dict):
        assert list(actual) == list(expected)
        for key in expected:
            assert_same(actual[key], expected[key])
    elif isinstance(expected, list):
        assert len(actual) == len(expected)
        for got, want in zip(actual, expected, strict=True):
            assert_same(got, want)
    elif isinstance(expected, float) and math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == expected


# -- sessions -------------------------------------------------------------------------------


async def test_create_and_get_session_round_trip(store: SessionStore) -> None:
    lm = LMSpec("openai/gpt-4o-mini", "http://localhost:1", "OPENAI_API_KEY", {"temperature": "0"})
    session = a_session(metadata={"owner": "ana", "ü": "✓"}, ttl_seconds=60, expire_time=1060.5)
    session.lm = lm
    created = await store.create_session(session, max_sessions=0)
    fetched = await store.get_session("s1")
    assert created == fetched == replace(session, variable_count=0, module_count=0)


async def test_create_session_ignores_counts_handed_in(store: SessionStore) -> None:
    created = await store.create_session(
        a_session(variable_count=5, module_count=2), max_sessions=0
    )
    assert (created.variable_count, created.module_count) == (0, 0)


async def test_duplicate_session_is_already_exists(store: SessionStore) -> None:
    await store.create_session(a_session(metadata={"v": "first"}), max_sessions=0)
    await expect_unchanged(
        store,
        store.create_session(a_session(metadata={"v": "second"}), max_sessions=0),
        ALREADY_EXISTS,
        Reason.SESSION_ALREADY_EXISTS,
    )
    assert (await store.get_session("s1")).metadata == {"v": "first"}


async def test_session_limit_is_resource_exhausted(store: SessionStore) -> None:
    await store.create_session(a_session("a"), max_sessions=2)
    await store.create_session(a_session("b"), max_sessions=2)
    error = await expect_unchanged(
        store,
        store.create_session(a_session("c"), max_sessions=2),
        RESOURCE_EXHAUSTED,
        Reason.SESSION_LIMIT,
    )
    assert error.metadata["limit"] == "2"
    await store.delete_session("a")
    await store.create_session(a_session("c"), max_sessions=2)


async def test_zero_max_sessions_means_unlimited(store: SessionStore) -> None:
    for n in range(5):
        await store.create_session(a_session(f"s{n}"), max_sessions=0)
    assert len(await store.list_sessions(offset=0, limit=0)) == 5


async def test_unknown_session_is_not_found_everywhere(store: SessionStore) -> None:
    error = await expect_error(store.get_session("nope"), NOT_FOUND, Reason.SESSION_NOT_FOUND)
    assert error.metadata["session_id"] == "nope"
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.delete_session("nope"),
        lambda: store.set_session_expiry("nope", 5.0),
        lambda: store.set_session_lm("nope", LMSpec("offline")),
        lambda: store.create_variable(a_variable(session_id="nope"), max_variables=0),
        lambda: store.get_variable("nope", "x"),
        lambda: store.list_variables("nope"),
        lambda: store.delete_variable("nope", "x"),
        lambda: store.write_variables("nope", [a_write("x", 1.0)], now=1.0),
        lambda: store.variable_history("nope", "x", limit=0),
        lambda: store.create_module(a_module(session_id="nope")),
        lambda: store.get_module("nope", "qa"),
        lambda: store.list_modules("nope"),
        lambda: store.put_module_version(a_module(session_id="nope"), expected_version=1),
        lambda: store.delete_module("nope", "qa"),
    ]
    for call in calls:
        await expect_unchanged(store, call(), NOT_FOUND, Reason.SESSION_NOT_FOUND)


async def test_list_sessions_orders_by_create_time_then_id(store: SessionStore) -> None:
    for sid, created in [("d", 3.0), ("b", 1.0), ("c", 2.0), ("a", 2.0), ("e", 0.5)]:
        await store.create_session(a_session(sid, create_time=created), max_sessions=0)
    everything = await store.list_sessions(offset=0, limit=0)
    assert [s.session_id for s in everything] == ["e", "b", "a", "c", "d"]
    page = await store.list_sessions(offset=1, limit=2)
    assert [s.session_id for s in page] == ["b", "a"]
    assert [s.session_id for s in await store.list_sessions(offset=4, limit=10)] == ["d"]
    assert await store.list_sessions(offset=5, limit=10) == []


async def test_sessions_keep_their_owner_and_list_by_owner(store: SessionStore) -> None:
    for sid, owner, created in [("a1", "ana", 1.0), ("b1", "bo", 2.0), ("a2", "ana", 3.0)]:
        await store.create_session(a_session(sid, create_time=created, owner=owner), max_sessions=0)
    await store.create_session(a_session("n", create_time=4.0), max_sessions=0)
    assert (await store.get_session("a1")).owner == "ana"
    assert (await store.get_session("n")).owner == ""
    mine = await store.list_sessions(offset=0, limit=0, visible_to="ana")
    assert [s.session_id for s in mine] == ["a1", "a2", "n"]  # "n" is no one's: shared
    page = await store.list_sessions(offset=1, limit=1, visible_to="ana")
    assert [s.session_id for s in page] == ["a2"]
    theirs = await store.list_sessions(offset=0, limit=0, visible_to="bo")
    assert [s.session_id for s in theirs] == ["b1", "n"]
    assert len(await store.list_sessions(offset=0, limit=0)) == 4


async def test_list_sessions_carries_counts(store: SessionStore) -> None:
    await with_session(store)
    await with_variable(store, "x")
    await store.create_module(a_module())
    [listed] = await store.list_sessions(offset=0, limit=0)
    assert (listed.variable_count, listed.module_count) == (1, 1)


async def test_delete_session(store: SessionStore) -> None:
    await with_session(store, "a")
    await with_session(store, "b")
    await store.delete_session("a")
    await expect_error(store.get_session("a"), NOT_FOUND, Reason.SESSION_NOT_FOUND)
    await expect_unchanged(store, store.delete_session("a"), NOT_FOUND, Reason.SESSION_NOT_FOUND)
    assert [s.session_id for s in await store.list_sessions(offset=0, limit=0)] == ["b"]


async def test_set_session_expiry(store: SessionStore) -> None:
    await with_session(store)
    updated = await store.set_session_expiry("s1", 2000.25)
    assert updated.expire_time == 2000.25
    assert (await store.get_session("s1")).expire_time == 2000.25
    cleared = await store.set_session_expiry("s1", None)
    assert cleared.expire_time is None
    assert (await store.get_session("s1")).expire_time is None


async def test_set_session_lm(store: SessionStore) -> None:
    await with_session(store)
    lm = LMSpec("offline", options={"latency_ms": "5"})
    assert (await store.set_session_lm("s1", lm)).lm == lm
    assert (await store.get_session("s1")).lm == lm
    assert (await store.set_session_lm("s1", None)).lm is None
    assert (await store.get_session("s1")).lm is None


async def test_expired_sessions(store: SessionStore) -> None:
    for sid, expiry in [("never", None), ("early", 10.0), ("edge", 20.0), ("late", 30.0)]:
        await store.create_session(a_session(sid, expire_time=expiry), max_sessions=0)
    assert await store.expired_sessions(5.0) == []
    assert sorted(await store.expired_sessions(20.0)) == ["early", "edge"]
    assert sorted(await store.expired_sessions(1e12)) == ["early", "edge", "late"]
    await store.set_session_expiry("late", None)
    assert sorted(await store.expired_sessions(1e12)) == ["early", "edge"]


async def test_session_counts_follow_variables_and_modules(store: SessionStore) -> None:
    await with_session(store)
    x = await with_variable(store, "x")
    await with_variable(store, "y")
    await store.create_module(a_module("m1"))
    await store.create_module(a_module("m2"))
    await store.put_module_version(a_module("m1"), expected_version=1)
    session = await store.get_session("s1")
    assert (session.variable_count, session.module_count) == (2, 2)
    await store.delete_variable("s1", x.id)
    await store.delete_module("s1", "m2")
    session = await store.get_session("s1")
    assert (session.variable_count, session.module_count) == (1, 1)


async def test_deleting_a_session_removes_everything_it_owns(store: SessionStore) -> None:
    await with_session(store, "s1")
    await with_session(store, "other")
    x = await with_variable(store, "x")
    await store.write_variables("s1", [a_write(x.id, 2.0)], now=2000.0)
    await store.create_module(a_module())
    await store.put_module_version(a_module(), expected_version=1)
    await with_variable(store, "x", session_id="other")
    kept = await snapshot(store)

    await store.delete_session("s1")
    await store.create_session(a_session("s1"), max_sessions=0)

    fresh = await store.get_session("s1")
    assert (fresh.variable_count, fresh.module_count) == (0, 0)
    assert await store.list_variables("s1") == []
    assert await store.list_modules("s1") == []
    await expect_error(store.get_variable("s1", "x"), NOT_FOUND, Reason.VARIABLE_NOT_FOUND)
    await expect_error(store.get_variable("s1", x.id), NOT_FOUND, Reason.VARIABLE_NOT_FOUND)
    await expect_error(
        store.variable_history("s1", x.id, limit=0), NOT_FOUND, Reason.VARIABLE_NOT_FOUND
    )
    await expect_error(store.get_module("s1", "qa"), NOT_FOUND, Reason.MODULE_NOT_FOUND)
    assert (await snapshot(store))["other"] == kept["other"]

    again = await with_variable(store, "x")
    assert again.version == 1
    assert [h.version for h in await store.variable_history("s1", again.id, limit=0)] == [1]
    module = await store.create_module(a_module())
    assert module.version == 1
    await expect_error(store.get_module("s1", "qa", 2), NOT_FOUND, Reason.VERSION_NOT_FOUND)


async def test_returned_sessions_are_copies(store: SessionStore) -> None:
    session = a_session(metadata={"k": "v"}, lm=LMSpec("offline", options={"a": "1"}))
    created = await store.create_session(session, max_sessions=0)
    session.metadata["k"] = "changed by caller"
    created.metadata["k"] = "changed by caller"
    assert created.lm is not None
    created.lm.options["a"] = "changed by caller"
    fetched = await store.get_session("s1")
    assert fetched.metadata == {"k": "v"}
    assert fetched.lm == LMSpec("offline", options={"a": "1"})


# -- variables ------------------------------------------------------------------------------


async def test_create_variable_starts_at_version_one(store: SessionStore) -> None:
    await with_session(store)
    variable = a_variable(
        "choice",
        "b",
        kind=VariableType.CHOICE,
        constraints=Constraints(choices=("a", "b"), pattern="^[ab]$", min_length=1),
        description="pick one",
        metadata={"team": "ml"},
        version=7,
    )
    created = await store.create_variable(variable, max_variables=0)
    assert created == replace(variable, version=1)
    assert await store.get_variable("s1", "choice") == created
    [first] = await store.variable_history("s1", created.id, limit=0)
    assert first == HistoryEntry(1, "b", "host", "", 1001.0)


async def test_all_constraint_fields_round_trip(store: SessionStore) -> None:
    await with_session(store)
    constraints = Constraints(
        min=-1.5,
        max=2.5,
        step=0.5,
        choices=("x", "y"),
        pattern="^.*$",
        min_length=1,
        max_length=9,
        dims=(2, 3),
        dtype="float32",
    )
    created = await with_variable(store, "c", 0.0, constraints=constraints)
    assert created.constraints == constraints
    assert (await store.get_variable("s1", "c")).constraints == constraints


async def test_duplicate_variable_name_or_id_is_already_exists(store: SessionStore) -> None:
    await with_session(store)
    await with_variable(store, "x", 1.0, var_id="id-1")
    for duplicate in [a_variable("x", 2.0, var_id="id-2"), a_variable("y", 2.0, var_id="id-1")]:
        await expect_unchanged(
            store,
            store.create_variable(duplicate, max_variables=0),
            ALREADY_EXISTS,
            Reason.VARIABLE_ALREADY_EXISTS,
        )


async def test_same_variable_name_in_two_sessions(store: SessionStore) -> None:
    await with_session(store, "a")
    await with_session(store, "b")
    await with_variable(store, "x", 1.0, session_id="a")
    await with_variable(store, "x", 2.0, session_id="b")
    assert (await store.get_variable("a", "x")).value == 1.0
    assert (await store.get_variable("b", "x")).value == 2.0


async def test_variable_limit_is_per_session(store: SessionStore) -> None:
    await with_session(store, "a")
    await with_session(store, "b")
    await store.create_variable(a_variable("x", session_id="a"), max_variables=2)
    await store.create_variable(a_variable("y", session_id="a"), max_variables=2)
    error = await expect_unchanged(
        store,
        store.create_variable(a_variable("z", session_id="a"), max_variables=2),
        RESOURCE_EXHAUSTED,
        Reason.VARIABLE_LIMIT,
    )
    assert error.metadata["limit"] == "2"
    await store.create_variable(a_variable("z", session_id="b"), max_variables=2)
    assert (await store.get_session("a")).variable_count == 2


async def test_get_variable_by_name_and_by_id(store: SessionStore) -> None:
    await with_session(store)
    created = await with_variable(store, "x", 3.0, var_id="v-123")
    assert await store.get_variable("s1", "x") == created
    assert await store.get_variable("s1", "v-123") == created


async def test_name_wins_over_another_variables_id(store: SessionStore) -> None:
    await with_session(store)
    await with_variable(store, "first", 1.0, var_id="shared")
    await with_variable(store, "shared", 2.0, var_id="other")
    assert (await store.get_variable("s1", "shared")).value == 2.0


async def test_unknown_variable_is_not_found(store: SessionStore) -> None:
    await with_session(store)
    await with_variable(store, "x")
    error = await expect_error(
        store.get_variable("s1", "nope"), NOT_FOUND, Reason.VARIABLE_NOT_FOUND
    )
    assert error.metadata["variable"] == "nope"
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.delete_variable("s1", "nope"),
        lambda: store.variable_history("s1", "nope", limit=0),
        lambda: store.write_variables("s1", [a_write("nope", 1.0)], now=1.0),
    ]
    for call in calls:
        await expect_unchanged(store, call(), NOT_FOUND, Reason.VARIABLE_NOT_FOUND)


async def test_list_variables_in_name_order(store: SessionStore) -> None:
    await with_session(store)
    for name in ["m", "b", "z", "a"]:
        await with_variable(store, name)
    assert [v.name for v in await store.list_variables("s1")] == ["a", "b", "m", "z"]


async def test_list_variables_of_empty_session(store: SessionStore) -> None:
    await with_session(store)
    assert await store.list_variables("s1") == []


async def test_delete_variable_returns_it_and_removes_history(store: SessionStore) -> None:
    await with_session(store)
    x = await with_variable(store, "x", 1.0)
    [written] = await store.write_variables("s1", [a_write(x.id, 2.0)], now=2000.0)
    assert await store.delete_variable("s1", x.id) == written
    await expect_error(store.get_variable("s1", "x"), NOT_FOUND, Reason.VARIABLE_NOT_FOUND)
    await expect_error(
        store.variable_history("s1", x.id, limit=0), NOT_FOUND, Reason.VARIABLE_NOT_FOUND
    )
    assert (await store.get_session("s1")).variable_count == 0
    again = await with_variable(store, "x", 5.0)
    assert again.version == 1
    assert [h.value for h in await store.variable_history("s1", again.id, limit=0)] == [5.0]


async def test_write_makes_a_new_version(store: SessionStore) -> None:
    await with_session(store)
    x = await with_variable(store, "x", 1.0)
    [written] = await store.write_variables(
        "s1", [VariableWrite(x.id, 2.0, "optimizer:job-1", "tuned")], now=2000.0
    )
    expected = replace(x, value=2.0, version=2, update_time=2000.0, source="optimizer:job-1")
    assert written == expected
    assert await store.get_variable("s1", "x") == expected
    assert (await store.variable_history("s1", x.id, limit=1))[0] == HistoryEntry(
        2, 2.0, "optimizer:job-1", "tuned", 2000.0
    )


async def test_versions_grow_by_one_per_write(store: SessionStore) -> None:
    await with_session(store)
    x = await with_variable(store, "x", 0)
    for n in range(1, 6):
        [written] = await store.write_variables("s1", [a_write(x.id, n)], now=float(n))
        assert written.version == n + 1
    history = await store.variable_history("s1", x.id, limit=0)
    assert [(h.version, h.value) for h in history] == [(v, v - 1) for v in range(6, 0, -1)]


async def test_expected_version_match_is_applied(store: SessionStore) -> None:
    await with_session(store)
    x = await with_variable(store, "x", 1.0)
    [written] = await store.write_variables("s1", [a_write(x.id, 2.0, 1)], now=2.0)
    assert written.version == 2


async def test_stale_expected_version_is_aborted(store: SessionStore) -> None:
    await with_session(store)
    x = await with_variable(store, "x", 1.0)
    await store.write_variables("s1", [a_write(x.id, 2.0)], now=2.0)
    for stale in [1, 3, 0]:
        error = await expect_unchanged(
            store,
            store.write_variables("s1", [a_write(x.id, 9.0, stale)], now=3.0),
            ABORTED,
            Reason.VERSION_CONFLICT,
        )
        assert error.metadata["current_version"] == "2"
        assert error.metadata["expected_version"] == str(stale)


async def test_batch_is_all_or_nothing_on_version_conflict(store: SessionStore) -> None:
    await with_session(store)
    x = await with_variable(store, "x", 1.0)
    y = await with_variable(store, "y", 1.0)
    batch = [a_write(x.id, 2.0, 1), a_write(y.id, 2.0, 5)]
    await expect_unchanged(
        store, store.write_variables("s1", batch, now=2.0), ABORTED, Reason.VERSION_CONFLICT
    )


async def test_batch_is_all_or_nothing_on_missing_variable(store: SessionStore) -> None:
    await with_session(store)
    x = await with_variable(store, "x", 1.0)
    batch = [a_write(x.id, 2.0), a_write("gone", 2.0)]
    await expect_unchanged(
        store, store.write_variables("s1", batch, now=2.0), NOT_FOUND, Reason.VARIABLE_NOT_FOUND
    )


async def test_batch_applies_every_write_in_order(store: SessionStore) -> None:
    await with_session(store)
    x = await with_variable(store, "x", 1.0)
    y = await with_variable(store, "y", "a", kind=VariableType.STRING)
    written = await store.write_variables(
        "s1", [a_write(y.id, "b", 1), a_write(x.id, 2.0, 1)], now=2.0
    )
    assert [(v.name, v.value, v.version) for v in written] == [("y", "b", 2), ("x", 2.0, 2)]


async def test_batch_writing_one_variable_twice_checks_versions_in_order(
    store: SessionStore,
) -> None:
    await with_session(store)
    x = await with_variable(store, "x", 1.0)
    written = await store.write_variables(
        "s1", [a_write(x.id, 2.0, 1), a_write(x.id, 3.0, 2)], now=2.0
    )
    assert [v.version for v in written] == [2, 3]
    await expect_unchanged(
        store,
        store.write_variables("s1", [a_write(x.id, 4.0, 3), a_write(x.id, 5.0, 3)], now=3.0),
        ABORTED,
        Reason.VERSION_CONFLICT,
    )
    history = await store.variable_history("s1", x.id, limit=0)
    assert [h.value for h in history] == [3.0, 2.0, 1.0]


async def test_empty_batch_changes_nothing(store: SessionStore) -> None:
    await with_session(store)
    await with_variable(store, "x")
    before = await snapshot(store)
    assert await store.write_variables("s1", [], now=5.0) == []
    assert await snapshot(store) == before


async def test_history_is_newest_first_with_limit(store: SessionStore) -> None:
    await with_session(store)
    x = await with_variable(store, "x", "v1", kind=VariableType.STRING)
    for n in range(2, 6):
        await store.write_variables("s1", [a_write(x.id, f"v{n}", reason=f"r{n}")], now=float(n))
    history = await store.variable_history("s1", x.id, limit=2)
    assert history == [
        HistoryEntry(5, "v5", "host", "r5", 5.0),
        HistoryEntry(4, "v4", "host", "r4", 4.0),
    ]
    assert [h.version for h in await store.variable_history("s1", x.id, limit=0)] == [5, 4, 3, 2, 1]
    assert len(await store.variable_history("s1", x.id, limit=100)) == 5


async def test_history_limit_drops_oldest(make_store: StoreFactory) -> None:
    store = await make_store(history_limit=3)
    await with_session(store)
    x = await with_variable(store, "x", 0)
    for n in range(1, 10):
        await store.write_variables("s1", [a_write(x.id, n)], now=float(n))
    history = await store.variable_history("s1", x.id, limit=0)
    assert [(h.version, h.value) for h in history] == [(10, 9), (9, 8), (8, 7)]
    assert (await store.get_variable("s1", "x")).version == 10


async def test_history_limit_zero_keeps_everything(make_store: StoreFactory) -> None:
    store = await make_store(history_limit=0)
    await with_session(store)
    x = await with_variable(store, "x", 0)
    # One batch of 1200 writes to the same variable: more than the default limit keeps.
    await store.write_variables("s1", [a_write(x.id, n) for n in range(1, 1201)], now=1.0)
    history = await store.variable_history("s1", x.id, limit=0)
    assert [h.value for h in history] == list(range(1200, -1, -1))


async def test_returned_variables_are_copies(store: SessionStore) -> None:
    await with_session(store)
    value: dict[str, Any] = {"layers": [1, 2], "name": "net"}
    variable = a_variable("cfg", value, kind=VariableType.JSON, metadata={"k": "v"})
    created = await store.create_variable(variable, max_variables=0)
    value["layers"].append(3)
    variable.metadata["k"] = "caller"
    created.value["layers"].append(4)
    created.metadata["k"] = "caller"
    fetched = await store.get_variable("s1", "cfg")
    fetched.value["name"] = "caller"
    [entry] = await store.variable_history("s1", created.id, limit=0)
    entry.value["layers"].clear()
    again = await store.get_variable("s1", "cfg")
    assert again.value == {"layers": [1, 2], "name": "net"}
    assert again.metadata == {"k": "v"}
    assert (await store.variable_history("s1", created.id, limit=0))[0].value == again.value


def _tensor(array: np.ndarray[Any, Any]) -> Tensor:
    return Tensor.from_numpy(array)


ROUND_TRIP_VALUES: list[tuple[VariableType, PyValue]] = [
    (VariableType.FLOAT, 0.1),
    (VariableType.FLOAT, -1e-300),
    (VariableType.FLOAT, 1.0),
    (VariableType.FLOAT, float("inf")),
    (VariableType.INTEGER, 2**62 + 1),
    (VariableType.INTEGER, -7),
    (VariableType.BOOLEAN, False),
    (VariableType.STRING, ""),
    (VariableType.STRING, 'héllo "quoted" \n 🚀 \x00'),
    (VariableType.CHOICE, "ChainOfThought"),
    (VariableType.JSON, None),
    (VariableType.JSON, {"a": [1, 2.5, None, True, {"b": "c"}], "": {}, "n": -0.0}),
    (VariableType.JSON, [[], {}, "x", 3]),
    (VariableType.JSON, {"__tensor__": 1, "other": 2}),
    (VariableType.EMBEDDING, [0.25, -1.5, 3.0]),
    (VariableType.TENSOR, _tensor(np.arange(6, dtype=np.float32).reshape(2, 3))),
    (VariableType.TENSOR, _tensor(np.array([[1, -2], [3, 2**40]], dtype=np.int64))),
    (VariableType.TENSOR, _tensor(np.array([True, False], dtype=np.bool_))),
    (VariableType.TENSOR, Tensor("float64", (0,), b"")),
    (VariableType.TENSOR, Tensor("uint8", (3,), bytes([0, 255, 10]))),
]


@pytest.mark.parametrize(("kind", "value"), ROUND_TRIP_VALUES)
async def test_values_round_trip_exactly(
    store: SessionStore, kind: VariableType, value: PyValue
) -> None:
    await with_session(store)
    created = await with_variable(store, "v", value, kind=kind)
    assert_same(created.value, value)
    assert_same((await store.get_variable("s1", "v")).value, value)
    [written] = await store.write_variables("s1", [a_write(created.id, value)], now=5.0)
    assert_same(written.value, value)
    for entry in await store.variable_history("s1", created.id, limit=0):
        assert_same(entry.value, value)
    if isinstance(value, Tensor):
        fetched = (await store.get_variable("s1", "v")).value
        assert fetched.to_numpy().tobytes() == value.to_numpy().tobytes()


# -- modules --------------------------------------------------------------------------------


async def test_create_and_get_module(store: SessionStore) -> None:
    await with_session(store)
    record = a_module(source="import")
    record.version = 9
    created = await store.create_module(record)
    assert created == replace(record, version=1)
    assert await store.get_module("s1", "qa") == created
    assert await store.get_module("s1", "qa", 1) == created


async def test_module_without_state(store: SessionStore) -> None:
    await with_session(store)
    created = await store.create_module(a_module(state=None))
    assert created.state is None
    assert (await store.get_module("s1", "qa")).state is None


async def test_duplicate_module_is_already_exists(store: SessionStore) -> None:
    await with_session(store)
    await store.create_module(a_module())
    await expect_unchanged(
        store,
        store.create_module(a_module(spec={"module_type": "ChainOfThought"})),
        ALREADY_EXISTS,
        Reason.MODULE_ALREADY_EXISTS,
    )


async def test_unknown_module_is_not_found(store: SessionStore) -> None:
    await with_session(store)
    await store.create_module(a_module("other"))
    error = await expect_error(store.get_module("s1", "qa"), NOT_FOUND, Reason.MODULE_NOT_FOUND)
    assert error.metadata["module_id"] == "qa"
    calls: list[Callable[[], Awaitable[Any]]] = [
        lambda: store.get_module("s1", "qa", 1),
        lambda: store.put_module_version(a_module(), expected_version=1),
        lambda: store.delete_module("s1", "qa"),
    ]
    for call in calls:
        await expect_unchanged(store, call(), NOT_FOUND, Reason.MODULE_NOT_FOUND)


async def test_module_versions(store: SessionStore) -> None:
    await with_session(store)
    v1 = await store.create_module(a_module())
    tuned = a_module(state={"demos": [], "instructions": "Think."}, source="optimizer:j1")
    tuned.update_time = 3000.0
    v2 = await store.put_module_version(tuned, expected_version=1)
    assert v2 == replace(tuned, version=2)
    assert await store.get_module("s1", "qa") == v2
    assert await store.get_module("s1", "qa", 2) == v2
    assert await store.get_module("s1", "qa", 1) == v1
    v3 = await store.put_module_version(a_module(source="revert:1"), expected_version=2)
    assert v3.version == 3
    assert (await store.get_module("s1", "qa")).source == "revert:1"


async def test_stale_module_version_is_aborted(store: SessionStore) -> None:
    await with_session(store)
    await store.create_module(a_module())
    await store.put_module_version(a_module(), expected_version=1)
    for stale in [1, 3]:
        error = await expect_unchanged(
            store,
            store.put_module_version(a_module(spec={"x": 1}), expected_version=stale),
            ABORTED,
            Reason.VERSION_CONFLICT,
        )
        assert error.metadata["current_version"] == "2"


async def test_missing_module_version_is_not_found(store: SessionStore) -> None:
    await with_session(store)
    await store.create_module(a_module())
    for version in [2, 99, -1]:
        await expect_unchanged(
            store, store.get_module("s1", "qa", version), NOT_FOUND, Reason.VERSION_NOT_FOUND
        )


async def test_list_modules_returns_current_versions_in_id_order(store: SessionStore) -> None:
    await with_session(store)
    for module_id in ["zeta", "alpha", "mid"]:
        await store.create_module(a_module(module_id))
    await store.put_module_version(a_module("mid", source="import"), expected_version=1)
    listed = await store.list_modules("s1")
    assert [(m.module_id, m.version) for m in listed] == [("alpha", 1), ("mid", 2), ("zeta", 1)]
    assert listed[1].source == "import"


async def test_execution_view_reads_session_module_and_variables(store: SessionStore) -> None:
    await with_session(store)
    await with_variable(store, "b")
    await with_variable(store, "a")
    await store.create_module(a_module())
    await store.put_module_version(a_module(state=None), expected_version=1)
    session, record, variables = await store.execution_view("s1", "qa")
    assert (session.session_id, session.variable_count, session.module_count) == ("s1", 2, 1)
    assert (record.module_id, record.version, record.state) == ("qa", 2, None)
    assert [v.name for v in variables] == ["a", "b"]
    _, first, _ = await store.execution_view("s1", "qa", 1)
    assert first.version == 1 and first.state == a_module().state
    await expect_error(store.execution_view("nope", "qa"), NOT_FOUND, "SESSION_NOT_FOUND")
    await expect_error(store.execution_view("s1", "nope"), NOT_FOUND, "MODULE_NOT_FOUND")
    await expect_error(store.execution_view("s1", "qa", 3), NOT_FOUND, "VERSION_NOT_FOUND")


async def test_execution_view_sees_every_change_made_through_another_server(
    make_store: StoreFactory,
) -> None:
    """A Redis replica keeps the views it read between Executes: every change made through
    another replica (variables, module versions, a module made anew, the LM, the expiry, a
    deleted or re-created session) shows in the very next view it reads there."""
    store = await make_store()
    other = await make_store(share_with=store)  # the same handle for single-server stores
    await with_session(store)
    t = await with_variable(store, "t", 0.5)
    await store.create_module(a_module())
    session, record, variables = await other.execution_view("s1", "qa")
    assert (session.lm, record.version, [v.value for v in variables]) == (None, 1, [0.5])

    await store.write_variables("s1", [a_write(t.id, 0.7)], now=1010.0)
    _, _, variables = await other.execution_view("s1", "qa")
    assert [(v.value, v.version) for v in variables] == [(0.7, 2)]
    await store.put_module_version(a_module(state=None), expected_version=1)
    _, record, _ = await other.execution_view("s1", "qa")
    assert (record.version, record.state) == (2, None)
    _, first, _ = await other.execution_view("s1", "qa", 1)
    assert first.version == 1 and first.state == a_module().state
    await store.set_session_lm("s1", LMSpec("offline"))
    session, _, _ = await other.execution_view("s1", "qa")
    assert session.lm == LMSpec("offline")
    await store.set_session_expiry("s1", 5000.0)
    session, _, _ = await other.execution_view("s1", "qa")
    assert session.expire_time == 5000.0
    await with_variable(store, "u", 1.5)
    _, _, variables = await other.execution_view("s1", "qa")
    assert [v.name for v in variables] == ["t", "u"]

    # A module deleted and made anew under the same id is version 1 again, with a new spec.
    await store.delete_module("s1", "qa")
    await expect_error(other.execution_view("s1", "qa"), NOT_FOUND, "MODULE_NOT_FOUND")
    await store.create_module(a_module(spec={"module_type": "Predict", "signature": "q -> a"}))
    _, record, _ = await other.execution_view("s1", "qa")
    assert (record.version, record.spec["signature"]) == (1, "q -> a")

    # What a caller does to a view it got changes nothing the next caller gets.
    session, record, variables = await other.execution_view("s1", "qa")
    session.metadata["x"] = "y"
    record.spec["config"] = {"n": 99}
    assert record.state is not None
    record.state["demos"].clear()
    variables[0].metadata["x"] = "y"
    again, record, variables = await other.execution_view("s1", "qa")
    assert again.metadata == {} and "config" not in record.spec
    assert record.state == a_module().state and variables[0].metadata == {}

    # Deleted through one server: NOT_FOUND through the other at once; made anew: the new one.
    await store.delete_session("s1")
    await expect_error(other.execution_view("s1", "qa"), NOT_FOUND, "SESSION_NOT_FOUND")
    await with_session(store)
    await with_variable(store, "t", 1.9)
    await store.create_module(a_module())
    session, record, variables = await other.execution_view("s1", "qa")
    assert (session.lm, record.version, [v.value for v in variables]) == (None, 1, [1.9])


async def test_delete_module_removes_every_version(store: SessionStore) -> None:
    await with_session(store)
    await store.create_module(a_module())
    await store.put_module_version(a_module(), expected_version=1)
    await store.delete_module("s1", "qa")
    await expect_error(store.get_module("s1", "qa"), NOT_FOUND, Reason.MODULE_NOT_FOUND)
    assert await store.list_modules("s1") == []
    again = await store.create_module(a_module())
    assert again.version == 1
    await expect_error(store.get_module("s1", "qa", 2), NOT_FOUND, Reason.VERSION_NOT_FOUND)


async def test_returned_modules_are_copies(store: SessionStore) -> None:
    await with_session(store)
    record = a_module()
    created = await store.create_module(record)
    record.spec["config"]["n"] = 99
    created.spec["config"]["n"] = 98
    assert created.state is not None
    created.state["demos"].clear()
    fetched = await store.get_module("s1", "qa")
    assert fetched.spec["config"]["n"] == 1
    assert fetched.state is not None
    assert fetched.state["demos"] == [{"question": "2+2?", "answer": "4"}]


# -- lifecycle ------------------------------------------------------------------------------


async def test_close_is_idempotent(make_store: StoreFactory) -> None:
    store = await make_store()
    await store.close()
    await store.close()


# -- property: versions and history follow the writes --------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=8)
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)
# How a write states its expected version: not at all, correctly, or wrongly (by an offset).
expectations = st.one_of(st.none(), st.just(0), st.sampled_from([-2, -1, 1, 2]))
one_write = st.tuples(st.sampled_from(["a", "b", "missing"]), json_values, expectations)
batches = st.lists(st.lists(one_write, min_size=1, max_size=3), max_size=8)


class _Model:
    """What the store should hold: per variable, every value written so far, oldest first."""

    def __init__(self, initial: dict[str, PyValue]) -> None:
        self.values = {name: [value] for name, value in initial.items()}

    def plan(
        self, batch: Sequence[tuple[str, PyValue, int | None]]
    ) -> tuple[list[VariableWrite], bool]:
        """The store writes for `batch` and whether the whole batch should succeed."""
        pending = {name: len(values) for name, values in self.values.items()}
        writes, ok = [], True
        for name, value, offset in batch:
            current = pending.get(name)
            expected = None if offset is None else (current or 1) + offset
            writes.append(a_write(f"id-{name}", value, expected))
            if current is None or (expected is not None and expected != current):
                ok = False
            else:
                pending[name] = current + 1
        return writes, ok

    def apply(self, batch: Sequence[tuple[str, PyValue, int | None]]) -> None:
        for name, value, _ in batch:
            self.values[name].append(value)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(batches=batches, initial=st.tuples(json_values, json_values))
async def test_versions_and_history_follow_any_sequence_of_writes(
    store: SessionStore,
    batches: list[list[tuple[str, PyValue, int | None]]],
    initial: tuple[PyValue, PyValue],
) -> None:
    sid = f"prop-{uuid.uuid4().hex}"
    await with_session(store, sid)
    for name, value in zip(["a", "b"], initial, strict=True):
        await with_variable(store, name, value, session_id=sid, kind=VariableType.JSON)
    model = _Model(dict(zip(["a", "b"], initial, strict=True)))

    for batch in batches:
        writes, should_succeed = model.plan(batch)
        try:
            await store.write_variables(sid, writes, now=1.0)
        except BridgeError as error:
            assert not should_succeed, str(error)
            assert error.code in (ABORTED, NOT_FOUND)
        else:
            assert should_succeed
            model.apply(batch)

    for name, values in model.values.items():
        variable = await store.get_variable(sid, name)
        assert variable.version == len(values)  # 1 + successful writes
        assert_same(variable.value, values[-1])
        history = await store.variable_history(sid, variable.id, limit=0)
        assert [h.version for h in history] == list(range(len(values), 0, -1))
        assert_same([h.value for h in history], values[::-1])
    await store.delete_session(sid)


# -- opening stores by URL ------------------------------------------------------------------


@pytest.mark.parametrize("url", ["", "memory://"])
async def test_open_store_memory(url: str) -> None:
    store = await open_store(url, history_limit=5)
    assert isinstance(store, MemoryStore)
    assert store.backend == "memory"


async def test_open_store_sqlite_relative_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    store = await open_store("sqlite:///data/bridge.db")
    try:
        assert isinstance(store, SqliteStore)
        assert store.backend == "sqlite"
        assert (tmp_path / "data" / "bridge.db").is_file()
    finally:
        await store.close()


async def test_open_store_sqlite_missing_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        await open_store(f"sqlite:///{tmp_path / 'missing' / 'bridge.db'}")
    assert not (tmp_path / "missing").exists()  # not created behind the operator's back


async def test_open_store_sqlite_absolute_path(tmp_path: Path) -> None:
    path = tmp_path / "bridge.db"
    store = await open_store(f"sqlite:///{path}")
    try:
        await with_session(store)
    finally:
        await store.close()
    reopened = await open_store(f"sqlite:///{path}")
    try:
        assert (await reopened.get_session("s1")).session_id == "s1"
    finally:
        await reopened.close()


async def test_open_store_redis_that_does_not_answer_is_unavailable() -> None:
    port = free_port()  # nothing listens there
    error = await expect_error(
        open_store(f"redis://127.0.0.1:{port}/0"),
        grpc.StatusCode.UNAVAILABLE,
        "STORE_UNAVAILABLE",
    )
    assert str(port) not in error.message  # no address in errors a host may see


async def test_open_store_redis(redis_server: RedisServer) -> None:
    store = await open_store(f"{redis_server.url}?key_prefix=opened")
    try:
        assert isinstance(store, RedisStore)
        assert store.prefix == "opened"
        assert store.backend == "redis" and store.shared
    finally:
        await store.close()


@pytest.mark.parametrize("prefix", ["", "a:b", "a b", "x" * 65])
async def test_open_store_redis_rejects_bad_key_prefix(prefix: str) -> None:
    with pytest.raises(ValueError, match="key_prefix"):
        await open_store(f"redis://127.0.0.1:1/0?key_prefix={prefix}")


@pytest.mark.parametrize(
    "url",
    [
        "postgres://db/x",
        "memory",
        "memory://x",
        "sqlite://",
        "sqlite:///",
        "sqlite://h/x.db",
        "redis://",
    ],
)
async def test_open_store_rejects_other_urls(url: str) -> None:
    with pytest.raises(ValueError, match="memory://"):
        await open_store(url)


# -- jobs -----------------------------------------------------------------------------------


def a_job(job_id: str = "j1", *, session_id: str = "s1", **kw: Any) -> Job:
    fields: dict[str, Any] = {
        "module_id": "qa",
        "optimizer": "BootstrapFewShot",
        "create_time": 1003.0,
        "config": {"max_bootstrapped_demos": 2, "nested": {"a": [1, 2.5, "x", None, True]}},
        "metric": {"name": "exact_match", "options": {"field": "answer"}},
        "apply_requested": True,
        "trainset_size": 4,
        "valset_size": 2,
        "module_version": 1,
    }
    fields.update(kw)
    return Job(job_id=job_id, session_id=session_id, **fields)


async def test_create_and_get_job_round_trip(store: SessionStore) -> None:
    await with_session(store)
    job = a_job()
    created = await store.create_job(job)
    assert created == job
    fetched = await store.get_job("s1", "j1")
    assert fetched == job
    assert fetched.status is JobStatus.QUEUED
    assert_same(fetched.config, job.config)


async def test_duplicate_job_is_already_exists(store: SessionStore) -> None:
    await with_session(store)
    await store.create_job(a_job())
    await expect_error(
        store.create_job(a_job(optimizer="COPRO")), ALREADY_EXISTS, "JOB_ALREADY_EXISTS"
    )
    assert (await store.get_job("s1", "j1")).optimizer == "BootstrapFewShot"


async def test_unknown_job_or_session_is_not_found(store: SessionStore) -> None:
    await expect_error(store.create_job(a_job()), NOT_FOUND, Reason.SESSION_NOT_FOUND)
    await expect_error(store.get_job("s1", "j1"), NOT_FOUND, Reason.SESSION_NOT_FOUND)
    await expect_error(store.list_jobs("s1"), NOT_FOUND, Reason.SESSION_NOT_FOUND)
    await with_session(store)
    await expect_error(store.get_job("s1", "nope"), NOT_FOUND, "JOB_NOT_FOUND")
    await expect_error(
        store.update_job("s1", "nope", JobUpdate(status=JobStatus.RUNNING)),
        NOT_FOUND,
        "JOB_NOT_FOUND",
    )


async def test_update_job_changes_only_given_fields(store: SessionStore) -> None:
    await with_session(store)
    await store.create_job(a_job())
    running = await store.update_job(
        "s1",
        "j1",
        JobUpdate(status=JobStatus.RUNNING, start_time=1004.0, progress=JobProgress("trial", 1, 4)),
    )
    assert (running.status, running.start_time) == (JobStatus.RUNNING, 1004.0)
    assert running.progress == JobProgress("trial", 1, 4)
    result = {"kind": "module", "module_version": 0, "previous_version": 1, "demo_count": 2}
    done = await store.update_job(
        "s1",
        "j1",
        JobUpdate(status=JobStatus.SUCCEEDED, result=result, best_score=0.75, end_time=1005.0),
        if_status={JobStatus.RUNNING},
    )
    assert done == await store.get_job("s1", "j1")
    assert (done.status, done.best_score, done.end_time, done.start_time) == (
        JobStatus.SUCCEEDED,
        0.75,
        1005.0,
        1004.0,
    )
    assert done.result == result
    assert done.progress == JobProgress("trial", 1, 4)
    assert done.config == a_job().config


async def test_update_job_with_wrong_status_is_aborted_and_changes_nothing(
    store: SessionStore,
) -> None:
    await with_session(store)
    await store.create_job(a_job(status=JobStatus.CANCELLED, end_time=1004.0))
    error = await expect_error(
        store.update_job(
            "s1", "j1", JobUpdate(status=JobStatus.SUCCEEDED), if_status={JobStatus.RUNNING}
        ),
        ABORTED,
        "JOB_STATE_CONFLICT",
    )
    assert error.metadata["current_status"] == "CANCELLED"
    assert (await store.get_job("s1", "j1")).status is JobStatus.CANCELLED


async def test_list_jobs_in_create_order_with_filter_and_paging(store: SessionStore) -> None:
    await with_session(store)
    await with_session(store, "other")
    await store.create_job(a_job("b", create_time=2.0))
    await store.create_job(a_job("a", create_time=2.0, module_id="other"))
    await store.create_job(a_job("c", create_time=1.0))
    await store.create_job(a_job("x", session_id="other"))
    assert [j.job_id for j in await store.list_jobs("s1")] == ["c", "a", "b"]
    assert [j.job_id for j in await store.list_jobs("s1", module_id="qa")] == ["c", "b"]
    assert [j.job_id for j in await store.list_jobs("s1", offset=1, limit=1)] == ["a"]
    assert [j.job_id for j in await store.list_jobs("s1", offset=2, limit=5)] == ["b"]


async def test_mark_running_jobs_interrupted(make_store: StoreFactory) -> None:
    """At start a server marks INTERRUPTED the jobs no server runs any more. On a shared store
    those are the jobs of a server that is gone (here: one that stopped), never the jobs a live
    server holds."""
    store = await make_store()
    gone = await make_store(share_with=store)  # the same handle for single-server stores
    await with_session(store)
    await with_session(store, "other")
    await gone.create_job(a_job("queued"))
    await gone.create_job(a_job("running", status=JobStatus.RUNNING, start_time=1004.0))
    await gone.create_job(a_job("done", status=JobStatus.SUCCEEDED, end_time=1005.0))
    await gone.create_job(a_job("elsewhere", session_id="other", status=JobStatus.RUNNING))
    if store.shared:
        await store.create_job(a_job("live", status=JobStatus.RUNNING))
        assert await store.mark_running_jobs_interrupted(1500.0) == []  # their server lives
        await gone.close()
    marked = await store.mark_running_jobs_interrupted(2000.0)
    assert sorted(j.job_id for j in marked) == ["elsewhere", "queued", "running"]
    for sid, jid in [("s1", "queued"), ("s1", "running"), ("other", "elsewhere")]:
        job = await store.get_job(sid, jid)
        assert (job.status, job.end_time) == (JobStatus.INTERRUPTED, 2000.0)
    done = await store.get_job("s1", "done")
    assert (done.status, done.end_time) == (JobStatus.SUCCEEDED, 1005.0)
    assert await store.mark_running_jobs_interrupted(3000.0) == []
    if store.shared:
        assert (await store.get_job("s1", "live")).status is JobStatus.RUNNING


async def test_deleting_a_session_deletes_its_jobs(store: SessionStore) -> None:
    await with_session(store)
    await with_session(store, "other")
    await store.create_job(a_job())
    await store.create_job(a_job(session_id="other"))
    await store.delete_session("s1")
    await with_session(store)
    assert await store.list_jobs("s1") == []
    await expect_error(store.get_job("s1", "j1"), NOT_FOUND, "JOB_NOT_FOUND")
    assert [j.job_id for j in await store.list_jobs("other")] == ["j1"]


async def test_returned_jobs_are_copies(store: SessionStore) -> None:
    await with_session(store)
    job = a_job()
    await store.create_job(job)
    job.config["max_bootstrapped_demos"] = 99
    fetched = await store.get_job("s1", "j1")
    assert fetched.config["max_bootstrapped_demos"] == 2
    fetched.metric["name"] = "changed"
    assert (await store.get_job("s1", "j1")).metric["name"] == "exact_match"


async def test_sqlite_jobs_survive_reopen(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    store = await SqliteStore.open(path)
    try:
        await with_session(store)
        await store.create_job(a_job(status=JobStatus.RUNNING))
    finally:
        await store.close()
    reopened = await SqliteStore.open(path)
    try:
        marked = await reopened.mark_running_jobs_interrupted(5.0)
        assert [j.job_id for j in marked] == ["j1"]
        assert (await reopened.get_job("s1", "j1")).status is JobStatus.INTERRUPTED
    finally:
        await reopened.close()
