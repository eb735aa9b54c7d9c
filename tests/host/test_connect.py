"""`Connect` through a real channel: hello and welcome, what a hello may not do, and calls from
the front's hub to a host stream — answers, spreading, deadlines, cancels, disconnects, late,
unknown and oversized answers."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from dspy_bridge.errors import BridgeError
from dspy_bridge.runtime.host_calls import ToolCall, ToolReply
from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import host_pb2
from tests.host.raw_host import RawHost, answer_tools, hello, tool
from tests.integration.rpc import expect_error

SID = "hosted"


@pytest.fixture
async def session(stub: pb_grpc.BridgeServiceStub) -> str:
    await stub.CreateSession(pb.CreateSessionRequest(session_id=SID))
    return SID


def _call(name: str = "lookup", query: str = "q") -> ToolCall:
    return ToolCall(name, {"query": query}, module_id="m")


async def test_hello_is_welcomed_with_what_was_accepted(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    first = hello(session, [tool("lookup"), tool("search")], metrics=["quality"], lms=["mine"])
    async with RawHost(stub, first) as host:
        assert host.welcome is not None and host.welcome.connection_id
        assert list(host.welcome.tools) == ["lookup", "search"]
        assert list(host.welcome.metrics) == ["quality"] and list(host.welcome.lms) == ["mine"]
        assert server.hosts is not None
        assert server.hosts.names(session, "tool") == ["lookup", "search"]
        assert server.hosts.names("another", "tool") == []  # invisible to other sessions
    await server.hosts.wait_disconnected(session, within=10)
    assert server.hosts.names(session, "tool") == []


async def test_hello_for_an_unknown_session_is_not_found(stub: pb_grpc.BridgeServiceStub) -> None:
    call = stub.Connect()
    await call.write(hello("nobody", [tool("lookup")]))
    await expect_error(call.read(), grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")


async def test_the_first_message_must_be_hello(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    call = stub.Connect()
    await call.write(
        host_pb2.ConnectRequest(tool_result=host_pb2.HostToolResult(call_id="x", error="e"))
    )
    await expect_error(call.read(), grpc.StatusCode.INVALID_ARGUMENT, "HOST_PROTOCOL_ERROR")


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        (hello(SID, [tool("host:x")]), "hello.tools[0].name"),
        (hello(SID, [tool("a"), tool("a")]), "hello.tools[1].name"),
        (
            hello(SID, [tool("a", {"not an id": {"type": "string"}})]),
            "hello.tools[0].parameters.properties",
        ),
        (hello(SID, [tool("a", timeout_ms=-1)]), "hello.tools[0].timeout_ms"),
        (hello(SID, metrics=["1st"]), "hello.metrics[0].name"),
        (hello(SID, metrics=["m", "m"]), "hello.metrics[1].name"),
    ],
)
async def test_a_bad_hello_is_invalid_argument_naming_the_field(
    server: RunningServer,
    stub: pb_grpc.BridgeServiceStub,
    session: str,
    bad: host_pb2.ConnectRequest,
    field: str,
) -> None:
    call = stub.Connect()
    await call.write(bad)
    error = await expect_error(call.read(), grpc.StatusCode.INVALID_ARGUMENT)
    assert error.fields == [field]
    assert server.hosts is not None and server.hosts.connection_count(session) == 0


async def test_too_many_names_or_a_huge_schema_is_resource_exhausted(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    many = hello(session, metrics=[f"m{i}" for i in range(300)])
    call = stub.Connect()
    await call.write(many)
    await expect_error(call.read(), grpc.StatusCode.RESOURCE_EXHAUSTED, "HOST_CONNECTION_LIMIT")
    huge = {f"p{i}": {"type": "string", "description": "x" * 2000} for i in range(40)}
    call = stub.Connect()
    await call.write(hello(session, [tool("big", huge)]))
    await expect_error(call.read(), grpc.StatusCode.RESOURCE_EXHAUSTED, "HOST_CONNECTION_LIMIT")


async def test_the_same_name_with_another_schema_is_already_exists(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    async with RawHost(stub, hello(session, [tool("lookup")])):
        async with RawHost(stub, hello(session, [tool("lookup")])) as same:
            assert list(same.welcome.tools) == ["lookup"]  # type: ignore[union-attr]
        other = tool("lookup", {"order_id": {"type": "integer"}})
        call = stub.Connect()
        await call.write(hello(session, [other]))
        error = await expect_error(
            call.read(), grpc.StatusCode.ALREADY_EXISTS, "HOST_NAME_CONFLICT"
        )
        assert "host:lookup" in error.message


async def test_a_call_is_answered_by_call_id(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    hub = server.hosts
    assert hub is not None
    async with RawHost(stub, hello(session, [tool("lookup")])) as host:
        pending = asyncio.create_task(hub.call(session, _call(query="order 7"), 10))
        message = await host.read()
        call = message.tool_call
        assert call.tool == "lookup" and call.module_id == "m"
        assert dict(call.arguments) == {"query": "order 7"}
        assert 0 < call.timeout_ms <= 10_000 and call.deadline.seconds > 0
        await host.answer_tool(call.call_id, "shipped")
        assert await pending == ToolReply(output="shipped")
        second = asyncio.create_task(hub.call(session, _call(), 10))
        await host.answer_tool((await host.read()).tool_call.call_id, error="no such order")
        assert await second == ToolReply(error="no such order")


async def test_calls_are_spread_over_connections_offering_the_name(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    hub = server.hosts
    assert hub is not None
    async with (
        RawHost(stub, hello(session, [tool("lookup")])) as a,
        RawHost(stub, hello(session, [tool("lookup")])) as b,
    ):
        calls = [asyncio.create_task(hub.call(session, _call(), 10)) for _ in range(4)]
        got_a = [await a.read(), await a.read()]
        got_b = [await b.read(), await b.read()]
        for host, messages in ((a, got_a), (b, got_b)):
            for m in messages:
                await host.answer_tool(m.tool_call.call_id, "ok")
        assert [r.output for r in await asyncio.gather(*calls)] == ["ok"] * 4  # type: ignore[union-attr]


async def test_a_dropped_connections_call_goes_to_another_one(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    hub = server.hosts
    assert hub is not None
    async with RawHost(stub, hello(session, [tool("lookup", max_concurrency=1)])) as a:
        pending = asyncio.create_task(hub.call(session, _call(), 20))
        await a.read()  # the call reached `a`
        async with RawHost(stub, hello(session, [tool("lookup")])) as b:
            await a.close()  # `a` leaves without answering
            moved = (await b.read()).tool_call
            await b.answer_tool(moved.call_id, "from b")
            assert await pending == ToolReply(output="from b")


async def test_a_dropped_connection_without_another_is_host_disconnected(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    hub = server.hosts
    assert hub is not None
    async with RawHost(stub, hello(session, [tool("lookup")])) as host:
        pending = asyncio.create_task(hub.call(session, _call(), 20))
        await host.read()
        await host.close()
        with pytest.raises(BridgeError) as raised:
            await pending
    assert raised.value.reason == "HOST_DISCONNECTED"
    assert raised.value.code == grpc.StatusCode.UNAVAILABLE
    assert raised.value.metadata["retryable"] == "true"


async def test_past_its_deadline_a_call_fails_the_host_gets_cancel_and_a_late_answer_is_dropped(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    hub = server.hosts
    assert hub is not None
    async with RawHost(stub, hello(session, [tool("slow", timeout_ms=200)])) as host:
        pending = asyncio.create_task(hub.call(session, _call("slow"), 30))
        call_id = (await host.read()).tool_call.call_id
        cancel = await host.read()  # sent when the 200 ms are up
        assert cancel.cancel.call_id == call_id
        with pytest.raises(BridgeError) as raised:
            await pending
        assert raised.value.reason == "HOST_CALL_TIMEOUT"
        assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
        await host.answer_tool(call_id, "too late")  # ignored and logged
        await host.answer_tool("never-sent", "who?")  # unknown call_id: ignored and logged
        again = asyncio.create_task(hub.call(session, _call("slow"), 30))
        await host.answer_tool((await host.read()).tool_call.call_id, "in time")
        assert await again == ToolReply(output="in time")


async def test_a_cancelled_caller_sends_cancel(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    hub = server.hosts
    assert hub is not None
    async with RawHost(stub, hello(session, [tool("lookup")])) as host:
        pending = asyncio.create_task(hub.call(session, _call(), 30))
        call_id = (await host.read()).tool_call.call_id
        pending.cancel()
        assert (await host.read()).cancel.call_id == call_id


async def test_an_oversized_answer_fails_that_call_only(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    hub = server.hosts
    assert hub is not None
    async with RawHost(stub, hello(session, [tool("lookup")])) as host:
        big = asyncio.create_task(hub.call(session, _call(), 30))
        await host.answer_tool((await host.read()).tool_call.call_id, "x" * (10 << 20))
        with pytest.raises(BridgeError) as raised:
            await big
        assert raised.value.code == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert raised.value.reason == "HOST_RESULT_TOO_LARGE"
        small = asyncio.create_task(hub.call(session, _call(), 30))
        await host.answer_tool((await host.read()).tool_call.call_id, "fine")
        assert await small == ToolReply(output="fine")


async def test_max_concurrency_holds_calls_until_a_slot_frees(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    hub = server.hosts
    assert hub is not None
    async with RawHost(stub, hello(session, [tool("one", max_concurrency=1)])) as host:
        first = asyncio.create_task(hub.call(session, _call("one", "1"), 30))
        second = asyncio.create_task(hub.call(session, _call("one", "2"), 30))
        m1 = (await host.read()).tool_call
        assert m1.arguments["query"] == "1"
        await host.answer_tool(m1.call_id, "r1")  # only now is the second call sent
        m2 = (await host.read()).tool_call
        assert m2.arguments["query"] == "2"
        await host.answer_tool(m2.call_id, "r2")
        assert (await first, await second) == (ToolReply("r1"), ToolReply("r2"))


async def test_deleting_the_session_ends_its_streams(
    stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    async with RawHost(stub, hello(session, [tool("lookup")])) as host:
        await stub.DeleteSession(pb.DeleteSessionRequest(session_id=session))
        await expect_error(host.call.read(), grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND")


async def test_a_thousand_calls_in_flight_on_one_stream_all_complete(
    server: RunningServer, stub: pb_grpc.BridgeServiceStub, session: str
) -> None:
    hub = server.hosts
    assert hub is not None
    async with RawHost(stub, hello(session, [tool("lookup", max_concurrency=1000)])) as host:
        answering = asyncio.create_task(answer_tools(host, lambda _, args: args["query"]))
        replies = await asyncio.gather(
            *(hub.call(session, _call(query=str(i)), 120) for i in range(1000))
        )
        answering.cancel()
    assert [r.output for r in replies] == [str(i) for i in range(1000)]  # type: ignore[union-attr]
