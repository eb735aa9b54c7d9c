"""Wire format between the front and its workers: length-prefixed pickle frames on a socket.

Why pickle over a socketpair: both ends are this package, so every message is a plain tuple of
our own picklable dataclasses; a 4-byte length prefix lets the reader take whole frames with
two `readexactly` calls and no parsing. Measured on the bench machine this costs a few tens of
microseconds per execution, far below an execution's own cost (see docs/pool.md).

Messages are tuples whose first item is the kind:

front -> worker
    ("exec", call_id, stream, key, record | None, request)  record None: the worker has `key`;
                                                `request`: ExecutionRequest's fields, plus
                                                HANDED_OVER_NS when tracing is on
    ("cancel", call_id)
    ("forget", session_id)
    ("drain",)                                  finish what is in flight, then exit
    ("host_reply", host_call_id, HostReply)     a host's answer (see host_channel.py)
    ("host_error", host_call_id, BridgeError)   a host call that failed
worker -> front
    ("ready", pid, event_loop, gc_young_threshold)
    ("event", call_id, ChunkEvent | StatusEvent)
    ("result", call_id, ExecutionResult)
    ("error", call_id, BridgeError)
    ("miss", call_id)                           the worker no longer holds `key`: resend it
    ("cancelled", call_id)                      a cancel was applied; the call is over
    ("rss", bytes)                              resident memory, sent after executions
    ("host", host_call_id, session_id, HostRequest, timeout_s | None)
                                                call the session's host (a `host:` tool or LM)
    ("host_cancel", host_call_id)               the execution making that call is gone
"""

from __future__ import annotations

import asyncio
import pickle
import struct
from typing import Any

from dspy_bridge.model import ModuleRecord

#: In an `exec` request when tracing is on: `time.time_ns()` when the front handed the call to
#: the worker, the start of the worker's `worker queue wait` span.
HANDED_OVER_NS = "handed_over_ns"

_HEADER = struct.Struct("!I")
MAX_FRAME = 1 << 30

RecordKey = tuple[str, str, int, float]
Message = tuple[Any, ...]


def record_key(record: ModuleRecord) -> RecordKey:
    """What identifies one immutable module version (create_time: a re-created id restarts
    at version 1 and must not match the old one)."""
    return (record.session_id, record.module_id, record.version, record.create_time)


def encode(message: Message) -> bytes:
    body = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    return _HEADER.pack(len(body)) + body


async def read_message(reader: asyncio.StreamReader) -> Message:
    """The next message; raises `asyncio.IncompleteReadError` at end of stream."""
    header = await reader.readexactly(_HEADER.size)
    (size,) = _HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ValueError(f"frame of {size} bytes is larger than {MAX_FRAME}")
    message: Message = pickle.loads(await reader.readexactly(size))
    return message
