"""DSPy modules the server builds on top of DSPy's own, where a host-facing module type needs
more than the DSPy class gives: a reward named in config, an async path whose LM calls can be
cancelled, or a shape that fits one `Execute` call.

- `BestOfN` — `dspy.BestOfN` with an `aforward` (cancellable, no thread) and without DSPy's
  per-instance failure counter, which would leak between concurrent calls of a cached program.
- `Refine` — `dspy.Refine` with the same counter fix; it stays sync (run in a thread).
- `MultiChainComparison` — generates the `M` attempts itself with a ChainOfThought, then lets
  `dspy.MultiChainComparison` compare them, so a host calls it with the signature's inputs only.
- `ParallelItems` — runs one inner module over each element of an `items` list input.
- `Reward` — the built-in reward functions for BestOfN/Refine: `non_empty`, `exact_match`,
  `contains`.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import dspy

log = logging.getLogger(__name__)

REWARDS = ("non_empty", "exact_match", "contains")


def _text(value: Any) -> str:
    return "" if value is None else str(value).strip()


class Reward:
    """A reward `(inputs, prediction) -> float` in [0, 1] computed from config, never host code.

    - `non_empty`: the share of the checked output fields that are non-empty;
    - `exact_match`: 1.0 when the checked field equals the target (trimmed, case-insensitive);
    - `contains`: 1.0 when the checked field contains the target (case-insensitive).

    The checked field is `field` (default: every output for `non_empty`, the last output
    otherwise); the target is the literal `target`, or the value of input field `target_input`.
    """

    def __init__(
        self,
        kind: str,
        outputs: Sequence[str],
        field: str = "",
        target: Any = None,
        target_input: str = "",
    ) -> None:
        self.kind = kind
        self.fields = [field] if field else list(outputs if kind == "non_empty" else outputs[-1:])
        self.target = target
        self.target_input = target_input

    def __call__(self, inputs: Mapping[str, Any], prediction: Any) -> float:
        values = [prediction.get(name) for name in self.fields]
        if self.kind == "non_empty":
            return sum(1.0 for v in values if _text(v)) / max(len(values), 1)
        target = inputs.get(self.target_input) if self.target_input else self.target
        wanted, got = _text(target).casefold(), _text(values[0]).casefold()
        if self.kind == "exact_match":
            return 1.0 if got == wanted else 0.0
        return 1.0 if wanted and wanted in got else 0.0


class BestOfN(dspy.BestOfN):  # type: ignore[misc]
    """`dspy.BestOfN`, callable concurrently, with an async path.

    Each attempt runs the inner module with its own LM copy (`rollout_id` = start + attempt,
    temperature 1.0, as DSPy does) and the first attempt whose reward reaches the threshold wins;
    otherwise the best one. Failed attempts count against `fail_count`; when every attempt
    fails, the last error is raised instead of returning nothing.
    """

    def forward(self, **kwargs: Any) -> Any:
        # DSPy decrements `self.fail_count` on failures: run on a copy so calls stay independent.
        return dspy.BestOfN.forward(copy.copy(self), **kwargs)

    async def aforward(self, **kwargs: Any) -> Any:
        lm = self.module.get_lm() or dspy.settings.lm
        start = lm.kwargs.get("rollout_id") or 0
        best_pred, best_trace, best_reward = None, None, -float("inf")
        failures, last_error = 0, None
        for attempt in range(self.N):
            module = self.module.deepcopy()
            module.set_lm(lm.copy(rollout_id=start + attempt, temperature=1.0))
            try:
                with dspy.context(trace=[]):
                    pred = await module.acall(**kwargs)
                    trace = dspy.settings.trace.copy()
                    reward = self.reward_fn(kwargs, pred)
            except Exception as exc:
                log.info("BestOfN attempt %d failed: %s", attempt + 1, exc)
                failures, last_error = failures + 1, exc
                if failures > self.fail_count:
                    raise
                continue
            if reward > best_reward:
                best_pred, best_trace, best_reward = pred, trace, reward
            if reward >= self.threshold:
                break
        if best_pred is None:
            assert last_error is not None
            raise last_error
        if best_trace and dspy.settings.trace is not None:
            dspy.settings.trace.extend(best_trace)
        return best_pred


class Refine(dspy.Refine):  # type: ignore[misc]
    """`dspy.Refine` (sync: its feedback loop wraps the adapter's sync path), callable
    concurrently. Raises the last error when no attempt produced a prediction."""

    def forward(self, **kwargs: Any) -> Any:
        result = dspy.Refine.forward(copy.copy(self), **kwargs)
        if result is None:
            raise RuntimeError(f"Refine: all {self.N} attempts failed")
        return result


def _attempt_inputs(last_key: str, completions: Sequence[Any]) -> dict[str, str]:
    """The `reasoning_attempt_<i>` inputs exactly as `dspy.MultiChainComparison.forward` builds
    them, so the async path sends the same prompt as the sync one."""
    attempts = {}
    for idx, c in enumerate(completions):
        rationale = str(c.get("rationale", c.get("reasoning")) or "").strip().split("\n")[0].strip()
        answer = str(c[last_key]).strip().split("\n")[0].strip()
        attempts[f"reasoning_attempt_{idx + 1}"] = (
            f"«I'm trying to {rationale} I'm not sure but my prediction is {answer}»"
        )
    return attempts


class MultiChainComparison(dspy.Module):  # type: ignore[misc]
    """Generates `M` reasoning attempts (ChainOfThought, distinct rollout ids) and compares them
    with `dspy.MultiChainComparison`, which returns a `rationale` and the outputs.

    Predictors: `generate.predict` (the attempts) and `compare.predict` (the comparison).
    """

    def __init__(self, signature: type[dspy.Signature], M: int, temperature: float) -> None:
        super().__init__()
        self.M = M
        self.temperature = temperature
        self.generate = dspy.ChainOfThought(signature)
        self.compare = dspy.MultiChainComparison(signature, M=M, temperature=temperature)

    def _config(self, attempt: int) -> dict[str, Any]:
        return {"rollout_id": attempt, "temperature": self.temperature}

    def forward(self, **kwargs: Any) -> Any:
        completions = [self.generate(**kwargs, config=self._config(i)) for i in range(self.M)]
        return self.compare(completions, **kwargs)

    async def aforward(self, **kwargs: Any) -> Any:
        completions = await asyncio.gather(
            *(self.generate.acall(**kwargs, config=self._config(i)) for i in range(self.M))
        )
        inputs = {**_attempt_inputs(self.compare.last_key, completions), **kwargs}
        return await self.compare.predict.acall(**inputs)


class ParallelItems(dspy.Module):  # type: ignore[misc]
    """Runs `inner` once per element of `items` (each a dict of the signature's inputs), at most
    `max_concurrency` at a time, and returns `Prediction(items=[prediction, ...])` in order.
    One failing item fails the call (the others are cancelled)."""

    def __init__(self, inner: dspy.Module, max_concurrency: int) -> None:
        super().__init__()
        self.inner = inner
        self.max_concurrency = max_concurrency

    def forward(self, items: Sequence[Mapping[str, Any]]) -> Any:
        return dspy.Prediction(items=[self.inner(**item) for item in items])

    async def aforward(self, items: Sequence[Mapping[str, Any]]) -> Any:
        gate = asyncio.Semaphore(self.max_concurrency)

        async def one(item: Mapping[str, Any]) -> Any:
            async with gate:
                return await self.inner.acall(**item)

        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(item)) for item in items]
        return dspy.Prediction(items=[t.result() for t in tasks])
