"""Fixtures of the runtime tests that reach a provider: the local OpenAI-compatible fake."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dspy_bridge.runtime.lm.factory import clear_lm_cache
from tests.fakes.openai_server import FakeOpenAI
from tests.runtime.module_helpers import PROVIDER_KEY_ENV


@pytest.fixture
def provider(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    """The fake provider, its key in the environment, and no LM built before it."""
    monkeypatch.setenv(PROVIDER_KEY_ENV, "sk-provider-path-0123456789")
    clear_lm_cache()
    with FakeOpenAI() as fake:
        yield fake
