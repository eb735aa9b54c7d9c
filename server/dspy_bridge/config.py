"""Server settings: defaults, `DSPY_BRIDGE_*` environment variables, then CLI flags (highest)."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dspy_bridge.heap import DEFAULT_YOUNG_THRESHOLD
from dspy_bridge.loop import EventLoopName, loop_factory
from dspy_bridge.runtime.lm.policy import DEFAULT_ALLOWED_KEY_ENVS, LMPolicy, split_list

LogFormat = Literal["auto", "json", "console"]


class Settings(BaseSettings):
    """Everything the sidecar can be told. Each field is also `DSPY_BRIDGE_<NAME>` in the env."""

    model_config = SettingsConfigDict(env_prefix="DSPY_BRIDGE_", extra="ignore")

    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(50051, ge=0, le=65535, description="Port to listen on (0 picks a free one).")
    workers: int = Field(
        default_factory=lambda: os.cpu_count() or 1,
        ge=0,
        description="Worker processes for execution; 0 runs execution in the front process.",
    )
    worker_concurrency: int = Field(
        512, ge=1, description="Executions one worker process runs at once (LM calls awaited)."
    )
    worker_queue_size: int = Field(
        1_024,
        ge=0,
        description="Calls waiting per worker beyond worker_concurrency; past it, calls fail "
        "RESOURCE_EXHAUSTED QUEUE_FULL with a retry_after_ms hint.",
    )
    worker_max_requests: int = Field(
        0, ge=0, description="Recycle a worker after this many executions; 0 = never."
    )
    worker_max_rss_mb: int = Field(
        0, ge=0, description="Recycle a worker whose resident memory exceeds this; 0 = never."
    )
    worker_restart_backoff_seconds: float = Field(
        0.5,
        gt=0,
        description="First delay before restarting a worker that died again; doubles with each "
        "death in a row (the first restart is immediate).",
    )
    worker_restart_backoff_max_seconds: float = Field(
        30.0, gt=0, description="Longest delay between restarts of a crash-looping worker."
    )
    worker_start_timeout_seconds: float = Field(
        60.0, gt=0, description="How long a new worker may take to become ready."
    )
    store: str = Field(
        "memory://",
        description="Session store URL: memory://, sqlite:///path.db, or "
        "redis://[user:password@]host:port/db (rediss:// for TLS) shared by several replicas.",
    )
    lm: str = Field(
        "",
        description="Default LM model (LiteLLM string or `offline`); empty: `offline` unless a "
        "provider key (OPENAI_API_KEY) is set, in which case `openai/gpt-4o-mini`.",
    )
    lm_api_base: str = Field("", description="Base URL for the default LM.")
    lm_api_key_env: str = Field("", description="Env var holding the default LM's API key.")
    log_level: str = Field("info", description="debug, info, warning or error.")
    event_loop: EventLoopName = Field(
        "auto",
        description="Event loop of the server and its workers: uvloop, asyncio, or auto "
        "(uvloop when installed).",
    )
    log_format: LogFormat = Field(
        "auto", description="json, console, or auto (console on a terminal, json otherwise)."
    )
    # -- garbage collection (heap.py) -----------------------------------------------------------
    gc_young_threshold: int = Field(
        DEFAULT_YOUNG_THRESHOLD,
        ge=0,
        description="Allocations between the garbage collector's young collections in the "
        "server and its workers, whose start-up objects are frozen out of every collection; "
        "0 leaves Python's collector as it is.",
    )
    metrics_port: int = Field(
        0, ge=0, le=65535, description="Port of the Prometheus /metrics endpoint; 0 disables it."
    )
    session_ttl_seconds: int = Field(
        3600, ge=0, description="Default session TTL when CreateSession gives none; 0 = never."
    )
    max_sessions: int = Field(10_000, ge=0, description="Most live sessions; 0 = unlimited.")
    max_variables_per_session: int = Field(
        1_000, ge=0, description="Most variables in one session; 0 = unlimited."
    )
    max_value_bytes: int = Field(
        1 << 20, ge=0, description="Largest serialized variable value; 0 = unlimited."
    )
    max_message_bytes: int = Field(
        16 << 20, ge=1024, description="Largest gRPC message, received or sent."
    )
    history_limit: int = Field(
        1_000, ge=0, description="Versions kept per variable in history; 0 = all."
    )
    watch_queue_size: int = Field(
        1_024, ge=1, description="Changes buffered per watcher before it gets a resync instead."
    )
    max_concurrent_rpcs: int = Field(
        0, ge=0, description="Most RPCs served at once; 0 = unlimited."
    )
    expiry_interval_seconds: float = Field(
        1.0, gt=0, description="How often expired sessions are swept."
    )
    max_running_jobs: int = Field(
        2,
        ge=1,
        description="Optimization, evaluation and search jobs running at once (each in its own "
        "process); more wait QUEUED.",
    )
    grace_seconds: float = Field(
        10.0, ge=0, description="On SIGTERM, how long in-flight calls may finish."
    )
    # -- run as a child process (a port program): the parent's death stops the sidecar -------
    exit_on_stdin_close: bool = Field(
        False,
        description="Drain and exit (as on SIGTERM) when stdin reaches end of file: for a "
        "sidecar started as a child whose parent may die without stopping it (an Elixir port "
        "program's stdin closes when the VM dies).",
    )
    auth_token: SecretStr | None = Field(
        None,
        description="One bearer token shared by every caller (`authorization: Bearer <token>` "
        "metadata); its sessions are not owned per caller. Unset: no token (unless "
        "auth_tokens_file gives some). Health and reflection stay open. Set it through the "
        "environment: flags show in `ps`.",
    )

    auth_tokens_file: str = Field(
        "",
        description="File of `principal token` lines, one per caller: each caller needs its "
        "bearer token and sees only the sessions it created. With auth_token too, that one is "
        "the principal `default`.",
    )
    tls_cert_file: str = Field(
        "",
        description="PEM certificate chain the server presents; with tls_key_file set too, the "
        "port serves TLS only. Empty: plaintext.",
    )
    tls_key_file: str = Field("", description="PEM private key of tls_cert_file.")
    tls_client_ca_file: str = Field(
        "",
        description="PEM CA certificates; when set, every client must present a certificate one "
        "of them signed (mutual TLS). Needs tls_cert_file.",
    )

    # -- LM allow-lists: what a host's LMConfig may name (runtime/lm/policy.py) ---------------
    lm_allowed_api_bases: str = Field(
        "",
        description="Comma-separated http(s) endpoints a host's LMConfig.api_base may name (a "
        "URL matches an entry with the same scheme, host and port and a path at or below the "
        "entry's). Empty: only providers' default endpoints (and --lm-api-base).",
    )
    lm_allowed_key_envs: str = Field(
        DEFAULT_ALLOWED_KEY_ENVS,
        description="Comma-separated names of environment variables a host's "
        "LMConfig.api_key_env may name; `*` matches any characters. Empty: none. DSPY_BRIDGE_* "
        "names are always refused.",
    )

    @model_validator(mode="after")
    def _lm_policy_valid(self) -> Settings:
        try:
            self.lm_policy()  # ValueError naming the entry that is not a usable URL or name
        except ValueError as exc:  # start-up errors name the flag and env var of the setting
            setting = "lm_allowed_api_bases" if "api_base" in str(exc) else "lm_allowed_key_envs"
            raise ValueError(f"{setting_label(setting)}: {exc}") from None
        if self.lm_api_key_env.upper().startswith("DSPY_BRIDGE_"):
            raise ValueError(
                f"{setting_label('lm_api_key_env')}: must not name one of the server's own settings"
            )
        return self

    def lm_policy(self) -> LMPolicy:
        """The allow-lists hosts' LM configurations are checked against."""
        return LMPolicy.build(
            split_list(self.lm_allowed_api_bases),
            split_list(self.lm_allowed_key_envs),
            default_api_base=self.lm_api_base,
            default_key_env=self.lm_api_key_env,
        )

    # -- limits on what a host sends and keeps (docs/security.md lists every one) -------------
    max_session_ttl_seconds: int = Field(
        30 * 86_400,
        ge=1,
        description="Longest ttl_seconds CreateSession accepts (default 30 days).",
    )
    max_description_chars: int = Field(
        4_096, ge=0, description="Longest variable or signature field description."
    )
    max_metadata_entries: int = Field(64, ge=0, description="Most metadata entries per map.")
    max_metadata_key_chars: int = Field(128, ge=1, description="Longest metadata key.")
    max_metadata_value_chars: int = Field(1_024, ge=0, description="Longest metadata value.")
    max_reason_chars: int = Field(
        1_024, ge=0, description="Longest `reason` (and `source`: at most 128) of a write."
    )
    max_instructions_chars: int = Field(
        65_536, ge=0, description="Longest signature text or instructions."
    )
    max_config_bytes: int = Field(
        65_536,
        ge=1_024,
        description="Largest config or options Struct (module config, optimizer config, metric "
        "options), serialized.",
    )
    max_dataset_examples: int = Field(
        10_000, ge=1, le=10_000, description="Most examples in a dataset, trainset or valset."
    )
    max_session_bytes: int = Field(
        64 << 20,
        ge=0,
        description="Per-session byte budget: variables with every kept history version, "
        "module versions and job records; past it writes fail RESOURCE_EXHAUSTED "
        "SESSION_BUDGET_EXCEEDED. 0 = unlimited.",
    )
    # -- per-caller shares and job budgets (a named caller: auth_tokens_file or mTLS) ---------
    max_sessions_per_caller: int = Field(
        1_000,
        ge=0,
        description="Most live sessions one named caller may own; past it CreateSession fails "
        "RESOURCE_EXHAUSTED SESSION_QUOTA_EXCEEDED. 0 = unlimited (max_sessions still applies).",
    )
    max_running_jobs_per_caller: int = Field(
        0,
        ge=0,
        description="Job slots one named caller may hold at once; its further jobs wait QUEUED "
        "and leave the other slots to other callers. 0 = half of max_running_jobs, rounded up.",
    )
    max_queued_jobs_per_caller: int = Field(
        16,
        ge=1,
        description="Jobs one caller may have QUEUED or RUNNING at once; past it "
        "StartOptimization fails RESOURCE_EXHAUSTED JOB_QUOTA_EXCEEDED.",
    )
    max_job_seconds: float = Field(
        3_600.0,
        ge=0,
        description="Wall-clock limit of one job; past it the job FAILS (JOB_TIMEOUT), its "
        "process is killed and its slot freed. 0 = none.",
    )
    max_job_metric_calls: int = Field(
        100_000,
        ge=1,
        description="Largest metric-call budget one optimization may ask for (GEPA "
        "max_metric_calls, max_full_evals x examples).",
    )

    # -- host callbacks over Connect (tools, metrics and LMs a host lends its session) --------
    host_max_connections: int = Field(
        16, ge=1, le=1024, description="Most Connect streams open at once for one session."
    )
    host_max_names: int = Field(
        256,
        ge=1,
        le=10_000,
        description="Most tools + metrics + LMs one Connect `hello` may offer.",
    )
    host_max_schema_bytes: int = Field(
        65_536, ge=256, description="Largest JSON Schema (`parameters`) of one host tool."
    )
    host_max_calls_in_flight: int = Field(
        4_096,
        ge=1,
        description="Most calls waiting for answers on one Connect stream; past it a call "
        "fails RESOURCE_EXHAUSTED HOST_CALLS_LIMIT.",
    )
    host_max_result_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="Largest answer to one host call; a bigger one fails that call "
        "RESOURCE_EXHAUSTED HOST_RESULT_TOO_LARGE (the stream stays up).",
    )
    host_tool_timeout_ms: int = Field(
        30_000, ge=1, description="Deadline of a host tool call when the tool sets none."
    )
    host_tool_max_concurrency: int = Field(
        1_024,
        ge=1,
        description="Calls of one host tool in flight per connection when the tool sets none.",
    )
    host_metric_timeout_ms: int = Field(
        60_000, ge=1, description="Deadline of one host metric call."
    )
    host_lm_timeout_ms: int = Field(120_000, ge=1, description="Deadline of one host LM call.")
    host_reconnect_wait_seconds: float = Field(
        30.0,
        ge=0,
        description="How long an evaluation or optimization waits for its host metric (or LM) "
        "to be offered again after its connection dropped before failing.",
    )

    # -- shared (redis) store: several replicas --------------------------------------------
    store_stream_length: int = Field(
        10_000,
        ge=100,
        description="Redis store: changes kept per session for watchers to resume from "
        "(approximate); a watcher resuming from an older position gets a resync.",
    )
    job_lease_seconds: float = Field(
        10.0,
        gt=0,
        description="Redis store: a running job's lease; a replica that dies has its jobs "
        "marked INTERRUPTED by a survivor within 1.5 times this.",
    )

    @model_validator(mode="after")
    def _tls_complete(self) -> Settings:
        if bool(self.tls_cert_file) != bool(self.tls_key_file):
            raise ValueError(
                f"{setting_label('tls_cert_file')} and {setting_label('tls_key_file')} must be "
                "set together"
            )
        if self.tls_client_ca_file and not self.tls_cert_file:
            raise ValueError(
                f"{setting_label('tls_client_ca_file')} (mutual TLS) needs "
                f"{setting_label('tls_cert_file')} and {setting_label('tls_key_file')}"
            )
        return self

    @field_validator("auth_token")
    @classmethod
    def _usable_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        token = value.get_secret_value()
        if not token:
            return None  # DSPY_BRIDGE_AUTH_TOKEN= (empty) means no authentication
        if token != token.strip() or any(ord(c) < 0x21 or ord(c) > 0x7E for c in token):
            raise ValueError("auth_token must be printable ASCII without spaces")
        return value

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        level = value.lower()
        if level not in {"debug", "info", "warning", "error"}:
            raise ValueError("log_level must be debug, info, warning or error")
        return level

    @field_validator("event_loop")
    @classmethod
    def _loop_available(cls, value: EventLoopName) -> EventLoopName:
        loop_factory(value)  # ValueError when uvloop is asked for and missing
        return value

    def default_lm_model(self) -> str:
        """The model used when neither a module nor its session names one."""
        if self.lm:
            return self.lm
        return "openai/gpt-4o-mini" if os.environ.get("OPENAI_API_KEY") else "offline"


# -- naming settings in errors: the flag and the environment variable that set each one ------


def setting_label(name: str) -> str:
    """How an error names a setting, so the reader knows both ways to change it:
    `--tls-cert-file (DSPY_BRIDGE_TLS_CERT_FILE)`."""
    return f"--{name.replace('_', '-')} ({Settings.model_config['env_prefix']}{name.upper()})"
