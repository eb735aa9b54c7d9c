"""The event loop the server and its worker processes run on.

uvloop (libuv) is used when installed, which it is on Linux and macOS: its wake-ups from
threads and sockets are cheaper than asyncio's own loop, and an execution crosses several of
them (gRPC's poller, DSPy's `to_thread` hops, the worker pipes). `docs/benchmarks.md` has the
figures. `--event-loop asyncio` runs on the standard loop instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

EventLoopName = Literal["auto", "uvloop", "asyncio"]
T = TypeVar("T")


def loop_factory(name: EventLoopName) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """The factory for `name`; None means asyncio's default loop.

    `auto` picks uvloop when it can be imported; `uvloop` requires it (ValueError otherwise)."""
    if name == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if name == "uvloop":
            raise ValueError(
                "event_loop is 'uvloop' but uvloop is not installed; install it "
                "(pip install uvloop) or use event_loop 'auto' or 'asyncio'"
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory


def loop_name(name: EventLoopName) -> str:
    """The loop `name` resolves to here: `uvloop` or `asyncio`."""
    return "asyncio" if loop_factory(name) is None else "uvloop"


def run(main: Coroutine[Any, Any, T], name: EventLoopName = "auto") -> T:
    """`asyncio.run(main)` on the loop `name` resolves to."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)
