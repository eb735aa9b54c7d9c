"""Host metrics and host LMs through real channels: Evaluate and EvaluateStream scored by a
host metric (in the front), an optimization scored by one (in its job process) with GEPA's
feedback reaching its reflection LM — itself a host LM — and an execution answered by a host
LM from a worker process."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import host_pb2, job_pb2, lm_pb2, module_pb2
from tests.host.raw_host import RawHost, answer_all, hello
from tests.integration.rpc import expect_error, sv
from tests.jobs.helpers import Stub, examples, setup, start_request, wait_done
from tests.jobs.task import HELD_OUT, TRAINSET

FEEDBACK = "FEEDBACK-7f3a: the topic must be one word"


@pytest.fixture
def settings_overrides() -> dict[str, object]:
    return {"workers": 1}


def _quality(call: host_pb2.HostMetricCall) -> tuple[float, str]:
    """1 when the predicted topic equals the label, else 0.25, with feedback either way."""
    right = call.prediction["topic"].string_value == call.labels["topic"].string_value
    return (1.0 if right else 0.25), FEEDBACK


def _evaluation(sid: str, metric: str) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(
        session_id=sid,
        module_id="clf",
        dataset=examples(HELD_OUT[:4]),
        metric=job_pb2.MetricSpec(name=metric),
    )


async def test_evaluate_and_evaluate_stream_are_scored_by_the_host_metric(stub: Stub) -> None:
    sid = await setup(stub)
    seen: list[host_pb2.ConnectResponse] = []
    async with RawHost(stub, hello(sid, metrics=["quality"])) as host:
        answering = asyncio.create_task(answer_all(host, metrics=_quality, seen=seen))
        result = await stub.Evaluate(_evaluation(sid, "host:quality"))
        stream = stub.EvaluateStream(
            pb.EvaluateStreamRequest(evaluation=_evaluation(sid, "host:quality"))
        )
        streamed = [event async for event in stream][-1].result
        answering.cancel()
    calls = [m.metric_call for m in seen if m.WhichOneof("message") == "metric_call"]
    assert len(calls) == 8  # 4 examples, twice
    first = calls[0]
    assert first.metric == "quality" and first.job_id == ""
    assert set(first.inputs) == {"text"} and set(first.labels) == {"topic"}
    assert "topic" in first.prediction
    scores = [r.score for r in result.results]
    assert set(scores) <= {1.0, 0.25} and result.score == pytest.approx(sum(scores) / 4)
    assert streamed.score == pytest.approx(result.score)


async def test_an_unknown_host_metric_names_what_is_connected(stub: Stub) -> None:
    sid = await setup(stub)
    async with RawHost(stub, hello(sid, metrics=["quality"])):
        error = await expect_error(
            stub.Evaluate(_evaluation(sid, "host:relevance")),
            grpc.StatusCode.FAILED_PRECONDITION,
            "HOST_METRIC_UNAVAILABLE",
        )
        assert "host:quality" in error.message and "host:relevance" in error.message
        await expect_error(
            stub.StartOptimization(
                start_request(sid, "LabeledFewShot", {"k": 2}, metric="host:relevance")
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "HOST_METRIC_UNAVAILABLE",
        )
    listed = await stub.ListOptimizations(pb.ListOptimizationsRequest(session_id=sid))
    assert not listed.jobs  # nothing started


async def test_an_optimization_is_scored_by_the_host_metric_and_gepa_reflects_on_its_feedback(
    stub: Stub,
) -> None:
    sid = await setup(stub)
    seen: list[host_pb2.ConnectResponse] = []

    def reflect(call: host_pb2.HostLMCall) -> str:
        return "```\nName the topic of the text in one word.\n```"

    offered = hello(sid, metrics=["quality"], lms=["reflector"])
    async with RawHost(stub, offered) as host:
        answering = asyncio.create_task(answer_all(host, metrics=_quality, lms=reflect, seen=seen))
        config = {"max_metric_calls": 12, "reflection_minibatch_size": 2}
        config["reflection_lm"] = "host:reflector"
        job = (
            await stub.StartOptimization(
                start_request(
                    sid,
                    "GEPA",
                    config,
                    trainset=TRAINSET[:6],
                    valset=HELD_OUT[:3],
                    metric="host:quality",
                )
            )
        ).job
        done = await wait_done(stub, sid, job.job_id, wait_s=180)
        answering.cancel()
    assert done.status == job_pb2.JOB_STATUS_SUCCEEDED, done.error.message
    metric_calls = [m.metric_call for m in seen if m.WhichOneof("message") == "metric_call"]
    assert metric_calls and all(c.job_id == job.job_id for c in metric_calls)
    # The host scores 0.25 at least: a score of the built-in kind (0 for a wrong topic) is
    # impossible here, so the job's scores are the host's.
    assert 0.25 <= done.module_result.score_before <= 1 and done.best_score >= 0.25
    lm_calls = [m.lm_call for m in seen if m.WhichOneof("message") == "lm_call"]
    assert lm_calls, "GEPA never asked its reflection LM"
    prompts = " ".join(str(dict(m)) for c in lm_calls for m in c.messages)
    assert FEEDBACK in prompts  # the host's feedback reached GEPA's reflection


async def test_an_execution_is_answered_by_a_host_lm(stub: Stub) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id

    def llm(call: host_pb2.HostLMCall) -> str:
        assert call.lm == "mine" and call.messages[0]["role"] == "system"
        assert call.options["temperature"] == 0.3
        return "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"

    async with RawHost(stub, hello(sid, lms=["mine"])) as host:
        answering = asyncio.create_task(answer_all(host, lms=llm))
        await stub.CreateModule(
            pb.CreateModuleRequest(
                session_id=sid,
                module_id="qa",
                module_type="Predict",
                signature=module_pb2.Signature(text="question -> answer"),
                lm=lm_pb2.LMConfig(model="host:mine", options={"temperature": "0.3"}),
            )
        )
        result = await stub.Execute(
            pb.ExecuteRequest(
                session_id=sid, module_id="qa", inputs={"question": sv("Capital of France?")}
            )
        )
        answering.cancel()
    assert result.outputs["answer"].string_value == "Paris"
    assert result.usage.lm_calls == 1
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 3)


async def test_execute_stream_with_a_host_lm_ends_with_its_answer(stub: Stub) -> None:
    """Streaming is unary with a host LM: the result arrives when the host answers."""
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    async with RawHost(stub, hello(sid, lms=["mine"])) as host:
        answering = asyncio.create_task(
            answer_all(host, lms=lambda _: "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]")
        )
        await stub.CreateModule(
            pb.CreateModuleRequest(
                session_id=sid,
                module_id="qa",
                module_type="Predict",
                signature=module_pb2.Signature(text="question -> answer"),
                lm=lm_pb2.LMConfig(model="host:mine"),
            )
        )
        request = pb.ExecuteStreamRequest(
            session_id=sid, module_id="qa", inputs={"question": sv("Capital of France?")}
        )
        events = [event async for event in stub.ExecuteStream(request)]
        answering.cancel()
    assert events[-1].WhichOneof("event") == "result"
    assert events[-1].result.outputs["answer"].string_value == "Paris"


async def test_a_host_lm_nobody_offers_is_refused_then_unavailable(stub: Stub) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    create = pb.CreateModuleRequest(
        session_id=sid,
        module_id="qa",
        module_type="Predict",
        signature=module_pb2.Signature(text="question -> answer"),
        lm=lm_pb2.LMConfig(model="host:mine"),
    )
    error = await expect_error(
        stub.CreateModule(create), grpc.StatusCode.FAILED_PRECONDITION, "HOST_LM_UNAVAILABLE"
    )
    assert error.metadata["connected"] == "none"
    async with RawHost(stub, hello(sid, lms=["mine"])):
        await stub.CreateModule(create)
    await stub.ConfigureLM(
        pb.ConfigureLMRequest(session_id=sid, lm=lm_pb2.LMConfig(model="offline"))
    )
    await expect_error(
        stub.Execute(
            pb.ExecuteRequest(session_id=sid, module_id="qa", inputs={"question": sv("?")})
        ),
        grpc.StatusCode.UNAVAILABLE,
        "HOST_DISCONNECTED",
    )
