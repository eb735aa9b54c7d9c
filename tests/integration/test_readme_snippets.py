"""Every Python snippet of the READMEs runs, as written, against a real sidecar (its address put
where the snippet says 127.0.0.1:50051). The install commands are run by test_install.py, the
Node README's examples by the Node client's own suite (clients/node/test/readme.test.ts)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.process import ServerProcess, server_process

ROOT = Path(__file__).parents[2]
READMES = ("README.md", "clients/python/README.md")
_BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def snippets() -> list[tuple[str, int, str]]:
    found = []
    for readme in READMES:
        for number, match in enumerate(_BLOCK.finditer((ROOT / readme).read_text()), start=1):
            found.append((readme, number, match.group(1)))
    return found


@pytest.fixture(scope="module")
def sidecar() -> Iterator[ServerProcess]:
    with server_process("--workers", "0") as server:
        yield server


@pytest.mark.parametrize(("readme", "number", "code"), snippets(), ids=lambda v: str(v)[:30])
def test_the_snippet_runs(sidecar: ServerProcess, readme: str, number: int, code: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", code.replace("127.0.0.1:50051", sidecar.target)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"{readme} python block {number}:\n{done.stderr}"


def test_each_readme_has_python_snippets() -> None:
    assert {readme for readme, _, _ in snippets()} == set(READMES)
