"""Helpers for asserting on rich gRPC errors in integration tests."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from dspy_bridge_client._proto.dspy_bridge.v1 import value_pb2


@dataclass
class RichError:
    code: grpc.StatusCode
    message: str
    reason: str
    metadata: dict[str, str]
    fields: list[str]


def rich_error(err: grpc.aio.AioRpcError) -> RichError:
    status = rpc_status.from_call(err)
    reason, metadata, fields = "", {}, []
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason, metadata = info.reason, dict(info.metadata)
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            fields = [v.field for v in bad.field_violations]
    return RichError(err.code(), err.details() or "", reason, metadata, fields)


async def expect_error(
    call: Awaitable[Any], code: grpc.StatusCode, reason: str | None = None
) -> RichError:
    try:
        await call
    except grpc.aio.AioRpcError as err:
        rich = rich_error(err)
        assert rich.code == code, f"expected {code.name}, got {rich.code.name}: {rich.message}"
        if reason is not None:
            assert rich.reason == reason, f"expected reason {reason}, got {rich.reason}"
        return rich
    raise AssertionError(f"expected {code.name}, the call succeeded")


def fv(x: float) -> value_pb2.Value:
    return value_pb2.Value(float_value=x)


def iv(x: int) -> value_pb2.Value:
    return value_pb2.Value(int_value=x)


def sv(x: str) -> value_pb2.Value:
    return value_pb2.Value(string_value=x)


def bv(x: bool) -> value_pb2.Value:
    return value_pb2.Value(bool_value=x)
