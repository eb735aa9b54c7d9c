"""Evaluate through a real channel: every metric on a tiny dataset, variables, the streaming
variant, per-example failures, and bad requests (INVALID_ARGUMENT before any work)."""

from __future__ import annotations

import json
from typing import Any

import dspy
import grpc
import pytest
from google.protobuf import struct_pb2

from dspy_bridge.errors import BridgeError, Reason
from dspy_bridge.jobs.evaluate import EvalExample, score_examples
from dspy_bridge.jobs.metrics import METRIC_NAMES, resolve_metric
from dspy_bridge.model import PyValue
from dspy_bridge.runtime.executor import ExecutionRequest, ExecutionResult
from dspy_bridge.runtime.lm.offline import OfflineLM
from dspy_bridge.runtime.signatures import parse_signature
from dspy_bridge.runtime.usage import UsageStats
from dspy_bridge.transport import convert
from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2, module_pb2, value_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.integration.rpc import expect_error, fv, sv

Stub = pb_grpc.BridgeServiceStub
SIGNATURE = "question -> answer, passages: list[str], value: float"
QUESTIONS = ["alpha beta gamma", "delta epsilon", "zeta eta theta"]


def _struct(data: dict[str, Any]) -> struct_pb2.Struct:
    out = struct_pb2.Struct()
    out.update(data)
    return out


def _values(data: dict[str, PyValue]) -> dict[str, value_pb2.Value]:
    return {k: convert.value_to_proto(v) for k, v in data.items()}


async def _setup(stub: Stub, bindings: dict[str, str] | None = None) -> str:
    sid: str = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    if bindings:
        await stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid,
                name="temp",
                type=vpb.VARIABLE_TYPE_FLOAT,
                initial_value=fv(0.5),
                constraints=vpb.VariableConstraints(min=0.0, max=2.0),
            )
        )
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="qa",
            module_type="Predict",
            signature=module_pb2.Signature(text=SIGNATURE),
            variable_bindings=bindings or {},
        )
    )
    return sid


async def _outputs(stub: Stub, sid: str, question: str) -> dict[str, PyValue]:
    response = await stub.Execute(
        pb.ExecuteRequest(session_id=sid, module_id="qa", inputs={"question": sv(question)})
    )
    return convert.values_from_proto(response.outputs)


def _evaluate(
    sid: str, dataset: list[job_pb2.Example], name: str, **options: Any
) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(
        session_id=sid,
        module_id="qa",
        dataset=dataset,
        metric=job_pb2.MetricSpec(name=name, options=_struct(options)),
        num_threads=2,
    )


async def _dataset(stub: Stub, sid: str) -> tuple[list[job_pb2.Example], list[dict[str, Any]]]:
    """Labels right for examples 0 and 2 and wrong for example 1."""
    dataset, truth = [], []
    for i, question in enumerate(QUESTIONS):
        outputs = await _outputs(stub, sid, question)
        truth.append(outputs)
        labels: dict[str, PyValue] = {"answer": outputs["answer"], "value": outputs["value"]}
        if i == 1:
            labels = {"answer": "something else entirely", "value": float(outputs["value"]) + 5}
        dataset.append(job_pb2.Example(inputs={"question": sv(question)}, labels=_values(labels)))
    return dataset, truth


METRIC_CASES: list[tuple[str, dict[str, Any], float | None]] = [
    ("exact_match", {}, 2 / 3),
    ("answer_exact_match", {}, 2 / 3),
    ("answer_passage_match", {"field": "passages", "label": "answer"}, None),
    ("f1", {}, 2 / 3),
    ("contains", {}, 2 / 3),
    ("regex", {"pattern": "^answer: "}, 1.0),
    ("numeric_close", {"field": "value", "tolerance": 0.001}, 2 / 3),
    ("semantic_f1", {}, None),
    ("llm_judge", {"rubric": "Does the response answer the question correctly?"}, None),
]


async def test_every_metric(stub: Stub) -> None:
    sid = await _setup(stub)
    dataset, truth = await _dataset(stub, sid)
    assert sorted(name for name, _, _ in METRIC_CASES) == sorted(METRIC_NAMES)
    signature = parse_signature(SIGNATURE)
    for name, options, expected in METRIC_CASES:
        response = await stub.Evaluate(_evaluate(sid, dataset, name, **options))
        assert [r.index for r in response.results] == [0, 1, 2]
        assert all(r.error.code == 0 for r in response.results), name
        scores = [r.score for r in response.results]
        assert response.score == pytest.approx(sum(scores) / 3), name
        if expected is not None:
            assert response.score == pytest.approx(expected), name
        # Every score is what the metric gives on the module's actual outputs.
        metric = resolve_metric(name, options, signature, OfflineLM())
        for i, result in enumerate(response.results):
            outputs = convert.values_from_proto(result.outputs)
            assert outputs == truth[i]
            labels = convert.values_from_proto(dataset[i].labels)
            example = dspy.Example(question=QUESTIONS[i], **labels).with_inputs("question")
            assert result.score == pytest.approx(metric(example, dspy.Prediction(**outputs)))
        assert response.usage.lm_calls >= 3
        assert response.module_version == 1


async def test_variables_and_overrides(stub: Stub) -> None:
    sid = await _setup(stub, {"temperature": "temp"})
    dataset, _ = await _dataset(stub, sid)
    response = await stub.Evaluate(_evaluate(sid, dataset, "exact_match"))
    used = response.variables_used["temp"]
    assert (used.value.float_value, used.version, used.overridden) == (0.5, 1, False)
    request = _evaluate(sid, dataset, "exact_match")
    request.variable_overrides["temp"].CopyFrom(fv(1.5))
    response = await stub.Evaluate(request)
    used = response.variables_used["temp"]
    assert (used.value.float_value, used.version, used.overridden) == (1.5, 0, True)


async def test_evaluate_stream(stub: Stub) -> None:
    sid = await _setup(stub)
    dataset, _ = await _dataset(stub, sid)
    request = pb.EvaluateStreamRequest(evaluation=_evaluate(sid, dataset, "exact_match"))
    events = [event async for event in stub.EvaluateStream(request)]
    progress = [e.progress for e in events if e.HasField("progress")]
    assert [p.completed for p in progress] == [1, 2, 3]
    assert all(p.total == 3 for p in progress)
    assert events[-1].HasField("result")
    assert events[-1].result.score == pytest.approx(2 / 3)


async def test_server_info_lists_metrics(stub: Stub) -> None:
    info = await stub.GetServerInfo(pb.GetServerInfoRequest())
    assert list(info.metrics) == METRIC_NAMES


def _example(**labels: PyValue) -> job_pb2.Example:
    return job_pb2.Example(inputs={"question": sv("alpha")}, labels=_values(labels))


BAD_REQUESTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("unknown metric", {"metric": "bleu"}, Reason.UNKNOWN_METRIC, "metric.name"),
    ("no metric", {"metric": ""}, Reason.UNKNOWN_METRIC, "metric.name"),
    ("bad option", {"options": {"tolerance": 1}}, Reason.INVALID_METRIC_OPTIONS, ""),
    ("empty dataset", {"dataset": []}, Reason.INVALID_DATASET, "dataset"),
    (
        "label is an input",
        {"dataset": [_example(answer="x", question="q")]},
        Reason.INVALID_DATASET,
        "dataset[0].labels.question",
    ),
    (
        "label is unknown",
        {"dataset": [_example(answer="x"), _example(nope="x")]},
        Reason.INVALID_DATASET,
        "dataset[1].labels.nope",
    ),
    (
        "metric label missing",
        {"dataset": [_example(answer="x"), _example(value=1.0)]},
        Reason.INVALID_DATASET,
        "dataset[1].labels",
    ),
    (
        "unknown input",
        {
            "dataset": [
                _example(answer="x"),
                job_pb2.Example(
                    inputs={"question": sv("q"), "bogus": sv("b")}, labels={"answer": sv("x")}
                ),
            ]
        },
        Reason.INVALID_INPUT,
        "dataset[1].inputs.bogus",
    ),
    (
        "missing input",
        {"dataset": [job_pb2.Example(labels={"answer": sv("x")})]},
        Reason.INVALID_INPUT,
        "dataset[0].inputs.question",
    ),
    ("threads", {"num_threads": -1}, Reason.INVALID_REQUEST, "num_threads"),
    ("unbound override", {"overrides": {"nope": fv(1.0)}}, Reason.INVALID_REQUEST, ""),
]


@pytest.mark.parametrize(
    ("what", "change", "reason", "field"), BAD_REQUESTS, ids=[b[0] for b in BAD_REQUESTS]
)
async def test_bad_requests_do_no_work(
    stub: Stub,
    server: RunningServer,
    what: str,
    change: dict[str, Any],
    reason: str,
    field: str,
) -> None:
    sid = await _setup(stub)
    request = pb.EvaluateRequest(
        session_id=sid,
        module_id="qa",
        dataset=change.get("dataset", [_example(answer="x")]),
        metric=job_pb2.MetricSpec(
            name=change.get("metric", "exact_match"), options=_struct(change.get("options", {}))
        ),
        num_threads=change.get("num_threads", 0),
        variable_overrides=change.get("overrides", {}),
    )
    before = server.executor.stats()["executions"]
    error = await expect_error(stub.Evaluate(request), grpc.StatusCode.INVALID_ARGUMENT, reason)
    if field:
        assert error.fields == [field]
    streamed = pb.EvaluateStreamRequest(evaluation=request)
    error = await expect_error(
        _drain(stub.EvaluateStream(streamed)), grpc.StatusCode.INVALID_ARGUMENT, reason
    )
    if field:
        assert error.fields == [f"evaluation.{field}"]
    assert server.executor.stats()["executions"] == before
    module = (await stub.GetModule(pb.GetModuleRequest(session_id=sid, module_id="qa"))).module
    assert module.version == 1


async def _drain(call: Any) -> list[Any]:
    return [event async for event in call]


async def test_unknown_module_and_session(stub: Stub) -> None:
    sid = await _setup(stub)
    request = _evaluate(sid, [_example(answer="x")], "exact_match")
    request.module_version = 9
    await expect_error(stub.Evaluate(request), grpc.StatusCode.NOT_FOUND)
    request.module_version = 1
    assert (await stub.Evaluate(request)).module_version == 1
    request.module_id = "nope"
    await expect_error(stub.Evaluate(request), grpc.StatusCode.NOT_FOUND)
    request.session_id, request.module_id = "nope", "qa"
    await expect_error(stub.Evaluate(request), grpc.StatusCode.NOT_FOUND)


async def test_an_older_version_is_evaluated_as_it_was(stub: Stub) -> None:
    """v2 gets a demonstration (the offline LM answers from it); evaluating v1 runs v1."""
    sid = await _setup(stub)
    plain = dspy.Predict(SIGNATURE)
    plain.demos = [dspy.Example(question="alpha", answer="from the demo", passages=[], value=1.0)]
    await stub.ImportModuleState(
        pb.ImportModuleStateRequest(
            session_id=sid, module_id="qa", state_json=json.dumps(plain.dump_state())
        )
    )
    request = _evaluate(sid, [_example(answer="from the demo")], "exact_match")
    current = await stub.Evaluate(request)
    assert (current.module_version, current.score) == (2, 1.0)
    request.module_version = 1
    older = await stub.Evaluate(request)
    assert (older.module_version, older.score) == (1, 0.0)


# -- the core, with a fake executor --------------------------------------------------------


class _FlakyExecutor:
    """Fails the example whose question is 'fail'; answers the question otherwise."""

    def __init__(self) -> None:
        self.running = 0
        self.peak = 0

    async def execute(self, req: ExecutionRequest) -> ExecutionResult:
        import asyncio

        self.running += 1
        self.peak = max(self.peak, self.running)
        try:
            await asyncio.sleep(0.01)
            if req.inputs["question"] == "fail":
                raise BridgeError(grpc.StatusCode.UNAVAILABLE, Reason.LM_UNAVAILABLE, "down")
            return ExecutionResult({"answer": req.inputs["question"]}, UsageStats(1), [], 1.0)
        finally:
            self.running -= 1


async def test_failures_stay_per_example_and_threads_bound_concurrency() -> None:
    signature = parse_signature("question -> answer")
    questions = ["a", "fail", "b", "c", "d", "e"]
    dataset = [EvalExample({"question": q}, {"answer": "a"}) for q in questions]
    requests = [ExecutionRequest(None, None, {"question": q}) for q in questions]  # type: ignore[arg-type]
    executor = _FlakyExecutor()
    seen: list[int] = []
    scored = await score_examples(
        executor,  # type: ignore[arg-type]
        requests,
        dataset,
        resolve_metric("exact_match", {}, signature),
        num_threads=2,
        progress=lambda done, total: seen.append(done),
    )
    assert executor.peak == 2
    assert seen == [1, 2, 3, 4, 5, 6]
    assert [r.score for r in scored.results] == [1.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    failed = scored.results[1]
    assert failed.error is not None and failed.error.reason == Reason.LM_UNAVAILABLE
    assert scored.score == pytest.approx(1 / 6)
    assert scored.usage.lm_calls == 5


async def test_python_client_evaluate(server: RunningServer) -> None:
    from dspy_bridge_client import AsyncBridgeClient
    from dspy_bridge_client.errors import InvalidArgumentError

    async with AsyncBridgeClient(server.target) as client:
        session = await client.create_session()
        await session.create_module("Predict", "question -> answer", module_id="qa")
        truth = (await session.execute("qa", question="alpha beta"))["answer"]
        evaluation = await session.evaluate(
            "qa",
            [
                {"inputs": {"question": "alpha beta"}, "labels": {"answer": truth}},
                ({"question": "gamma"}, {"answer": "nope"}),
            ],
            "exact_match",
            num_threads=2,
        )
        assert evaluation.score == pytest.approx(0.5)
        assert [r.score for r in evaluation.results] == [1.0, 0.0]
        assert evaluation.results[0].outputs["answer"] == truth
        assert evaluation.errors == []
        with pytest.raises(InvalidArgumentError):
            await session.evaluate("qa", [({"question": "q"}, {"answer": "a"})], "bleu")
        seen: list[tuple[int, int]] = []
        streamed = await session.evaluate(
            "qa",
            [({"question": "alpha beta"}, {"answer": truth})] * 3,
            "exact_match",
            progress=lambda done, total: seen.append((done, total)),
        )
        assert streamed.score == 1.0
        assert seen == [(1, 3), (2, 3), (3, 3)]
        with pytest.raises(InvalidArgumentError):
            await session.evaluate(
                "qa", [({"question": "q"}, {"answer": "a"})], "bleu", progress=print
            )


async def test_sync_client_evaluate(server: RunningServer) -> None:
    """The sync client, in a thread while the server runs on the test's loop."""
    import asyncio

    from dspy_bridge_client import BridgeClient

    def run() -> tuple[float, list[tuple[int, int]]]:
        seen: list[tuple[int, int]] = []
        with BridgeClient(server.target) as client:
            session = client.create_session()
            session.create_module("Predict", "question -> answer", module_id="qa")
            truth = session.execute("qa", question="alpha")["answer"]
            data = [{"inputs": {"question": "alpha"}, "labels": {"answer": truth}}]
            plain = session.evaluate("qa", data, "exact_match")
            streamed = session.evaluate(
                "qa", data, "exact_match", progress=lambda d, t: seen.append((d, t))
            )
            assert plain.score == streamed.score
            return streamed.score, seen

    score, seen = await asyncio.to_thread(run)
    assert score == 1.0
    assert seen == [(1, 1)]
