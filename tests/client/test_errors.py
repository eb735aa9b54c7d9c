"""`dspy_bridge_client.errors`: rich statuses become typed, readable exceptions."""

from __future__ import annotations

import pickle
import socket

import grpc
import pytest
from google.rpc import status_pb2  # type: ignore[import-untyped]

from dspy_bridge_client import errors
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client.errors import (
    BridgeError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    UnavailableError,
    VersionConflictError,
    from_rpc_error,
    from_status,
)

from .fake_server import FakeBridge, rich_status

CONSTRAINT = rich_status(
    grpc.StatusCode.INVALID_ARGUMENT,
    "1.5 is above max 1.0",
    reason="VARIABLE_CONSTRAINT_VIOLATION",
    metadata={"variable": "temperature"},
    violations=[("value", "1.5 is above max 1.0")],
)

CODE_CLASSES = [
    (grpc.StatusCode.INVALID_ARGUMENT, errors.InvalidArgumentError),
    (grpc.StatusCode.NOT_FOUND, errors.NotFoundError),
    (grpc.StatusCode.ALREADY_EXISTS, errors.AlreadyExistsError),
    (grpc.StatusCode.FAILED_PRECONDITION, errors.FailedPreconditionError),
    (grpc.StatusCode.ABORTED, errors.VersionConflictError),
    (grpc.StatusCode.RESOURCE_EXHAUSTED, errors.ResourceExhaustedError),
    (grpc.StatusCode.UNAVAILABLE, errors.UnavailableError),
    (grpc.StatusCode.DEADLINE_EXCEEDED, errors.DeadlineExceededError),
    (grpc.StatusCode.CANCELLED, errors.CancelledError),
    (grpc.StatusCode.UNAUTHENTICATED, errors.UnauthenticatedError),
    (grpc.StatusCode.PERMISSION_DENIED, errors.PermissionDeniedError),
    (grpc.StatusCode.UNIMPLEMENTED, errors.UnimplementedError),
    (grpc.StatusCode.INTERNAL, errors.InternalError),
    (grpc.StatusCode.DATA_LOSS, errors.InternalError),
    (grpc.StatusCode.UNKNOWN, errors.BridgeError),
    (grpc.StatusCode.OUT_OF_RANGE, errors.BridgeError),
]


# --------------------------------------------------------------------------- from_status


def test_from_status_unpacks_every_detail() -> None:
    err = from_status(CONSTRAINT)
    assert type(err) is InvalidArgumentError
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.reason == "VARIABLE_CONSTRAINT_VIOLATION"
    assert err.domain == "dspy-bridge"
    assert err.metadata == {"variable": "temperature"}
    assert err.field_violations == [("value", "1.5 is above max 1.0")]
    assert isinstance(err.field_violations[0], FieldViolation)
    assert err.message == "1.5 is above max 1.0"
    assert err.retryable is False


def test_str_reads_well() -> None:
    assert str(from_status(CONSTRAINT)) == (
        "INVALID_ARGUMENT VARIABLE_CONSTRAINT_VIOLATION: 1.5 is above max 1.0 (value)"
    )
    several = rich_status(
        grpc.StatusCode.INVALID_ARGUMENT,
        "2 writes are invalid",
        reason="INVALID_REQUEST",
        violations=[("writes[0].name", "is empty"), ("writes[3].value", "is not a float")],
    )
    assert str(from_status(several)) == (
        "INVALID_ARGUMENT INVALID_REQUEST: 2 writes are invalid "
        "(writes[0].name: is empty; writes[3].value: is not a float)"
    )
    bare = status_pb2.Status(code=grpc.StatusCode.NOT_FOUND.value[0], message="gone")
    assert str(from_status(bare)) == "NOT_FOUND: gone"
    assert repr(from_status(bare)) == "NotFoundError(code=NOT_FOUND, reason='', message='gone')"


def test_version_conflict_exposes_versions() -> None:
    err = from_status(
        rich_status(
            grpc.StatusCode.ABORTED,
            "variable is at version 7, not the expected 5",
            reason="VERSION_CONFLICT",
            metadata={"current_version": "7", "expected_version": "5"},
        )
    )
    assert isinstance(err, VersionConflictError)
    assert (err.current_version, err.expected_version) == (7, 5)
    odd = VersionConflictError("x", metadata={"current_version": "seven"})
    assert odd.current_version is None
    assert odd.expected_version is None


def test_retry_info_and_retryable() -> None:
    err = from_status(
        rich_status(
            grpc.StatusCode.RESOURCE_EXHAUSTED, "queue full", reason="QUEUE_FULL", retry_delay_s=1.5
        )
    )
    assert err.retry_delay == 1.5
    assert err.retryable is False
    assert UnavailableError("draining").retryable is True


@pytest.mark.parametrize(("code", "cls"), CODE_CLASSES)
def test_each_code_has_its_class(code: grpc.StatusCode, cls: type[BridgeError]) -> None:
    err = from_status(status_pb2.Status(code=code.value[0], message="m"))
    assert type(err) is cls
    assert err.code == code
    assert isinstance(err, BridgeError)


def test_ok_status_is_not_an_error() -> None:
    with pytest.raises(ValueError, match="OK status"):
        from_status(status_pb2.Status())


def test_constructed_errors_default_their_code() -> None:
    assert NotFoundError("x").code == grpc.StatusCode.NOT_FOUND
    assert BridgeError("x").code == grpc.StatusCode.UNKNOWN


def test_errors_pickle() -> None:
    err = from_status(CONSTRAINT)
    back = pickle.loads(pickle.dumps(err))
    assert type(back) is InvalidArgumentError
    assert str(back) == str(err)
    assert back.metadata == err.metadata
    assert back.field_violations == err.field_violations


# --------------------------------------------------------------------------- real RpcErrors


def sync_rpc_error(target: str, request: pb.GetVariableRequest | None = None) -> grpc.RpcError:
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            stub.GetVariable(request or pb.GetVariableRequest(session_id="s", name="x"), timeout=10)
    return caught.value


async def aio_rpc_error(target: str) -> grpc.RpcError:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = pb_grpc.BridgeServiceStub(channel)
        with pytest.raises(grpc.RpcError) as caught:
            await stub.GetVariable(pb.GetVariableRequest(session_id="s", name="x"), timeout=10)
    return caught.value


def test_from_rpc_error_on_a_real_sync_call(fake: FakeBridge, target: str) -> None:
    fake.replies["GetVariable"] = CONSTRAINT
    err = from_rpc_error(sync_rpc_error(target))
    assert type(err) is InvalidArgumentError
    assert err.reason == "VARIABLE_CONSTRAINT_VIOLATION"
    assert err.metadata == {"variable": "temperature"}
    assert err.field_violations == [("value", "1.5 is above max 1.0")]
    assert str(err) == (
        "INVALID_ARGUMENT VARIABLE_CONSTRAINT_VIOLATION: 1.5 is above max 1.0 (value)"
    )


async def test_from_rpc_error_on_a_real_aio_call(fake: FakeBridge, target: str) -> None:
    fake.replies["GetVariable"] = rich_status(
        grpc.StatusCode.ABORTED,
        "stale",
        reason="VERSION_CONFLICT",
        metadata={"current_version": "4"},
    )
    err = from_rpc_error(await aio_rpc_error(target))
    assert isinstance(err, VersionConflictError)
    assert err.current_version == 4
    assert err.reason == "VERSION_CONFLICT"


def test_plain_status_without_details(fake: FakeBridge, target: str) -> None:
    fake.raw_abort["GetVariable"] = (grpc.StatusCode.PERMISSION_DENIED, "not yours", ())
    err = from_rpc_error(sync_rpc_error(target))
    assert type(err) is errors.PermissionDeniedError
    assert (err.reason, err.metadata, err.field_violations) == ("", {}, [])
    assert str(err) == "PERMISSION_DENIED: not yours"


def test_details_are_kept_when_a_proxy_rewrote_the_message(fake: FakeBridge, target: str) -> None:
    # The details say NOT_FOUND "original"; the call says NOT_FOUND "rewritten": from_call
    # refuses the mismatch, the client still uses the details.
    details = rich_status(grpc.StatusCode.NOT_FOUND, "original", reason="SESSION_NOT_FOUND")
    fake.raw_abort["GetVariable"] = (
        grpc.StatusCode.NOT_FOUND,
        "rewritten",
        (("grpc-status-details-bin", details.SerializeToString()),),
    )
    err = from_rpc_error(sync_rpc_error(target))
    assert type(err) is NotFoundError
    assert err.message == "rewritten"
    assert err.reason == "SESSION_NOT_FOUND"


def test_unimplemented_rpc_hints_at_an_old_server(fake: FakeBridge, target: str) -> None:
    fake.raw_abort["GetVariable"] = (grpc.StatusCode.UNIMPLEMENTED, "Method not found!", ())
    err = from_rpc_error(sync_rpc_error(target), target=target)
    assert type(err) is errors.UnimplementedError
    assert "upgrade it" in str(err)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_connection_refused_is_unavailable_with_a_hint() -> None:
    target = f"127.0.0.1:{free_port()}"
    err = from_rpc_error(sync_rpc_error(target), target=target)
    assert type(err) is UnavailableError
    assert err.retryable
    assert err.reason == ""
    assert f"running at {target}?" in str(err)
    assert "dspy-bridge serve" in err.hint


def test_an_rpc_error_that_is_not_a_call() -> None:
    err = from_rpc_error(grpc.RpcError("odd"))
    assert type(err) is BridgeError
    assert err.code == grpc.StatusCode.UNKNOWN
    assert err.message == "odd"
