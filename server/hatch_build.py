"""Build hook of the sidecar's wheel: makes `pip install .` work from a clean clone.

The sidecar depends on `dspy-bridge-client` (the generated protobuf code lives there), which is
not on PyPI. When the wheel is built straight from a checkout, where the client's source sits in
`clients/python`, this hook turns that requirement into a direct reference to the folder, so pip
builds and installs the client from it. pip reads a wheel's dependencies from the wheel it built
(hatchling gives pip no separate metadata step), so the reference reaches its resolver; uv reads
the static `dependencies` and finds the client through `[tool.uv.sources]` instead.

An sdist (marked by its `PKG-INFO`) and a wheel built from one keep the plain requirement, so a
release built the standard way (`uv build`, `python -m build`: the sdist, then the wheel from it)
never names a local path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

CLIENT_REQUIREMENT = "dspy-bridge-client"
CLIENT_SOURCE = Path("clients/python")


class ClientFromCheckoutHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        client = root / CLIENT_SOURCE
        if (root / "PKG-INFO").is_file() or not (client / "pyproject.toml").is_file():
            return
        # Replaced in place rather than added next to the plain requirement: pip's resolver
        # rejects the plain one (no such package on the index) before it sees the direct one.
        # `core.dependencies` is the list hatchling writes to METADATA (hatchling is pinned ==).
        requirements: list[str] = self.metadata.core.dependencies
        if CLIENT_REQUIREMENT not in requirements:
            raise RuntimeError(
                f"dspy-bridge: {CLIENT_REQUIREMENT!r} is not among the project's dependencies"
            )
        index = requirements.index(CLIENT_REQUIREMENT)
        requirements[index] = f"{CLIENT_REQUIREMENT} @ {client.resolve().as_uri()}"
