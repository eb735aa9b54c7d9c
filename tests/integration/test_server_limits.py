"""GetServerInfo reports the limits the server enforces, from its settings, through a real
channel and both Python clients; the LM allow-lists only as counts, never their entries."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client import AsyncBridgeClient, BridgeClient, ServerLimits
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc

INTERNAL_GATEWAY = "https://llm-gw.internal.example:8443/v1"
KEY_PATTERN = "ACME_SECRET_*"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {
        "max_sessions": 77,
        "max_concurrent_rpcs": 40,
        "max_session_bytes": 5 << 20,
        "max_sessions_per_caller": 9,
        "session_ttl_seconds": 600,
        "max_session_ttl_seconds": 7200,
        "history_limit": 12,
        "max_metadata_entries": 8,
        "max_dataset_examples": 500,
        "max_running_jobs": 5,
        "max_queued_jobs_per_caller": 4,
        "max_job_seconds": 90.5,
        "max_job_metric_calls": 2_000,
        "host_max_connections": 3,
        "host_tool_timeout_ms": 4_000,
        "lm_allowed_api_bases": f"{INTERNAL_GATEWAY},http://127.0.0.1:9/x",
        "lm_allowed_key_envs": KEY_PATTERN,
    }


def _check(limits: ServerLimits) -> None:
    assert (limits.max_sessions, limits.max_concurrent_rpcs) == (77, 40)
    assert (limits.max_session_bytes, limits.max_sessions_per_caller) == (5 << 20, 9)
    assert (limits.default_session_ttl_seconds, limits.max_session_ttl_seconds) == (600, 7200)
    assert limits.max_history_versions == 12
    assert limits.requests.max_metadata_entries == 8
    assert limits.requests.max_dataset_examples == 500
    jobs = limits.jobs
    assert (jobs.max_running_jobs, jobs.max_queued_jobs_per_caller) == (5, 4)
    assert jobs.max_running_jobs_per_caller == 3  # unset: half of max_running_jobs, rounded up
    assert jobs.max_job_duration == timedelta(seconds=90.5)
    assert jobs.max_metric_calls == 2_000
    assert limits.host_calls.max_connections_per_session == 3
    assert limits.host_calls.default_tool_timeout_ms == 4_000
    assert limits.lm_allow_lists.api_base_count == 2
    assert limits.lm_allow_lists.key_env_pattern_count == 1


async def test_both_clients_report_the_limits_the_server_was_started_with(
    server: RunningServer,
) -> None:
    async with AsyncBridgeClient(server.target) as client:
        _check((await client.server_info()).limits)

    def sync_info() -> ServerLimits:
        with BridgeClient(server.target) as client:
            return client.server_info().limits

    _check(await asyncio.to_thread(sync_info))


async def test_the_allow_list_entries_are_never_sent(stub: pb_grpc.BridgeServiceStub) -> None:
    info = await stub.GetServerInfo(pb.GetServerInfoRequest())
    wire = info.SerializeToString()
    for secret in (INTERNAL_GATEWAY, "llm-gw.internal", "127.0.0.1:9", KEY_PATTERN, "ACME"):
        assert secret.encode() not in wire


@pytest.mark.parametrize("settings_overrides", [{"max_job_seconds": 0}])
async def test_no_job_time_limit_is_an_unset_duration(server: RunningServer) -> None:
    async with AsyncBridgeClient(server.target) as client:
        assert (await client.server_info()).limits.jobs.max_job_duration is None
