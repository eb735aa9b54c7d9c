"""Garbage collection tuned for a long-running server whose heap is mostly imported code.

A sidecar process (the front and each worker) holds a few million objects that DSPy, LiteLLM,
pydantic and gRPC create at import and keep for the life of the process. CPython's collector
does not know that: with its defaults (a young collection every 700 allocations, a full one
every 100 young ones) each full collection walks all of them. Under load, measured with
py-spy on the LM bench, the collector took about 15 % of the front's and the workers' CPU,
and each full collection stalled the event loop with 100 to 200 calls in flight, which is where
most of the 300 ms / 200-concurrent bench's lost throughput went (`docs/benchmarks.md`).

`settle_heap` runs once a process has finished starting: one collection, then `gc.freeze()`
moves every surviving object into the permanent generation no collection scans again, and the
young generation's threshold is raised so the short-lived objects of each call (requests,
messages, predictions) are collected in batches rather than every few hundred allocations.
Cyclic garbage is still collected: only how often and over what changes. The threshold is the
`gc_young_threshold` setting; 0 leaves Python's collector exactly as it is.
"""

from __future__ import annotations

import gc

__all__ = ["DEFAULT_YOUNG_THRESHOLD", "settle_heap", "young_threshold"]

#: Allocations between young collections (CPython's default is 700).
DEFAULT_YOUNG_THRESHOLD = 10_000


def settle_heap(young_threshold: int) -> int:
    """Freezes what start-up left on the heap and sets the young threshold (module docstring);
    with 0 it does nothing. Returns how many objects are frozen."""
    if young_threshold > 0:
        gc.collect()
        gc.freeze()
        _, middle, old = gc.get_threshold()
        gc.set_threshold(young_threshold, middle, old)
    return gc.get_freeze_count()


def young_threshold() -> int:
    """The threshold this process's young generation runs at (for its start-up log line)."""
    return gc.get_threshold()[0]
