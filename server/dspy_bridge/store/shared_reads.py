"""Concurrent reads of the same key share one round trip, never one sent before they came.

A replica on a shared store reads Redis for every Execute (its view's stamp) and, with owners,
for every RPC about a session (its owner). When 32 hosts run the same module at once, those are
32 identical reads in flight. `SharedReads.read` sends one read of a key at a time: the calls
that arrive while it is on its way join the *next* read, sent as soon as it returns. Every call
so gets a read sent after it arrived — it cannot miss a change acknowledged before it started,
whichever replica made it — at the cost of at most one extra round trip of waiting, and the
number of reads drops from one per call to one per round trip.

A call that finds no read of its key on its way and none forming sends its own at once, from
the caller's task: under a moderate load that is nearly every call, and it spares each of them
a task, a shielded future and a loop step (a quarter of a Redis replica's CPU per view read).
"""

from __future__ import annotations

import asyncio
import copy
import weakref
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar, cast

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SharedReads(Generic[K, V]):
    """Reads by key, shared by the calls that arrive while the previous read is on its way."""

    def __init__(self) -> None:
        #: The read each key's next callers join (not sent yet: it waits for the one in flight).
        self._forming: dict[K, asyncio.Future[tuple[V | None, BaseException | None]]] = {}
        #: One read of a key on its way at a time.
        self._in_flight: weakref.WeakValueDictionary[K, asyncio.Lock] = (
            weakref.WeakValueDictionary()
        )
        self._readers: set[asyncio.Task[None]] = set()

    async def read(self, key: K, reader: Callable[[K], Awaitable[V]]) -> V:
        """`reader(key)`, sent after this call arrived and shared with the calls for `key`
        that arrive before it is sent. A shared read runs in a task of its own, so a caller that
        is cancelled leaves the others' read alone; a failed read raises in every caller (each
        its own copy of the error)."""
        outcome = self._forming.get(key)
        if outcome is None and key not in self._in_flight:
            # Nothing to share: read now. Who comes while it is on its way forms the next read
            # (the lock says one is in flight), so a cancelled caller cancels only its own.
            lock = self._in_flight[key] = asyncio.Lock()
            async with lock:
                return await reader(key)
        if outcome is None:
            outcome = self._forming[key] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(self._lead(key, outcome, reader))
            self._readers.add(task)
            task.add_done_callback(self._readers.discard)
        value, error = await asyncio.shield(outcome)
        if error is not None:
            raise copy.copy(error)
        return cast(V, value)  # None only with an error

    async def _lead(
        self,
        key: K,
        outcome: asyncio.Future[tuple[V | None, BaseException | None]],
        reader: Callable[[K], Awaitable[V]],
    ) -> None:
        lock = self._in_flight.get(key)
        if lock is None:
            lock = self._in_flight[key] = asyncio.Lock()
        try:
            async with lock:
                if self._forming.get(key) is outcome:
                    del self._forming[key]  # who arrives from now on joins the next read
                outcome.set_result((await reader(key), None))
        except BaseException as exc:  # cancelled too: nobody may wait forever
            if self._forming.get(key) is outcome:
                del self._forming[key]
            if not outcome.done():
                outcome.set_result((None, exc))
            if not isinstance(exc, Exception):
                raise
