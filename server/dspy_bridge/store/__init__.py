"""Session store backends, chosen by URL.

`memory://` (the default, also the empty string), `sqlite:///relative.db` or
`sqlite:////absolute/path.db` (SQLAlchemy's convention: three slashes then the path, so an
absolute path shows a fourth), `redis://[user:pass@]host:port/db` or `rediss://…` (TLS) for the
store several replicas share (`?key_prefix=NAME` keeps deployments on one database apart).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from dspy_bridge.store.base import SessionStore
from dspy_bridge.store.memory import MemoryStore
from dspy_bridge.store.redis import RedisStore
from dspy_bridge.store.sqlite import SqliteStore

__all__ = ["MemoryStore", "RedisStore", "SessionStore", "SqliteStore", "open_store"]

_ACCEPTED = (
    "memory:// (default), sqlite:///relative/path.db, sqlite:////absolute/path.db, "
    "redis://[user:password@]host:port/db, rediss://… (TLS)"
)


async def open_store(
    url: str,
    *,
    history_limit: int = 1000,
    stream_length: int = 10_000,
    lease_seconds: float = 10.0,
) -> SessionStore:
    """Opens the backend `url` names. ValueError for a malformed or unknown URL, a sqlite file
    whose directory does not exist or that cannot be opened; a Redis that does not answer is
    UNAVAILABLE `STORE_UNAVAILABLE`. `stream_length` and `lease_seconds` apply to the shared
    (redis) store only."""
    scheme, sep, rest = url.partition("://")
    if url == "" or (scheme == "memory" and sep and rest == ""):
        return MemoryStore(history_limit=history_limit)
    if scheme == "sqlite" and sep:
        path = _sqlite_path(url, rest)
        # A missing directory is most likely a typo or an unmounted volume: creating it would
        # hide that and put the data somewhere nobody backs up.
        if not path.parent.is_dir():
            raise ValueError(f"the directory of {path} does not exist; create it first")
        try:
            return await SqliteStore.open(path, history_limit=history_limit)
        except sqlite3.Error as exc:
            raise ValueError(f"cannot open the sqlite database {path}: {exc}") from None
    if scheme in ("redis", "rediss") and sep and rest:
        return await RedisStore.open(
            url,
            history_limit=history_limit,
            stream_length=stream_length,
            lease_seconds=lease_seconds,
        )
    raise ValueError(f"unsupported store URL {url!r}; accepted: {_ACCEPTED}")


def _sqlite_path(url: str, rest: str) -> Path:
    """The file path of a `sqlite://` URL: `rest` must be `/` + the path (no host part)."""
    if not rest.startswith("/") or rest == "/":
        raise ValueError(f"store URL {url!r} has no file path; accepted: {_ACCEPTED}")
    return Path(rest[1:])
