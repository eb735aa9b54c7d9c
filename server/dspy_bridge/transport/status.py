"""`BridgeError` → `google.rpc.Status` with ErrorInfo and BadRequest details."""

from __future__ import annotations

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from dspy_bridge.errors import ERROR_DOMAIN, BridgeError


def to_status_proto(err: BridgeError) -> status_pb2.Status:
    """The rich status for an error: used for RPC failures and for per-item batch errors."""
    info = error_details_pb2.ErrorInfo(
        reason=err.reason, domain=ERROR_DOMAIN, metadata=dict(err.metadata)
    )
    details = [_pack(info)]
    if err.violations:
        bad = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in err.violations
            ]
        )
        details.append(_pack(bad))
    code: int = err.code.value[0]
    return status_pb2.Status(code=code, message=err.message, details=details)


def to_grpc_status(err: BridgeError) -> grpc.Status:
    return rpc_status.to_status(to_status_proto(err))


def ok_status() -> status_pb2.Status:
    return status_pb2.Status(code=code_pb2.OK)


def _pack(message: error_details_pb2.ErrorInfo | error_details_pb2.BadRequest) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed
