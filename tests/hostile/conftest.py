"""The real sidecar process the hostile-host tests attack, one per test module."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from tests.process import ServerProcess, server_process


@dataclass
class Sidecar:
    process: ServerProcess
    channel: grpc.Channel
    stub: pb_grpc.BridgeServiceStub


@pytest.fixture(scope="module")
def sidecar() -> Iterator[Sidecar]:
    # A small session budget and value limit keep what generated requests may store small.
    with server_process(
        "--workers",
        "0",
        "--max-session-bytes",
        str(8 << 20),
        "--max-running-jobs",
        "1",
        "--max-job-seconds",
        "20",
    ) as process:
        channel = grpc.insecure_channel(process.target)
        try:
            yield Sidecar(process, channel, pb_grpc.BridgeServiceStub(channel))
        finally:
            channel.close()
