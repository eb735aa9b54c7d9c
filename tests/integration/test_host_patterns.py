"""Regular expressions from hosts run on RE2 (linear time), so a catastrophic-backtracking
pattern costs microseconds and never stalls other callers' RPCs; RE2 compile errors and
too-complex patterns are INVALID_ARGUMENT with the field named. Through a real channel."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2

from dspy_bridge.model.patterns import MAX_PROGRAM_SIZE
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2, module_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.integration.rpc import expect_error, sv

Stub = pb_grpc.BridgeServiceStub
T = TypeVar("T")
# With Python's backtracking `re`, `^(a+)+$` against 30 a's and a mismatch takes about half a
# minute (2^30 steps) holding the event loop, and each extra character doubles it.
EVIL = r"^(a+)+$"
EVIL_VALUE = "a" * 30 + "!"
# A bound for a trivial RPC on a loaded 2-core machine; a backtracking match blows it by far.
QUICK_S = 5.0


async def _session(stub: Stub) -> str:
    sid: str = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    return sid


async def _timed(call: Awaitable[Any]) -> float:
    began = time.perf_counter()
    await call
    return time.perf_counter() - began


async def _pings_while(stub: Stub, sid: str, work: Awaitable[T]) -> tuple[list[float], T]:
    """Latencies of quick reads sent one after another while `work` runs, and its result."""
    task = asyncio.ensure_future(work)
    latencies = [await _timed(stub.GetSession(pb.GetSessionRequest(session_id=sid)))]
    while not task.done():
        latencies.append(await _timed(stub.GetSession(pb.GetSessionRequest(session_id=sid))))
    return latencies, await task


async def test_backtracking_variable_pattern_does_not_stall_other_rpcs(stub: Stub) -> None:
    sid = await _session(stub)
    other = await _session(stub)
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid,
            name="word",
            type=vpb.VARIABLE_TYPE_STRING,
            initial_value=sv("aaa"),
            constraints=vpb.VariableConstraints(pattern=EVIL),
        )
    )
    update = stub.UpdateVariable(
        pb.UpdateVariableRequest(session_id=sid, name="word", value=sv(EVIL_VALUE))
    )
    rejected = expect_error(
        update, grpc.StatusCode.INVALID_ARGUMENT, "VARIABLE_CONSTRAINT_VIOLATION"
    )
    latencies, _ = await _pings_while(stub, other, rejected)
    assert max(latencies) < QUICK_S, latencies
    # A long value (half a megabyte, checked in a thread) is matched, not refused.
    long_ok = "a" * 500_000
    updated = await stub.UpdateVariable(
        pb.UpdateVariableRequest(session_id=sid, name="word", value=sv(long_ok))
    )
    assert updated.variable.version == 2
    long_bad = long_ok + "!"
    latencies, _ = await _pings_while(
        stub,
        other,
        expect_error(
            stub.UpdateVariable(
                pb.UpdateVariableRequest(session_id=sid, name="word", value=sv(long_bad))
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "VARIABLE_CONSTRAINT_VIOLATION",
        ),
    )
    assert max(latencies) < QUICK_S, latencies


async def test_backtracking_regex_metric_does_not_stall_other_rpcs(stub: Stub) -> None:
    sid = await _session(stub)
    other = await _session(stub)
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="qa",
            module_type="Predict",
            signature=module_pb2.Signature(text="question -> answer"),
        )
    )
    # The offline LM's answer repeats the question's words: `answer: aaaa...a zzz`, a run of
    # a's not at the end, which `(a+)+$` backtracks over from every position.
    question = "a" * 27 + " zzz"
    dataset = [job_pb2.Example(inputs={"question": sv(question)}) for _ in range(2)]
    options = struct_pb2.Struct()
    options.update({"pattern": r"(a+)+$", "mode": "search"})
    evaluate = stub.Evaluate(
        pb.EvaluateRequest(
            session_id=sid,
            module_id="qa",
            dataset=dataset,
            metric=job_pb2.MetricSpec(name="regex", options=options),
            num_threads=2,
        )
    )
    latencies, response = await _pings_while(stub, other, evaluate)
    assert max(latencies) < QUICK_S, latencies
    assert [r.error.code for r in response.results] == [0, 0]
    assert [r.score for r in response.results] == [0.0, 0.0]


async def test_patterns_re2_rejects_are_invalid_argument_with_the_field(stub: Stub) -> None:
    sid = await _session(stub)
    complex_pattern = f"(a|b)*a(a|b){{{MAX_PROGRAM_SIZE}}}c"
    for pattern, says in [
        (r"(a)\1", "not a valid regular expression"),  # backreference: RE2 has none
        (r"(?<=a)b", "not a valid regular expression"),  # look-behind
        (r"a\Z", "not a valid regular expression"),  # \z in RE2
        (complex_pattern, "too complex"),
    ]:
        rich = await expect_error(
            stub.RegisterVariable(
                pb.RegisterVariableRequest(
                    session_id=sid,
                    name="w",
                    type=vpb.VARIABLE_TYPE_STRING,
                    initial_value=sv("a"),
                    constraints=vpb.VariableConstraints(pattern=pattern),
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "INVALID_CONSTRAINTS",
        )
        assert rich.fields == ["constraints.pattern"] and says in rich.message, rich
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id=sid,
            module_id="qa",
            module_type="Predict",
            signature=module_pb2.Signature(text="question -> answer"),
        )
    )
    options = struct_pb2.Struct()
    options.update({"pattern": r"(a)\1"})
    rich = await expect_error(
        stub.Evaluate(
            pb.EvaluateRequest(
                session_id=sid,
                module_id="qa",
                dataset=[job_pb2.Example(inputs={"question": sv("q")})],
                metric=job_pb2.MetricSpec(name="regex", options=options),
            )
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
        "INVALID_METRIC_OPTIONS",
    )
    assert any("pattern" in f for f in rich.fields), rich
    # Nothing was stored by the refused registrations.
    listed = await stub.ListVariables(pb.ListVariablesRequest(session_id=sid))
    assert list(listed.variables) == []
