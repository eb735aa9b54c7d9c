"""One pydantic `TypeAdapter` per type for DSPy's adapters, instead of one per value.

DSPy 3.4's adapters build a new `pydantic.TypeAdapter` for every value they put in a prompt
(`adapters.utils.serialize_for_json`: `TypeAdapter(type(value))`) and for every output they
parse (`parse_value`: `TypeAdapter(annotation)`). Building one generates pydantic's core schema,
tens of microseconds for a `str` and far more for a model; a ChainOfThought call built several,
about 8 % of a worker's CPU per LM call (py-spy on the LM bench, `docs/benchmarks.md`). A built
adapter never changes and does the same for every value of its type, so `memoize_type_adapters()`
makes the name `TypeAdapter` in those modules a bounded cache: one adapter per class, kept for
the `MAX_TYPES` most recently used classes.

Only plain classes are kept (`str`, `int`, a pydantic model, a DSPy type): for them an adapter
depends on the class alone. Anything else (`list[str]`, `Literal[...]`, a string annotation, a
call with `config=`) is built afresh as before, in the namespace of DSPy's own frame, so
forward references resolve exactly as they did.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from pydantic import TypeAdapter

__all__ = ["MAX_TYPES", "TypeAdapterCache", "memoize_type_adapters"]

#: Classes whose adapters are kept (classes come from modules' signatures, hence from hosts).
MAX_TYPES = 512

#: `TypeAdapter` resolves forward references in the namespace `_parent_depth` frames up: 2 is
#: its caller's; through this cache DSPy's frame is one further.
_DSPY_FRAME = 3

_installed = False
_install_lock = threading.Lock()


class TypeAdapterCache:
    """Callable like `TypeAdapter(type)`; see the module docstring."""

    def __init__(self, build: Any = TypeAdapter) -> None:
        self._build = build
        self._lock = threading.Lock()  # DSPy formats from worker threads too
        self._adapters: OrderedDict[type, Any] = OrderedDict()

    def __call__(self, annotation: Any, **options: Any) -> Any:
        if options or not isinstance(annotation, type):
            return self._build(annotation, _parent_depth=_DSPY_FRAME, **options)
        with self._lock:
            adapter = self._adapters.get(annotation)
            if adapter is not None:
                self._adapters.move_to_end(annotation)
                return adapter
        adapter = self._build(annotation, _parent_depth=_DSPY_FRAME)
        with self._lock:
            self._adapters[annotation] = adapter
            while len(self._adapters) > MAX_TYPES:
                self._adapters.popitem(last=False)
        return adapter


def memoize_type_adapters() -> None:
    """Makes DSPy's adapter modules build their TypeAdapters through the cache (once per
    process)."""
    global _installed
    with _install_lock:
        if _installed:
            return
        from dspy.adapters import utils, xml_adapter

        cache = TypeAdapterCache()
        # Both modules imported the class by name: their bindings are what DSPy calls.
        utils.TypeAdapter = cache
        xml_adapter.TypeAdapter = cache
        _installed = True
