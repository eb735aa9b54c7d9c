"""Opaque page tokens for List RPCs: an offset, tagged with the kind of list it pages."""

from __future__ import annotations

import base64

from dspy_bridge.errors import Reason, invalid_argument


def page_token(kind: str, offset: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode()


def offset_from_token(kind: str, token: str) -> int:
    """The offset a token stands for; INVALID_ARGUMENT for a token this server did not issue
    for this kind of list. An empty token is the first page."""
    if not token:
        return 0
    try:
        tag, _, raw = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
        offset = int(raw)
        if tag != kind or offset < 0:
            raise ValueError(token)
    except ValueError:
        raise invalid_argument(
            Reason.INVALID_REQUEST, "page_token is not one this server issued", "page_token"
        ) from None
    return offset
