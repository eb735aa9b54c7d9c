"""Modules: create/get/list/delete, execution with variables (unary, batch, streaming), and
DSPy state export/import.

Every check of a request runs before the store is touched, so a bad request changes nothing
: the type, the signature, the config, each binding against the session's variables
(type, current value and choices), the LM override, and a trial build of the program.

Execution: the front resolves every variable bound to the module once, snapshots
value + version, applies the request's `variable_overrides` (validated against the variable's
type and constraints and against the parameter), resolves the LM (module > session > server
default) and coerces the inputs to the signature's types; the executor gets all of that in one
picklable request and never reads the store. The response reports the exact variable versions
and module version used, so every result is reproducible.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import secrets
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from dspy_bridge import tracing
from dspy_bridge.config import Settings
from dspy_bridge.errors import (
    BridgeError,
    FieldViolation,
    Reason,
    failed_precondition,
    invalid_argument,
    session_not_found,
    variable_not_found,
    version_conflict,
)
from dspy_bridge.log import get_logger
from dspy_bridge.model import LMSpec, ModuleRecord, PyValue, Session, Variable
from dspy_bridge.observability import count_lm_usage
from dspy_bridge.runtime import registry
from dspy_bridge.runtime.executor import (
    ExecutionEvent,
    ExecutionRequest,
    ExecutionResult,
    Executor,
    ResultEvent,
)
from dspy_bridge.runtime.host_calls import (
    HostToolSpec,
    host_disconnected,
    host_name,
    unavailable,
)
from dspy_bridge.runtime.host_tools import HostTools, host_tool_names
from dspy_bridge.runtime.lm.factory import admit_lm_spec
from dspy_bridge.runtime.params import ParamError, check_bindings, check_value
from dspy_bridge.runtime.program import build_program, coerce_execution_inputs, spec_signature
from dspy_bridge.runtime.signatures import (
    FieldSpec,
    SignatureSpec,
    check_fields_for_module,
    parse_signature,
)
from dspy_bridge.runtime.state import export_record_state, import_state
from dspy_bridge.runtime.tools import ToolRegistry, default_registry
from dspy_bridge.runtime.usage import UsageStats
from dspy_bridge.services.clock import Clock, system_clock
from dspy_bridge.services.host_hub import HostHub
from dspy_bridge.services.offload import coerce_value_off_loop
from dspy_bridge.store.base import SessionStore

log = get_logger(__name__)

_MODULE_ID = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]{0,127}")
DEFAULT_BATCH_CONCURRENCY = 8
MAX_BATCH_CONCURRENCY = 256
MAX_BATCH_ITEMS = 10_000


@dataclass(frozen=True)
class SignatureInput:
    """A signature as the host sent it: DSPy's string form or fields, plus instructions."""

    text: str = ""
    fields: Sequence[FieldSpec] = ()
    instructions: str = ""


@dataclass(frozen=True)
class ExecuteOptions:
    timeout_ms: int = 0
    include_trace: bool = False


@dataclass(frozen=True)
class VariableUse:
    """A variable's value as an execution used it; version 0 when it came from an override."""

    value: PyValue
    version: int
    overridden: bool


@dataclass
class ExecuteOutcome:
    result: ExecutionResult
    variables_used: dict[str, VariableUse]
    module_version: int


@dataclass
class BatchOutcome:
    """Per-item results in request order (an ExecutionResult or the item's BridgeError)."""

    results: list[ExecutionResult | BridgeError]
    variables_used: dict[str, VariableUse]
    usage: UsageStats
    latency_ms: float
    module_version: int


@dataclass
class StreamHandle:
    """A validated streamed execution: what it uses, and its events (iterate to run it)."""

    variables_used: dict[str, VariableUse]
    module_version: int
    events: AsyncIterator[ExecutionEvent]


@dataclass
class PreparedExecution:
    """Everything an execution needs that comes from the store, resolved once: the module
    version, its signature, the LM (module > session > server default), and the bound
    variables' parameter values with the snapshot reported as `variables_used`. Jobs and
    evaluations run from one of these as `Execute` does."""

    record: ModuleRecord
    signature: SignatureSpec
    lm: LMSpec
    params: dict[str, PyValue] = field(default_factory=dict)
    used: dict[str, VariableUse] = field(default_factory=dict)
    #: The `host:` tools the module uses, as its session's host offers them now.
    host_tools: tuple[HostToolSpec, ...] = ()

    @property
    def model(self) -> str:
        """The model that runs (a bound `model` variable wins over the LM spec)."""
        return str(self.params.get("model") or self.lm.model)

    def record_usage(self, usage: UsageStats) -> None:
        """Counts LM calls and tokens in the metrics, by the model that ran."""
        count_lm_usage(self.model, usage.lm_calls, usage.prompt_tokens, usage.completion_tokens)


class ModuleService:
    """The module RPCs' behaviour (see the module docstring); the transport converts protos.

    `tools` must be the registry the executor builds programs with (the default one unless a
    custom registry is wired into both)."""

    def __init__(
        self,
        store: SessionStore,
        executor: Executor,
        settings: Settings,
        clock: Clock = system_clock,
        tools: ToolRegistry | None = None,
        hosts: HostHub | None = None,
    ) -> None:
        """`hosts`: the session's host connections (`host:` tools are checked against what
        they offer at CreateModule and resolved at each dispatch)."""
        self._store = store
        self._executor = executor
        self._settings = settings
        self._lm_policy = settings.lm_policy()
        self._clock = clock
        self._tools = tools or default_registry()
        self._hosts = hosts
        if hosts is not None:
            self._tools = self._tools.with_provider(HostTools(hosts.tool_specs, hosts))

    @property
    def hosts(self) -> HostHub | None:
        """The session host connections (`Connect`), when the server has them."""
        return self._hosts

    @property
    def executor(self) -> Executor:
        """Where executions run (in this process or on the worker pool)."""
        return self._executor

    # -- helpers ----------------------------------------------------------------------------

    async def live_session(self, session_id: str) -> Session:
        """The session, or NOT_FOUND `SESSION_NOT_FOUND` when it is missing or expired."""
        session = await self._store.get_session(session_id)
        if session.expired(self._clock()):
            raise session_not_found(session_id)
        return session

    def _context(self, session_id: str) -> registry.BuildContext:
        return registry.BuildContext(session_id=session_id, tools=self._tools)

    def default_lm(self) -> LMSpec:
        s = self._settings
        return LMSpec(s.default_lm_model(), s.lm_api_base, s.lm_api_key_env)

    def admit_lm(self, lm: LMSpec) -> None:
        """The check of every LM configuration a host sends or an execution is about to use
        (`runtime.lm.factory.admit_lm_spec`: syntax, options, the operator's allow-lists)."""
        admit_lm_spec(lm, self._lm_policy)

    async def session_gone(self, session_id: str) -> None:
        """Hook for `SessionService.on_session_gone`: drop the session's cached programs."""
        self._executor.forget_session(session_id)

    # -- CRUD -------------------------------------------------------------------------------

    async def create(
        self,
        session_id: str,
        module_id: str,
        module_type: str,
        signature: SignatureInput,
        config: Mapping[str, Any],
        bindings: Mapping[str, str],
        lm: LMSpec | None = None,
    ) -> ModuleRecord:
        await self.live_session(session_id)
        if module_id and not _MODULE_ID.fullmatch(module_id):
            raise invalid_argument(
                Reason.INVALID_REQUEST,
                "module_id must be 1-128 letters, digits, '_', '.' or '-', starting with a letter",
                "module_id",
            )
        if not module_type:
            raise invalid_argument(
                Reason.UNKNOWN_MODULE_TYPE,
                f"module_type is required; known types: {', '.join(registry.module_types())}",
                "module_type",
            )
        mtype = registry.get_type(module_type)
        spec = parse_signature(signature.text, signature.fields, signature.instructions)
        check_fields_for_module(spec, module_type)
        inputs = tuple(f.name for f in spec.inputs)
        outputs = tuple(f.name for f in spec.outputs)
        ctx = self._context(session_id)
        try:
            normalized = mtype.validate_config(config, inputs, outputs, ctx, strict=True)
        except registry.ConfigError as exc:
            raise exc.to_bridge() from None
        mtype.check_available()
        variables = await self._bound_variables(session_id, bindings)
        check_bindings(
            bindings,
            variables,
            normalized,
            module_type=module_type,
            inputs=inputs,
            outputs=outputs,
            ctx=ctx,
        )
        if lm is not None:
            self.admit_lm(lm)
            host_lm = host_name(lm.model)
            offered = self._hosts.names(session_id, "lm") if self._hosts else []
            if host_lm is not None and host_lm not in offered:
                raise unavailable("lm", Reason.HOST_LM_UNAVAILABLE, host_lm, offered)
        now = self._clock()
        record = ModuleRecord(
            session_id=session_id,
            module_id=module_id or f"mod_{secrets.token_hex(6)}",
            version=1,
            spec={
                "module_type": module_type,
                "signature": spec.to_dict(),
                "config": normalized,
                "variable_bindings": {p: variables[ref].name for p, ref in bindings.items()},
                "lm": lm.to_dict() if lm is not None else None,
            },
            state=None,
            create_time=now,
            update_time=now,
            source="host",
        )
        try:
            build_program(record, ctx=ctx)
        except BridgeError:
            raise
        except Exception as exc:  # a plugin type or tool that cannot be built
            raise invalid_argument(
                Reason.INVALID_MODULE_CONFIG,
                f"the module cannot be built: {type(exc).__name__}: {exc}",
                "config",
            ) from None
        return await self._store.create_module(record)

    async def _bound_variables(
        self, session_id: str, bindings: Mapping[str, str]
    ) -> dict[str, Variable]:
        found: dict[str, Variable] = {}
        for param, ref in bindings.items():
            if not ref:
                raise invalid_argument(
                    Reason.INVALID_REQUEST,
                    f"binding of {param!r} names no variable",
                    f"variable_bindings[{param}]",
                )
            if ref not in found:
                try:
                    found[ref] = await self._store.get_variable(session_id, ref)
                except BridgeError as exc:
                    if exc.reason != Reason.VARIABLE_NOT_FOUND:
                        raise
                    where = f"variable_bindings[{param}]"
                    missing = variable_not_found(session_id, ref)
                    raise BridgeError(
                        missing.code,
                        missing.reason,
                        missing.message,
                        dict(missing.metadata),
                        (FieldViolation(where, missing.message),),
                    ) from None
        return found

    async def get(self, session_id: str, module_id: str, version: int = 0) -> ModuleRecord:
        await self.live_session(session_id)
        if version < 0:
            raise invalid_argument(
                Reason.INVALID_REQUEST, "version must not be negative", "version"
            )
        return await self._store.get_module(session_id, module_id, version)

    async def list(self, session_id: str) -> list[ModuleRecord]:
        await self.live_session(session_id)
        return await self._store.list_modules(session_id)

    async def delete(self, session_id: str, module_id: str) -> None:
        await self.live_session(session_id)
        await self._store.delete_module(session_id, module_id)

    # -- state ------------------------------------------------------------------------------

    async def export_state(
        self, session_id: str, module_id: str, version: int = 0
    ) -> tuple[str, int]:
        record = await self.get(session_id, module_id, version)
        return export_record_state(record), record.version

    async def import_state(
        self,
        session_id: str,
        module_id: str,
        state_json: str,
        expected_version: int | None = None,
    ) -> ModuleRecord:
        record = await self.get(session_id, module_id)
        if expected_version is not None and expected_version != record.version:
            raise version_conflict(f"module {module_id!r}", expected_version, record.version)
        state = import_state(record, state_json)
        new = ModuleRecord(
            session_id=session_id,
            module_id=module_id,
            version=record.version + 1,
            spec=record.spec,
            state=state,
            create_time=record.create_time,
            update_time=self._clock(),
            source="import",
        )
        return await self._store.put_module_version(new, expected_version=record.version)

    # -- execution --------------------------------------------------------------------------

    async def prepare(
        self,
        session_id: str,
        module_id: str,
        overrides: Mapping[str, PyValue],
        version: int = 0,
    ) -> PreparedExecution:
        """Resolves the module at `version` (0: the current one), its LM and its bound
        variables (with `overrides` checked against the variables and the parameters). Raises
        what `Execute` raises for them; touches nothing."""
        with tracing.span("validate", {"dspy_bridge.module_id": module_id}):
            return await self._prepare(session_id, module_id, overrides, version)

    async def _prepare(
        self,
        session_id: str,
        module_id: str,
        overrides: Mapping[str, PyValue],
        version: int = 0,
    ) -> PreparedExecution:
        listed: list[Variable] | None = None
        if self._store.shared:  # one round trip to Redis instead of three
            session, record, listed = await self._store.execution_view(
                session_id, module_id, version
            )
            if session.expired(self._clock()):
                raise session_not_found(session_id)
        else:
            session = await self.live_session(session_id)
            record = await self._store.get_module(session_id, module_id, version)
        spec = record.spec
        bindings: dict[str, str] = spec.get("variable_bindings") or {}
        by_variable: dict[str, list[str]] = {}
        for param, name in bindings.items():
            by_variable.setdefault(name, []).append(param)
        for name in overrides:
            if name not in by_variable:
                bound = ", ".join(sorted(by_variable)) or "none"
                raise invalid_argument(
                    Reason.INVALID_REQUEST,
                    f"variable {name!r} is not bound by module {module_id!r} (bound: {bound}); "
                    "overrides apply to bound variables only",
                    f"variable_overrides[{name}]",
                    metadata={"variable": name},
                )
        lm_spec = spec.get("lm")
        lm = LMSpec.from_dict(lm_spec) if lm_spec else (session.lm or self.default_lm())
        # Stored specs are checked again: they may predate the operator's current allow-lists.
        self.admit_lm(lm)
        lm = dataclasses.replace(lm, cache_scope=session.owner)
        signature = spec_signature(record)
        prepared = PreparedExecution(record, signature, lm)
        if not bindings:
            return self._with_host_tools(session_id, prepared)
        if listed is None:
            listed = await self._store.list_variables(session_id)
        variables = {v.name: v for v in listed}
        check = _ParamCheck(spec, signature, self._context(session_id))
        for name, params in by_variable.items():
            variable = variables.get(name)
            if variable is None:
                raise failed_precondition(
                    Reason.VARIABLE_NOT_FOUND,
                    f"module {module_id!r} is bound to variable {name!r}, which no longer exists",
                    variable=name,
                    module_id=module_id,
                )
            if name in overrides:
                where = f"variable_overrides[{name}]"
                value = await coerce_value_off_loop(
                    variable.type, variable.constraints, overrides[name], where
                )
                for param in params:
                    prepared.params[param] = check.override(param, value, where)
                prepared.used[name] = VariableUse(value, 0, True)
            else:
                for param in params:
                    prepared.params[param] = check.stored(param, variable)
                prepared.used[name] = VariableUse(variable.value, variable.version, False)
        return self._with_host_tools(session_id, prepared)

    def _with_host_tools(self, session_id: str, prepared: PreparedExecution) -> PreparedExecution:
        """`prepared` with the specs of the `host:` tools it uses, as offered now; UNAVAILABLE
        `HOST_DISCONNECTED` (retryable) when the host offering one is gone."""
        config = dict(prepared.record.spec.get("config") or {})
        if "tools" in prepared.params:
            config["tools"] = prepared.params["tools"]
        specs = []
        for name in host_tool_names(config):
            spec = self._hosts.tool_spec(session_id, name) if self._hosts is not None else None
            if spec is None:
                offered = self._hosts.names(session_id, "tool") if self._hosts else []
                raise host_disconnected("tool", name, offered)
            specs.append(spec)
        prepared.host_tools = tuple(specs)
        lm = host_name(str(prepared.params.get("model") or prepared.lm.model))
        offered = self._hosts.names(session_id, "lm") if self._hosts and lm else []
        if lm is not None and lm not in offered:
            raise host_disconnected("lm", lm, offered)
        return prepared

    def execution_request(
        self, prepared: PreparedExecution, inputs: Mapping[str, PyValue], options: ExecuteOptions
    ) -> ExecutionRequest:
        """One execution of `prepared` with `inputs` coerced to its signature (INVALID_ARGUMENT
        `INVALID_INPUT` otherwise), ready for the executor."""
        if options.timeout_ms < 0:
            raise invalid_argument(
                Reason.INVALID_REQUEST, "timeout_ms must not be negative", "options.timeout_ms"
            )
        coerced = coerce_execution_inputs(prepared.record, inputs, prepared.signature)
        return ExecutionRequest(
            record=prepared.record,
            lm=prepared.lm,
            inputs=coerced,
            params=dict(prepared.params),
            timeout_ms=options.timeout_ms,
            include_trace=options.include_trace,
            host_tools=prepared.host_tools,
        )

    async def execute(
        self,
        session_id: str,
        module_id: str,
        inputs: Mapping[str, PyValue],
        overrides: Mapping[str, PyValue] | None = None,
        options: ExecuteOptions | None = None,
    ) -> ExecuteOutcome:
        prepared = await self.prepare(session_id, module_id, overrides or {})
        request = self.execution_request(prepared, inputs, options or ExecuteOptions())
        result = await self._executor.execute(request)
        prepared.record_usage(result.usage)
        return ExecuteOutcome(result, prepared.used, prepared.record.version)

    async def execute_batch(
        self,
        session_id: str,
        module_id: str,
        items: Sequence[Mapping[str, PyValue]],
        overrides: Mapping[str, PyValue] | None = None,
        options: ExecuteOptions | None = None,
        max_concurrency: int = 0,
    ) -> BatchOutcome:
        if max_concurrency < 0:
            raise invalid_argument(
                Reason.INVALID_REQUEST, "max_concurrency must not be negative", "max_concurrency"
            )
        if len(items) > MAX_BATCH_ITEMS:
            raise invalid_argument(
                Reason.INVALID_REQUEST, f"at most {MAX_BATCH_ITEMS} items per batch", "items"
            )
        options = options or ExecuteOptions()
        start = time.perf_counter()
        prepared = await self.prepare(session_id, module_id, overrides or {})
        gate = asyncio.Semaphore(
            min(max_concurrency or DEFAULT_BATCH_CONCURRENCY, MAX_BATCH_CONCURRENCY)
        )

        async def one(index: int, inputs: Mapping[str, PyValue]) -> ExecutionResult | BridgeError:
            try:
                request = self.execution_request(prepared, inputs, options)
                async with gate:
                    return await self._executor.execute(request)
            except BridgeError as exc:
                return exc.at(f"items[{index}]")
            except Exception as exc:  # a bug must not fail the other items
                log.exception("batch item failed", module_id=module_id, item=index)
                return BridgeError(
                    grpc.StatusCode.INTERNAL,
                    Reason.INTERNAL,
                    f"internal error: {type(exc).__name__}",
                )

        results = list(await asyncio.gather(*(one(i, item) for i, item in enumerate(items))))
        usage = UsageStats()
        for r in results:
            if isinstance(r, ExecutionResult):
                usage = usage + r.usage
        prepared.record_usage(usage)
        latency = (time.perf_counter() - start) * 1000
        return BatchOutcome(results, prepared.used, usage, latency, prepared.record.version)

    async def execute_stream(
        self,
        session_id: str,
        module_id: str,
        inputs: Mapping[str, PyValue],
        overrides: Mapping[str, PyValue] | None = None,
        options: ExecuteOptions | None = None,
    ) -> StreamHandle:
        """Validates everything first (errors raise here, before any event); iterate
        `events` to run."""
        prepared = await self.prepare(session_id, module_id, overrides or {})
        request = self.execution_request(prepared, inputs, options or ExecuteOptions())
        return StreamHandle(
            prepared.used, prepared.record.version, _counting(prepared, self._executor, request)
        )


async def _counting(
    prepared: PreparedExecution, executor: Executor, request: ExecutionRequest
) -> AsyncIterator[ExecutionEvent]:
    """The executor's stream, counting LM usage when its result arrives. Closing this closes
    the executor's stream at once (not whenever it is garbage-collected), which cancels the
    execution and frees its pool slot."""
    async with contextlib.aclosing(executor.execute_stream(request)) as events:
        async for event in events:
            if isinstance(event, ResultEvent):
                prepared.record_usage(event.result.usage)
            yield event


class _ParamCheck:
    """Checks parameter values against the module (type, config, signature fields)."""

    def __init__(
        self, spec: Mapping[str, Any], signature: SignatureSpec, ctx: registry.BuildContext
    ) -> None:
        self.ctx = ctx
        self.module_type = spec["module_type"]
        self.config = dict(spec.get("config") or {})
        self.inputs = tuple(f.name for f in signature.inputs)
        self.outputs = tuple(f.name for f in signature.outputs)

    def _check(self, param: str, value: PyValue) -> PyValue:
        return check_value(
            param,
            value,
            module_type=self.module_type,
            config=self.config,
            inputs=self.inputs,
            outputs=self.outputs,
            ctx=self.ctx,
        )

    def override(self, param: str, value: PyValue, where: str) -> PyValue:
        """An override the parameter cannot use is INVALID_ARGUMENT `INVALID_MODULE_CONFIG`
        (a BridgeError such as INTERPRETER_UNAVAILABLE passes through)."""
        try:
            return self._check(param, value)
        except ParamError as exc:
            raise invalid_argument(
                Reason.INVALID_MODULE_CONFIG,
                f"{where}: {exc}",
                where,
                metadata={"parameter": param},
            ) from None

    def stored(self, param: str, variable: Variable) -> PyValue:
        """A stored value the parameter cannot use (the variable changed after the module was
        created) is FAILED_PRECONDITION `INVALID_MODULE_CONFIG` naming the variable version."""
        try:
            return self._check(param, variable.value)
        except ParamError as exc:
            raise failed_precondition(
                Reason.INVALID_MODULE_CONFIG,
                f"variable {variable.name!r} (version {variable.version}) holds a value "
                f"parameter {param!r} cannot use: {exc}",
                parameter=param,
                variable=variable.name,
            ) from None
