"""The optimization-job RPCs of `BridgeService`: protos in, `OptimizationService` calls, protos out.

A mixin for `BridgeServicer`, which sets `self.jobs` (an `OptimizationService`). Handlers raise
`BridgeError`; the interceptor turns it into a rich status. `job_to_proto` is also what any other
RPC returning a `Job` uses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any, TypeAlias

import grpc
from grpc.aio import ServicerContext

from dspy_bridge.errors import BridgeError, Reason, invalid_argument
from dspy_bridge.jobs.evaluate import EvalExample
from dspy_bridge.jobs.service import OptimizationService, StartRequest
from dspy_bridge.model import Job, PyValue
from dspy_bridge.model.job import MODULE_RESULT, SEARCH_RESULT
from dspy_bridge.services import paging
from dspy_bridge.services.offload import convert_sized
from dspy_bridge.transport import convert
from dspy_bridge.transport.module_rpcs import module_to_proto, struct_to_dict
from dspy_bridge.transport.status import to_status_proto
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2, value_pb2

Ctx: TypeAlias = ServicerContext[Any, Any]

_TRIAL_STATES = {
    "RUNNING": job_pb2.TRIAL_STATE_RUNNING,
    "COMPLETE": job_pb2.TRIAL_STATE_COMPLETE,
    "PRUNED": job_pb2.TRIAL_STATE_PRUNED,
    "FAIL": job_pb2.TRIAL_STATE_FAIL,
}


# --------------------------------------------------------------------------------------------
# Conversion


def _values_in(values: Mapping[str, value_pb2.Value], where: str) -> dict[str, PyValue]:
    try:
        return convert.values_from_proto(values)
    except (TypeError, ValueError) as exc:
        raise invalid_argument(Reason.INVALID_INPUT, f"{where}: {exc}", where) from None


def examples_from_proto(examples: Sequence[job_pb2.Example], where: str) -> list[EvalExample]:
    return [
        EvalExample(
            _values_in(e.inputs, f"{where}[{i}].inputs"),
            _values_in(e.labels, f"{where}[{i}].labels"),
        )
        for i, e in enumerate(examples)
    ]


def _fill_trial(out: job_pb2.Trial, trial: Mapping[str, Any]) -> None:
    out.number = int(trial.get("number", 0))
    for name, value in (trial.get("values") or {}).items():
        out.values[name].CopyFrom(convert.value_to_proto(value))
    for name, score in (trial.get("objectives") or {}).items():
        out.objectives[name] = float(score)
    out.state = _TRIAL_STATES.get(str(trial.get("state", "")), job_pb2.TRIAL_STATE_UNSPECIFIED)
    out.error_message = str(trial.get("error_message", ""))


def _fill_result(out: job_pb2.Job, result: Mapping[str, Any]) -> None:
    kind = result.get("kind")
    if kind == MODULE_RESULT:
        mr = out.module_result
        mr.module_version = int(result.get("module_version") or 0)
        mr.previous_version = int(result.get("previous_version") or 0)
        if result.get("score_before") is not None:
            mr.score_before = float(result["score_before"])
        if result.get("score_after") is not None:
            mr.score_after = float(result["score_after"])
        mr.demo_count = int(result.get("demo_count") or 0)
        mr.instructions.extend(str(i) for i in result.get("instructions") or [])
        if result.get("state") is not None:
            mr.state_json = json.dumps(result["state"], indent=2)
    elif kind == SEARCH_RESULT:
        sr = out.variable_search_result
        trials = list(result.get("trials") or [])
        by_number = {int(t.get("number", 0)): t for t in trials}
        for trial in trials:
            _fill_trial(sr.trials.add(), trial)
        for number in result.get("pareto_front") or []:
            if int(number) in by_number:
                _fill_trial(sr.pareto_front.add(), by_number[int(number)])
        best = result.get("best")
        if best is not None and int(best) in by_number:
            _fill_trial(sr.best, by_number[int(best)])


def _job_error(error: Mapping[str, Any]) -> BridgeError:
    code = next(
        (c for c in grpc.StatusCode if c.value[0] == error.get("code")), grpc.StatusCode.UNKNOWN
    )
    return BridgeError(
        code, str(error.get("reason") or Reason.INTERNAL), str(error.get("message") or "")
    )


def job_to_proto(job: Job) -> job_pb2.Job:
    out = job_pb2.Job(
        job_id=job.job_id,
        session_id=job.session_id,
        module_id=job.module_id,
        optimizer=job.optimizer,
        status=job_pb2.JobStatus.ValueType(int(job.status)),
        applied=job.applied,
        apply_requested=job.apply_requested,
        trainset_size=job.trainset_size,
        valset_size=job.valset_size,
    )
    p = job.progress
    out.progress.CopyFrom(
        job_pb2.JobProgress(phase=p.phase, completed=p.completed, total=p.total, message=p.message)
    )
    if job.best_score is not None:
        out.best_score = job.best_score
    if job.error:
        out.error.CopyFrom(to_status_proto(_job_error(job.error)))
    if job.result:
        _fill_result(out, job.result)
    out.create_time.CopyFrom(convert.timestamp_from_seconds(job.create_time))
    if job.start_time is not None:
        out.start_time.CopyFrom(convert.timestamp_from_seconds(job.start_time))
    if job.end_time is not None:
        out.end_time.CopyFrom(convert.timestamp_from_seconds(job.end_time))
    if job.config:
        out.config.CopyFrom(convert.value_to_proto(dict(job.config)).json_value.struct_value)
    out.metric.name = str(job.metric.get("name", ""))
    options = job.metric.get("options") or {}
    if options:
        out.metric.options.CopyFrom(convert.value_to_proto(dict(options)).json_value.struct_value)
    return out


# --------------------------------------------------------------------------------------------
# Handlers


class JobRpcs:
    """Optimization RPC handlers; the servicer that mixes this in provides `self.jobs`."""

    jobs: OptimizationService
    #: Bytes one page of a list may take (`paging.page_bytes` of the message limit).
    page_bytes: int

    async def StartOptimization(
        self, request: pb.StartOptimizationRequest, context: Ctx
    ) -> pb.StartOptimizationResponse:
        trainset, valset = await convert_sized(
            request.ByteSize(),
            lambda: (
                examples_from_proto(request.trainset, "trainset"),
                examples_from_proto(request.valset, "valset"),
            ),
        )
        job = await self.jobs.start(
            StartRequest(
                session_id=request.session_id,
                module_id=request.module_id,
                optimizer=request.optimizer,
                config=struct_to_dict(request.config),
                trainset=trainset,
                valset=valset,
                metric_name=request.metric.name,
                metric_options=struct_to_dict(request.metric.options),
                apply=request.apply,
                variable_search=request.variable_search
                if request.HasField("variable_search")
                else None,
            )
        )
        return pb.StartOptimizationResponse(job=job_to_proto(job))

    async def GetOptimization(
        self, request: pb.GetOptimizationRequest, context: Ctx
    ) -> pb.GetOptimizationResponse:
        job = await self.jobs.get(request.session_id, request.job_id)
        return pb.GetOptimizationResponse(job=job_to_proto(job))

    async def WatchOptimization(
        self, request: pb.WatchOptimizationRequest, context: Ctx
    ) -> AsyncIterator[pb.WatchOptimizationResponse]:
        snapshots = await self.jobs.watch(request.session_id, request.job_id)
        try:
            async for job in snapshots:
                yield pb.WatchOptimizationResponse(job=job_to_proto(job))
        finally:
            close = getattr(snapshots, "aclose", None)
            if close is not None:
                await close()

    async def CancelOptimization(
        self, request: pb.CancelOptimizationRequest, context: Ctx
    ) -> pb.CancelOptimizationResponse:
        job = await self.jobs.cancel(request.session_id, request.job_id)
        return pb.CancelOptimizationResponse(job=job_to_proto(job))

    async def ListOptimizations(
        self, request: pb.ListOptimizationsRequest, context: Ctx
    ) -> pb.ListOptimizationsResponse:
        page = await self.jobs.list_page(
            request.session_id, request.module_id, request.page_size, request.page_token
        )
        jobs = paging.fit(page.items, job_to_proto, self.page_bytes)
        return pb.ListOptimizationsResponse(jobs=jobs, next_page_token=page.token_after(len(jobs)))

    async def ApplyOptimization(
        self, request: pb.ApplyOptimizationRequest, context: Ctx
    ) -> pb.ApplyOptimizationResponse:
        trial = request.trial_number if request.HasField("trial_number") else None
        outcome = await self.jobs.apply(request.session_id, request.job_id, trial)
        out = pb.ApplyOptimizationResponse(job=job_to_proto(outcome.job))
        if outcome.module is not None:
            out.module.CopyFrom(module_to_proto(outcome.module))
        for variable in outcome.variables:
            out.variables.append(convert.variable_to_proto(variable))
        return out

    async def RevertModule(
        self, request: pb.RevertModuleRequest, context: Ctx
    ) -> pb.RevertModuleResponse:
        expected = request.expected_version if request.HasField("expected_version") else None
        record = await self.jobs.revert(
            request.session_id, request.module_id, request.to_version, expected
        )
        return pb.RevertModuleResponse(module=module_to_proto(record))
