"""Build hook: generates the protobuf and gRPC code (`dspy_bridge_client._proto`) from the
contract's `.proto` files when a wheel is built, so `pip install ./clients/python` from a clean
clone (where the generated code, being git-ignored, does not exist) installs a working package.

The `.proto` files and their generator are found in `proto/` next to this file (an sdist, which
carries a copy) or two levels up (the repository). A checkout that already holds generated code
(`make install`, with typed stubs) is left as it is.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

_GENERATED = Path("src/dspy_bridge_client/_proto")


class ProtoBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        out = root / _GENERATED
        if self.target_name != "wheel" or (out / "dspy_bridge/v1/bridge_service_pb2.py").exists():
            return
        generator = _proto_dir(root) / "generate.py"
        spec = importlib.util.spec_from_file_location("dspy_bridge_proto_generate", generator)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.main(with_stubs=False, out=out)


def _proto_dir(root: Path) -> Path:
    for candidate in (root / "proto", root.parent.parent / "proto"):
        if (candidate / "dspy_bridge/v1/bridge_service.proto").is_file():
            return candidate
    raise RuntimeError(
        "dspy-bridge-client: the contract's .proto files are not found (expected proto/ in the "
        "sdist or ../../proto in the repository); build from a full checkout"
    )
