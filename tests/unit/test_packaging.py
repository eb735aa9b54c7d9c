"""Docker files are checked without a Docker engine: they parse and point at real things."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).parents[2]


def test_dockerfile_copies_existing_paths_and_runs_as_non_root() -> None:
    text = (ROOT / "Dockerfile").read_text()
    for source in re.findall(r"^COPY (?!--from)(.+?) \S+$", text, re.MULTILINE):
        for path in source.split():
            assert (ROOT / path).exists(), f"Dockerfile copies missing {path}"
    assert re.search(r"^USER (?!root)\w+", text, re.MULTILINE)
    assert 'CMD ["dspy-bridge", "health"' in text
    assert "uv sync --locked" in text


def test_compose_builds_the_sidecar_with_a_volume() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    service = compose["services"]["dspy-bridge"]
    assert service["build"] == "."
    assert "50051:50051" in service["ports"]
    assert any(v.endswith(":/data") for v in service["volumes"])
