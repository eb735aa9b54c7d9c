"""The wire format and what crosses it: frames round-trip, BridgeError pickles whole."""

from __future__ import annotations

import asyncio
import pickle

import grpc

from dspy_bridge.errors import BridgeError, FieldViolation, Reason
from dspy_bridge.pool.protocol import encode, read_message


def test_bridge_error_pickles_with_every_field() -> None:
    err = BridgeError(
        grpc.StatusCode.INVALID_ARGUMENT,
        Reason.INVALID_INPUT,
        "bad input",
        {"field": "question"},
        (FieldViolation("inputs.question", "required"),),
    )
    back = pickle.loads(pickle.dumps(err))
    assert (back.code, back.reason, back.message) == (err.code, err.reason, err.message)
    assert dict(back.metadata) == {"field": "question"}
    assert tuple(back.violations) == tuple(err.violations)


async def test_frames_round_trip_in_order() -> None:
    reader = asyncio.StreamReader()
    messages = [("exec", 1, False, ("s", "m", 1, 0.0), None, {"x": "y" * 100_000}), ("drain",)]
    for message in messages:
        reader.feed_data(encode(message))
    reader.feed_eof()
    assert [await read_message(reader) for _ in messages] == messages
