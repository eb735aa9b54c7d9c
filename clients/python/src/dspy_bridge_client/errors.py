"""Exceptions raised by the client: one class per gRPC status code, all `BridgeError`.

The sidecar sends `google.rpc.Status` details with each failure; the client unpacks them so
code can branch on stable values instead of parsing messages::

    try:
        session.update_variable("temperature", 1.5)
    except InvalidArgumentError as err:
        err.reason            # "VARIABLE_CONSTRAINT_VIOLATION"
        err.field_violations  # [FieldViolation(field="value", description="...")]
    except VersionConflictError as err:
        err.current_version   # re-read and retry

``str(err)`` reads as ``INVALID_ARGUMENT VARIABLE_CONSTRAINT_VIOLATION: 1.5 is above max 1.0
(value)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, ClassVar, NamedTuple

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

__all__ = [
    "AlreadyExistsError",
    "BridgeError",
    "CancelledError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InternalError",
    "InvalidArgumentError",
    "NotFoundError",
    "PermissionDeniedError",
    "ResourceExhaustedError",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "VersionConflictError",
    "from_rpc_error",
    "from_status",
]

_DETAILS_KEY = "grpc-status-details-bin"
_CODE_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


class FieldViolation(NamedTuple):
    """One invalid request field (from `google.rpc.BadRequest`); `field` is a path like
    ``writes[2].value``."""

    field: str
    description: str


class BridgeError(Exception):
    """A failed call to the sidecar.

    Attributes:
        code: the gRPC status code (`grpc.StatusCode`).
        message: the server's human-readable message.
        reason: the stable machine-readable reason (`ErrorInfo.reason`, e.g. ``SESSION_NOT_FOUND``),
            or ``""`` when the failure happened below the sidecar (e.g. the connection).
        domain: the `ErrorInfo.domain` (``dspy-bridge`` for the sidecar's own errors).
        metadata: `ErrorInfo.metadata`, e.g. ``{"current_version": "7"}``.
        field_violations: the invalid request fields, as `FieldViolation` (field, description).
        retry_delay: seconds the server asks to wait before retrying (`RetryInfo`), if any.
        retryable: whether repeating the same call may succeed.
        hint: what to do about it, when the client can tell.
    """

    default_code: ClassVar[grpc.StatusCode] = grpc.StatusCode.UNKNOWN
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: grpc.StatusCode | None = None,
        reason: str = "",
        domain: str = "",
        metadata: Mapping[str, str] | None = None,
        field_violations: Iterable[tuple[str, str]] = (),
        retry_delay: float | None = None,
        hint: str = "",
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code: grpc.StatusCode = code if code is not None else self.default_code
        self.reason = reason
        self.domain = domain
        self.metadata: dict[str, str] = dict(metadata or {})
        self.field_violations: list[FieldViolation] = [
            FieldViolation(f, d) for f, d in field_violations
        ]
        self.retry_delay = retry_delay
        self.hint = hint

    def __str__(self) -> str:
        head = self.code.name if self.reason == "" else f"{self.code.name} {self.reason}"
        text = f"{head}: {self.message}" if self.message else head
        fields = [
            v.field if v.description in ("", self.message) else f"{v.field}: {v.description}"
            for v in self.field_violations
            if v.field or v.description not in ("", self.message)
        ]
        if fields:
            text += f" ({'; '.join(fields)})"
        if self.hint:
            text += f" — {self.hint}"
        return text

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(code={self.code.name}, reason={self.reason!r}, "
            f"message={self.message!r})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        kwargs = {
            "code": self.code,
            "reason": self.reason,
            "domain": self.domain,
            "metadata": self.metadata,
            "field_violations": [tuple(v) for v in self.field_violations],
            "retry_delay": self.retry_delay,
            "hint": self.hint,
        }
        return (_rebuild, (type(self), self.message, kwargs))


def _rebuild(cls: type[BridgeError], message: str, kwargs: dict[str, Any]) -> BridgeError:
    return cls(message, **kwargs)


class InvalidArgumentError(BridgeError):
    """INVALID_ARGUMENT: a bad value, constraint, signature or type. Fix the request (see
    `field_violations`); repeating it unchanged fails again."""

    default_code = grpc.StatusCode.INVALID_ARGUMENT


class NotFoundError(BridgeError):
    """NOT_FOUND: an unknown or expired session, variable, module or version."""

    default_code = grpc.StatusCode.NOT_FOUND


class AlreadyExistsError(BridgeError):
    """ALREADY_EXISTS: a session, variable or module with that id or name exists already."""

    default_code = grpc.StatusCode.ALREADY_EXISTS


class FailedPreconditionError(BridgeError):
    """FAILED_PRECONDITION: the state does not allow the call, e.g. a binding of the wrong
    type, no LM configured, no interpreter, a variable still bound to a module."""

    default_code = grpc.StatusCode.FAILED_PRECONDITION


class VersionConflictError(BridgeError):
    """ABORTED: ``expected_version`` did not match. Re-read the resource (its version is in
    `current_version`), reapply the change and retry."""

    default_code = grpc.StatusCode.ABORTED

    @property
    def current_version(self) -> int | None:
        """The resource's version when the write was refused (``metadata["current_version"]``)."""
        return _int_or_none(self.metadata.get("current_version"))

    @property
    def expected_version(self) -> int | None:
        """The version the refused write expected (``metadata["expected_version"]``)."""
        return _int_or_none(self.metadata.get("expected_version"))


class ResourceExhaustedError(BridgeError):
    """RESOURCE_EXHAUSTED: a limit was reached (sessions, variables, value size, a full queue).
    Free resources or back off; `retry_delay` says how long when the server knows."""

    default_code = grpc.StatusCode.RESOURCE_EXHAUSTED


class UnavailableError(BridgeError):
    """UNAVAILABLE: the sidecar could not be reached, is draining, or lost a worker mid-call.
    Safe to retry (with backoff)."""

    default_code = grpc.StatusCode.UNAVAILABLE
    retryable = True


class DeadlineExceededError(BridgeError):
    """DEADLINE_EXCEEDED: the call ran out of time (the client `timeout` or ``timeout_ms``)."""

    default_code = grpc.StatusCode.DEADLINE_EXCEEDED


class CancelledError(BridgeError):
    """CANCELLED: the call was cancelled (by the caller or the server shutting down)."""

    default_code = grpc.StatusCode.CANCELLED


class UnauthenticatedError(BridgeError):
    """UNAUTHENTICATED: missing or invalid credentials; check the client's `metadata` (bearer
    token) or `credentials`."""

    default_code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDeniedError(BridgeError):
    """PERMISSION_DENIED: the caller may not do this. (The sidecar reports another caller's
    session as NOT_FOUND, so that its existence does not leak.)"""

    default_code = grpc.StatusCode.PERMISSION_DENIED


class UnimplementedError(BridgeError):
    """UNIMPLEMENTED: the sidecar does not offer this RPC; it is probably older than the
    client."""

    default_code = grpc.StatusCode.UNIMPLEMENTED


class InternalError(BridgeError):
    """INTERNAL (or DATA_LOSS): a bug in the sidecar. Please report it with the message."""

    default_code = grpc.StatusCode.INTERNAL


_CLASS_BY_CODE: dict[grpc.StatusCode, type[BridgeError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.ABORTED: VersionConflictError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
    grpc.StatusCode.UNIMPLEMENTED: UnimplementedError,
    grpc.StatusCode.INTERNAL: InternalError,
    grpc.StatusCode.DATA_LOSS: InternalError,
}


def _int_or_none(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _build(
    code: grpc.StatusCode,
    message: str,
    details: Iterable[any_pb2.Any],
    hint: str = "",
) -> BridgeError:
    reason = domain = ""
    metadata: dict[str, str] = {}
    violations: list[tuple[str, str]] = []
    retry_delay: float | None = None
    for detail in details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, domain, metadata = info.reason, info.domain, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations.extend((v.field, v.description) for v in bad.field_violations)
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
            retry_delay = retry.retry_delay.ToTimedelta().total_seconds()
    cls = _CLASS_BY_CODE.get(code, BridgeError)
    return cls(
        message,
        code=code,
        reason=reason,
        domain=domain,
        metadata=metadata,
        field_violations=violations,
        retry_delay=retry_delay,
        hint="" if reason else hint,
    )


def from_status(status: status_pb2.Status) -> BridgeError:
    """The exception for a `google.rpc.Status` message (e.g. one item of a batch response).

    Raises `ValueError` for an OK status (code 0), which is not an error.
    """
    if status.code == 0:
        raise ValueError("an OK status (code 0) is not an error")
    code = _CODE_BY_NUMBER.get(status.code, grpc.StatusCode.UNKNOWN)
    return _build(code, status.message, status.details)


def from_rpc_error(error: grpc.RpcError, *, target: str | None = None) -> BridgeError:
    """The exception for a failed gRPC call (a `grpc.RpcError` that is also a `grpc.Call`,
    sync or asyncio), with its `google.rpc.Status` details unpacked.

    `target` (the address dialled) is only used to phrase hints for connection failures.
    """
    code_fn = getattr(error, "code", None)
    code = code_fn() if callable(code_fn) else None
    if not isinstance(code, grpc.StatusCode):
        code = grpc.StatusCode.UNKNOWN
    details_fn = getattr(error, "details", None)
    message = (details_fn() or "") if callable(details_fn) else str(error)
    status: status_pb2.Status | None = None
    try:
        if callable(getattr(error, "trailing_metadata", None)):
            status = rpc_status.from_call(error)
    except ValueError:
        # Code or message rewritten on the way (e.g. by a proxy): keep the call's code and
        # message, but still use the details.
        status = _status_from_metadata(error.trailing_metadata())
    details = status.details if status is not None else ()
    return _build(code, message, details, _hint(code, target))


def _status_from_metadata(metadata: Any) -> status_pb2.Status | None:
    for key, value in metadata or ():
        if key == _DETAILS_KEY:
            return status_pb2.Status.FromString(value)
    return None


def _hint(code: grpc.StatusCode, target: str | None) -> str:
    where = f" at {target}" if target else ""
    if code == grpc.StatusCode.UNAVAILABLE:
        return (
            f"is the dspy-bridge sidecar running{where}? Start it with `dspy-bridge serve`; "
            "the call is safe to retry"
        )
    if code == grpc.StatusCode.DEADLINE_EXCEEDED:
        return "the call took longer than the client timeout; pass a larger `timeout=`"
    if code == grpc.StatusCode.UNIMPLEMENTED:
        return f"the sidecar{where} does not offer this RPC; upgrade it to match the client"
    return ""
