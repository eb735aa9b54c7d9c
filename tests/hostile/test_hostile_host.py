"""A hostile host against a real sidecar process through a real channel (#10).

For every RPC of BridgeService — taken from the proto descriptor, so a new RPC is covered
as soon as it exists — hypothesis sends generated requests (edge numbers, oversized strings and
maps, unknown enums, deep Structs, the ids of a live victim session) and garbled request bytes,
and checks after each one:

- the status is never INTERNAL or UNKNOWN, and every error carries an `ErrorInfo` reason (a
  precise, server-made status: not a transport failure such as oversized trailers);
- sent by the victim's owner, a refused request changed nothing: the victim session, its
  variables with their versions, history, modules and jobs read the same before and after;
- sent by another caller, no request — refused or not — changed the victim, and no response
  or error carried the victim's secret (a string only its metadata and a variable hold);
- the server still answers a Ping at once.

Examples per RPC: HOSTILE_EXAMPLES (default 15) generated requests and HOSTILE_RAW_EXAMPLES
(default 6) garbled ones, derandomized so every run sends the same requests.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import lm_pb2, module_pb2, value_pb2, variable_pb2
from tests.hostile.conftest import Sidecar
from tests.hostile.strategies import SERVICE, VICTIM, garbled, requests

EXAMPLES = int(os.environ.get("HOSTILE_EXAMPLES", "15"))
RAW_EXAMPLES = int(os.environ.get("HOSTILE_RAW_EXAMPLES", "6"))
METHODS = list(SERVICE.methods)
#: A unary call that takes longer than this is a server that stopped answering.
UNARY_TIMEOUT_S = 20.0
#: Streams (watches) legitimately stay open: read this long, then hang up.
STREAM_TIMEOUT_S = 1.5
NEVER = {grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN}

HYPOTHESIS = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)


# --------------------------------------------------------------------------------------------
# The victim session and what "nothing changed" means


#: Held only by the victim session (its metadata and variable `s`): no other caller may see it.
SECRET = "victim-secret-5c1e2f"


def ensure_victim(stub: pb_grpc.BridgeServiceStub) -> None:
    """The victim session with a variable `x`, a string `s` and a module `m` (re-made if a
    generated request legitimately deleted any of them)."""
    try:
        stub.GetSession(pb.GetSessionRequest(session_id=VICTIM), timeout=UNARY_TIMEOUT_S)
    except grpc.RpcError:
        stub.CreateSession(
            pb.CreateSessionRequest(session_id=VICTIM, metadata={"who": SECRET}),
            timeout=UNARY_TIMEOUT_S,
        )
    stub.ConfigureLM(
        pb.ConfigureLMRequest(session_id=VICTIM, lm=lm_pb2.LMConfig(model="offline")),
        timeout=UNARY_TIMEOUT_S,
    )
    wanted = (
        ("x", variable_pb2.VARIABLE_TYPE_INTEGER, value_pb2.Value(int_value=1)),
        ("s", variable_pb2.VARIABLE_TYPE_STRING, value_pb2.Value(string_value=SECRET)),
    )
    for name, kind, value in wanted:
        _ignore(
            stub.RegisterVariable,
            pb.RegisterVariableRequest(
                session_id=VICTIM, name=name, type=kind, initial_value=value
            ),
        )
    _ignore(
        stub.CreateModule,
        pb.CreateModuleRequest(
            session_id=VICTIM,
            module_id="m",
            module_type="Predict",
            signature=module_pb2.Signature(text="q -> a"),
        ),
    )


def _ignore(call: Any, request: Message) -> None:
    try:
        call(request, timeout=UNARY_TIMEOUT_S)
    except grpc.RpcError as err:
        assert err.code() == grpc.StatusCode.ALREADY_EXISTS, err


def snapshot(stub: pb_grpc.BridgeServiceStub) -> list[bytes]:
    """Everything a refused request must not change, serialized (deterministically)."""
    t = UNARY_TIMEOUT_S
    session = stub.GetSession(pb.GetSessionRequest(session_id=VICTIM), timeout=t).session
    session.ClearField("expire_time")  # a heartbeat moves it; a refused call cannot
    parts = [session.SerializeToString(deterministic=True)]
    variables = stub.ListVariables(pb.ListVariablesRequest(session_id=VICTIM), timeout=t)
    parts.append(variables.SerializeToString(deterministic=True))
    for variable in variables.variables:
        history = stub.GetVariableHistory(
            pb.GetVariableHistoryRequest(session_id=VICTIM, name=variable.name), timeout=t
        )
        parts.append(history.SerializeToString(deterministic=True))
    modules = stub.ListModules(pb.ListModulesRequest(session_id=VICTIM), timeout=t)
    parts.append(modules.SerializeToString(deterministic=True))
    jobs = stub.ListOptimizations(pb.ListOptimizationsRequest(session_id=VICTIM), timeout=t)
    parts.extend(j.job_id.encode() for j in jobs.jobs)  # ids only: a job's status moves
    return parts


# --------------------------------------------------------------------------------------------
# Calling any RPC with a message or raw bytes


@dataclass
class Outcome:
    code: grpc.StatusCode
    details: str
    reason: str
    #: Every response message (serialized) and the error's message.
    received: bytes = b""


def _reason(err: grpc.RpcError) -> str:
    status = rpc_status.from_call(err)  # type: ignore[arg-type]
    for detail in status.details if status else ():
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            return info.reason
    return ""


def call(channel: grpc.Channel, method: MethodDescriptor, request: Message | bytes) -> Outcome:
    path = f"/{SERVICE.full_name}/{method.name}"
    serialize = None if isinstance(request, bytes) else type(request).SerializeToString
    received: list[bytes] = []  # responses stay raw bytes: what the leak check reads
    try:
        if method.client_streaming:
            bidi = channel.stream_stream(path, serialize, None)
            for item in bidi(iter([request]), timeout=STREAM_TIMEOUT_S):
                received.append(item)
                if len(received) >= 20:
                    break
        elif method.server_streaming:
            stream = channel.unary_stream(path, serialize, None)
            for item in stream(request, timeout=STREAM_TIMEOUT_S):
                received.append(item)
                if len(received) >= 20:
                    break
        else:
            unary = channel.unary_unary(path, serialize, None)
            received.append(unary(request, timeout=UNARY_TIMEOUT_S))
    except grpc.RpcError as err:
        details = err.details() or ""
        return Outcome(err.code(), details, _reason(err), b"".join(received) + details.encode())
    return Outcome(grpc.StatusCode.OK, "", "", b"".join(received))


def check(
    sidecar: Sidecar, method: MethodDescriptor, request: Message | bytes, attacker: bool
) -> None:
    stub = sidecar.owner_stub
    ensure_victim(stub)
    before = snapshot(stub)
    outcome = call(sidecar.attacker if attacker else sidecar.owner, method, request)
    assert outcome.code not in NEVER, f"{method.name}: {outcome.code.name} {outcome.details}"
    streaming = method.server_streaming or method.client_streaming
    if outcome.code != grpc.StatusCode.OK and not (
        streaming and outcome.code == grpc.StatusCode.DEADLINE_EXCEEDED
    ):
        assert outcome.reason, (
            f"{method.name}: {outcome.code.name} without an ErrorInfo reason: {outcome.details}"
        )
        assert snapshot(stub) == before, f"{method.name}: a refused request changed state"
    if attacker:
        assert SECRET.encode() not in outcome.received, f"{method.name}: the victim leaked"
        assert snapshot(stub) == before, f"{method.name}: another caller changed the victim"
    pong = stub.Ping(pb.PingRequest(message="alive"), timeout=5)
    assert pong.message == "alive"


# --------------------------------------------------------------------------------------------
# The tests: one per RPC, generated and garbled


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_generated_requests(sidecar: Sidecar, method: MethodDescriptor) -> None:
    @settings(HYPOTHESIS, max_examples=EXAMPLES)
    @given(request=requests(method.input_type), attacker=st.booleans())
    def run(request: Message, attacker: bool) -> None:
        check(sidecar, method, request, attacker)

    run()


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.name)
def test_garbled_bytes(sidecar: Sidecar, method: MethodDescriptor) -> None:
    @settings(HYPOTHESIS, max_examples=RAW_EXAMPLES)
    @given(data=garbled(method.input_type), attacker=st.booleans())
    def run(data: bytes, attacker: bool) -> None:
        check(sidecar, method, data, attacker)

    run()


def test_every_rpc_is_exercised() -> None:
    """The suite walks the service descriptor: it covers exactly the RPCs the proto has."""
    servicer = {n for n in dir(pb_grpc.BridgeServiceServicer) if not n.startswith("_")}
    assert {m.name for m in METHODS} == servicer
