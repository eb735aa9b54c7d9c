"""Choosing the event loop: uvloop when installed, asyncio on request, a clear error otherwise."""

from __future__ import annotations

import asyncio
import sys

import pytest
from pydantic import ValidationError

from dspy_bridge.config import Settings
from dspy_bridge.loop import loop_factory, loop_name, run


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__.split(".")[0]


def test_auto_prefers_uvloop_and_asyncio_is_the_standard_loop() -> None:
    assert loop_name("auto") == "uvloop"
    assert run(_loop_module(), "auto") == "uvloop"
    assert loop_factory("asyncio") is None
    assert run(_loop_module(), "asyncio") == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert loop_name("auto") == "asyncio"
    with pytest.raises(ValueError, match="uvloop is not installed"):
        loop_factory("uvloop")
    with pytest.raises(ValidationError, match="uvloop is not installed"):
        Settings(event_loop="uvloop")
    assert Settings(event_loop="auto").event_loop == "auto"


def test_unknown_loop_name_is_a_settings_error() -> None:
    with pytest.raises(ValidationError, match="event_loop"):
        Settings(event_loop="trio")  # type: ignore[arg-type]
