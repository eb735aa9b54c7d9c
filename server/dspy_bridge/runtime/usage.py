"""LM usage and call traces of one execution, collected without any process-wide state.

Concurrent executions share cached programs and LMs, so nothing here reads a global history or a
program's `history`. Per execution, a `CallRecorder`:

- receives the LM's history entries through `bind(lm)`: a per-execution copy of the LM whose
  `update_history` hands each call's entry (usage, cost; cache hits included) to the recorder
  instead of DSPy's global and per-module histories. That is the usage of exactly this execution,
  and it keeps a long-running server from accumulating every prompt it ever sent. LM copies DSPy
  makes during the call (BestOfN's rollout copies) inherit the binding.
- when a trace is asked for, is also a DSPy callback (`on_lm_start` / `on_lm_end`, installed
  with `dspy.context(callbacks=...)`) recording each LM call's messages, options and raw
  completions. Only then: DSPy's callback machinery inspects every module, adapter and LM call
  it wraps, which costs a noticeable share of a fast execution.

LM calls made by an LM object the execution did not hand out (a plugin module holding its own
LM) are not seen.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dspy.clients.base_lm import BaseLM
from dspy.utils.callback import BaseCallback

from dspy_bridge.runtime.lm.errors import lm_error_to_bridge


@dataclass(frozen=True)
class UsageStats:
    """LM usage of one execution (mirrors `dspy_bridge.v1.Usage`)."""

    lm_calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def __add__(self, other: UsageStats) -> UsageStats:
        return UsageStats(
            self.lm_calls + other.lm_calls,
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cost_usd + other.cost_usd,
        )


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-compatible copy (messages may hold pydantic objects, tuples, bytes, ...)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if depth > 16:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth + 1) for v in value]
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        try:
            return jsonable(dump(), depth + 1)
        except Exception:
            return str(value)
    return str(value)


def _completion_text(output: Any) -> str:
    if isinstance(output, str):
        return output
    if isinstance(output, Mapping) and len(output) == 1:
        text = output.get("text")
        if isinstance(text, str):
            return text
    return json.dumps(jsonable(output), ensure_ascii=False)


_SECRET_OPTIONS = ("api_key", "api_base", "base_url", "headers", "extra_headers")


class CallRecorder(BaseCallback):  # type: ignore[misc]
    """Usage and (optionally) the trace of one execution. See the module docstring."""

    def __init__(self, include_trace: bool = False) -> None:
        self.include_trace = include_trace
        self.lm_calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.cost_usd = 0.0
        self._pending: dict[str, dict[str, Any]] = {}
        self.trace: list[dict[str, Any]] = []

    @property
    def callbacks(self) -> list[BaseCallback]:
        """What to install with `dspy.context(callbacks=...)`."""
        return [self] if self.include_trace else []

    # -- DSPy callback (traces) -------------------------------------------------------------

    def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
        if not self.include_trace:
            return
        messages = inputs.get("messages")
        if messages is None and inputs.get("prompt") is not None:
            messages = [{"role": "user", "content": inputs["prompt"]}]
        options = {**getattr(instance, "kwargs", {}), **(inputs.get("kwargs") or {})}
        options = {
            k: v
            for k, v in options.items()
            if v is not None and not k.startswith("api_") and k not in _SECRET_OPTIONS
        }
        self._pending[call_id] = {
            "model": str(getattr(instance, "model", "")),
            "messages": [jsonable(m) for m in messages or []],
            "options": jsonable(options),
        }

    def on_lm_end(
        self, call_id: str, outputs: Any | None, exception: BaseException | None = None
    ) -> None:
        call = self._pending.pop(call_id, None)
        if call is None:
            return
        if exception is not None:
            call["completions"] = []
            # The mapped message, never the exception's text: that can be a provider's body.
            mapped = lm_error_to_bridge(exception)
            call["error"] = (
                f"{mapped.reason}: {mapped.message}" if mapped else type(exception).__name__
            )
        else:
            outputs = outputs if isinstance(outputs, list) else [outputs]
            call["completions"] = [_completion_text(o) for o in outputs]
        self.trace.append(call)

    # -- LM history -------------------------------------------------------------------------

    def bind(self, lm: BaseLM) -> BaseLM:
        """A copy of `lm` whose history entries come to this recorder (see module docstring),
        and to the process-wide tally where one runs."""
        bound = lm.copy()
        model = str(getattr(lm, "model", ""))

        def entry(item: Mapping[str, Any]) -> None:
            self._history_entry(item)
            if _tally is not None:
                _tally.add(model, item)

        bound.update_history = entry
        return bound

    def _history_entry(self, entry: Mapping[str, Any]) -> None:
        self.lm_calls += 1
        usage = entry.get("usage") or {}
        self.prompt_tokens += _count(usage.get("prompt_tokens"))
        self.completion_tokens += _count(usage.get("completion_tokens"))
        cost = entry.get("cost")
        if isinstance(cost, int | float) and math.isfinite(cost):
            self.cost_usd += float(cost)

    # -- result -----------------------------------------------------------------------------

    def usage(self) -> UsageStats:
        return UsageStats(
            self.lm_calls, self.prompt_tokens, self.completion_tokens, round(self.cost_usd, 10)
        )


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


# -- the process-wide tally (job processes) -------------------------------------------------


class UsageTally:
    """LM calls and tokens by model, counted process-wide as they happen. A job process runs
    optimizers that call LMs directly, so no per-execution result carries that usage to the
    front; the job reports what `take()` returns with each message instead."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # optimizers call LMs from several threads
        self._counts: dict[str, list[int]] = {}

    def add(self, model: str, entry: Mapping[str, Any]) -> None:
        usage = entry.get("usage") or {}
        with self._lock:
            counts = self._counts.setdefault(model, [0, 0, 0])
            counts[0] += 1
            counts[1] += _count(usage.get("prompt_tokens"))
            counts[2] += _count(usage.get("completion_tokens"))

    def take(self) -> dict[str, list[int]]:
        """`{model: [lm_calls, prompt_tokens, completion_tokens]}` since the last take."""
        with self._lock:
            counts, self._counts = self._counts, {}
        return counts


_tally: UsageTally | None = None


def tally_every_lm_call() -> UsageTally:
    """From now on, counts every LM call this process makes, through any LM object (DSPy's own
    and the copies `CallRecorder.bind` hands out)."""
    global _tally
    if _tally is None:
        tally = _tally = UsageTally()
        unbound = BaseLM.update_history

        def counted(lm: BaseLM, entry: Mapping[str, Any]) -> None:
            tally.add(str(getattr(lm, "model", "")), entry)
            unbound(lm, entry)

        BaseLM.update_history = counted
    return _tally
