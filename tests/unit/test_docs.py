"""The README must match the code: every setting and every RPC is documented."""

from __future__ import annotations

from pathlib import Path

from dspy_bridge.config import Settings
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb

README = (Path(__file__).parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_configuration_table() -> None:
    for name in Settings.model_fields:
        flag, env = f"`--{name.replace('_', '-')}`", f"`DSPY_BRIDGE_{name.upper()}`"
        assert f"| {flag} | {env} |" in README, f"README lacks a row for {name}"


def test_every_rpc_is_in_the_api_table() -> None:
    for method in pb.DESCRIPTOR.services_by_name["BridgeService"].methods:
        assert f"`{method.name}`" in README, f"README does not mention {method.name}"
