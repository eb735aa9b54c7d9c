"""The sqlite store keeps every acknowledged write across `kill -9` of the process writing.

A child process writes in a loop and prints a line only after `write_variables` has returned.
The parent reads those lines, SIGKILLs the child at an arbitrary point (usually mid-write), then
re-opens the database: every write the child reported must be there, with its version and its
history entry. Synchronisation is by the child's output only, never by sleeping.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from dspy_bridge.model import VariableWrite
from dspy_bridge.store import SqliteStore
from dspy_bridge.store.sqlite import SCHEMA_VERSION

SESSION, VARIABLE_ID = "durable", "v-counter"

CHILD = f"""
import asyncio, sys
from dspy_bridge.model import Session, Variable, VariableType, VariableWrite
from dspy_bridge.store import SqliteStore

async def main(path: str, count: int) -> None:
    store = await SqliteStore.open(path, history_limit=0)
    await store.create_session(Session({SESSION!r}, create_time=1.0), max_sessions=0)
    variable = Variable({VARIABLE_ID!r}, {SESSION!r}, "counter", VariableType.INTEGER, 0)
    await store.create_variable(variable, max_variables=0)
    print("ready", flush=True)
    for n in range(1, count + 1):
        write = VariableWrite({VARIABLE_ID!r}, n, "child", f"write {{n}}", expected_version=n)
        [written] = await store.write_variables({SESSION!r}, [write], now=float(n))
        print(f"wrote {{n}} {{written.version}}", flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def _run_child_until(path: Path, acknowledged: int) -> int:
    """Starts the writer, reads `acknowledged` write lines, SIGKILLs it; returns its exit code."""
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "1000000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        lines = [child.stdout.readline() for _ in range(acknowledged + 1)]
        if not all(lines):
            child.wait()
            assert child.stderr is not None
            pytest.fail(f"writer exited early: {lines!r}\n{child.stderr.read()}")
        assert lines[0] == "ready\n"
        assert lines[-1] == f"wrote {acknowledged} {acknowledged + 1}\n"
        os.kill(child.pid, signal.SIGKILL)
        return child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


@pytest.mark.parametrize("acknowledged", [1, 37, 400])
async def test_acknowledged_writes_survive_sigkill(tmp_path: Path, acknowledged: int) -> None:
    path = tmp_path / "durable.db"
    assert _run_child_until(path, acknowledged) == -signal.SIGKILL

    store = await SqliteStore.open(path, history_limit=0)
    try:
        variable = await store.get_variable(SESSION, "counter")
        # Writes after the last printed line may or may not have committed; none may be lost.
        assert variable.version >= acknowledged + 1
        assert variable.value == variable.version - 1
        history = await store.variable_history(SESSION, VARIABLE_ID, limit=0)
        assert [h.version for h in history] == list(range(variable.version, 0, -1))
        for entry in history[:-1]:
            n = entry.version - 1
            assert (entry.value, entry.source, entry.reason) == (n, "child", f"write {n}")
            assert entry.update_time == float(n)
        # The store keeps working on the recovered file.
        write = VariableWrite(VARIABLE_ID, -1, "parent", "after", variable.version)
        [after] = await store.write_variables(SESSION, [write], now=0.0)
        assert after.version == variable.version + 1
    finally:
        await store.close()


def test_database_uses_wal_and_is_intact_after_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    _run_child_until(path, 20)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()


async def test_reopening_keeps_the_schema_and_refuses_a_newer_one(tmp_path: Path) -> None:
    path = tmp_path / "schema.db"
    await (await SqliteStore.open(path)).close()
    await (await SqliteStore.open(path)).close()  # schema creation is idempotent
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
        conn.execute("UPDATE schema_version SET version = 99")
    conn.close()
    with pytest.raises(RuntimeError, match="newer"):
        await SqliteStore.open(path)


async def test_a_version_2_database_gains_session_owners(tmp_path: Path) -> None:
    """Sessions made before ownership existed have no owner ("": shared) once upgraded."""
    path = tmp_path / "v2.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(
            """
            CREATE TABLE schema_version (version INTEGER NOT NULL);
            INSERT INTO schema_version VALUES (2);
            CREATE TABLE sessions (
                session_id TEXT PRIMARY KEY, metadata TEXT NOT NULL, ttl_seconds INTEGER NOT NULL,
                create_time REAL NOT NULL, expire_time REAL, lm TEXT
            );
            INSERT INTO sessions VALUES ('old', '{}', 0, 1.0, NULL, NULL);
            """
        )
    conn.close()
    store = await SqliteStore.open(path)
    try:
        assert (await store.get_session("old")).owner == ""
        shared = await store.list_sessions(offset=0, limit=0, visible_to="ana")
        assert [s.session_id for s in shared] == ["old"]
    finally:
        await store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    conn.close()
