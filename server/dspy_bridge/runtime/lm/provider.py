"""`ProviderLM`: `dspy.LM` as the sidecar runs it — engine choice, its own retries, usage.

Engines. DSPy 3.4 has two ways to reach a provider: its native engine (`lm15`, plain HTTP with
pooled connections, about a third of LiteLLM's CPU per call) for the providers it knows
(OpenAI and OpenAI-compatible endpoints, Anthropic, Gemini, Mistral, Groq, DeepSeek, xAI,
Together, Fireworks, OpenRouter, Cohere, Bedrock, Vertex, Azure, ... — `dspy.lm15` lists
them) and LiteLLM for every other model string. The LMConfig option `engine` picks:

- `auto` (the default): the native engine wherever DSPy can carry the request and its client
  settings, LiteLLM otherwise (an unknown provider prefix such as `ollama_chat/`, a
  `text` model, an Azure deployment with `api_base`). DSPy decides before any I/O;
  `engine_of(lm)` tells which one a built LM uses.
- `native`: DSPy's engine only; a model it cannot serve is refused when the LM is built
  (INVALID_ARGUMENT `LM_BAD_REQUEST`), never silently sent through LiteLLM.
- `litellm`: always LiteLLM.

Both raise DSPy's `LMError` classes, so errors map to the same codes and reasons
(`errors.lm_error_to_bridge`), and both get the same retry hint (`retry.retry_after_seconds`).

Retries are the sidecar's (`retry.RetryPolicy`): DSPy's own loop is off (`num_retries=0`) and
`acall`/`__call__` retry one LM call at a time, so a multi-call module (ReAct) repeats the
failed call only, never a tool call.

Streaming usage: DSPy asks LiteLLM for usage in a stream only under `track_usage`; the sidecar
always wants exact tokens, so a streamed call through LiteLLM asks for
`stream_options.include_usage` (the native engine always reads the provider's usage).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import dspy
from dspy.clients.call_context import adapter_fallback_scope

from dspy_bridge.runtime.lm.retry import RetryPolicy

__all__ = ["ENGINES", "ProviderLM", "engine_of"]

#: LMConfig option `engine` -> DSPy's engine selection.
ENGINES = {"auto": "auto", "native": "lm15", "litellm": "litellm"}


def engine_of(lm: Any) -> str:
    """`native` or `litellm`: the engine DSPy selects for `lm`'s calls (no I/O)."""
    from dspy.clients.backend_selection import select_backend

    return "native" if select_backend(lm).native else "litellm"


class ProviderLM(dspy.LM):  # type: ignore[misc]
    """`dspy.LM` with the sidecar's retry policy and streaming usage (module docstring).

    Also: DSPy's hint that `rollout_id` has no effect at temperature 0 is not given, because
    here `rollout_id` is the response cache's namespace (`factory`), not a request for a
    fresh sample."""

    retry_policy: RetryPolicy = RetryPolicy()

    def _warn_zero_temp_rollout(self, temperature: float | None, rollout_id: Any) -> None:
        return None

    def engine_path(self) -> str:
        """`native` or `litellm` (`engine_of`), decided once per LM: DSPy selects from the LM's
        settings, with no I/O. Kept in the instance's dict, so the copies an execution binds
        carry it (`loop_hops` reads it there)."""
        path = self.__dict__.get("_bridge_engine_path")
        if path is None:
            path = self.__dict__["_bridge_engine_path"] = engine_of(self)
        return str(path)

    def _with_stream_usage(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        if dspy.settings.send_stream is None or self.engine_path() != "litellm":
            return kwargs
        return {**kwargs, "stream_options": {"include_usage": True}}

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        kwargs = self._with_stream_usage(kwargs)
        attempt = 1
        while True:
            with adapter_fallback_scope() as progress:
                try:
                    return await super().acall(prompt, messages=messages, **kwargs)
                except Exception as exc:
                    wait = self.retry_policy.wait_before_retry(exc, attempt, progress.emitted)
                    if wait is None:
                        raise
            await asyncio.sleep(wait)
            attempt += 1

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        kwargs = self._with_stream_usage(kwargs)
        attempt = 1
        while True:
            with adapter_fallback_scope() as progress:
                try:
                    return super().__call__(prompt, messages=messages, **kwargs)
                except Exception as exc:
                    wait = self.retry_policy.wait_before_retry(exc, attempt, progress.emitted)
                    if wait is None:
                        raise
            time.sleep(wait)
            attempt += 1
