"""Generates the Python code for `proto/dspy_bridge/v1` into the client package.

Used by `make proto`, the Dockerfile and the client's build hook (`clients/python/hatch_build.py`,
which runs it when a wheel is built from a clean checkout or an sdist). protoc writes absolute imports rooted at `proto/`
(`from dspy_bridge.v1 import ...`); they are re-rooted under `dspy_bridge_client._proto` so the
generated code lives inside the client distribution, which both the client and server import.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from grpc_tools import protoc

ROOT = Path(__file__).resolve().parent
OUT = ROOT.parent / "clients/python/src/dspy_bridge_client/_proto"
_IMPORT = re.compile(r"^(from|import) dspy_bridge\.v1", re.MULTILINE)


def main(with_stubs: bool = True, out: Path = OUT) -> None:
    """Writes the generated package to `out` (replacing what is there)."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sources = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "dspy_bridge/v1").glob("*.proto"))
    well_known = Path(protoc.__file__).parent / "_proto"  # google/protobuf/*.proto
    args = [f"-I{ROOT}", f"-I{well_known}", f"--python_out={out}", f"--grpc_python_out={out}"]
    if with_stubs:  # typed stubs need mypy-protobuf (a dev dependency)
        args += [f"--mypy_out={out}", f"--mypy_grpc_out={out}"]
    if protoc.main(["protoc", *args, *sources]) != 0:
        sys.exit("protoc failed")
    for path in out.rglob("*.py*"):
        text = path.read_text()
        path.write_text(_IMPORT.sub(r"\1 dspy_bridge_client._proto.dspy_bridge.v1", text))
    for package in (out, out / "dspy_bridge", out / "dspy_bridge/v1"):
        (package / "__init__.py").touch()


if __name__ == "__main__":
    main(with_stubs="--no-stubs" not in sys.argv)
