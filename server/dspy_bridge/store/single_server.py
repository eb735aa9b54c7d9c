"""One server per sqlite file: an exclusive `flock` on `<db>.lock`, held while the store is open.

Why: two servers on one file look like scaling out but are not: watchers on one never see
writes through the other, the second's start marks the first's running jobs INTERRUPTED, and
each one's caches (session owners, module records) go stale behind the other's writes. So the
second server is refused at start with one line saying so (the `redis` store is the way to run
several replicas).

Why `flock` on a separate file: the kernel drops the lock when the process dies however it
dies (kill -9, OOM), so a restart after a crash is never blocked by a stale lock file, and
there is no pid to check. A separate file, because SQLite keeps its own POSIX locks on the
database and closing any other descriptor of that file would drop them. The path is resolved
first, so a symlink to the same database finds the same lock. The descriptor is not inherited
by worker or job processes (Python opens files non-inheritable), so a surviving child never
keeps the lock of a dead server.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

__all__ = ["StoreInUse", "lock_path", "release_lock", "take_lock"]


class StoreInUse(ValueError):
    """Another live process holds the database's lock."""


def lock_path(db_path: str | Path) -> Path:
    """`<db>.lock` next to the database, symlinks resolved."""
    resolved = Path(db_path).resolve()
    return resolved.with_name(resolved.name + ".lock")


def take_lock(db_path: str | Path) -> int:
    """Locks the database for this process; returns the descriptor to `os.close` when done.
    Raises `StoreInUse` at once (never waits) when another process holds it."""
    path = lock_path(db_path)
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ValueError(
            f"cannot open the sqlite database {Path(db_path)}: its lock file {path}: "
            f"{exc.strerror or exc}"
        ) from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise StoreInUse(
            f"another dspy-bridge server is using {Path(db_path)} (it holds {path}); run one "
            "server per sqlite file (several replicas need the redis store)"
        ) from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def release_lock(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)  # closing the only descriptor drops the flock
