"""The limits a sidecar enforces, as `server_info().limits` reports them (``ServerLimits``).

A count or size of 0 means unlimited where its field says so. Plan against them (dataset and
batch sizes, TTLs, jobs in flight) instead of meeting them as `ResourceExhaustedError` or
`InvalidArgumentError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb

__all__ = ["HostCallLimits", "JobLimits", "LMAllowLists", "RequestLimits", "ServerLimits"]


@dataclass(frozen=True, slots=True)
class RequestLimits:
    """Limits on the fields of a request."""

    max_metadata_entries: int
    """Most entries of one metadata map."""
    max_metadata_key_chars: int
    """Longest metadata key."""
    max_metadata_value_chars: int
    """Longest metadata value."""
    max_description_chars: int
    """Longest variable or signature field description."""
    max_reason_chars: int
    """Longest ``reason`` of a variable write."""
    max_instructions_chars: int
    """Longest signature text or instructions."""
    max_config_bytes: int
    """Largest config or options (module config, optimizer config, metric options), serialized."""
    max_dataset_examples: int
    """Most examples in a dataset, trainset or valset."""


@dataclass(frozen=True, slots=True)
class JobLimits:
    """Limits on optimization, evaluation and search jobs."""

    max_running_jobs: int
    """Jobs running at once on the server; more wait QUEUED."""
    max_running_jobs_per_caller: int
    """Job slots one named caller may hold at once; its further jobs wait QUEUED."""
    max_queued_jobs_per_caller: int
    """Jobs one caller may have QUEUED or RUNNING; past it `start_optimization` raises
    `ResourceExhaustedError` (``JOB_QUOTA_EXCEEDED``)."""
    max_job_duration: timedelta | None
    """Wall-clock limit of one job (past it the job fails ``JOB_TIMEOUT``); None: no limit."""
    max_metric_calls: int
    """Largest metric-call budget one optimization may ask for."""


@dataclass(frozen=True, slots=True)
class HostCallLimits:
    """Limits on host callbacks (`serve`)."""

    max_connections_per_session: int
    """Most `serve` connections open at once for one session."""
    max_names: int
    """Most tools + metrics + LMs one `serve` may offer."""
    max_schema_bytes: int
    """Largest JSON Schema of one tool."""
    max_calls_in_flight: int
    """Most calls waiting for answers on one connection."""
    max_result_bytes: int
    """Largest answer to one call."""
    default_tool_timeout_ms: int
    """Deadline of a tool call when `serve(timeouts_ms=)` sets none."""
    default_tool_max_concurrency: int
    """Calls of one tool in flight per connection when `serve(max_concurrency=)` sets none."""
    metric_timeout_ms: int
    """Deadline of one metric call."""
    lm_timeout_ms: int
    """Deadline of one LM call."""


@dataclass(frozen=True, slots=True)
class LMAllowLists:
    """How much the operator's LM allow-lists admit: counts, never the entries."""

    api_base_count: int
    """Entries of the ``api_base`` allow-list; 0: `configure_lm(api_base=)` may only name the
    server's own default endpoint (or none)."""
    key_env_pattern_count: int
    """Patterns of the ``api_key_env`` allow-list; 0: `configure_lm(api_key_env=)` may only name
    the server's own default key variable (or none)."""


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Limits the server enforces."""

    max_sessions: int
    """Most sessions at once; 0 = unlimited."""
    max_variables_per_session: int
    """Most variables in one session; 0 = unlimited."""
    max_value_bytes: int
    """Largest serialized variable value in bytes; 0 = unlimited."""
    max_message_bytes: int
    """Largest gRPC message in bytes."""
    max_concurrent_rpcs: int
    """Most RPCs served at once; 0 = unlimited."""
    max_session_bytes: int
    """Per-session byte budget (variables with their history, module versions, job records);
    past it writes raise `ResourceExhaustedError` (``SESSION_BUDGET_EXCEEDED``). 0 = unlimited."""
    max_sessions_per_caller: int
    """Most live sessions one named caller may own; 0 = unlimited."""
    default_session_ttl_seconds: int
    """Idle time after which a session expires when `create_session` gives none; 0 = never."""
    max_session_ttl_seconds: int
    """Longest ``ttl_seconds`` `create_session` accepts."""
    max_history_versions: int
    """Versions kept per variable in history; 0 = all."""
    requests: RequestLimits
    """Limits on the fields of a request."""
    jobs: JobLimits
    """Limits on optimization, evaluation and search jobs."""
    host_calls: HostCallLimits
    """Limits on host callbacks."""
    lm_allow_lists: LMAllowLists
    """How much the LM allow-lists admit."""

    @classmethod
    def _from_proto(cls, m: pb.ServerLimits) -> ServerLimits:
        r, j, h = m.requests, m.jobs, m.host_calls
        duration = j.max_job_duration.ToTimedelta() if j.HasField("max_job_duration") else None
        return cls(
            max_sessions=m.max_sessions,
            max_variables_per_session=m.max_variables_per_session,
            max_value_bytes=m.max_value_bytes,
            max_message_bytes=m.max_message_bytes,
            max_concurrent_rpcs=m.max_concurrent_rpcs,
            max_session_bytes=m.max_session_bytes,
            max_sessions_per_caller=m.max_sessions_per_caller,
            default_session_ttl_seconds=m.default_session_ttl_seconds,
            max_session_ttl_seconds=m.max_session_ttl_seconds,
            max_history_versions=m.max_history_versions,
            requests=RequestLimits(
                max_metadata_entries=r.max_metadata_entries,
                max_metadata_key_chars=r.max_metadata_key_chars,
                max_metadata_value_chars=r.max_metadata_value_chars,
                max_description_chars=r.max_description_chars,
                max_reason_chars=r.max_reason_chars,
                max_instructions_chars=r.max_instructions_chars,
                max_config_bytes=r.max_config_bytes,
                max_dataset_examples=r.max_dataset_examples,
            ),
            jobs=JobLimits(
                max_running_jobs=j.max_running_jobs,
                max_running_jobs_per_caller=j.max_running_jobs_per_caller,
                max_queued_jobs_per_caller=j.max_queued_jobs_per_caller,
                max_job_duration=duration,
                max_metric_calls=j.max_metric_calls,
            ),
            host_calls=HostCallLimits(
                max_connections_per_session=h.max_connections_per_session,
                max_names=h.max_names,
                max_schema_bytes=h.max_schema_bytes,
                max_calls_in_flight=h.max_calls_in_flight,
                max_result_bytes=h.max_result_bytes,
                default_tool_timeout_ms=h.default_tool_timeout_ms,
                default_tool_max_concurrency=h.default_tool_max_concurrency,
                metric_timeout_ms=h.metric_timeout_ms,
                lm_timeout_ms=h.lm_timeout_ms,
            ),
            lm_allow_lists=LMAllowLists(
                api_base_count=m.lm_allow_lists.api_base_count,
                key_env_pattern_count=m.lm_allow_lists.key_env_pattern_count,
            ),
        )
