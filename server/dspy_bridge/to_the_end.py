"""Steps that must finish once begun, even when the call that began them is cancelled.

A store write under way when its caller is cancelled may still commit (SQLite finishes its
transaction on its thread; Redis has the command): whatever must follow a commit (the budget's
count, ending a deleted session's watches) then has to run as well. `to_the_end` runs such a
step as its own task and waits for it shielded, so a cancel stops the waiting, not the step.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

__all__ = ["to_the_end"]

T = TypeVar("T")


def _outcome_read(task: asyncio.Future[Any]) -> None:
    """Marks a step's outcome as read: a cancelled caller never reads it."""
    if not task.cancelled():
        task.exception()


async def to_the_end(step: Awaitable[T]) -> T:
    """`step`'s result, with `step` run to its end even if this call is cancelled."""
    task = asyncio.ensure_future(step)
    task.add_done_callback(_outcome_read)
    return await asyncio.shield(task)
