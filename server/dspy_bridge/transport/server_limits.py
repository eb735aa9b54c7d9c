"""The limits GetServerInfo reports, read from the settings the server enforces them from.

A host plans against them (batch sizes, dataset sizes, TTLs, how many jobs to queue) instead of
discovering them one RESOURCE_EXHAUSTED at a time. Nothing secret is reported: the LM
allow-lists only as counts, never their entries (an internal gateway's URL is the operator's
business), and no token or key.
"""

from __future__ import annotations

from google.protobuf import duration_pb2

from dspy_bridge.config import Settings
from dspy_bridge.jobs.manager import running_share
from dspy_bridge.runtime.lm.policy import split_list
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb

__all__ = ["server_limits"]


def server_limits(s: Settings) -> pb.ServerLimits:
    """Every limit a host's requests meet on this server."""
    job_duration = None
    if s.max_job_seconds > 0:
        job_duration = duration_pb2.Duration()
        job_duration.FromNanoseconds(round(s.max_job_seconds * 1e9))
    return pb.ServerLimits(
        max_sessions=s.max_sessions,
        max_variables_per_session=s.max_variables_per_session,
        max_value_bytes=s.max_value_bytes,
        max_message_bytes=s.max_message_bytes,
        max_concurrent_rpcs=s.max_concurrent_rpcs,
        max_session_bytes=s.max_session_bytes,
        max_sessions_per_caller=s.max_sessions_per_caller,
        default_session_ttl_seconds=s.session_ttl_seconds,
        max_session_ttl_seconds=s.max_session_ttl_seconds,
        max_history_versions=s.history_limit,
        requests=pb.RequestLimits(
            max_metadata_entries=s.max_metadata_entries,
            max_metadata_key_chars=s.max_metadata_key_chars,
            max_metadata_value_chars=s.max_metadata_value_chars,
            max_description_chars=s.max_description_chars,
            max_reason_chars=s.max_reason_chars,
            max_instructions_chars=s.max_instructions_chars,
            max_config_bytes=s.max_config_bytes,
            max_dataset_examples=s.max_dataset_examples,
        ),
        jobs=pb.JobLimits(
            max_running_jobs=s.max_running_jobs,
            max_running_jobs_per_caller=running_share(
                s.max_running_jobs, s.max_running_jobs_per_caller
            ),
            max_queued_jobs_per_caller=s.max_queued_jobs_per_caller,
            max_job_duration=job_duration,
            max_metric_calls=s.max_job_metric_calls,
        ),
        host_calls=pb.HostCallLimits(
            max_connections_per_session=s.host_max_connections,
            max_names=s.host_max_names,
            max_schema_bytes=s.host_max_schema_bytes,
            max_calls_in_flight=s.host_max_calls_in_flight,
            max_result_bytes=s.host_max_result_bytes,
            default_tool_timeout_ms=s.host_tool_timeout_ms,
            default_tool_max_concurrency=s.host_tool_max_concurrency,
            metric_timeout_ms=s.host_metric_timeout_ms,
            lm_timeout_ms=s.host_lm_timeout_ms,
        ),
        lm_allow_lists=pb.LMAllowLists(
            api_base_count=len(split_list(s.lm_allowed_api_bases)),
            key_env_pattern_count=len(split_list(s.lm_allowed_key_envs)),
        ),
    )
