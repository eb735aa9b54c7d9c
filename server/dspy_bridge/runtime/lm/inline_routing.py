"""DSPy's native async engine, routing on the event loop once its provider client is built.

DSPy 3.4's `AsyncLM15Engine` starts every call with `await asyncio.to_thread(self._target,
request)`: the first call for a provider builds its client, which "may load or refresh
credentials synchronously", so it must stay off the loop. Every later call only checks the
request, resolves the model string and finds that client in a dict: pure CPU, no I/O, yet it
still paid a hop to a thread and back (a thread wake-up, a future, a loop wake-up, and up to a
GIL switch interval of waiting when the loop is busy), about 6 % of a worker's CPU per LM call
and a source of latency under load (py-spy on the LM bench, `docs/benchmarks.md`).

`InlineRoutingEngine` keeps the first call per model exactly as DSPy makes it and routes later
ones on the loop. `route_natively_on_the_loop()` makes it the engine DSPy builds for its native
async calls (`dspy.clients.execution` names the class it constructs); the sync engine, LiteLLM
and the offline LM are untouched.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from dspy.clients.engines.lifecycle import aclosing_stream
from dspy.clients.engines.lm15_engine import AsyncLM15Engine
from dspy.clients.engines.stream_guard import achecked_stream

__all__ = ["InlineRoutingEngine", "route_natively_on_the_loop"]

#: Model strings one engine remembers as routed (DSPy keys an engine by its LM's model, so one
#: is the rule; the bound only keeps a surprise from growing without end).
MAX_ROUTED_MODELS = 64

_installed = False
_install_lock = threading.Lock()


class InlineRoutingEngine(AsyncLM15Engine):  # type: ignore[misc]
    """`AsyncLM15Engine` that routes on the loop after the first call per model (module
    docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._routed: set[str] = set()

    async def _route(self, request: Any, streaming: bool) -> tuple[Any, Any]:
        if request.model in self._routed:  # its client exists: resolving is CPU only
            return self._target(request, streaming=streaming)  # type: ignore[no-any-return]
        target = await asyncio.to_thread(self._target, request, streaming=streaming)
        if len(self._routed) < MAX_ROUTED_MODELS:
            self._routed.add(request.model)
        return target  # type: ignore[no-any-return]

    async def complete(self, request: Any) -> Any:
        provider, routed = await self._route(request, streaming=False)
        return await provider.complete(routed)

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        provider, routed = await self._route(request, streaming=True)
        events = achecked_stream(provider.stream(routed), provider=provider.provider)
        async with aclosing_stream(events):
            async for event in events:
                yield event


def route_natively_on_the_loop() -> None:
    """Makes DSPy build `InlineRoutingEngine` for its native async calls (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from dspy.clients import execution

        # execution.py imported the class by name: its binding is what DSPy constructs.
        execution.AsyncLM15Engine = InlineRoutingEngine
        _installed = True
