"""The install paths work from a clean checkout, where the generated protobuf code (git-ignored)
does not exist: `pip install ./clients/python` builds it at package build time, `pip install .`
installs the sidecar with the client built from its folder (`uv pip install .` through the
workspace), the client's sdist carries the contract, a release build names no local path, and
`npm install <checkout>/clients/node` from an unrelated project gives a compiled Node client.
Runs with uv's and npm's caches and this project's installed dependencies; needs PyPI and npm
reachable the first time."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import dspy_bridge
from tests.process import server_process

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
        ["pip", "install", "."],
        ["npm", "install", "/path/to/dspy-bridge/clients/node"],
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
    client_line, _, _ = readme_install_commands()
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

    # uv resolves the sidecar's client through the workspace ([tool.uv.sources]).
    server = _venv(tmp_path / "server")
    _run(UV, "pip", "install", "-q", "--python", server, ".", cwd=repo)
    _run(server, "-c", "import dspy_bridge.transport.server", cwd=tmp_path)


def _pip_venv_sharing_installed_dependencies(path: Path) -> Path:
    """`python -m venv` (with pip) whose path also holds this project's installed third-party
    packages (the versions uv.lock pins, which are the ones pyproject.toml names), minus
    dspy-bridge and its client: pip resolves every dependency as usual but finds them installed,
    so the test builds and installs only the two packages under test instead of downloading
    ~1 GB. The shared packages sit in a folder of symlinks named by a `.pth` file."""
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    (site,) = path.glob("lib/python3*/site-packages")
    (installed,) = (ROOT / ".venv").glob("lib/python3*/site-packages")
    shared = path / "shared-dependencies"
    shared.mkdir()
    for entry in installed.iterdir():
        if not entry.name.startswith(_NOT_SHARED) and entry.suffix != ".pth":
            (shared / entry.name).symlink_to(entry)
    (site / "shared-dependencies.pth").write_text(f"{shared}\n")
    return path / "bin" / "python"


# This project's own packages (and their editable hooks) are what the test installs.
_NOT_SHARED = ("dspy_bridge", "_editable_impl_dspy_bridge", "__editable__", "pip", "_distutils")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_pip_install_of_a_clean_checkout_installs_the_sidecar_and_its_client(
    tmp_path: Path,
) -> None:
    repo = _clean_checkout(tmp_path / "repo")
    _, server_line, _ = readme_install_commands()
    python = _pip_venv_sharing_installed_dependencies(tmp_path / "x")
    assert server_line[:2] == ["pip", "install"]
    _run(python, "-m", "pip", "install", "-q", *server_line[2:], cwd=repo)

    usage = _run(tmp_path / "x/bin/dspy-bridge", "--help", cwd=tmp_path)
    assert "serve" in usage
    where = _run(
        python,
        "-c",
        "import dspy_bridge.transport.server, dspy_bridge_client, "
        "dspy_bridge_client._proto.dspy_bridge.v1.bridge_service_pb2_grpc; "
        "print(dspy_bridge.__file__); print(dspy_bridge_client.__file__)",
        cwd=tmp_path,
    )
    for module_file in where.split():  # both installed into the new environment
        assert Path(module_file).is_relative_to(tmp_path / "x/lib"), module_file


def _wheel_requirements(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = (n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))
        text = archive.read(metadata).decode()
    return [
        line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("Requires-Dist")
    ]


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_release_build_names_the_client_by_name_and_a_checkout_build_by_path(
    tmp_path: Path,
) -> None:
    repo = _clean_checkout(tmp_path / "repo")
    # The standard release build: the sdist, then the wheel from the sdist.
    _run(UV, "build", "-q", "-o", tmp_path / "release", ".", cwd=repo)
    (released,) = (tmp_path / "release").glob("dspy_bridge-*.whl")
    requirements = _wheel_requirements(released)
    assert "dspy-bridge-client" in requirements
    assert not [r for r in requirements if "file:" in r or str(tmp_path) in r]

    # Built straight from the checkout (what `pip install .` does): the client by its folder.
    _run(UV, "build", "-q", "--wheel", "-o", tmp_path / "local", ".", cwd=repo)
    (local,) = (tmp_path / "local").glob("dspy_bridge-*.whl")
    client = (repo / "clients/python").resolve().as_uri()
    assert [r for r in _wheel_requirements(local) if r.startswith("dspy-bridge-client")] == [
        f"dspy-bridge-client @ {client}"
    ]


_NODE_CALL = """
const { BridgeClient } = require("@dspy-bridge/client");
const client = new BridgeClient(process.argv[1], { timeoutMs: 60000 });
client.serverInfo().then(
  (info) => { console.log(info.bridgeVersion); client.close(); },
  (err) => { console.error(err); process.exit(1); },
);
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("npm_flags", [[], ["--omit=dev"]], ids=["plain", "omit-dev"])
def test_node_package_installs_into_an_unrelated_project(
    tmp_path: Path, npm_flags: list[str]
) -> None:
    """The README's command, run in a project outside the checkout, without `--install-links`:
    npm links the folder and its `prepare` installs the dependencies there and compiles it. With
    `--omit=dev` (or NODE_ENV=production) too, which the build's own install must not inherit.
    The installed client then talks to a real sidecar."""
    repo = _clean_checkout(tmp_path / "repo")
    (_, _, command) = readme_install_commands()
    assert command[:2] == ["npm", "install"]
    package = repo / Path(command[2]).relative_to("/path/to/dspy-bridge")
    app = tmp_path / "app"
    app.mkdir()
    (app / "package.json").write_text('{"name": "app", "version": "1.0.0", "private": true}\n')
    quiet = ["--no-audit", "--no-fund", "--loglevel=error"]
    _run("npm", "install", *quiet, *npm_flags, package, cwd=app)

    with server_process() as server:
        version = _run("node", "-e", _NODE_CALL, server.target, cwd=app)
    assert version.strip() == dspy_bridge.__version__
