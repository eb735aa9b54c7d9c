"""VariableSearch: validation, Pareto fronts, the grid sampler, a search that finds the better
strategy under the offline LM, applying with the job as history source — in-process and through
the job RPCs."""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from typing import Any

import grpc
import pytest

from dspy_bridge.config import Settings
from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.jobs.evaluate import EvalExample
from dspy_bridge.jobs.service import Prepared, StartRequest
from dspy_bridge.jobs.variable_search import (
    Measurement,
    SearchSpec,
    SearchVariableSpec,
    VariableSearchKind,
    plan_search,
    run_job,
    run_variable_search,
)
from dspy_bridge.model import Constraints, Job, JobStatus, PyValue, Variable, VariableType
from dspy_bridge.runtime.executor import InProcessExecutor
from dspy_bridge.runtime.params import ParamError
from dspy_bridge.runtime.program import coerce_execution_inputs
from dspy_bridge.services.modules import ModuleService, SignatureInput
from dspy_bridge.services.sessions import SessionService
from dspy_bridge.services.variables import VariableService
from dspy_bridge.services.watch import WatchHub
from dspy_bridge.store.memory import MemoryStore

T = VariableType


def _var(name: str, type_: VariableType, value: PyValue, **c: Any) -> Variable:
    return Variable(f"id_{name}", "s", name, type_, value, Constraints(**c))


VARIABLES = [
    _var("temp", T.FLOAT, 0.5, min=0.0, max=1.0),
    _var("k", T.INTEGER, 2, min=1, max=8),
    _var("p", T.FLOAT, 0.5, min=0.0, max=1.0, step=0.25),
    _var("mode", T.CHOICE, "a", choices=("a", "b", "c", "d")),
    _var("strategy", T.MODULE, "Predict", choices=("Predict", "ChainOfThought")),
    _var("flag", T.BOOLEAN, False),
    _var("free", T.STRING, "x"),
    _var("blob", T.JSON, {}),
    _var("unbound", T.FLOAT, 0.1),
]
BINDINGS = {
    "temperature": "temp",
    "max_tokens": "k",
    "instructions": "mode",
    "module_type": "strategy",
    "n": "flag",
    "model": "free",
    "extra": "blob",
    "top_p": "p",
}


def _check(param: str, value: PyValue) -> PyValue:
    if param == "temperature" and isinstance(value, float) and value > 0.9:
        raise ParamError("temperature above 0.9 is refused in this test")
    return value


def _plan(*variables: SearchVariableSpec, **kw: Any) -> Any:
    return plan_search(SearchSpec(tuple(variables), **kw), VARIABLES, BINDINGS, _check)


# -- validation -------------------------------------------------------------------------------


def test_plan_defaults() -> None:
    plan = _plan(
        SearchVariableSpec("temp", high=0.8),
        SearchVariableSpec("id_k"),  # by id
        SearchVariableSpec("strategy"),
        SearchVariableSpec("flag"),
    )
    temp, k, strategy, flag = plan.dimensions
    assert (temp.kind, temp.low, temp.high, temp.step, temp.params) == (
        "float",
        0.0,
        0.8,
        None,
        ("temperature",),
    )
    assert (k.variable, k.kind, k.low, k.high, k.step) == ("k", "int", 1, 8, 1)
    assert strategy.choices == ("Predict", "ChainOfThought")
    assert flag.choices == (False, True)
    assert [(o.name, o.direction) for o in plan.objectives] == [("metric", "maximize")]
    assert (plan.sampler, plan.n_trials) == ("tpe", 20)


BAD_PLANS: list[tuple[str, list[SearchVariableSpec], dict[str, Any], str]] = [
    ("none", [], {}, "variable_search.variables"),
    ("unknown", [SearchVariableSpec("nope")], {}, "variable_search.variables[0].name"),
    ("not bound", [SearchVariableSpec("unbound")], {}, "variable_search.variables[0].name"),
    (
        "duplicate",
        [SearchVariableSpec("temp", high=0.8), SearchVariableSpec("id_temp")],
        {},
        "variable_search.variables[1].name",
    ),
    ("json", [SearchVariableSpec("blob")], {}, "variable_search.variables[0].name"),
    ("below min", [SearchVariableSpec("temp", low=-1)], {}, "variable_search.variables[0].low"),
    ("above max", [SearchVariableSpec("k", high=9)], {}, "variable_search.variables[0].high"),
    ("low > high", [SearchVariableSpec("temp", 0.8, 0.2)], {}, "variable_search.variables[0].low"),
    (
        "off the step grid",
        [SearchVariableSpec("p", step=0.1)],
        {},
        "variable_search.variables[0].step",
    ),
    ("log at 0", [SearchVariableSpec("temp", log=True)], {}, "variable_search.variables[0].log"),
    (
        "param refuses",
        [SearchVariableSpec("temp", high=1.0)],
        {},
        "variable_search.variables[0].high",
    ),
    (
        "choice outside",
        [SearchVariableSpec("mode", choices=("a", "z"))],
        {},
        "variable_search.variables[0].choices[1]",
    ),
    (
        "strategy outside",
        [SearchVariableSpec("strategy", choices=("ReAct",))],
        {},
        "variable_search.variables[0].choices[0]",
    ),
    (
        "no choices to default to",
        [SearchVariableSpec("free")],
        {},
        "variable_search.variables[0].choices",
    ),
    ("range on choice", [SearchVariableSpec("mode", low=1)], {}, "variable_search.variables[0]"),
    (
        "grid needs a step",
        [SearchVariableSpec("temp", high=0.8)],
        {"sampler": "grid"},
        "variable_search.variables[0].step",
    ),
    (
        "objective",
        [SearchVariableSpec("mode")],
        {"objectives": (("accuracy", ""),)},
        "variable_search.objectives[0].name",
    ),
    ("sampler", [SearchVariableSpec("mode")], {"sampler": "cmaes"}, "variable_search.sampler"),
    ("trials", [SearchVariableSpec("mode")], {"n_trials": 5000}, "variable_search.n_trials"),
]


@pytest.mark.parametrize(
    ("what", "variables", "kw", "field"), BAD_PLANS, ids=[b[0] for b in BAD_PLANS]
)
def test_bad_plans(
    what: str, variables: list[SearchVariableSpec], kw: dict[str, Any], field: str
) -> None:
    with pytest.raises(BridgeError) as err:
        _plan(*variables, **kw)
    assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.reason == Reason.INVALID_SEARCH_SPACE
    assert [v.field for v in err.value.violations] == [field]


# -- the search with a fake evaluate_fn -------------------------------------------------------

# (metric, tokens) per mode: c is dominated by b; a, b and d trade quality for tokens.
POINTS = {"a": (1.0, 100), "b": (0.5, 50), "c": (0.4, 80), "d": (0.2, 10)}


def _fake(values: dict[str, PyValue]) -> Measurement:
    score, tokens = POINTS[str(values["mode"])]
    return Measurement(score, 1.0, tokens, 0.0)


def test_pareto_front_two_objectives() -> None:
    plan = _plan(
        SearchVariableSpec("mode"),
        sampler="grid",
        objectives=(("metric", ""), ("tokens", "")),
    )
    outcome = run_variable_search(plan, _fake)
    assert len(outcome.trials) == 4
    front = {str(outcome.trial(n).values["mode"]) for n in outcome.pareto_front}
    assert front == {"a", "b", "d"}
    assert outcome.trial(outcome.best or 0).values["mode"] == "a"  # best by the first objective
    result = outcome.to_result()
    assert result["kind"] == "variable_search"
    assert {t["objectives"]["tokens"] for t in result["trials"]} == {100, 50, 80, 10}


def test_grid_covers_the_grid_and_single_objective_front() -> None:
    plan = _plan(
        SearchVariableSpec("temp", high=0.5, step=0.25),
        SearchVariableSpec("mode", choices=("a", "b")),
        sampler="grid",
    )
    assert plan.n_trials == 6
    seen: list[tuple[PyValue, PyValue]] = []
    progress: list[tuple[int, int, float | None]] = []

    def evaluate(values: dict[str, PyValue]) -> Measurement:
        seen.append((values["temp"], values["mode"]))
        return Measurement(float(values["temp"]) + (values["mode"] == "b"), 1.0, 1, 0.0)

    outcome = run_variable_search(
        plan, evaluate, lambda done, total, best, _: progress.append((done, total, best))
    )
    assert sorted(seen) == sorted((t, m) for t in (0.0, 0.25, 0.5) for m in ("a", "b"))
    assert outcome.pareto_front == [outcome.best]
    assert outcome.trial(outcome.best or 0).values == {"temp": 0.5, "mode": "b"}
    assert [p[0] for p in progress] == [1, 2, 3, 4, 5, 6]
    assert progress[-1][2] == pytest.approx(1.5)


def test_failed_trials_are_recorded_and_cancel_stops() -> None:
    plan = _plan(SearchVariableSpec("mode"), sampler="grid")

    def evaluate(values: dict[str, PyValue]) -> Measurement:
        if values["mode"] == "c":
            raise RuntimeError("boom")
        return _fake(values)

    outcome = run_variable_search(plan, evaluate)
    failed = [t for t in outcome.trials if t.state == "FAIL"]
    assert [(t.values["mode"], t.error_message) for t in failed] == [("c", "RuntimeError: boom")]
    assert outcome.trial(outcome.best or 0).values["mode"] == "a"

    cancel = threading.Event()

    def cancelling(values: dict[str, PyValue]) -> Measurement:
        cancel.set()
        return _fake(values)

    outcome = run_variable_search(plan, cancelling, cancel_event=cancel)
    assert len(outcome.trials) == 1


def test_random_and_tpe_samplers_respect_ranges() -> None:
    for sampler in ("random", "tpe"):
        plan = _plan(
            SearchVariableSpec("temp", low=0.1, high=0.8, log=True),
            SearchVariableSpec("k", low=2, high=6, step=2),
            sampler=sampler,
            n_trials=8,
            seed=7,
        )
        outcome = run_variable_search(plan, lambda v: Measurement(float(v["temp"]), 0, 0, 0))
        for trial in outcome.trials:
            assert 0.1 <= float(trial.values["temp"]) <= 0.8
            assert trial.values["k"] in (2, 4, 6)


# -- a real search under the offline LM --------------------------------------------------------


@dataclass
class World:
    store: MemoryStore
    variables: VariableService
    modules: ModuleService
    sid: str


@pytest.fixture
async def world() -> World:
    settings = Settings.model_validate({"lm": "offline", "session_ttl_seconds": 0})
    store = MemoryStore()
    hub = WatchHub(8)
    sessions = SessionService(store, hub, settings)
    variables = VariableService(store, hub, settings)
    modules = ModuleService(store, InProcessExecutor(), settings)
    sid = (await sessions.create("", {}, 0)).session_id
    return World(store, variables, modules, sid)


QUESTIONS = ["alpha beta", "gamma delta", "epsilon zeta", "eta theta"]


async def _labelled_by_chain_of_thought(world: World) -> list[EvalExample]:
    """A task where the strategy matters: the labels are ChainOfThought's answers (an int field
    the offline LM derives from the inputs and the field's position, which CoT shifts)."""
    await world.variables.register(world.sid, "temp", T.FLOAT, 0.7, Constraints(min=0.0, max=1.0))
    await world.variables.register(
        world.sid,
        "strategy",
        T.MODULE,
        "Predict",
        Constraints(choices=("Predict", "ChainOfThought")),
    )
    await world.modules.create(
        world.sid,
        "qa",
        "Predict",
        SignatureInput("question -> answer: int"),
        {},
        {"temperature": "temp", "module_type": "strategy"},
    )
    data = []
    for q in QUESTIONS:
        outcome = await world.modules.execute(
            world.sid, "qa", {"question": q}, {"strategy": "ChainOfThought"}
        )
        data.append(EvalExample({"question": q}, {"answer": outcome.result.outputs["answer"]}))
    return data


async def _payload(world: World, data: list[EvalExample], spec: SearchSpec) -> Any:
    record = await world.modules.get(world.sid, "qa")
    prepared_exec = await world.modules.prepare(world.sid, "qa", {})
    examples = [(coerce_execution_inputs(record, e.inputs), dict(e.labels)) for e in data]
    prepared = Prepared(record, prepared_exec.lm, prepared_exec.params, examples, [])
    request = StartRequest(
        world.sid, "qa", "VariableSearch", metric_name="exact_match", variable_search=spec
    )
    kind = VariableSearchKind(world.store, world.variables)
    return kind, await kind.payload("job_test", request, prepared)


class _Reporter:
    def __init__(self) -> None:
        self.events: list[tuple[str, int, int, float | None]] = []

    def progress(
        self,
        phase: str,
        completed: int = 0,
        total: int = 0,
        message: str = "",
        best_score: float | None = None,
    ) -> None:
        self.events.append((phase, completed, total, best_score))


async def test_search_finds_the_better_strategy_and_applies(world: World) -> None:
    data = await _labelled_by_chain_of_thought(world)
    spec = SearchSpec(
        (
            SearchVariableSpec("temp", low=0.0, high=1.0, step=0.5),
            SearchVariableSpec("strategy"),
        ),
        sampler="grid",
        objectives=(("metric", ""), ("tokens", "")),
    )
    kind, payload = await _payload(world, data, spec)
    reporter = _Reporter()
    result = await asyncio.to_thread(run_job, payload, reporter)  # type: ignore[arg-type]
    trials = result["trials"]
    assert len(trials) == 6 and all(t["state"] == "COMPLETE" for t in trials)
    by_strategy: dict[str, set[float]] = {}
    for t in trials:
        by_strategy.setdefault(t["values"]["strategy"], set()).add(t["objectives"]["metric"])
    assert by_strategy["ChainOfThought"] == {1.0}
    assert max(by_strategy["Predict"]) < 1.0
    best = next(t for t in trials if t["number"] == result["best"])
    assert best["values"]["strategy"] == "ChainOfThought"
    # CoT costs more tokens, Predict scores less: both are on the front, nothing dominated.
    front = [t for t in trials if t["number"] in result["pareto_front"]]
    assert {t["values"]["strategy"] for t in front} == {"Predict", "ChainOfThought"}
    for t in front:
        for other in trials:
            assert not (
                other["objectives"]["metric"] >= t["objectives"]["metric"]
                and other["objectives"]["tokens"] <= t["objectives"]["tokens"]
                and other["objectives"] != t["objectives"]
            )
    assert reporter.events[-1][1:3] == (6, 6) and reporter.events[-1][3] == 1.0
    # Nothing was written during the search.
    assert (await world.variables.get(world.sid, "strategy")).version == 1

    job = Job("job_test", world.sid, "qa", "VariableSearch", JobStatus.SUCCEEDED, result=result)
    outcome = await kind.apply(job, None)
    assert outcome.job.applied
    assert {v.name: v.value for v in outcome.variables} == best["values"]
    history = await world.variables.history(world.sid, "strategy", 0)
    assert history[0].source == "optimizer:job_test"
    assert history[0].value == "ChainOfThought"
    again = await kind.apply(outcome.job, None)  # applying twice changes nothing
    assert (await world.variables.get(world.sid, "strategy")).version == history[0].version
    assert again.job.applied


async def test_payload_rejects_bad_requests_before_work(world: World) -> None:
    data = await _labelled_by_chain_of_thought(world)
    with pytest.raises(BridgeError) as err:
        await _payload(world, data, SearchSpec((SearchVariableSpec("temp", high=3.0),)))
    assert err.value.reason == Reason.INVALID_SEARCH_SPACE
    kind = VariableSearchKind(world.store, world.variables)
    record = await world.modules.get(world.sid, "qa")
    prepared = Prepared(record, world.modules.default_lm(), {}, [], [])
    for request, reason in (
        (StartRequest(world.sid, "qa", "VariableSearch"), Reason.INVALID_SEARCH_SPACE),
        (
            StartRequest(
                world.sid,
                "qa",
                "VariableSearch",
                config={"bogus": 1},
                variable_search=SearchSpec((SearchVariableSpec("temp"),)),
            ),
            Reason.INVALID_OPTIMIZER_CONFIG,
        ),
    ):
        with pytest.raises(BridgeError) as err:
            await kind.payload("j", request, prepared)
        assert err.value.reason == reason


# -- through the job RPCs --------------------------------------------------------------------


async def test_variable_search_through_rpcs(stub: Any) -> None:
    from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
    from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2, module_pb2
    from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
    from tests.integration.rpc import expect_error, fv, sv

    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid,
            name="temp",
            type=vpb.VARIABLE_TYPE_FLOAT,
            initial_value=fv(0.7),
            constraints=vpb.VariableConstraints(min=0.0, max=1.0),
        )
    )
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid,
            name="strategy",
            type=vpb.VARIABLE_TYPE_MODULE,
            initial_value=sv("Predict"),
            constraints=vpb.VariableConstraints(choices=["Predict", "ChainOfThought"]),
        )
    )
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="qa",
            module_type="Predict",
            signature=module_pb2.Signature(text="question -> answer: int"),
            variable_bindings={"temperature": "temp", "module_type": "strategy"},
        )
    )
    dataset = []
    for q in QUESTIONS:
        out = await stub.Execute(
            pb.ExecuteRequest(
                session_id=sid,
                module_id="qa",
                inputs={"question": sv(q)},
                variable_overrides={"strategy": sv("ChainOfThought")},
            )
        )
        labels = {"answer": out.outputs["answer"]}
        dataset.append(job_pb2.Example(inputs={"question": sv(q)}, labels=labels))

    def start(**search: Any) -> pb.StartOptimizationRequest:
        return pb.StartOptimizationRequest(
            session_id=sid,
            module_id="qa",
            optimizer="VariableSearch",
            trainset=dataset,
            metric=job_pb2.MetricSpec(name="exact_match"),
            variable_search=job_pb2.VariableSearchSpec(**search),
        )

    bad = start(variables=[job_pb2.SearchVariable(name="temp", high=5.0)])
    await expect_error(
        stub.StartOptimization(bad), grpc.StatusCode.INVALID_ARGUMENT, Reason.INVALID_SEARCH_SPACE
    )
    listed = await stub.ListOptimizations(pb.ListOptimizationsRequest(session_id=sid))
    assert list(listed.jobs) == []

    request = start(
        variables=[
            job_pb2.SearchVariable(name="temp", low=0.0, high=0.5, step=0.5),
            job_pb2.SearchVariable(name="strategy"),
        ],
        sampler=job_pb2.SEARCH_SAMPLER_GRID,
        objectives=[job_pb2.SearchObjective(name="metric")],
    )
    job = (await stub.StartOptimization(request)).job
    final = None
    async for snapshot in stub.WatchOptimization(
        pb.WatchOptimizationRequest(session_id=sid, job_id=job.job_id), timeout=120
    ):
        final = snapshot.job
    assert final is not None and final.status == job_pb2.JOB_STATUS_SUCCEEDED, final
    result = final.variable_search_result
    assert len(result.trials) == 4
    assert len(result.pareto_front) == 1
    assert result.best.values["strategy"].string_value == "ChainOfThought"
    assert result.best.objectives["metric"] == 1.0
    assert final.best_score == 1.0

    applied = await stub.ApplyOptimization(
        pb.ApplyOptimizationRequest(session_id=sid, job_id=job.job_id)
    )
    assert applied.job.applied
    assert {v.name for v in applied.variables} == {"temp", "strategy"}
    history = await stub.GetVariableHistory(
        pb.GetVariableHistoryRequest(session_id=sid, name="strategy", limit=1)
    )
    assert history.entries[0].source == f"optimizer:{job.job_id}"
    assert history.entries[0].value.string_value == "ChainOfThought"


def test_client_search_spec() -> None:
    from dspy_bridge_client import search_spec
    from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2

    spec = search_spec(
        {"temp": {"low": 0.0, "high": 1.0, "step": 0.5}, "strategy": ["Predict"], "k": None},
        sampler="grid",
        objectives={"metric": "maximize", "tokens": "minimize"},
        seed=3,
    )
    assert spec.sampler == job_pb2.SEARCH_SAMPLER_GRID
    assert [(o.name, o.direction) for o in spec.objectives] == [
        ("metric", job_pb2.OBJECTIVE_DIRECTION_MAXIMIZE),
        ("tokens", job_pb2.OBJECTIVE_DIRECTION_MINIMIZE),
    ]
    temp, strategy, k = spec.variables
    assert (temp.low, temp.high, temp.step) == (0.0, 1.0, 0.5)
    assert [c.string_value for c in strategy.choices] == ["Predict"]
    assert not k.HasField("low") and spec.seed == 3
    # The server reads it back as it was meant.
    from dspy_bridge.jobs.variable_search import spec_from_proto

    parsed = spec_from_proto(spec)
    assert parsed.sampler == "grid" and parsed.seed == 3
    assert parsed.variables[0] == SearchVariableSpec("temp", 0.0, 1.0, 0.5)
    assert parsed.objectives == (("metric", "maximize"), ("tokens", "minimize"))
    with pytest.raises(ValueError):
        search_spec({"temp": {"lo": 1}})


async def test_variable_search_with_the_python_client(server: Any) -> None:
    from dspy_bridge_client import AsyncBridgeClient, search_spec

    async with AsyncBridgeClient(server.target) as client:
        session = await client.create_session()
        await session.register_variable(
            "strategy", "module", "Predict", choices=["Predict", "ChainOfThought"]
        )
        await session.create_module(
            "Predict",
            "question -> answer: int",
            module_id="qa",
            bindings={"module_type": "strategy"},
        )
        data = []
        for q in QUESTIONS[:2]:
            out = await session.execute("qa", question=q, overrides={"strategy": "ChainOfThought"})
            data.append(({"question": q}, {"answer": out["answer"]}))
        job = await session.start_optimization(
            "qa",
            "VariableSearch",
            data,
            "exact_match",
            apply=True,
            variable_search=search_spec({"strategy": None}, sampler="grid"),
        )
        done = await session.wait_optimization(job.job_id, max_wait=120)
        assert done.status.name == "SUCCEEDED", done
        result = done.variable_search_result
        assert result is not None and result.best is not None
        assert result.best.values == {"strategy": "ChainOfThought"}
        assert len(result.trials) == 2
        final = await session.get_optimization(job.job_id)
        assert final.applied
        (entry, *_) = await session.history("strategy", 1)
        assert (entry.value, entry.source) == ("ChainOfThought", f"optimizer:{job.job_id}")


def test_model_and_adapter_choices_are_checked_against_the_parameter() -> None:
    from dspy_bridge.jobs.variable_search import param_checker
    from dspy_bridge.runtime.signatures import parse_signature

    check = param_checker("Predict", {}, parse_signature("question -> answer"))
    variables = [
        _var("adapter_v", T.STRING, "chat"),
        _var("model_v", T.STRING, "offline"),
        _var("strategy", T.MODULE, "Predict"),
    ]
    bindings = {"adapter": "adapter_v", "model": "model_v", "module_type": "strategy"}
    plan = plan_search(
        SearchSpec(
            (
                SearchVariableSpec("adapter_v", choices=("chat", "json", "xml")),
                SearchVariableSpec("model_v", choices=("offline", "openai/gpt-4o-mini")),
                SearchVariableSpec("strategy", choices=("Predict", "ChainOfThought")),
            ),
            sampler="grid",
        ),
        variables,
        bindings,
        check,
    )
    assert plan.n_trials == 3 * 2 * 2
    for variable, bad in (("adapter_v", "yaml"), ("strategy", "NoSuchModule")):
        with pytest.raises(BridgeError) as err:
            plan_search(
                SearchSpec((SearchVariableSpec(variable, choices=(bad,)),)),
                variables,
                bindings,
                check,
            )
        assert err.value.reason == Reason.INVALID_SEARCH_SPACE
        assert err.value.violations[0].field == "variable_search.variables[0].choices[0]"
