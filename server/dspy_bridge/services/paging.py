"""Paging for List RPCs: opaque page tokens (an offset, tagged with the kind of list it pages),
pages of in-memory lists, and cutting a page to fit in one gRPC message — so no amount of stored
state can make a read exceed the message limit."""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

from google.protobuf.message import Message

from dspy_bridge.errors import Reason, invalid_argument

T = TypeVar("T")
M = TypeVar("M", bound=Message)


def page_token(kind: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode()


#: The offset a token may carry: its digits as this server writes them, short enough for any
#: store's OFFSET (SQLite's is a signed 64-bit integer; a forged larger one was INTERNAL).
_OFFSET = re.compile(r"[0-9]{1,18}")


def offset_from_token(kind: str, token: str) -> int:
    """The offset a token stands for; INVALID_ARGUMENT for a token this server did not issue
    for this kind of list. An empty token is the first page."""
    if not token:
        return 0
    try:
        tag, _, raw = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        if tag != kind or not _OFFSET.fullmatch(raw):
            raise ValueError(token)
        offset = int(raw)
    except ValueError:
        raise invalid_argument(
            Reason.INVALID_REQUEST, "page_token is not one this server issued", "page_token"
        ) from None
    return offset


@dataclass
class Page(Generic[T]):
    """A page of a list, with enough to issue the next token when fewer items are sent (a
    page is cut to fit in one gRPC message): the list offset of each item and after the last."""

    kind: str
    items: list[T]
    offsets: list[int]
    end: int
    more: bool

    def token_after(self, sent: int) -> str:
        """The next page token when only the first `sent` items go out ("" at the list's end)."""
        if sent < len(self.items):
            return page_token(self.kind, self.offsets[sent])
        return page_token(self.kind, self.end) if self.more else ""


def page_of(kind: str, items: Sequence[T], token: str, size: int) -> Page[T]:
    """The page of a whole in-memory list that `token` and `size` (0 = no count limit) ask for."""
    offset = offset_from_token(kind, token)
    end = len(items) if size <= 0 else min(len(items), offset + size)
    window = list(items[offset:end])
    return Page(kind, window, list(range(offset, offset + len(window))), end, end < len(items))


def fit(items: Iterable[T], to_proto: Callable[[T], M], max_bytes: int) -> list[M]:
    """`items` as protos, as many as fit in `max_bytes` serialized (always at least one)."""
    out: list[M] = []
    used = 0
    for item in items:
        proto = to_proto(item)
        size = proto.ByteSize() + 16  # the repeated field's tag and length prefix
        if out and used + size > max_bytes:
            break
        out.append(proto)
        used += size
    return out


def parts(protos: Sequence[M], max_bytes: int) -> list[list[M]]:
    """`protos` in consecutive parts of at most `max_bytes` serialized (each at least one)."""
    out: list[list[M]] = [[]]
    used = 0
    for proto in protos:
        size = proto.ByteSize() + 16
        if out[-1] and used + size > max_bytes:
            out.append([])
            used = 0
        out[-1].append(proto)
        used += size
    return out


def page_bytes(max_message_bytes: int) -> int:
    """Bytes one page's items may take: the message limit less room for the envelope."""
    return max(max_message_bytes - 65_536, max_message_bytes // 2)
