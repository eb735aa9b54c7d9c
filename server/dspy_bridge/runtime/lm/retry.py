"""The sidecar's own retry policy for provider calls: explicit, bounded by the call's deadline.

Neither LiteLLM nor DSPy retries anything here: DSPy's LMs are built with `num_retries=0` (and
DSPy's LiteLLM engine always passes `num_retries=0` to LiteLLM), so a 429 with `Retry-After: 7`
cannot turn into three silent LiteLLM retries and a DEADLINE_EXCEEDED that hides the rate
limit. Instead each LM call (`provider.ProviderLM`) is retried by this policy:

- what: failures DSPy classifies as transient (`is_retryable_lm_error`: rate limits, 5xx,
  timeouts, connection errors); never a refusal (401, 400, context window, billing), and never
  once any output of the attempt was streamed to the host;
- how often: `num_retries` more attempts after the first (LMConfig option; default 2);
- how long between: the provider's `Retry-After` when it sent one, else `retry_backoff_ms`
  (default 500) doubled per retry, capped at 30 s, with ±20 % jitter so many callers do not
  retry in step;
- never past the deadline: a wait that would end after the execution's deadline (its
  `timeout_ms`, or the gRPC deadline when sooner: `host_calls.EXECUTION_DEADLINE`) is not
  started; the last failure is raised at once, so a rate-limited host gets
  RESOURCE_EXHAUSTED `LM_RATE_LIMITED` with the provider's `retry_after_ms` instead of a
  DEADLINE_EXCEEDED that says nothing. A `Retry-After` above 60 s is not waited for either.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dspy_bridge.runtime.host_calls import EXECUTION_DEADLINE

__all__ = [
    "DEFAULT_BACKOFF_MS",
    "DEFAULT_RETRIES",
    "MAX_WAIT_S",
    "RetryPolicy",
    "retry_after_seconds",
]

DEFAULT_RETRIES = 2
DEFAULT_BACKOFF_MS = 500.0
MAX_BACKOFF_S = 30.0
MAX_WAIT_S = 60.0
_JITTER = 0.2


def _parse_retry_after(value: Any) -> float | None:
    """Seconds from a Retry-After value: a number of seconds or an HTTP date."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        seconds = float(value)
    else:
        text = str(value).strip()
        try:
            seconds = float(text)
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(text)
            except (TypeError, ValueError):
                return None
            seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _header(headers: Any, name: str) -> Any:
    if headers is None:
        return None
    getter = getattr(headers, "get", None)
    if callable(getter):
        return getter(name)
    if isinstance(headers, Mapping):
        return headers.get(name)
    return None


def retry_after_seconds(exc: BaseException) -> float | None:
    """The provider's retry hint for a failure, whichever engine raised it.

    DSPy's native engine puts it on the error (`retry_after`); through LiteLLM it is only in
    the HTTP headers LiteLLM's exception keeps, further down the `raise ... from` chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(seen) < 8:
        seen.add(id(current))
        hint = _parse_retry_after(getattr(current, "retry_after", None))
        if hint is not None:
            return hint
        for attr in ("litellm_response_headers", "headers"):
            hint = _parse_retry_after(_header(getattr(current, attr, None), "retry-after"))
            if hint is not None:
                return hint
        response = getattr(current, "response", None)
        hint = _parse_retry_after(_header(getattr(response, "headers", None), "retry-after"))
        if hint is not None:
            return hint
        current = current.__cause__ or current.__context__
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """How one LM's calls are retried (see the module docstring)."""

    retries: int = DEFAULT_RETRIES
    backoff_ms: float = DEFAULT_BACKOFF_MS

    def wait_before_retry(
        self, exc: BaseException, attempt: int, emitted: bool, now: float | None = None
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None: raise `exc` now."""
        from dspy.utils.exceptions import is_retryable_lm_error

        if emitted or attempt > self.retries or not isinstance(exc, Exception):
            return None
        if not is_retryable_lm_error(exc):
            return None
        hint = retry_after_seconds(exc)
        if hint is not None:
            wait = hint
        else:
            wait = min(self.backoff_ms / 1000 * 2 ** (attempt - 1), MAX_BACKOFF_S)
            wait *= 1 + random.uniform(-_JITTER, _JITTER)
        if wait > MAX_WAIT_S:
            return None
        end = EXECUTION_DEADLINE.get()  # the running execution's, time.monotonic() seconds
        if end is not None and (now if now is not None else time.monotonic()) + wait >= end:
            return None
        return wait
