"""`Evaluate` and `EvaluateStream`: protos in, `jobs.evaluate.Evaluator` calls, protos out.

A mixin for `BridgeServicer` (which sets `self.modules`). EvaluateStream validates everything
before its first event (a bad request fails the call with INVALID_ARGUMENT and no events), then
sends progress events (at most about `STREAM_UPDATES` of them) and the result as the last event.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any, TypeAlias

from grpc.aio import ServicerContext

from dspy_bridge.jobs.evaluate import EvalExample, EvaluationOutcome, Evaluator
from dspy_bridge.services.modules import ModuleService
from dspy_bridge.services.offload import convert_sized
from dspy_bridge.transport.module_rpcs import (
    _fill_outputs,
    _fill_variables_used,
    _values_in,
    struct_to_dict,
    usage_to_proto,
)
from dspy_bridge.transport.status import ok_status, to_status_proto
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2

Ctx: TypeAlias = ServicerContext[Any, Any]

STREAM_UPDATES = 100


def dataset_from_proto(examples: Any, where: str) -> list[EvalExample]:
    return [
        EvalExample(
            _values_in(e.inputs, f"{where}[{i}].inputs"),
            _values_in(e.labels, f"{where}[{i}].labels"),
        )
        for i, e in enumerate(examples)
    ]


def evaluation_to_proto(outcome: EvaluationOutcome) -> pb.EvaluateResponse:
    out = pb.EvaluateResponse(
        score=outcome.score,
        module_version=outcome.module_version,
        latency_ms=outcome.latency_ms,
    )
    for r in outcome.results:
        item = out.results.add(index=r.index, score=r.score, latency_ms=r.latency_ms)
        _fill_outputs(r.outputs, item.outputs)
        item.error.CopyFrom(to_status_proto(r.error) if r.error is not None else ok_status())
    usage_to_proto(outcome.usage, out.usage)
    _fill_variables_used(outcome.variables_used, out.variables_used)
    return out


class EvaluateRpcs:
    """Evaluate handlers; the servicer that mixes this in provides `self.modules`."""

    modules: ModuleService

    def _evaluator(self) -> Evaluator:
        return Evaluator(self.modules)

    async def Evaluate(self, request: pb.EvaluateRequest, context: Ctx) -> pb.EvaluateResponse:
        dataset, overrides = await convert_sized(
            request.ByteSize(),
            lambda: (
                dataset_from_proto(request.dataset, "dataset"),
                _values_in(request.variable_overrides, "variable_overrides"),
            ),
        )
        outcome = await self._evaluator().evaluate(
            request.session_id,
            request.module_id,
            dataset,
            request.metric.name,
            struct_to_dict(request.metric.options),
            request.num_threads,
            overrides,
            request.module_version,
        )
        return evaluation_to_proto(outcome)

    async def EvaluateStream(
        self, request: pb.EvaluateStreamRequest, context: Ctx
    ) -> AsyncIterator[pb.EvaluateStreamResponse]:
        req = request.evaluation
        dataset, overrides = await convert_sized(
            request.ByteSize(),
            lambda: (
                dataset_from_proto(req.dataset, "evaluation.dataset"),
                _values_in(req.variable_overrides, "evaluation.variable_overrides"),
            ),
        )
        evaluator = self._evaluator()
        # Validate before the first event: a bad request fails the call, with no events.
        try:
            await evaluator.prepare(
                req.session_id,
                req.module_id,
                dataset,
                req.metric.name,
                struct_to_dict(req.metric.options),
                overrides,
                req.module_version,
                req.num_threads,
            )
        except Exception as exc:
            at = getattr(exc, "at", None)
            raise (at("evaluation") if at is not None else exc) from None
        events: asyncio.Queue[pb.EvaluateStreamResponse | BaseException] = asyncio.Queue()
        every = max(1, len(dataset) // STREAM_UPDATES)

        def progress(completed: int, total: int) -> None:
            if completed % every == 0 or completed == total:
                events.put_nowait(
                    pb.EvaluateStreamResponse(
                        progress=job_pb2.JobProgress(
                            phase="evaluating",
                            completed=completed,
                            total=total,
                            message=f"{completed}/{total} examples",
                        )
                    )
                )

        async def run() -> None:
            try:
                outcome = await evaluator.evaluate(
                    req.session_id,
                    req.module_id,
                    dataset,
                    req.metric.name,
                    struct_to_dict(req.metric.options),
                    req.num_threads,
                    overrides,
                    req.module_version,
                    progress,
                )
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                events.put_nowait(exc)
                return
            events.put_nowait(pb.EvaluateStreamResponse(result=evaluation_to_proto(outcome)))

        task = asyncio.create_task(run())
        try:
            while True:
                item = await events.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.HasField("result"):
                    return
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.gather(task, return_exceptions=True)
