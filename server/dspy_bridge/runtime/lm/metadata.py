"""Memoized model-metadata lookups: DSPy's price and capability table read once per model.

On every provider call DSPy 3.4 looks the model up in its bundled model table
(`dspy.clients.model_metadata.model_info`) three times: once for the model's capabilities before
the request, twice for the price of the answer (the answered and the requested model). For a
model the table lists that is a dictionary hit; for one it does not list (a self-hosted or
OpenAI-compatible endpoint's own model name: `openai/my-finetune`, vLLM, Ollama, ...) each lookup
scans all ~4,500 entries for an alias, about 0.5 ms of CPU, so ~1.5 ms of every LM call went to
answering the same question again. The table is loaded once per process and never changes
afterwards (the sidecar forbids the network refresh: `LITELLM_LOCAL_MODEL_COST_MAP`), so the
answer for (provider, model, namespaces) is a pure function of it: `memoize_model_metadata()`
keeps the last `MAX_MODELS` answers and hands out deep copies, as DSPy does. A table object
other than the one answers were computed from (a test reloading it) empties the memo.

Bounded: model names come from hosts, so at most `MAX_MODELS` answers are kept (least
recently used dropped first).
"""

from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["MAX_MODELS", "memoize_model_metadata"]

MAX_MODELS = 256

_installed = False
_install_lock = threading.Lock()


class _Memo:
    """`model_info` with its answers kept per table object (see the module docstring)."""

    def __init__(self, lookup: Callable[..., dict[str, Any]], table: Callable[[], Any]) -> None:
        self._lookup = lookup
        self._table = table
        self._lock = threading.Lock()  # DSPy looks models up from worker threads
        self._answers: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
        self._for: Any = None

    def __call__(
        self, provider: Any, model: Any, *, namespaces: Iterable[str] | None = None
    ) -> dict[str, Any]:
        table = self._table()
        try:
            key = (provider, model, None if namespaces is None else tuple(namespaces))
            hash(key)
        except TypeError:  # not a plain name: no memo, DSPy answers as before
            return self._lookup(provider, model, namespaces=namespaces)
        with self._lock:
            if self._for is not table:
                self._answers.clear()
                self._for = table
            answer = self._answers.get(key)
            if answer is not None:
                self._answers.move_to_end(key)
        if answer is None:
            answer = self._lookup(provider, model, namespaces=key[2])
            with self._lock:
                if self._for is table:
                    self._answers[key] = answer
                    while len(self._answers) > MAX_MODELS:
                        self._answers.popitem(last=False)
        return copy.deepcopy(answer)  # callers may change what they get, as DSPy allows


def memoize_model_metadata() -> None:
    """Makes DSPy's capability and price lookups use the memo (once per process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from dspy.clients import capabilities, costs, model_metadata

        memo = _Memo(model_metadata.model_info, model_metadata._load)
        # Both modules imported the function by name: their bindings are what DSPy calls.
        capabilities.model_info = memo
        costs.model_info = memo
        _installed = True
