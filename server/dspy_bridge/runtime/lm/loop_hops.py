"""DSPy's per-call thread hops that need no thread here, run on the loop instead.

Besides routing (`inline_routing`), DSPy 3.4 sends three steps of every native async LM call
to a thread with `asyncio.to_thread`, in case they block:

- `execution.prepare`: builds the call, and reads local files when the prompt is a
  `dspy.lm15.Request` with media parts. The adapters call with messages, never a Request.
- `capabilities.capabilities`: the model's capability hints; on LiteLLM's engine it may import
  and consult LiteLLM. On the native engine it is a model-table lookup, memoized in this
  process (`lm.metadata`).
- `execution._price_result`: the answer's price, the same memoized lookup.

For the cases named above each is CPU only, a few tens of microseconds, while the hop costs a
thread wake-up, two futures and a loop wake-up, plus waiting for the GIL when the loop is busy:
the three hops were ~30 % of a native call's CPU in the LM bench (`docs/benchmarks.md`).

`StepsOnTheLoop` is the loop's default executor (what `to_thread` submits to): it runs those
steps inline, in the copied context `to_thread` gives them, and hands everything else to its
threads as before (a sync-only module, a LiteLLM capability lookup, a Request with media).
`run_dspy_steps_on_the_loop()` installs it on the running loop once.
"""

from __future__ import annotations

import asyncio
import functools
import os
import weakref
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from dspy.clients import capabilities, execution
from dspy.lm15 import Request

__all__ = ["StepsOnTheLoop", "run_dspy_steps_on_the_loop"]


def _prepare_reads_nothing(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    # prepare(lm, prompt, messages, kwargs): only a Request prompt has media files to read.
    return not (len(args) > 1 and isinstance(args[1], Request))


def _native_capabilities(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    # capabilities(lm): `ProviderLM` records its engine when it is built (provider.py).
    return bool(args) and getattr(args[0], "_bridge_engine_path", None) == "native"


def _always(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    return True


#: The steps run inline, each with the condition under which it is CPU only.
_INLINE: dict[Callable[..., Any], Callable[[tuple[Any, ...], dict[str, Any]], bool]] = {
    execution.prepare: _prepare_reads_nothing,
    capabilities.capabilities: _native_capabilities,
    execution._price_result: _always,
}


class StepsOnTheLoop(ThreadPoolExecutor):
    """A default executor running DSPy's CPU-only steps inline (module docstring)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        if _runs_inline(fn):
            done: Future[Any] = Future()
            try:
                done.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # delivered to the awaiting caller, as from a thread
                done.set_exception(exc)
            return done
        return super().submit(fn, *args, **kwargs)


def _runs_inline(fn: Callable[..., Any]) -> bool:
    # `to_thread(step, *a, **k)` submits functools.partial(context.run, step, *a, **k).
    if not isinstance(fn, functools.partial) or not fn.args:
        return False
    step, *args = fn.args
    try:
        condition = _INLINE.get(step)
    except TypeError:  # an unhashable callable: not one of ours
        return False
    return condition is not None and condition(tuple(args), fn.keywords)


_installed: weakref.WeakSet[asyncio.AbstractEventLoop] = weakref.WeakSet()


def run_dspy_steps_on_the_loop() -> None:
    """Makes `StepsOnTheLoop` the running loop's default executor (once per loop), with the
    thread count asyncio's own default executor has."""
    loop = asyncio.get_running_loop()
    if loop in _installed:
        return
    loop.set_default_executor(StepsOnTheLoop(max_workers=min(32, (os.cpu_count() or 1) + 4)))
    _installed.add(loop)
