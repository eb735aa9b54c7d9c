"""Errors the bridge raises, independent of the transport.

Every failure a caller can cause is a `BridgeError` carrying the gRPC status code it maps to,
a stable machine-readable `reason` (sent as `google.rpc.ErrorInfo.reason`), optional metadata and
field violations (sent as `google.rpc.BadRequest`). The transport layer turns them into rich
statuses; nothing below it imports grpc status helpers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import grpc

ERROR_DOMAIN = "dspy-bridge"


@dataclass(frozen=True)
class FieldViolation:
    """One invalid request field: `field` is a path such as `writes[2].value`."""

    field: str
    description: str


class StartupError(Exception):
    """The server cannot start as configured (a TLS file, a busy port); the message says
    what to change. Raised before anything has started."""


@dataclass
class BridgeError(Exception):
    """A failure with a gRPC status code, a stable reason and details for the caller."""

    code: grpc.StatusCode
    reason: str
    message: str
    metadata: Mapping[str, str] = field(default_factory=dict)
    violations: Sequence[FieldViolation] = ()

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def __str__(self) -> str:
        return f"{self.code.name} {self.reason}: {self.message}"

    def __reduce__(self) -> tuple[type[BridgeError], tuple[object, ...]]:
        """Pickles by fields (an Exception pickles its `args`, which is only the message), so
        an error raised in a worker process arrives whole in the front."""
        return (
            BridgeError,
            (self.code, self.reason, self.message, dict(self.metadata), tuple(self.violations)),
        )

    def at(self, prefix: str) -> BridgeError:
        """The same error with every field violation path put under `prefix` (e.g. `writes[3]`)."""
        moved = tuple(
            FieldViolation(f"{prefix}.{v.field}" if v.field else prefix, v.description)
            for v in self.violations
        )
        return BridgeError(self.code, self.reason, self.message, dict(self.metadata), moved)


def invalid_argument(
    reason: str,
    message: str,
    field_name: str = "",
    *,
    metadata: Mapping[str, str] | None = None,
) -> BridgeError:
    """INVALID_ARGUMENT with one field violation (when a field is named)."""
    violations = (FieldViolation(field_name, message),) if field_name else ()
    return BridgeError(
        grpc.StatusCode.INVALID_ARGUMENT, reason, message, dict(metadata or {}), violations
    )


def not_found(reason: str, message: str, **metadata: str) -> BridgeError:
    return BridgeError(grpc.StatusCode.NOT_FOUND, reason, message, metadata)


def already_exists(reason: str, message: str, **metadata: str) -> BridgeError:
    return BridgeError(grpc.StatusCode.ALREADY_EXISTS, reason, message, metadata)


def failed_precondition(reason: str, message: str, **metadata: str) -> BridgeError:
    return BridgeError(grpc.StatusCode.FAILED_PRECONDITION, reason, message, metadata)


def resource_exhausted(reason: str, message: str, **metadata: str) -> BridgeError:
    return BridgeError(grpc.StatusCode.RESOURCE_EXHAUSTED, reason, message, metadata)


def unauthenticated(reason: str, message: str) -> BridgeError:
    return BridgeError(grpc.StatusCode.UNAUTHENTICATED, reason, message)


def session_not_found(session_id: str) -> BridgeError:
    return not_found(
        Reason.SESSION_NOT_FOUND, f"session {session_id!r} does not exist", session_id=session_id
    )


def variable_not_found(session_id: str, name: str) -> BridgeError:
    return not_found(
        Reason.VARIABLE_NOT_FOUND,
        f"variable {name!r} does not exist in session {session_id!r}",
        session_id=session_id,
        variable=name,
    )


def module_not_found(session_id: str, module_id: str) -> BridgeError:
    return not_found(
        Reason.MODULE_NOT_FOUND,
        f"module {module_id!r} does not exist in session {session_id!r}",
        session_id=session_id,
        module_id=module_id,
    )


def version_conflict(what: str, expected: int, current: int) -> BridgeError:
    return BridgeError(
        grpc.StatusCode.ABORTED,
        Reason.VERSION_CONFLICT,
        f"{what} is at version {current}, not the expected {expected}; re-read and retry",
        {"expected_version": str(expected), "current_version": str(current)},
    )


class Reason:
    """Stable `ErrorInfo.reason` values. Hosts may switch on these; never rename one."""

    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SESSION_ALREADY_EXISTS = "SESSION_ALREADY_EXISTS"
    SESSION_LIMIT = "SESSION_LIMIT"
    VARIABLE_NOT_FOUND = "VARIABLE_NOT_FOUND"
    VARIABLE_ALREADY_EXISTS = "VARIABLE_ALREADY_EXISTS"
    VARIABLE_LIMIT = "VARIABLE_LIMIT"
    VARIABLE_IN_USE = "VARIABLE_IN_USE"
    VARIABLE_TYPE_MISMATCH = "VARIABLE_TYPE_MISMATCH"
    VARIABLE_CONSTRAINT_VIOLATION = "VARIABLE_CONSTRAINT_VIOLATION"
    VALUE_TOO_LARGE = "VALUE_TOO_LARGE"
    SESSION_BUDGET_EXCEEDED = "SESSION_BUDGET_EXCEEDED"
    VERSION_CONFLICT = "VERSION_CONFLICT"
    VERSION_NOT_FOUND = "VERSION_NOT_FOUND"
    INVALID_REQUEST = "INVALID_REQUEST"
    INVALID_CONSTRAINTS = "INVALID_CONSTRAINTS"
    MODULE_NOT_FOUND = "MODULE_NOT_FOUND"
    MODULE_ALREADY_EXISTS = "MODULE_ALREADY_EXISTS"
    UNKNOWN_MODULE_TYPE = "UNKNOWN_MODULE_TYPE"
    INVALID_SIGNATURE = "INVALID_SIGNATURE"
    INVALID_MODULE_CONFIG = "INVALID_MODULE_CONFIG"
    BINDING_TYPE_MISMATCH = "BINDING_TYPE_MISMATCH"
    UNKNOWN_PARAMETER = "UNKNOWN_PARAMETER"
    INVALID_INPUT = "INVALID_INPUT"
    INVALID_STATE = "INVALID_STATE"
    NO_LM_CONFIGURED = "NO_LM_CONFIGURED"
    INTERPRETER_UNAVAILABLE = "INTERPRETER_UNAVAILABLE"
    LM_RATE_LIMITED = "LM_RATE_LIMITED"
    LM_AUTH_FAILED = "LM_AUTH_FAILED"
    LM_TIMEOUT = "LM_TIMEOUT"
    LM_CONTEXT_WINDOW_EXCEEDED = "LM_CONTEXT_WINDOW_EXCEEDED"
    LM_UNAVAILABLE = "LM_UNAVAILABLE"
    LM_BAD_REQUEST = "LM_BAD_REQUEST"
    LM_OUTPUT_UNPARSEABLE = "LM_OUTPUT_UNPARSEABLE"
    # LM allow-lists (runtime/lm/policy.py): the operator does not let hosts name these.
    LM_API_BASE_NOT_ALLOWED = "LM_API_BASE_NOT_ALLOWED"
    LM_KEY_ENV_NOT_ALLOWED = "LM_KEY_ENV_NOT_ALLOWED"
    EXECUTION_FAILED = "EXECUTION_FAILED"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    QUEUE_FULL = "QUEUE_FULL"
    WORKER_LOST = "WORKER_LOST"
    DRAINING = "DRAINING"
    AUTH_REQUIRED = "AUTH_REQUIRED"
    AUTH_INVALID = "AUTH_INVALID"
    INTERNAL = "INTERNAL"
    UNKNOWN_METRIC = "UNKNOWN_METRIC"
    INVALID_METRIC_OPTIONS = "INVALID_METRIC_OPTIONS"
    INVALID_DATASET = "INVALID_DATASET"
    INVALID_SEARCH_SPACE = "INVALID_SEARCH_SPACE"
    JOB_NOT_FOUND = "JOB_NOT_FOUND"
    JOB_ALREADY_EXISTS = "JOB_ALREADY_EXISTS"
    JOB_STATE_CONFLICT = "JOB_STATE_CONFLICT"
    JOB_NOT_SUCCEEDED = "JOB_NOT_SUCCEEDED"
    JOB_QUOTA_EXCEEDED = "JOB_QUOTA_EXCEEDED"
    JOB_TIMEOUT = "JOB_TIMEOUT"
    SESSION_QUOTA_EXCEEDED = "SESSION_QUOTA_EXCEEDED"
    UNKNOWN_OPTIMIZER = "UNKNOWN_OPTIMIZER"
    INVALID_OPTIMIZER_CONFIG = "INVALID_OPTIMIZER_CONFIG"
    # -- host callbacks (Connect) ------------------------------------------------------------
    HOST_DISCONNECTED = "HOST_DISCONNECTED"
    HOST_TOOL_UNAVAILABLE = "HOST_TOOL_UNAVAILABLE"
    HOST_METRIC_UNAVAILABLE = "HOST_METRIC_UNAVAILABLE"
    HOST_LM_UNAVAILABLE = "HOST_LM_UNAVAILABLE"
    HOST_NAME_CONFLICT = "HOST_NAME_CONFLICT"
    HOST_CALL_TIMEOUT = "HOST_CALL_TIMEOUT"
    HOST_RESULT_TOO_LARGE = "HOST_RESULT_TOO_LARGE"
    HOST_CALLS_LIMIT = "HOST_CALLS_LIMIT"
    HOST_CONNECTION_LIMIT = "HOST_CONNECTION_LIMIT"
    HOST_PROTOCOL_ERROR = "HOST_PROTOCOL_ERROR"
