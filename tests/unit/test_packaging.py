"""Docker files are checked without a Docker engine: they parse and point at real things."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).parents[2]


def test_dockerfile_copies_existing_paths_and_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies missing {path}"
    assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE)
    assert 'CMD ["dspy-bridge", "health"]' in text  # probes the configured port, not a fixed one
    assert "uv sync --locked" in text


def _compose() -> dict[str, Any]:
    compose: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return compose


def test_compose_runs_the_sidecar_on_a_durable_redis() -> None:
    compose = _compose()
    services = compose["services"]
    redis = services["redis"]
    command = redis["command"]
    # AOF on, fsynced before every answer: nothing acknowledged is lost on a Redis restart.
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--appendfsync") + 1] == "always"
    volume = next(v for v in redis["volumes"] if v.endswith(":/data"))
    assert volume.split(":")[0] in compose["volumes"]
    assert "redis-cli" in redis["healthcheck"]["test"]
    sidecar = services["dspy-bridge"]
    assert sidecar["build"] == "."
    assert "127.0.0.1:50051:50051" in sidecar["ports"]  # this machine only, by default
    assert sidecar["environment"]["DSPY_BRIDGE_STORE"] == "redis://redis:6379/0"
    assert sidecar["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "profiles" not in sidecar and "profiles" not in redis  # the default `up`


def test_compose_replicas_profile_runs_two_sidecars_on_the_same_redis() -> None:
    services = _compose()["services"]
    replicas = [
        s
        for s in services.values()
        if "replicas" in s.get("profiles", ()) or s is services["dspy-bridge"]
    ]
    assert len(replicas) == 2
    stores = {s["environment"]["DSPY_BRIDGE_STORE"] for s in replicas}
    assert stores == {"redis://redis:6379/0"}
    host_ports = [p.split(":")[1] for s in replicas for p in s["ports"] if p.endswith(":50051")]
    assert len(set(host_ports)) == 2  # each replica reachable on a port of its own


def test_every_published_port_is_bound_to_loopback_by_default() -> None:
    for name, service in _compose()["services"].items():
        for port in service.get("ports", ()):
            assert port.startswith("127.0.0.1:"), (name, port)


def test_the_build_context_leaves_out_local_environments() -> None:
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".venv", ".git", "node_modules"} <= set(ignored)
    text = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert path not in ignored, f"the Dockerfile copies {path}, which .dockerignore drops"
