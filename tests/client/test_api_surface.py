"""The public surface: sync/async parity, docstrings, lifecycle, and stream cancellation."""

from __future__ import annotations

import asyncio
import inspect
import socket
import threading
from typing import Any

import pytest

import dspy_bridge_client
from dspy_bridge_client import (
    AsyncBridgeClient,
    AsyncSessionHandle,
    BridgeClient,
    SessionHandle,
    UnavailableError,
    VariableType,
    aio,
)
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._streams import AsyncStream, Stream

from .fake_server import FakeBridge

PAIRS = [(BridgeClient, AsyncBridgeClient), (SessionHandle, AsyncSessionHandle)]
# Methods of the async twins that return without a round trip (streams, handles, iterators).
NOT_COROUTINES = {
    "session",
    "watch",
    "execute_stream",
    "list_sessions",
    "watch_optimization",
    "list_optimizations",
}


def public_methods(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in vars(cls).items()
        if not name.startswith("_") and callable(member)
    }


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_sync_and_async_have_the_same_shape(sync_cls: type, async_cls: type) -> None:
    sync_methods, async_methods = public_methods(sync_cls), public_methods(async_cls)
    assert sync_methods.keys() == async_methods.keys()
    for name, method in sync_methods.items():
        sync_params = list(inspect.signature(method).parameters.values())
        async_params = list(inspect.signature(async_methods[name]).parameters.values())
        assert [(p.name, p.kind, p.default) for p in sync_params] == [
            (p.name, p.kind, p.default) for p in async_params
        ], name
        is_coroutine = inspect.iscoroutinefunction(async_methods[name])
        assert is_coroutine == (name not in NOT_COROUTINES), name
    for prop in ("target", "timeout", "session_id", "session"):
        assert (prop in vars(sync_cls)) == (prop in vars(async_cls))


def test_async_list_sessions_is_an_async_generator() -> None:
    assert inspect.isasyncgenfunction(AsyncBridgeClient.list_sessions)
    assert inspect.isgeneratorfunction(BridgeClient.list_sessions)


def test_aio_aliases() -> None:
    assert aio.BridgeClient is AsyncBridgeClient
    assert aio.SessionHandle is AsyncSessionHandle


def test_every_public_name_is_exported_and_documented() -> None:
    exported = dspy_bridge_client.__all__
    assert len(exported) == len(set(exported))
    for name in exported:
        obj = getattr(dspy_bridge_client, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__doc__ and obj.__doc__.strip(), name
        if inspect.isclass(obj):
            for member_name, member in vars(obj).items():
                if member_name.startswith("_") or not (
                    inspect.isfunction(member) or isinstance(member, property | classmethod)
                ):
                    continue
                assert inspect.getdoc(getattr(obj, member_name)), f"{name}.{member_name}"


def test_variable_type_accepts_names() -> None:
    assert VariableType("float") is VariableType.FLOAT
    assert VariableType("FLOAT") is VariableType.FLOAT
    assert VariableType("VARIABLE_TYPE_CHOICE") is VariableType.CHOICE
    assert VariableType("int") is VariableType.INTEGER
    assert VariableType("bool") is VariableType.BOOLEAN
    assert VariableType.JSON.value == "json"
    assert f"{VariableType.JSON}" == "json"
    with pytest.raises(ValueError):
        VariableType("nope")


# --------------------------------------------------------------------------- lifecycle


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_sync_lifecycle(target: str) -> None:
    with BridgeClient(target) as client:
        assert repr(client) == f"BridgeClient(target={target!r})"
        assert client.timeout == 30
        client.wait_until_ready(timeout=10)
        client.ping()
    with pytest.raises(RuntimeError, match="client has been closed"):
        client.ping()
    with pytest.raises(RuntimeError, match="client has been closed"):
        client.session("s").watch()
    client.close()  # twice is fine


async def test_async_lifecycle(target: str) -> None:
    async with AsyncBridgeClient(target) as client:
        assert repr(client) == f"AsyncBridgeClient(target={target!r})"
        await client.wait_until_ready(timeout=10)
        await client.ping()
    with pytest.raises(RuntimeError, match="client has been closed"):
        await client.ping()
    await client.close()


def test_sync_wait_until_ready_times_out() -> None:
    client = BridgeClient(f"127.0.0.1:{free_port()}")
    with client, pytest.raises(UnavailableError, match=r"within 0\.2s") as caught:
        client.wait_until_ready(timeout=0.2)
    assert "dspy-bridge serve" in str(caught.value)


async def test_async_wait_until_ready_times_out() -> None:
    async with AsyncBridgeClient(f"127.0.0.1:{free_port()}") as client:
        with pytest.raises(UnavailableError, match=r"within 0\.2s"):
            await client.wait_until_ready(timeout=0.2)


async def test_unreachable_sidecar_raises_unavailable_with_a_hint() -> None:
    target = f"127.0.0.1:{free_port()}"
    with BridgeClient(target) as client, pytest.raises(UnavailableError) as caught:
        client.ping()
    assert f"running at {target}?" in str(caught.value)
    async with AsyncBridgeClient(target) as aclient:
        with pytest.raises(UnavailableError):
            await aclient.ping()


# --------------------------------------------------------------------------- cancellation


def hold_watch_open(fake: FakeBridge) -> None:
    fake.hold_open.add("WatchVariables")
    fake.replies["WatchVariables"] = [
        pb.WatchVariablesResponse(session_ended=pb.SessionEnded(reason="first"))
    ]


def test_sync_stream_cancel_from_another_thread(fake: FakeBridge, target: str) -> None:
    hold_watch_open(fake)
    with BridgeClient(target) as client:
        stream: Stream[Any] = client.session("s1").watch()
        next(stream)
        waiting = threading.Event()
        outcome: list[Any] = []

        def consume() -> None:
            waiting.set()
            outcome.append(list(stream))  # blocks until cancelled

        consumer = threading.Thread(target=consume)
        consumer.start()
        assert waiting.wait(timeout=10)
        stream.cancel()
        consumer.join(timeout=10)
        assert not consumer.is_alive()
    assert outcome == [[]]
    assert fake.stream_cancelled.wait(timeout=10)


async def test_async_task_cancellation_is_not_swallowed(fake: FakeBridge, target: str) -> None:
    hold_watch_open(fake)
    async with AsyncBridgeClient(target) as client:
        stream: AsyncStream[Any] = client.session("s1").watch()
        await stream.__anext__()
        task = asyncio.ensure_future(stream.__anext__())
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stream.cancel()
    assert fake.stream_cancelled.wait(timeout=10)


def test_the_host_servers_have_the_same_shape() -> None:
    """`serve`'s results, sync and asyncio: the same methods (besides the async one's `start`,
    which `serve` calls) with the same parameters, and the same state to read."""
    from dspy_bridge_client import AsyncHostServer, HostServer

    sync_methods = public_methods(HostServer)
    async_methods = {n: m for n, m in public_methods(AsyncHostServer).items() if n != "start"}
    assert sync_methods.keys() == async_methods.keys()
    for name, method in sync_methods.items():
        sync_params = list(inspect.signature(method).parameters.values())
        async_params = list(inspect.signature(async_methods[name]).parameters.values())
        assert [(p.name, p.kind, p.default) for p in sync_params] == [
            (p.name, p.kind, p.default) for p in async_params
        ], name
    for state in ("connected", "connection_id", "connections", "error"):
        assert isinstance(getattr(HostServer, state), property), state
