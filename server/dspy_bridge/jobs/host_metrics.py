"""`host:<name>` metrics: a metric the host computes, over `Connect`.

`MetricSpec{name: "host:order_quality", options}` in Evaluate, EvaluateStream or
StartOptimization scores each prediction by sending a `metric_call` (the example's inputs and
labels, the prediction's fields, the options) to a connection of the session offering
`order_quality`. The host's `score` is the score and its `feedback` travels with it: the metric
returns `dspy.Prediction(score=..., feedback=...)`, which DSPy's evaluators and optimizers read
as a number and GEPA reads as its textual feedback.

Where it runs: Evaluate scores in the front, awaiting the hub on the front's event loop
(`acall`): no thread waits on the host, so a host that is slow or silent holds only its own
evaluation, and a cancelled evaluation cancels its calls (the host gets `cancel`).
Optimizations score in their job process, where DSPy calls the metric from its threads
(through the process's channel to the front, `jobs/host_channel.py`). A `HostMetric` pickles
as its name, options, session and job, and finds its way to the host in whichever process it
is unpickled.

A host error for one example fails that example (score 0, its error recorded). A host that is
gone is different: the call waits up to `host_reconnect_wait_seconds` for the metric to be
offered again and then fails the whole evaluation or optimization UNAVAILABLE
`HOST_DISCONNECTED` — it never scores with a missing metric (`HostUnavailable` carries it
through DSPy's evaluators, which would otherwise score the failure 0).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any

import dspy
from opentelemetry.trace import Span

from dspy_bridge import tracing
from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.model import PyValue, Tensor
from dspy_bridge.runtime.host_calls import (
    PREFIX,
    PROCESS_HOST,
    HostCaller,
    HostReply,
    HostUnavailable,
    MetricCall,
    MetricReply,
    SyncHostCaller,
    host_disconnected,
    unavailable,
)


def _plain(value: Any) -> PyValue:
    """A value a `Value` can carry (DSPy objects in a prediction become their text)."""
    if value is None or isinstance(value, bool | int | float | str | Tensor):
        return value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def _fields(obj: Any) -> dict[str, PyValue]:
    items = obj.items() if hasattr(obj, "items") else []
    return {str(k): _plain(v) for k, v in items if not str(k).startswith("dspy_")}


class HostMetric:
    """The metric `host:<name>` (module docstring)."""

    def __init__(
        self,
        name: str,
        options: Mapping[str, Any],
        session_id: str = "",
        job_id: str = "",
        caller: SyncHostCaller | None = None,
        async_caller: HostCaller | None = None,
    ) -> None:
        """`async_caller`: the hub, in the front (`acall` awaits it); `caller`: the way to the
        host for sync calls (default: the job process's channel)."""
        self.name = name
        self.options = dict(options)
        self.session_id = session_id
        self.job_id = job_id
        self._caller = caller
        self._async_caller = async_caller

    def __repr__(self) -> str:
        return f"HostMetric({PREFIX}{self.name})"

    def __reduce__(self) -> tuple[Any, ...]:
        """The channel stays behind: the other process finds its own (module docstring)."""
        return (HostMetric, (self.name, self.options, self.session_id, self.job_id))

    def __call__(self, example: Any, prediction: Any, trace: Any = None, *args: Any) -> Any:
        caller = self._caller or PROCESS_HOST.caller
        if caller is None:
            raise HostUnavailable(host_disconnected("metric", self.name))
        request = self._request(example, prediction)
        with self._span() as span:
            try:
                reply = caller.call_host_sync(self._session(), request, None)
            except BridgeError as exc:
                raise _unavailable(exc) from None
            return self._scored(reply, span)

    async def acall(self, example: Any, prediction: Any) -> Any:
        """The same score, awaited on this event loop through the hub when there is one (the
        front); elsewhere the sync call in a thread."""
        if self._async_caller is None:
            return await asyncio.to_thread(self, example, prediction)
        request = self._request(example, prediction)
        with self._span() as span:
            try:
                reply = await self._async_caller.call_host(self._session(), request, None)
            except BridgeError as exc:
                raise _unavailable(exc) from None
            return self._scored(reply, span)

    def _span(self) -> AbstractContextManager[Span | None]:
        """The call's span, `host_metric <name>` (nothing when tracing is off); a failed call
        ends it with an error status."""
        attributes = {"dspy_bridge.metric.name": self.name}
        job_id = self.job_id or PROCESS_HOST.job_id
        if job_id:
            attributes["dspy_bridge.job_id"] = job_id
        return tracing.span(f"host_metric {self.name}", attributes)

    def _session(self) -> str:
        return self.session_id or PROCESS_HOST.session_id

    def _request(self, example: Any, prediction: Any) -> MetricCall:
        inputs = example.inputs() if hasattr(example, "inputs") else example
        labels = example.labels() if hasattr(example, "labels") else {}
        return MetricCall(
            self.name,
            _fields(inputs),
            _fields(labels),
            _fields(prediction),
            self.options,
            self.job_id or PROCESS_HOST.job_id,
        )

    def _scored(self, reply: HostReply, span: Span | None) -> Any:
        assert isinstance(reply, MetricReply)
        if reply.error:
            raise ValueError(f"the host metric {PREFIX}{self.name} failed: {reply.error[:500]}")
        if span is not None:
            span.set_attribute("dspy_bridge.metric.score", float(reply.score))
        return dspy.Prediction(score=float(reply.score), feedback=reply.feedback)


def _unavailable(exc: BridgeError) -> BaseException:
    """A host that is gone ends the evaluation (`HostUnavailable`); other errors stay errors."""
    return HostUnavailable(exc) if exc.reason == Reason.HOST_DISCONNECTED else exc


def check_offered(offered: list[str], name: str) -> None:
    """FAILED_PRECONDITION `HOST_METRIC_UNAVAILABLE` naming what is connected, when no
    connection of the session offers metric `name` (bare)."""
    if name not in offered:
        raise unavailable("metric", Reason.HOST_METRIC_UNAVAILABLE, name, offered)
