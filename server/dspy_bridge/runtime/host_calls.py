"""Calls into a host's own code over `Connect`: what a call and its answer are, and the seam
every process calls through.

A host lends tools, metrics and LMs to its session over one stream it opens (the front's
`HostHub` holds the streams). Code that needs one — a ReAct tool in a worker process, a metric
in a job process, an LM anywhere — calls `HostCaller.call_host(session_id, request, timeout_s)`;
in the front that is the hub itself, in a worker or job process a channel that forwards the
call to the front over the process's own pipe (`pool/host_channel.py`, `jobs/host_channel.py`).
Everything here is a plain picklable dataclass, so it crosses those pipes as is.

A host that is not connected (or drops and no other connection offers the name in time) is
UNAVAILABLE `HOST_DISCONNECTED`, retryable. Inside a ReAct trajectory that error must end the
execution, not become an observation the agent reads: DSPy's ReAct turns every `Exception` a
tool raises into an observation, so the tool raises `HostUnavailable`, a `BaseException` that
passes through it; the executor turns it back into the BridgeError.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import grpc

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import PyValue

PREFIX = "host:"


def host_name(reference: str) -> str | None:
    """`lookup` for `host:lookup`; None when the reference is not a host name."""
    return reference[len(PREFIX) :] if reference.startswith(PREFIX) else None


@dataclass(frozen=True)
class HostToolSpec:
    """A tool as its host describes it: the LM sees the name, description and JSON Schema."""

    name: str
    description: str
    #: JSON Schema of the arguments (an object schema; `{}` for none).
    parameters: Mapping[str, Any]
    #: Longest one call may take (the host's `timeout_ms` or the server default).
    timeout_ms: int

    def fingerprint(self) -> str:
        """What identifies the tool's shape (built programs are cached by it)."""
        import json

        return json.dumps([self.name, self.description, self.parameters], sort_keys=True)


@dataclass(frozen=True)
class ToolCall:
    """Run a host tool with the arguments the LM gave."""

    tool: str
    arguments: dict[str, Any]
    module_id: str = ""
    #: The optimization job calling it (empty in an execution).
    job_id: str = ""


@dataclass(frozen=True)
class MetricCall:
    """Score one prediction with a host metric."""

    metric: str
    inputs: dict[str, PyValue]
    labels: dict[str, PyValue]
    prediction: dict[str, PyValue]
    options: dict[str, Any] = field(default_factory=dict)
    job_id: str = ""


@dataclass(frozen=True)
class LMCall:
    """Complete chat messages with a host LM."""

    lm: str
    messages: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)


HostRequest = ToolCall | MetricCall | LMCall
Kind = Literal["tool", "metric", "lm"]


def kind_of(request: HostRequest) -> tuple[Kind, str]:
    """What a request calls: its kind and the bare name."""
    if isinstance(request, ToolCall):
        return "tool", request.tool
    if isinstance(request, MetricCall):
        return "metric", request.metric
    return "lm", request.lm


@dataclass(frozen=True)
class ToolReply:
    """A tool's output, or the error text its host reported (an observation either way)."""

    output: PyValue = None
    error: str | None = None


@dataclass(frozen=True)
class MetricReply:
    score: float = 0.0
    feedback: str = ""
    error: str = ""


@dataclass(frozen=True)
class LMReply:
    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    error: str = ""


HostReply = ToolReply | MetricReply | LMReply


class HostCaller(Protocol):
    """Sends one call to the host connection(s) of a session offering the name, and waits."""

    async def call_host(
        self, session_id: str, request: HostRequest, timeout_s: float | None
    ) -> HostReply:
        """The host's answer. `timeout_s` is the caller's remaining time (None: no limit of
        its own); the call's deadline is the smaller of it and the name's own timeout.
        Raises BridgeError: UNAVAILABLE `HOST_DISCONNECTED`, DEADLINE_EXCEEDED
        `HOST_CALL_TIMEOUT`, RESOURCE_EXHAUSTED `HOST_RESULT_TOO_LARGE` / `HOST_CALLS_LIMIT`."""
        ...


class SyncHostCaller(Protocol):
    """`HostCaller` for code that runs in threads without an event loop of its own (metrics and
    LMs called by DSPy's optimizers and evaluators)."""

    def call_host_sync(
        self, session_id: str, request: HostRequest, timeout_s: float | None
    ) -> HostReply: ...


class HostUnavailable(BaseException):
    """Carries a BridgeError through code that turns every `Exception` into data (ReAct's
    observations, DSPy's Evaluate scoring failures as 0): see the module docstring."""

    def __init__(self, error: BridgeError) -> None:
        super().__init__(error.message)
        self.error = error


def host_disconnected(kind: str, name: str, connected: list[str] | None = None) -> BridgeError:
    offered = ", ".join(connected or []) or "none"
    return BridgeError(
        grpc.StatusCode.UNAVAILABLE,
        Reason.HOST_DISCONNECTED,
        f"no host connection of this session offers {kind} {PREFIX}{name} "
        f"(connected {kind}s: {offered}); reconnect the host and retry",
        {"retryable": "true", "kind": kind, "name": f"{PREFIX}{name}"},
    )


def describe(names: list[str]) -> str:
    """`host:a, host:b` or `none`, for error messages naming what is connected."""
    return ", ".join(f"{PREFIX}{n}" for n in names) or "none"


def unavailable(kind: str, reason: str, name: str, connected: list[str]) -> BridgeError:
    """FAILED_PRECONDITION for a `host:` name no connection of the session offers (checked
    when a module, an evaluation or an optimization is set up)."""
    return BridgeError(
        grpc.StatusCode.FAILED_PRECONDITION,
        reason,
        f"no host connection of this session offers {kind} {PREFIX}{name}; connected "
        f"{kind}s: {describe(connected)} (open Connect and offer it first)",
        {"name": f"{PREFIX}{name}", "connected": describe(connected)},
    )


def call_timeout(kind: str, name: str, timeout_ms: int) -> BridgeError:
    return BridgeError(
        grpc.StatusCode.DEADLINE_EXCEEDED,
        Reason.HOST_CALL_TIMEOUT,
        f"the host did not answer {kind} {PREFIX}{name} within {timeout_ms} ms",
        {"kind": kind, "name": f"{PREFIX}{name}", "timeout_ms": str(timeout_ms)},
    )


# -- the running execution's deadline ---------------------------------------------------------

#: `time.monotonic()` by which the current execution must end (None: no deadline). Set by the
#: executor around each execution; host calls made inside it are bounded by it.
EXECUTION_DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "dspy_bridge_execution_deadline", default=None
)
#: The module whose execution is running (sent with tool calls so the host can tell them apart).
EXECUTION_MODULE: contextvars.ContextVar[str] = contextvars.ContextVar(
    "dspy_bridge_execution_module", default=""
)


def remaining_s() -> float | None:
    """Seconds left of the current execution (None without a deadline; never below 0)."""
    deadline = EXECUTION_DEADLINE.get()
    return None if deadline is None else max(0.0, deadline - time.monotonic())


#: The caller and session of the current execution (set by the executor), for host LMs.
CURRENT_HOST: contextvars.ContextVar[HostCaller | None] = contextvars.ContextVar(
    "dspy_bridge_current_host", default=None
)
CURRENT_SESSION: contextvars.ContextVar[str] = contextvars.ContextVar(
    "dspy_bridge_current_session", default=""
)


class ThreadHostCalls:
    """Host calls made from the thread a sync-only module runs in (Refine, ProgramOfThought,
    ...): each runs on the execution's event loop (where the hub or the worker's channel lives)
    and the thread waits for it. `close()` — the execution ended, was cancelled or passed its
    deadline — cancels the calls still waiting (the host gets `cancel`) and refuses new ones, so
    an abandoned thread stops at its next host call instead of running on."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._pending: set[concurrent.futures.Future[HostReply]] = set()
        self._lock = threading.Lock()
        self._closed = False

    def call(
        self, caller: HostCaller, session_id: str, request: HostRequest, timeout_s: float | None
    ) -> HostReply:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:  # waiting here would block the very loop the call needs
            raise RuntimeError("a sync host call from a running event loop; use the async path")
        coroutine = caller.call_host(session_id, request, timeout_s)
        with self._lock:
            if self._closed:
                coroutine.close()
                raise concurrent.futures.CancelledError()
            future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
            self._pending.add(future)
        try:
            return future.result()
        finally:
            with self._lock:
                self._pending.discard(future)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            pending = list(self._pending)
        for future in pending:
            future.cancel()


#: Set by the executor around a sync-only module's thread (None elsewhere).
THREAD_HOST_CALLS: contextvars.ContextVar[ThreadHostCalls | None] = contextvars.ContextVar(
    "dspy_bridge_thread_host_calls", default=None
)


@dataclass
class ProcessHost:
    """A job process's way to the host (one job, one session per process): its channel to the
    front, the session and the job. Unset in the front and in workers."""

    caller: SyncHostCaller | None = None
    session_id: str = ""
    job_id: str = ""


PROCESS_HOST = ProcessHost()
