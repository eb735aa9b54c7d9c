"""Numbers in a host's answers are the host's: token counts it reports for its LM and scores
its metric gives. Out-of-range ones (negative or huge counts, a NaN or infinite score) fail
that call HOST_PROTOCOL_ERROR; they never reach usage sums, counters or scores, where huge
counts failed the execution INTERNAL (a usage sum past int64) and a NaN made the evaluation's
score NaN."""

from __future__ import annotations

import asyncio
import math

import grpc
import pytest

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import host_pb2, job_pb2, lm_pb2, module_pb2
from tests.host.raw_host import RawHost, hello
from tests.integration.rpc import sv
from tests.jobs.helpers import Stub, examples, setup
from tests.jobs.task import HELD_OUT

ANSWER = "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]"
INT64_MAX = 2**63 - 1


async def _answer_lm(host: RawHost, prompt_tokens: int, completion_tokens: int) -> None:
    while True:
        message = await host.call.read()
        if message is grpc.aio.EOF:
            return
        if message.WhichOneof("message") == "lm_call":
            await host.call.write(
                host_pb2.ConnectRequest(
                    lm_result=host_pb2.HostLMResult(
                        call_id=message.lm_call.call_id,
                        text=ANSWER,
                        usage=module_pb2.Usage(
                            prompt_tokens=prompt_tokens, completion_tokens=completion_tokens
                        ),
                    )
                )
            )


@pytest.mark.parametrize("tokens", [(-5, 3), (INT64_MAX, INT64_MAX)])
async def test_out_of_range_token_counts_fail_that_host_lm_call(
    stub: Stub, tokens: tuple[int, int]
) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    async with RawHost(stub, hello(sid, lms=["mine"])) as host:
        answering = asyncio.create_task(_answer_lm(host, *tokens))
        await stub.CreateModule(
            pb.CreateModuleRequest(
                session_id=sid,
                module_id="qa",
                module_type="Predict",
                signature=module_pb2.Signature(text="question -> answer"),
                lm=lm_pb2.LMConfig(model="host:mine"),
            )
        )
        items = [pb.ExecuteBatchItem(inputs={"question": sv("Capital?")}) for _ in range(2)]
        out = await stub.ExecuteBatch(
            pb.ExecuteBatchRequest(session_id=sid, module_id="qa", items=items)
        )
        answering.cancel()
    for item in out.results:
        assert item.error.code == grpc.StatusCode.UNKNOWN.value[0], item.error.message
        assert "HOST_PROTOCOL_ERROR" in str(item.error.details), item.error
        assert "usage.prompt_tokens" in item.error.message
    assert out.usage.prompt_tokens == out.usage.completion_tokens == 0


async def _answer_metric(host: RawHost, score: float) -> None:
    while True:
        message = await host.call.read()
        if message is grpc.aio.EOF:
            return
        if message.WhichOneof("message") == "metric_call":
            await host.answer_metric(message.metric_call.call_id, score)


@pytest.mark.parametrize("score", [math.nan, math.inf])
async def test_a_non_finite_host_metric_score_fails_that_example(stub: Stub, score: float) -> None:
    sid = await setup(stub)
    async with RawHost(stub, hello(sid, metrics=["quality"])) as host:
        answering = asyncio.create_task(_answer_metric(host, score))
        result = await stub.Evaluate(
            pb.EvaluateRequest(
                session_id=sid,
                module_id="clf",
                dataset=examples(HELD_OUT[:2]),
                metric=job_pb2.MetricSpec(name="host:quality"),
            )
        )
        answering.cancel()
    assert math.isfinite(result.score)
    for item in result.results:
        assert item.score == 0.0
        assert "finite" in item.error.message
        assert "HOST_PROTOCOL_ERROR" in str(item.error.details), item.error
