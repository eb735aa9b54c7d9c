"""Sessions owned per caller (`--auth-tokens-file`): a caller sees, lists and touches only the
sessions it made; to anyone else they do not exist (NOT_FOUND, nothing changed). One shared
`--auth-token` names no one in particular, so its sessions stay unowned."""

from __future__ import annotations

import asyncio
from pathlib import Path

import grpc
import pytest
from google.protobuf import message_factory

from dspy_bridge.config import Settings
from dspy_bridge.errors import StartupError
from dspy_bridge.model import Session
from dspy_bridge.transport.auth import Authenticator, read_tokens_file
from dspy_bridge.transport.instrument import session_of
from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2, module_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.host.raw_host import RawHost, hello, tool
from tests.integration.rpc import expect_error, fv, sv

ANA = (("authorization", "Bearer ana-token"),)
BO = (("authorization", "Bearer bo-token"),)
TOKENS = "# principal token\nana ana-token\n\nbo  bo-token\n"


@pytest.fixture
def settings_overrides(tmp_path: Path) -> dict[str, object]:
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    return {"auth_tokens_file": str(path)}


async def _anas_session(stub: pb_grpc.BridgeServiceStub) -> str:
    await stub.CreateSession(pb.CreateSessionRequest(session_id="anas"), metadata=ANA)
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id="anas", name="t", type=vpb.VARIABLE_TYPE_FLOAT, initial_value=fv(0.5)
        ),
        metadata=ANA,
    )
    await stub.CreateModule(
        pb.CreateModuleRequest(
            session_id="anas",
            module_id="qa",
            module_type="Predict",
            signature=module_pb2.Signature(text="question -> answer"),
        ),
        metadata=ANA,
    )
    return "anas"


async def test_another_caller_cannot_see_or_touch_a_session(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub
) -> None:
    sid = await _anas_session(stub)
    refused = [
        stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=BO),
        stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid), metadata=BO),
        stub.UpdateVariable(
            pb.UpdateVariableRequest(session_id=sid, name="t", value=fv(0.9)), metadata=BO
        ),
        stub.Execute(
            pb.ExecuteRequest(session_id=sid, module_id="qa", inputs={"question": sv("hi")}),
            metadata=BO,
        ),
    ]
    for call in refused:
        await expect_error(call, grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")
    evaluation = pb.EvaluateRequest(
        session_id=sid,
        module_id="qa",
        dataset=[job_pb2.Example(inputs={"question": sv("hi")}, labels={"answer": sv("x")})],
        metric=job_pb2.MetricSpec(name="exact_match"),
    )
    streamed = stub.EvaluateStream(pb.EvaluateStreamRequest(evaluation=evaluation), metadata=BO)
    await expect_error(asyncio.wait_for(streamed.read(), 10), grpc.StatusCode.NOT_FOUND)
    watch = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid), metadata=BO)
    await expect_error(asyncio.wait_for(watch.read(), 10), grpc.StatusCode.NOT_FOUND)
    connect = stub.Connect(metadata=BO)  # Bo cannot lend tools to Ana's session
    await connect.write(hello(sid, [tool("lookup")]))
    await expect_error(asyncio.wait_for(connect.read(), 10), grpc.StatusCode.NOT_FOUND)
    connect = stub.Connect()  # nor can a caller without a token
    await connect.write(hello(sid, [tool("lookup")]))
    await expect_error(
        asyncio.wait_for(connect.read(), 10), grpc.StatusCode.UNAUTHENTICATED, "AUTH_REQUIRED"
    )
    assert server.hosts is not None and server.hosts.connection_count(sid) == 0
    async with RawHost(stub, hello(sid, [tool("lookup")]), ANA) as host:  # Ana can
        assert list(host.welcome.tools) == ["lookup"]  # type: ignore[union-attr]

    # Nothing changed, and Ana still has everything.
    variable = await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="t"), metadata=ANA)
    assert variable.variable.value.float_value == 0.5 and variable.variable.version == 1
    result = await stub.Execute(
        pb.ExecuteRequest(session_id=sid, module_id="qa", inputs={"question": sv("hi")}),
        metadata=ANA,
    )
    assert result.outputs["answer"].string_value


async def test_each_caller_lists_its_own_sessions(stub: pb_grpc.BridgeServiceStub) -> None:
    await _anas_session(stub)
    await stub.CreateSession(pb.CreateSessionRequest(session_id="bos"), metadata=BO)
    anas = await stub.ListSessions(pb.ListSessionsRequest(), metadata=ANA)
    bos = await stub.ListSessions(pb.ListSessionsRequest(), metadata=BO)
    assert [s.session_id for s in anas.sessions] == ["anas"]
    assert [s.session_id for s in bos.sessions] == ["bos"]


async def test_a_deleted_sessions_id_can_be_anothers(stub: pb_grpc.BridgeServiceStub) -> None:
    sid = await _anas_session(stub)
    await stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=ANA)  # owner cached
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id=sid), metadata=ANA)
    await stub.CreateSession(pb.CreateSessionRequest(session_id=sid), metadata=BO)
    assert (await stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=BO)).session
    await expect_error(
        stub.GetSession(pb.GetSessionRequest(session_id=sid), metadata=ANA),
        grpc.StatusCode.NOT_FOUND,
    )


async def test_a_session_from_before_ownership_stays_shared(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub
) -> None:
    """Sessions stored before a tokens file was configured have no owner: both callers keep
    reaching them, as they could before (nothing is stranded)."""
    await server.store.create_session(Session(session_id="legacy", create_time=1.0), max_sessions=0)
    for caller in (ANA, BO):
        got = await stub.GetSession(pb.GetSessionRequest(session_id="legacy"), metadata=caller)
        assert got.session.session_id == "legacy"
        listed = await stub.ListSessions(pb.ListSessionsRequest(), metadata=caller)
        assert "legacy" in [s.session_id for s in listed.sessions]
    await stub.DeleteSession(pb.DeleteSessionRequest(session_id="legacy"), metadata=BO)


async def test_unknown_tokens_are_refused(stub: pb_grpc.BridgeServiceStub) -> None:
    await expect_error(
        stub.ListSessions(pb.ListSessionsRequest(), metadata=(("authorization", "Bearer x"),)),
        grpc.StatusCode.UNAUTHENTICATED,
        "AUTH_INVALID",
    )


def test_every_session_scoped_rpc_names_its_session() -> None:
    """The ownership check finds the session of every RPC that has one, nested ones included:
    an RPC added later without it would let any caller into any session."""
    unscoped = {"Ping", "GetServerInfo", "ListSessions"}
    for method in pb.DESCRIPTOR.services_by_name["BridgeService"].methods:
        request = message_factory.GetMessageClass(method.input_type)()
        if "session_id" in method.input_type.fields_by_name:
            request.session_id = "s"
        elif "evaluation" in method.input_type.fields_by_name:
            request.evaluation.session_id = "s"
        elif "hello" in method.input_type.fields_by_name:  # Connect: its first message
            request.hello.session_id = "s"
        expected = "" if method.name in unscoped else "s"
        assert session_of(request) == expected, method.name


def test_one_shared_token_owns_nothing(tmp_path: Path) -> None:
    shared = Authenticator.from_settings(Settings(auth_token="t0ken"))  # type: ignore[arg-type]
    assert shared is not None and not shared.owners
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    both = Settings(auth_token="t0ken", auth_tokens_file=str(path))  # type: ignore[arg-type]
    named = Authenticator.from_settings(both)
    assert named is not None and named.owners
    assert Authenticator.from_settings(Settings()) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ana\n", "line 1: expected `principal token`"),
        ("ana a b\n", "line 1: expected `principal token`"),
        ("an a token\n", "line 1: expected"),
        ("ana t1\nana t2\n", "line 2: principal 'ana' is listed twice"),
        ("ana t1\nbo t1\n", "line 2: this token is already another principal's"),
        ("# nothing\n", "lists no token"),
    ],
)
def test_a_malformed_tokens_file_stops_the_server(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(text)
    with pytest.raises(StartupError, match=problem):
        read_tokens_file(str(path))


def test_tokens_file_problems_never_print_a_token(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("ana secret-one\nbo secret-one\n")
    with pytest.raises(StartupError) as raised:
        read_tokens_file(str(path))
    assert "secret-one" not in str(raised.value)
    with pytest.raises(StartupError, match="cannot read"):
        read_tokens_file(str(tmp_path / "missing"))
    path.write_text("default d1\n")
    with pytest.raises(StartupError, match=r"--auth-token \(DSPY_BRIDGE_AUTH_TOKEN\)'s"):
        Authenticator.from_settings(Settings(auth_token="x", auth_tokens_file=str(path)))  # type: ignore[arg-type]
