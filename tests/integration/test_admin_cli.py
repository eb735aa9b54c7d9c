"""The admin commands (`dspy-bridge sessions|variables|modules|jobs|info`) against a real
sidecar that requires a token: tables for people, `--json` for scripts, one error line and exit
1 for a failed call."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from dspy_bridge_client import BridgeClient, JobStatus
from tests.jobs.task import HELD_OUT, SIGNATURE, TRAINSET
from tests.process import ServerProcess, server_process

TOKEN = "admin-t0ken"


@pytest.fixture(scope="module")
def sidecar() -> Iterator[ServerProcess]:
    with server_process("--workers", "0", env={"DSPY_BRIDGE_AUTH_TOKEN": TOKEN}) as server:
        yield server


@pytest.fixture(scope="module")
def client(sidecar: ServerProcess) -> Iterator[BridgeClient]:
    with BridgeClient(sidecar.target, metadata={"authorization": f"Bearer {TOKEN}"}) as c:
        yield c


def _command(sidecar: ServerProcess, *args: str) -> list[str]:
    return [sys.executable, "-m", "dspy_bridge", *args, "--target", sidecar.target]


def cli(sidecar: ServerProcess, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DSPY_BRIDGE_TOKEN": token}
    return subprocess.run(
        _command(sidecar, *args), capture_output=True, text=True, env=env, timeout=120
    )


def cli_json(sidecar: ServerProcess, *args: str) -> Any:
    done = cli(sidecar, *args, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_sessions_variables_and_modules(sidecar: ServerProcess, client: BridgeClient) -> None:
    session = client.create_session(session_id="admin-demo")
    session.register_variable("temp", "float", 0.5, min=0, max=2)
    session.create_module("Predict", SIGNATURE, module_id="clf")

    info = cli_json(sidecar, "info")
    assert info["store_backend"] == "memory"
    assert info["limits"]["jobs"]["max_running_jobs"] == 2  # the default
    assert info["limits"]["jobs"]["max_job_duration"] == "3600s"
    assert info["limits"]["lm_allow_lists"] == {"api_base_count": 0, "key_env_pattern_count": 1}
    shown = cli(sidecar, "info").stdout.splitlines()  # nested records as dotted keys
    assert any(line.split() == ["limits.jobs.max_running_jobs", "2"] for line in shown)
    listed = cli(sidecar, "sessions", "list")
    assert listed.returncode == 0
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:2] == ["SESSION_ID", "CREATE_TIME"]
    assert any(row.startswith("admin-demo ") for row in rows)
    assert [s["session_id"] for s in cli_json(sidecar, "sessions", "list")] == ["admin-demo"]
    shown = cli_json(sidecar, "sessions", "show", "admin-demo")
    assert shown["variable_count"] == 1 and shown["module_count"] == 1

    written = cli_json(sidecar, "variables", "set", "admin-demo", "temp", "0.9", "--reason", "ops")
    assert written["value"] == 0.9 and written["version"] == 2
    assert session.get_variable("temp").value == 0.9  # really written
    assert cli_json(sidecar, "variables", "get", "admin-demo", "temp")["version"] == 2
    history = cli_json(sidecar, "variables", "history", "admin-demo", "temp")
    assert [(h["version"], h["reason"]) for h in history] == [(2, "ops"), (1, "")]
    assert [v["name"] for v in cli_json(sidecar, "variables", "list", "admin-demo")] == ["temp"]
    refused = cli(sidecar, "variables", "set", "admin-demo", "temp", "7")
    assert refused.returncode == 1
    assert refused.stderr.startswith("dspy-bridge: INVALID_ARGUMENT")
    assert session.get_variable("temp").version == 2  # nothing changed

    modules = cli(sidecar, "modules", "list", "admin-demo")
    assert "clf" in modules.stdout and SIGNATURE in modules.stdout
    assert cli_json(sidecar, "modules", "show", "admin-demo", "clf")["version"] == 1
    state = json.loads(cli(sidecar, "modules", "export", "admin-demo", "clf").stdout)
    assert "demos" in state


def test_a_variable_watch_prints_each_change(sidecar: ServerProcess, client: BridgeClient) -> None:
    session = client.create_session(session_id="admin-watch")
    session.register_variable("n", "integer", 1)
    env = {**os.environ, "DSPY_BRIDGE_TOKEN": TOKEN}
    command = _command(sidecar, "variables", "watch", "admin-watch", "n", "--json")
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as watch:
        assert watch.stdout is not None
        try:
            initial = json.loads(watch.stdout.readline())
            assert initial["event"] == "VariableChange" and initial["variable"]["value"] == 1
            session.update_variable("n", 2)
            change = json.loads(watch.stdout.readline())
            assert change["kind"] == "updated" and change["variable"]["value"] == 2
        finally:
            watch.terminate()


def test_jobs_list_show_watch_and_cancel(sidecar: ServerProcess, client: BridgeClient) -> None:
    session = client.create_session(session_id="admin-jobs")
    session.configure_lm("offline")
    session.create_module("Predict", SIGNATURE, module_id="clf")
    quick = session.start_optimization("clf", "LabeledFewShot", TRAINSET, "exact_match")
    assert session.wait_optimization(quick.job_id, max_wait=120).status is JobStatus.SUCCEEDED
    jobs = cli_json(sidecar, "jobs", "list", "admin-jobs")
    assert [j["job_id"] for j in jobs] == [quick.job_id]
    assert cli_json(sidecar, "jobs", "show", "admin-jobs", quick.job_id)["status"] == "SUCCEEDED"
    watched = cli(sidecar, "jobs", "watch", "admin-jobs", quick.job_id)  # ends with the job
    assert watched.returncode == 0 and "status=SUCCEEDED" in watched.stdout.splitlines()[-1]

    session.configure_lm("offline", latency_ms=1000)  # a job that runs long enough to cancel
    slow = session.start_optimization(
        "clf", "BootstrapFewShot", TRAINSET, "exact_match", valset=HELD_OUT
    )
    cancelled = cli_json(sidecar, "jobs", "cancel", "admin-jobs", slow.job_id)
    assert cancelled["status"] == "CANCELLED"
    assert session.get_optimization(slow.job_id).status is JobStatus.CANCELLED


def test_delete_errors_and_a_missing_token(sidecar: ServerProcess, client: BridgeClient) -> None:
    client.create_session(session_id="admin-gone")
    assert cli(sidecar, "sessions", "delete", "admin-gone").returncode == 0
    missing = cli(sidecar, "sessions", "show", "admin-gone")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "dspy-bridge: NOT_FOUND SESSION_NOT_FOUND: session 'admin-gone' does not exist"
    )
    anonymous = cli(sidecar, "sessions", "list", token="")
    assert anonymous.returncode == 1
    assert anonymous.stderr.startswith("dspy-bridge: UNAUTHENTICATED AUTH_REQUIRED")
