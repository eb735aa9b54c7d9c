"""The concrete hostile-host cases of issue #10, against a real sidecar process: each once hurt
the server for everyone; now each is a precise refusal that changes nothing."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf import struct_pb2

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import (
    host_pb2,
    job_pb2,
    lm_pb2,
    value_pb2,
    variable_pb2,
)
from tests.hostile.conftest import Sidecar
from tests.hostile.strategies import VICTIM
from tests.hostile.test_hostile_host import ensure_victim, snapshot

T = 30.0


def _refused(call: object, code: grpc.StatusCode) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()  # type: ignore[operator]
    err = caught.value
    assert err.code() == code, f"{err.code()}: {err.details()}"
    return err


def test_a_huge_ttl_leaves_list_sessions_working(sidecar: Sidecar) -> None:
    stub = sidecar.owner_stub
    _refused(
        lambda: stub.CreateSession(
            pb.CreateSessionRequest(session_id="forever", ttl_seconds=2**63 - 1), timeout=T
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    listed = stub.ListSessions(pb.ListSessionsRequest(), timeout=T)
    assert "forever" not in {s.session_id for s in listed.sessions}


def test_a_20000_character_session_id_is_not_logged_or_echoed(sidecar: Sidecar) -> None:
    big = "s" * 20_000
    seen = len(sidecar.process.raw)
    err = _refused(
        lambda: sidecar.owner_stub.GetSession(pb.GetSessionRequest(session_id=big), timeout=T),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert len(err.details() or "") < 300
    sidecar.owner_stub.Ping(pb.PingRequest(), timeout=T)  # the refusal's log line is written by now
    assert all(len(line) < 4_096 for line in sidecar.process.raw[seen:])


def test_15_mb_texts_are_refused_and_reads_keep_working(sidecar: Sidecar) -> None:
    stub = sidecar.owner_stub
    ensure_victim(stub)
    before = snapshot(stub)
    huge = "d" * (15 << 20)
    for request in (
        pb.RegisterVariableRequest(
            session_id=VICTIM,
            name="big",
            type=variable_pb2.VARIABLE_TYPE_INTEGER,
            initial_value=value_pb2.Value(int_value=1),
            description=huge,
        ),
        pb.UpdateVariableRequest(
            session_id=VICTIM, name="x", value=value_pb2.Value(int_value=2), reason=huge
        ),
        pb.UpdateVariableRequest(
            session_id=VICTIM, name="x", value=value_pb2.Value(int_value=2), source=huge
        ),
    ):
        method = (
            stub.RegisterVariable
            if isinstance(request, pb.RegisterVariableRequest)
            else (stub.UpdateVariable)
        )
        _refused(lambda m=method, r=request: m(r, timeout=T), grpc.StatusCode.INVALID_ARGUMENT)
    assert snapshot(stub) == before  # ListVariables and GetVariableHistory still answer


def test_a_trillion_metric_calls_is_refused(sidecar: Sidecar) -> None:
    stub = sidecar.owner_stub
    ensure_victim(stub)
    config = struct_pb2.Struct()
    config.update({"max_metric_calls": 1e12})
    example = job_pb2.Example(
        inputs={"q": value_pb2.Value(string_value="x")},
        labels={"a": value_pb2.Value(string_value="y")},
    )
    err = _refused(
        lambda: stub.StartOptimization(
            pb.StartOptimizationRequest(
                session_id=VICTIM,
                module_id="m",
                optimizer="GEPA",
                config=config,
                trainset=[example, example],
                metric=job_pb2.MetricSpec(name="exact_match"),
            ),
            timeout=T,
        ),
        grpc.StatusCode.INVALID_ARGUMENT,
    )
    assert "max_metric_calls" in (err.details() or "")
    jobs = stub.ListOptimizations(pb.ListOptimizationsRequest(session_id=VICTIM), timeout=T)
    assert not jobs.jobs


def test_a_thousand_one_megabyte_values_hit_the_session_budget(sidecar: Sidecar) -> None:
    stub = sidecar.owner_stub
    sid = stub.CreateSession(pb.CreateSessionRequest(), timeout=T).session.session_id
    megabyte = "m" * 1_000_000
    refused = None
    for i in range(1_000):  # the suite's 8 MiB budget stops this within 8 values
        try:
            stub.RegisterVariable(
                pb.RegisterVariableRequest(
                    session_id=sid,
                    name=f"v{i}",
                    type=variable_pb2.VARIABLE_TYPE_STRING,
                    initial_value=value_pb2.Value(string_value=megabyte),
                ),
                timeout=T,
            )
        except grpc.RpcError as err:
            refused = (i, err.code())
            break
    assert refused is not None and refused[0] <= 8
    assert refused[1] == grpc.StatusCode.RESOURCE_EXHAUSTED
    stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid), timeout=T)


def test_connect_refuses_a_20000_character_session_id_before_any_lookup(
    sidecar: Sidecar,
) -> None:
    """Connect's messages skip the per-field limits (the host hub bounds them), but its hello
    names a session: an oversized id is refused by its grammar before the ownership check or
    the store lookup could echo it (20 KB in the status trailers is RESOURCE_EXHAUSTED
    "metadata size exceeds hard limit" on the client, and 20 KB in a log line)."""
    big = "s" * 20_000
    seen = len(sidecar.process.raw)
    connect = pb_grpc.BridgeServiceStub(sidecar.attacker).Connect
    hello = host_pb2.ConnectRequest(hello=host_pb2.HostHello(session_id=big))
    err = _refused(
        lambda: list(connect(iter([hello]), timeout=T)), grpc.StatusCode.INVALID_ARGUMENT
    )
    assert len(err.details() or "") < 300
    sidecar.owner_stub.Ping(pb.PingRequest(), timeout=T)  # the refusal's log line is written by now
    assert all(len(line) < 4_096 for line in sidecar.process.raw[seen:])


def test_lm_options_that_buy_unbounded_work_are_refused(sidecar: Sidecar) -> None:
    """`n` completions and `max_tokens` are work (and provider cost) per call: bounded, and a
    refused ConfigureLM leaves the session's LM as it was."""
    stub = sidecar.owner_stub
    ensure_victim(stub)
    before = stub.GetSession(pb.GetSessionRequest(session_id=VICTIM), timeout=T).session
    for key, text in (("n", "1000"), ("max_tokens", "9" * 400), ("seed", "9" * 30)):
        lm = lm_pb2.LMConfig(model="offline", options={key: text})
        err = _refused(
            lambda lm=lm: stub.ConfigureLM(
                pb.ConfigureLMRequest(session_id=VICTIM, lm=lm), timeout=T
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
        )
        assert key in (err.details() or "")
    after = stub.GetSession(pb.GetSessionRequest(session_id=VICTIM), timeout=T).session
    assert after.lm == before.lm
