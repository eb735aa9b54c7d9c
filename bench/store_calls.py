"""What one store call costs the calling process, memory against Redis (part of `scale_out`).

In one process, 32 concurrent callers make the two calls behind the measured RPCs straight on
a store: `execution_view` (what every Execute reads) and `write_variables` (an UpdateVariable's
write). The process's CPU time per call (`time.process_time`) is the replica's own cost of the
store, without gRPC, DSPy or a second process in the way, so it holds far steadier than
throughput on a machine shared with other work. Wall time per call shows what Redis itself
adds (its disk sync under `appendfsync always`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dspy_bridge.model import (
    Constraints,
    LMSpec,
    ModuleRecord,
    Session,
    Variable,
    VariableType,
    VariableWrite,
)
from dspy_bridge.store import SessionStore, open_store

CALLERS = 32
CALLS = 3200
SID = "bench-store-calls"


async def _filled(url: str) -> SessionStore:
    store = await open_store(url)
    await store.create_session(
        Session(session_id=SID, create_time=time.time(), lm=LMSpec("offline")), max_sessions=0
    )
    now = time.time()
    variable = Variable(
        id="var_temperature",
        session_id=SID,
        name="temperature",
        type=VariableType.FLOAT,
        value=0.7,
        constraints=Constraints(min=0, max=2),
        description="",
        metadata={},
        version=1,
        create_time=now,
        update_time=now,
        source="host",
    )
    await store.create_variable(variable, max_variables=0)
    spec = {
        "module_type": "Predict",
        "signature": {"text": "question -> answer"},
        "config": {},
        "variable_bindings": {"temperature": "temperature"},
    }
    await store.create_module(ModuleRecord(SID, "qa", 1, spec, None, now, now))
    return store


async def _per_call(call: Callable[[], Awaitable[Any]]) -> dict[str, float]:
    for _ in range(100):  # connections open, scripts loaded
        await call()
    cpu, wall = time.process_time(), time.perf_counter()

    async def caller() -> None:
        for _ in range(CALLS // CALLERS):
            await call()

    await asyncio.gather(*(caller() for _ in range(CALLERS)))
    return {
        "cpu_us_per_call": round(1e6 * (time.process_time() - cpu) / CALLS, 1),
        "wall_us_per_call": round(1e6 * (time.perf_counter() - wall) / CALLS, 1),
    }


async def _measure(url: str) -> dict[str, dict[str, float]]:
    store = await _filled(url)
    count = iter(range(10**9))
    try:
        return {
            "execution_view": await _per_call(lambda: store.execution_view(SID, "qa")),
            "write_variables": await _per_call(
                lambda: store.write_variables(
                    SID,
                    [VariableWrite("var_temperature", next(count) % 200 / 100, "host", "", None)],
                    now=time.time(),
                )
            ),
        }
    finally:
        await store.close()


def store_calls(redis_url: str) -> dict[str, Any]:
    """Per-call CPU and wall time of the two calls on memory and on Redis (`redis_url`)."""
    return {
        "memory": asyncio.run(_measure("memory://")),
        "redis": asyncio.run(_measure(redis_url)),
        "callers": CALLERS,
    }
