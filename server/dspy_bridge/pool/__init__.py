"""Process pool for execution: worker processes behind the `Executor` protocol."""

from __future__ import annotations

from dspy_bridge.pool.pool import PoolConfig, WorkerPool, restart_delay

__all__ = ["PoolConfig", "WorkerPool", "restart_delay"]
