"""DSPy's CPU-only per-call steps run on the loop (runtime/lm/loop_hops.py): a native call
after the first sends nothing to a thread; what may block (LiteLLM's capability lookup, a
Request prompt with media files, any other work) still goes to the executor's threads."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import pytest
from dspy.clients import capabilities, execution
from dspy.lm15 import Message, Request

from dspy_bridge.runtime.executor import ExecutionRequest, InProcessExecutor
from dspy_bridge.runtime.lm import loop_hops
from dspy_bridge.runtime.lm.factory import build_lm
from dspy_bridge.runtime.lm.loop_hops import _runs_inline, run_dspy_steps_on_the_loop
from tests.fakes.openai_server import FakeOpenAI
from tests.runtime.module_helpers import make_record, provider_spec

# Raised by pydantic while LiteLLM builds its own types; nothing to do with these tests.
pytestmark = pytest.mark.filterwarnings("ignore:Item .* is using the `ReadOnly` qualifier")


@pytest.fixture
def threaded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the steps handed to a thread, in order."""
    names: list[str] = []
    original = ThreadPoolExecutor.submit

    def recorded(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kw: Any) -> Future[Any]:
        step = fn.args[0] if isinstance(fn, functools.partial) and fn.args else fn
        names.append(getattr(step, "__name__", repr(step)))
        return original(self, fn, *args, **kw)

    monkeypatch.setattr(ThreadPoolExecutor, "submit", recorded)
    return names


def _step(step: Any, *args: Any) -> functools.partial[Any]:
    """What `asyncio.to_thread(step, *args)` submits."""
    return functools.partial(contextvars.copy_context().run, step, *args)


def test_which_steps_run_inline(provider: FakeOpenAI) -> None:
    native = build_lm(provider_spec(provider, "native"))
    litellm = build_lm(provider_spec(provider, "litellm"))
    messages = [{"role": "user", "content": "hi"}]
    assert _runs_inline(_step(execution.prepare, native, None, messages, {}))
    request = Request(model=native.model, messages=[Message.user("hi")])
    assert not _runs_inline(_step(execution.prepare, native, request, None, {}))
    assert _runs_inline(_step(capabilities.capabilities, native))
    assert _runs_inline(_step(capabilities.capabilities, native.copy()))  # bound copies too
    assert not _runs_inline(_step(capabilities.capabilities, litellm))
    assert _runs_inline(_step(execution._price_result, native, None, None, None, None))
    assert not _runs_inline(_step(print, "anything else"))
    assert not _runs_inline(print)


async def test_a_native_call_sends_nothing_to_a_thread(
    provider: FakeOpenAI, threaded: list[str]
) -> None:
    executor = InProcessExecutor()

    async def run(engine: str) -> None:
        record = make_record("ChainOfThought")
        request = ExecutionRequest(record, provider_spec(provider, engine), {"question": "Why?"})
        assert (await executor.execute(request)).outputs["answer"]

    await run("native")  # the first call builds the provider's client on a thread
    threaded.clear()
    await run("native")
    await run("native")
    assert threaded == []
    await run("litellm")
    assert "capabilities" in threaded  # LiteLLM's lookup may import and block: a thread


async def test_an_inline_step_keeps_to_threads_contract(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[object] = []
    marker: contextvars.ContextVar[str] = contextvars.ContextVar("marker", default="outer")

    def step(value: int) -> int:
        seen.append(threading.get_ident())
        marker.set("inside")  # a copied context: nothing leaks back to the caller
        if value < 0:
            raise ValueError("negative")
        return value * 2

    monkeypatch.setitem(loop_hops._INLINE, step, lambda args, kwargs: True)
    run_dspy_steps_on_the_loop()
    assert await asyncio.to_thread(step, 21) == 42
    with pytest.raises(ValueError, match="negative"):
        await asyncio.to_thread(step, -1)
    assert seen == [threading.get_ident()] * 2
    assert marker.get() == "outer"
    # Anything else still runs on the executor's threads.
    assert await asyncio.to_thread(threading.get_ident) != threading.get_ident()
