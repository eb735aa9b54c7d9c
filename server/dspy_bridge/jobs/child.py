"""What runs inside a job's own process: the entry point and the progress reporter.

The front starts `job_main(runner, payload, conn)` in a fresh process (see `manager.py`). `runner`
is a `"module:function"` path; the function is called as `fn(payload, reporter)` and returns the
job's JSON-able result. Everything the job says travels to the front as dicts over `conn`:

- `{"type": "progress", "phase", "completed", "total", "message", "best_score"}` (throttled);
- `{"type": "result", "result": {...}, "best_score": float | None}` — the last message on success;
- `{"type": "error", "code": int, "reason": str, "message": str}` — the last message on failure;
- `{"type": "host_call", ...}` — a `host:` metric or LM call, answered on the same (duplex)
  pipe (see `host_channel.py`).

Every message also carries `"usage": {model: [lm_calls, prompt_tokens, completion_tokens]}`, the
LM usage since the previous message, which the front adds to its metrics.

A process that ends without a last message (killed, crashed) is reported by the front.
"""

from __future__ import annotations

import importlib
import os
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import grpc

from dspy_bridge import tracing
from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.jobs import host_channel
from dspy_bridge.log import configure_logging_as_parent
from dspy_bridge.runtime.host_calls import PROCESS_HOST, HostUnavailable
from dspy_bridge.runtime.lm.errors import lm_error_to_bridge, log_lm_failure
from dspy_bridge.runtime.usage import tally_every_lm_call

#: Least time between two progress messages that change nothing but counters.
PROGRESS_INTERVAL_S = 0.2


class Reporter:
    """Sends progress to the front; cheap to call often (throttled)."""

    def __init__(self, conn: Connection, interval: float = PROGRESS_INTERVAL_S) -> None:
        self._conn = conn
        self._interval = interval
        self._last_sent = 0.0
        self._phase = ""
        self._pending: dict[str, Any] | None = None
        self.best_score: float | None = None
        #: Spans of the job's phases (set once the job's span is open).
        self.phases = tracing.PhaseSpans()

    def progress(
        self,
        phase: str,
        completed: int = 0,
        total: int = 0,
        message: str = "",
        best_score: float | None = None,
    ) -> None:
        """Reports where the job is. A new phase or a better score is sent at once."""
        improved = best_score is not None and (
            self.best_score is None or best_score > self.best_score
        )
        if improved:
            self.best_score = best_score
        event = {
            "type": "progress",
            "phase": phase,
            "completed": int(completed),
            "total": int(total),
            "message": message,
            "best_score": self.best_score,
        }
        now = time.monotonic()
        self.phases.begin(phase)
        if improved or phase != self._phase or now - self._last_sent >= self._interval:
            self._phase = phase
            self._last_sent = now
            self._pending = None
            self._send(event)
        else:
            self._pending = event

    def flush(self) -> None:
        """Sends the last throttled progress message, if any."""
        if self._pending is not None:
            self._send(self._pending)
            self._pending = None

    def _send(self, message: dict[str, Any]) -> None:
        _send(self._conn, message)


def _send(conn: Connection, message: dict[str, Any]) -> None:
    """Sends to the front, with the LM usage since the last message (the front counts it in
    its metrics); when nobody listens any more (the job was cancelled, the server stopped) the
    job has no reason to go on, so the process ends quietly. One lock for every sender:
    progress, host calls, the result (`host_channel.send`)."""
    host_channel.send(conn, {**message, "usage": tally_every_lm_call().take()})


def _install_host_channel(payload: Any, conn: Connection) -> None:
    """`host:` metrics and LMs of this job reach the session's host through the front."""
    record = getattr(payload, "record", None)
    PROCESS_HOST.caller = host_channel.JobHostChannel(conn)
    PROCESS_HOST.session_id = str(
        getattr(payload, "session_id", "") or getattr(record, "session_id", "")
    )
    PROCESS_HOST.job_id = str(getattr(payload, "job_id", ""))


def load_runner(path: str) -> Callable[[Any, Reporter], dict[str, Any]]:
    module_name, _, name = path.partition(":")
    fn = getattr(importlib.import_module(module_name), name)
    return fn  # type: ignore[no-any-return]


def _exit_with_parent(interval: float = 1.0) -> None:
    """Ends this process when the process that started it is gone (e.g. the server was
    killed): a job must not run on with nobody to report to."""
    parent = os.getppid()

    def watch() -> None:
        while True:
            time.sleep(interval)
            if os.getppid() != parent:
                os._exit(3)

    threading.Thread(target=watch, daemon=True, name="parent-watch").start()


def _thread_lock_for_progress_bars() -> None:
    """DSPy's progress bars (tqdm) otherwise make a multiprocessing lock on first use: a named
    semaphore that a cancelled (killed) job never releases, and that the resource tracker then
    reports as leaked when the server stops. Bars in a job process are never shared with
    another process, so a thread lock is all they need."""
    try:
        import tqdm
    except ImportError:  # DSPy without progress bars: nothing to do
        return
    tqdm.tqdm.set_lock(threading.RLock())


def job_main(
    runner: str, payload: Any, conn: Connection, trace_parent: dict[str, str] | None = None
) -> None:
    """The job process's entry point (see module docstring). `trace_parent`: the trace context
    of the call that started the job, when tracing is on."""
    configure_logging_as_parent()
    tracing.configure_tracing()  # the environment is the front's
    tally_every_lm_call()
    _exit_with_parent()
    _thread_lock_for_progress_bars()
    reporter = Reporter(conn)
    _install_host_channel(payload, conn)
    try:
        try:
            with tracing.span("job", {"dspy_bridge.runner": runner}, parent=trace_parent):
                reporter.phases = tracing.PhaseSpans()
                reporter.phases.parent_new_spans()  # e.g. host metric calls, from any thread
                try:
                    result = load_runner(runner)(payload, reporter)
                finally:
                    reporter.phases.close()
        finally:
            # Before the last message: the front stops this process once it has that.
            tracing.shutdown_tracing()
        reporter.flush()
        _send(conn, {"type": "result", "result": result, "best_score": reporter.best_score})
    except BridgeError as exc:
        _send(
            conn,
            {
                "type": "error",
                "code": exc.code.value[0],
                "reason": exc.reason,
                "message": exc.message,
            },
        )
    except HostUnavailable as signal:  # the host metric or LM is gone (the front knows)
        error = signal.error
        _send(
            conn,
            {
                "type": "error",
                "code": error.code.value[0],
                "reason": error.reason,
                "message": error.message,
            },
        )
    except BaseException as exc:  # report anything; the process ends right after
        mapped = lm_error_to_bridge(exc)  # never a provider's response text (lm/errors.py)
        if mapped is not None:
            log_lm_failure(exc, mapped)
            _send(
                conn,
                {
                    "type": "error",
                    "code": mapped.code.value[0],
                    "reason": mapped.reason,
                    "message": f"the job failed: {mapped.message}",
                },
            )
            return
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()[:1000]
        _send(
            conn,
            {
                "type": "error",
                "code": grpc.StatusCode.UNKNOWN.value[0],
                "reason": Reason.EXECUTION_FAILED,
                "message": f"the job failed: {detail}",
            },
        )
    finally:
        conn.close()
