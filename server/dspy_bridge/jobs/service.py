"""Optimization jobs: start, get, list, watch, cancel, apply; module revert.

`start` checks everything before any work starts — the session and module, the optimizer name,
the datasets (non-empty trainset, label keys that are output fields, inputs that coerce to the
signature's types), the metric and its options, the optimizer config — so a bad request is
INVALID_ARGUMENT and leaves no job behind. Then the job record is stored QUEUED and the
`JobManager` runs it in its own process.

Results and versions ("current" vs "candidate", see docs/optimization.md): the store's highest
module version is the current one, so a finished job does not write a version by itself. Its
result (the optimized DSPy state, scores, demo count, instructions) lives in the job record as a
candidate; applying it — `apply=true` on success, or `ApplyOptimization` — writes it as a new
module version with source `optimizer:<job_id>`, after which `GetModule(version=N)` shows it
beside the previous one. `RevertModule` makes an old version current again as a new version
with source `revert:<version>`.

Other job kinds (VariableSearch) plug in with `register_kind`: they validate their request and
build their payload in the front, run a runner in the job process, and apply their result.
"""

from __future__ import annotations

import asyncio
import dataclasses
import secrets
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import grpc

from dspy_bridge.errors import (
    BridgeError,
    Reason,
    failed_precondition,
    invalid_argument,
    version_conflict,
)
from dspy_bridge.jobs import config as cfg
from dspy_bridge.jobs.evaluate import EvalExample, check_dataset, check_metric_labels
from dspy_bridge.jobs.host_metrics import check_offered
from dspy_bridge.jobs.manager import JobManager
from dspy_bridge.jobs.metrics import resolve_metric
from dspy_bridge.jobs.payload import ExampleData, OptimizationPayload
from dspy_bridge.model import Job, JobStatus, JobUpdate, LMSpec, ModuleRecord, Variable
from dspy_bridge.model.job import MODULE_RESULT
from dspy_bridge.runtime.host_calls import host_name
from dspy_bridge.runtime.program import coerce_execution_inputs, spec_signature
from dspy_bridge.services import paging
from dspy_bridge.services.clock import Clock, system_clock
from dspy_bridge.services.modules import ModuleService
from dspy_bridge.store.base import SessionStore

OPTIMIZATION_RUNNER = "dspy_bridge.jobs.optimizers:run_optimization"
_DEFAULT_PAGE = 100
_MAX_PAGE = 1000


@dataclass
class StartRequest:
    """A StartOptimization request, converted from the proto."""

    session_id: str
    module_id: str
    optimizer: str
    config: dict[str, Any] = field(default_factory=dict)
    trainset: Sequence[EvalExample] = ()
    valset: Sequence[EvalExample] = ()
    metric_name: str = ""
    metric_options: dict[str, Any] = field(default_factory=dict)
    apply: bool = False
    #: The request's `VariableSearchSpec` proto when set (read by the VariableSearch kind).
    variable_search: Any = None


@dataclass
class Prepared:
    """What `start` has checked and resolved for every job kind."""

    record: ModuleRecord
    lm: LMSpec
    params: dict[str, Any]
    trainset: list[ExampleData]
    valset: list[ExampleData]


@dataclass
class ApplyOutcome:
    """What applying a job changed."""

    job: Job
    module: ModuleRecord | None = None
    variables: list[Variable] = field(default_factory=list)


class JobKind(Protocol):
    """A job kind besides the DSPy optimizers (VariableSearch)."""

    #: `"module:function"` run in the job process as `fn(payload, reporter) -> result dict`.
    runner: str

    async def payload(self, job_id: str, request: StartRequest, prepared: Prepared) -> Any:
        """Validates the kind's own part of the request (raise INVALID_ARGUMENT) and returns
        the picklable payload for the runner."""
        ...

    async def apply(self, job: Job, trial_number: int | None) -> ApplyOutcome:
        """Makes a SUCCEEDED job's result current (the job record is updated by the caller
        when `outcome.job.applied` is set)."""
        ...


class OptimizationService:
    """The job RPCs' behaviour (see the module docstring)."""

    def __init__(
        self,
        store: SessionStore,
        modules: ModuleService,
        manager: JobManager,
        clock: Clock = system_clock,
        *,
        max_metric_calls: int = cfg.DEFAULT_MAX_METRIC_CALLS,
    ) -> None:
        self._max_metric_calls = max_metric_calls
        self._store = store
        self._modules = modules
        self._manager = manager
        self._clock = clock
        self._kinds: dict[str, JobKind] = {}
        self._apply_lock = asyncio.Lock()

    @property
    def manager(self) -> JobManager:
        return self._manager

    def register_kind(self, name: str, kind: JobKind) -> None:
        """Adds a job kind StartOptimization accepts as `optimizer` (e.g. `VariableSearch`)."""
        self._kinds[name] = kind

    def optimizers(self) -> list[str]:
        return [*cfg.OPTIMIZERS, *self._kinds]

    # -- start ------------------------------------------------------------------------------

    async def start(self, request: StartRequest) -> Job:
        record = await self._modules.get(request.session_id, request.module_id)
        name = request.optimizer
        kind = self._kinds.get(name)
        if name not in cfg.OPTIMIZER_OPTIONS and kind is None:
            known = ", ".join(self.optimizers())
            raise invalid_argument(
                Reason.UNKNOWN_OPTIMIZER,
                f"unknown optimizer {name!r}; known optimizers: {known}"
                if name
                else f"optimizer is required; known optimizers: {known}",
                "optimizer",
                metadata={"optimizer": name},
            )
        if kind is None and request.variable_search is not None:
            raise invalid_argument(
                Reason.INVALID_REQUEST,
                f"variable_search applies to VariableSearch only, not {name}",
                "variable_search",
            )
        signature = spec_signature(record)
        check_dataset(request.trainset, signature, "trainset")
        if request.valset:
            check_dataset(request.valset, signature, "valset")
        trainset = self._coerce(record, request.trainset, "trainset")
        valset = self._coerce(record, request.valset, "valset")
        host = host_name(request.metric_name)
        if host is not None:  # a host metric must be offered when the job starts
            hosts = self._modules.hosts
            check_offered(hosts.names(request.session_id, "metric") if hosts else [], host)
        metric = resolve_metric(
            request.metric_name, request.metric_options, signature, session_id=request.session_id
        )
        check_metric_labels(metric, request.trainset, "trainset")
        check_metric_labels(metric, request.valset, "valset")
        config: dict[str, Any] = dict(request.config)
        reflection: LMSpec | None = None
        if kind is None:
            config = cfg.validate_config(
                name,
                config,
                trainset_size=len(trainset),
                valset_size=len(valset),
                max_metric_calls=self._max_metric_calls,
            )
            raw_lm = config.get("reflection_lm")
            if isinstance(raw_lm, Mapping):
                reflection = LMSpec.from_dict(dict(raw_lm))
                try:
                    self._modules.admit_lm(reflection)
                except BridgeError as exc:
                    if exc.code == grpc.StatusCode.PERMISSION_DENIED:  # the allow-lists
                        raise exc.at("config.reflection_lm") from None
                    raise invalid_argument(
                        Reason.INVALID_OPTIMIZER_CONFIG,
                        f"config.reflection_lm: {exc.message}",
                        "config.reflection_lm",
                    ) from None
        prepared_exec = await self._modules.prepare(request.session_id, request.module_id, {})
        if reflection is not None:  # its cached answers belong to the same principal
            reflection = dataclasses.replace(reflection, cache_scope=prepared_exec.lm.cache_scope)
        prepared = Prepared(record, prepared_exec.lm, prepared_exec.params, trainset, valset)
        job_id = f"job_{secrets.token_hex(8)}"
        payload: Any
        if kind is not None:
            payload = await kind.payload(job_id, request, prepared)
            runner = kind.runner
        else:
            payload = OptimizationPayload(
                job_id=job_id,
                optimizer=name,
                record=record,
                lm=prepared.lm,
                params=dict(prepared.params),
                config=config,
                trainset=trainset,
                valset=valset,
                metric_name=request.metric_name,
                metric_options=dict(request.metric_options),
                reflection_lm=reflection,
                host_tools=prepared_exec.host_tools,
            )
            runner = OPTIMIZATION_RUNNER
        job = Job(
            job_id=job_id,
            session_id=request.session_id,
            module_id=request.module_id,
            optimizer=name,
            status=JobStatus.QUEUED,
            create_time=self._clock(),
            config=dict(request.config),
            metric={"name": request.metric_name, "options": dict(request.metric_options)},
            apply_requested=request.apply,
            trainset_size=len(trainset),
            valset_size=len(valset),
            module_version=record.version,
        )
        on_success = self._auto_apply if request.apply else None
        owner = (await self._store.get_session(request.session_id)).owner
        return await self._manager.submit(job, runner, payload, on_success, owner=owner)

    @staticmethod
    def _coerce(
        record: ModuleRecord, examples: Sequence[EvalExample], where: str
    ) -> list[ExampleData]:
        out: list[ExampleData] = []
        for index, example in enumerate(examples):
            try:
                inputs = coerce_execution_inputs(record, example.inputs)
            except BridgeError as exc:
                raise exc.at(f"{where}[{index}]") from None
            out.append((dict(inputs), dict(example.labels)))
        return out

    async def _auto_apply(self, job: Job) -> Job:
        return (await self.apply(job.session_id, job.job_id)).job

    # -- reading ----------------------------------------------------------------------------

    async def get(self, session_id: str, job_id: str) -> Job:
        await self._modules.live_session(session_id)
        return await self._store.get_job(session_id, job_id)

    async def list_page(
        self, session_id: str, module_id: str, page_size: int, page_token: str
    ) -> paging.Page[Job]:
        await self._modules.live_session(session_id)
        if page_size < 0:
            raise invalid_argument(
                Reason.INVALID_REQUEST, "page_size must not be negative", "page_size"
            )
        limit = min(page_size or _DEFAULT_PAGE, _MAX_PAGE)
        offset = paging.offset_from_token("j", page_token)
        rows = await self._store.list_jobs(
            session_id, module_id=module_id, offset=offset, limit=limit + 1
        )
        kept = rows[:limit]
        return paging.Page(
            "j", kept, list(range(offset, offset + len(kept))), offset + limit, len(rows) > limit
        )

    async def watch(self, session_id: str, job_id: str) -> AsyncIterator[Job]:
        """Validates first (NOT_FOUND raises here), then yields snapshots."""
        await self.get(session_id, job_id)
        return self._manager.watch(session_id, job_id)

    async def cancel(self, session_id: str, job_id: str) -> Job:
        await self._modules.live_session(session_id)
        return await self._manager.cancel(session_id, job_id)

    # -- apply / revert ---------------------------------------------------------------------

    async def apply(
        self, session_id: str, job_id: str, trial_number: int | None = None
    ) -> ApplyOutcome:
        async with self._apply_lock:
            job = await self.get(session_id, job_id)
            if job.status is not JobStatus.SUCCEEDED:
                raise failed_precondition(
                    Reason.JOB_NOT_SUCCEEDED,
                    f"job {job_id!r} is {job.status.name}; only a SUCCEEDED job can be applied",
                    job_id=job_id,
                    status=job.status.name,
                )
            kind = self._kinds.get(job.optimizer)
            if kind is not None:
                outcome = await kind.apply(job, trial_number)
                if outcome.job.applied and not job.applied:
                    outcome.job = await self._store.update_job(
                        session_id, job_id, JobUpdate(applied=True)
                    )
                self._manager.publish(outcome.job)
                return outcome
            if trial_number is not None:
                raise invalid_argument(
                    Reason.INVALID_REQUEST,
                    "trial_number applies to VariableSearch jobs only",
                    "trial_number",
                )
            return await self._apply_module(job)

    async def _apply_module(self, job: Job) -> ApplyOutcome:
        result = dict(job.result or {})
        if result.get("kind") != MODULE_RESULT:
            raise failed_precondition(
                Reason.JOB_NOT_SUCCEEDED, f"job {job.job_id!r} has no module result"
            )
        if job.applied and result.get("module_version"):
            module = await self._store.get_module(
                job.session_id, job.module_id, int(result["module_version"])
            )
            return ApplyOutcome(job, module)
        current = await self._store.get_module(job.session_id, job.module_id)
        if current.spec != result.get("spec", current.spec):
            raise failed_precondition(
                Reason.JOB_STATE_CONFLICT,
                f"module {job.module_id!r} changed structure since job {job.job_id!r} started",
                job_id=job.job_id,
            )
        now = self._clock()
        module = await self._store.put_module_version(
            ModuleRecord(
                session_id=job.session_id,
                module_id=job.module_id,
                version=current.version + 1,
                spec=current.spec,
                state=result.get("state"),
                create_time=current.create_time,
                update_time=now,
                source=f"optimizer:{job.job_id}",
            ),
            expected_version=current.version,
        )
        result["module_version"] = module.version
        updated = await self._store.update_job(
            job.session_id, job.job_id, JobUpdate(result=result, applied=True)
        )
        self._manager.publish(updated)
        return ApplyOutcome(updated, module)

    async def revert(
        self,
        session_id: str,
        module_id: str,
        to_version: int,
        expected_version: int | None = None,
    ) -> ModuleRecord:
        current = await self._modules.get(session_id, module_id)
        if to_version <= 0:
            raise invalid_argument(
                Reason.INVALID_REQUEST, "to_version must be a version >= 1", "to_version"
            )
        if expected_version is not None and expected_version != current.version:
            raise version_conflict(f"module {module_id!r}", expected_version, current.version)
        old = await self._store.get_module(session_id, module_id, to_version)
        return await self._store.put_module_version(
            ModuleRecord(
                session_id=session_id,
                module_id=module_id,
                version=current.version + 1,
                spec=old.spec,
                state=old.state,
                create_time=current.create_time,
                update_time=self._clock(),
                source=f"revert:{to_version}",
            ),
            expected_version=current.version,
        )
