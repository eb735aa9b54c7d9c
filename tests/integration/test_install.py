"""The install paths work from a clean checkout, where the generated protobuf code (git-ignored)
does not exist: `pip install ./clients/python` and `pip install ./clients/python .` build it at
package build time, the client's sdist carries the contract, and `npm install ./clients/node`
compiles the Node client. Runs with uv's and npm's caches; needs PyPI and npm reachable the
first time."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[2]
UV = ROOT / ".venv" / "bin" / "uv"


def readme_install_commands() -> list[list[str]]:
    """The commands of the README's "Installing the packages elsewhere" block (comments off)."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Installing the packages elsewhere") :]
    start = section.index("```bash\n") + len("```bash\n")
    block = section[start : section.index("\n```", start)]
    return [line.split("#")[0].split() for line in block.splitlines() if line.strip()]


def test_the_readme_install_commands_are_the_ones_tested() -> None:
    assert readme_install_commands() == [
        ["pip", "install", "./clients/python"],
        ["pip", "install", "./clients/python", "."],
        ["npm", "install", "./clients/node"],
    ]


def _pip(venv_python: Path, command: list[str]) -> list[str | Path]:
    """A README `pip install ...` line run by uv's pip (same resolution, warm cache)."""
    assert command[:2] == ["pip", "install"]
    return [UV, "pip", "install", "-q", "--python", venv_python, *command[2:]]


def _clean_checkout(into: Path) -> Path:
    """The tracked files of this working tree (what a clone holds), nothing generated."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    assert not (into / "clients/python/src/dspy_bridge_client/_proto").exists()
    return into


def _run(*command: str | Path, cwd: Path) -> str:
    done = subprocess.run(
        [str(c) for c in command], cwd=cwd, capture_output=True, text=True, timeout=500
    )
    assert done.returncode == 0, f"{command}: {done.stdout}\n{done.stderr}"
    return done.stdout


def _venv(path: Path) -> Path:
    env = {
        k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_PROJECT_ENVIRONMENT")
    }
    subprocess.run([str(UV), "venv", "-q", str(path)], check=True, env=env)
    return path / "bin" / "python"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_python_packages_install_from_a_clean_checkout(tmp_path: Path) -> None:
    repo = _clean_checkout(tmp_path / "repo")
    client_line, server_line, _ = readme_install_commands()
    client_only = _venv(tmp_path / "client")
    _run(*_pip(client_only, client_line), cwd=repo)
    imported = _run(
        client_only,
        "-c",
        "from dspy_bridge_client import BridgeClient; "
        "from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc; "
        "print(BridgeClient.__name__)",
        cwd=tmp_path,
    )
    assert imported.strip() == "BridgeClient"

    # The sdist carries the contract: a wheel builds from it alone.
    _run(UV, "build", "-q", "--sdist", "-o", tmp_path / "dist", "./clients/python", cwd=repo)
    (sdist,) = (tmp_path / "dist").glob("dspy_bridge_client-*.tar.gz")
    from_sdist = _venv(tmp_path / "sdist")
    _run(UV, "pip", "install", "-q", "--python", from_sdist, sdist, cwd=tmp_path)
    _run(from_sdist, "-c", "import dspy_bridge_client._proto.dspy_bridge.v1.job_pb2", cwd=tmp_path)

    server = _venv(tmp_path / "server")
    _run(*_pip(server, server_line), cwd=repo)
    version = _run(tmp_path / "server/bin/dspy-bridge", "--version", cwd=tmp_path)
    assert version.startswith("dspy-bridge ")
    _run(server, "-c", "import dspy_bridge.transport.server", cwd=tmp_path)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_node_package_installs_from_a_clean_checkout(tmp_path: Path) -> None:
    repo = _clean_checkout(tmp_path / "repo")
    _run(
        "npm", "install", "--no-audit", "--no-fund", "--loglevel=error", "./clients/node", cwd=repo
    )
    exported = _run(
        "node",
        "-e",
        "const c = require('@dspy-bridge/client'); console.log(typeof c.BridgeClient)",
        cwd=repo,
    )
    assert exported.strip() == "function"
