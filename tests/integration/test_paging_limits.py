"""No stored state can make a read exceed the gRPC message limit (#10 item 7): ListVariables,
GetVariableHistory, ListModules, ListSessions and ListOptimizations cut each page to fit in one
message and hand out a token for the rest; the clients follow the tokens."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client import AsyncBridgeClient
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import module_pb2, variable_pb2
from tests.integration.rpc import expect_error, sv

Stub = pb_grpc.BridgeServiceStub
VALUE = 150_000  # bytes of one stored string; 10 of them are far past the 512 KiB limit
SMALL_MESSAGES = {"max_message_bytes": 512 * 1024, "max_value_bytes": 200_000}


async def _pages(call: Callable[[str], Awaitable[Any]], items: str) -> list[list[Any]]:
    pages: list[list[Any]] = []
    token = ""
    for _ in range(50):  # bounded
        response = await call(token)
        pages.append(list(getattr(response, items)))
        token = response.next_page_token
        if not token:
            return pages
    raise AssertionError("paging did not end")


@pytest.mark.parametrize("settings_overrides", [SMALL_MESSAGES])
async def test_variables_and_history_page_to_fit(stub: Stub, server: RunningServer) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    for i in range(10):
        await stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid,
                name=f"v{i}",
                type=variable_pb2.VARIABLE_TYPE_STRING,
                initial_value=sv(str(i) * VALUE),
            )
        )
    for _ in range(9):
        await stub.UpdateVariable(
            pb.UpdateVariableRequest(session_id=sid, name="v0", value=sv("u" * VALUE))
        )

    pages = await _pages(
        lambda token: stub.ListVariables(pb.ListVariablesRequest(session_id=sid, page_token=token)),
        "variables",
    )
    assert len(pages) > 1 and all(pages)
    assert [v.name for page in pages for v in page] == [f"v{i}" for i in range(10)]
    two = await stub.ListVariables(pb.ListVariablesRequest(session_id=sid, page_size=2))
    assert [v.name for v in two.variables] == ["v0", "v1"] and two.next_page_token

    pages = await _pages(
        lambda token: stub.GetVariableHistory(
            pb.GetVariableHistoryRequest(session_id=sid, name="v0", page_token=token)
        ),
        "entries",
    )
    assert len(pages) > 1
    assert [e.version for page in pages for e in page] == list(range(10, 0, -1))

    async with AsyncBridgeClient(server.target) as client:
        session = client.session(sid)
        assert [v.name for v in await session.list_variables()] == [f"v{i}" for i in range(10)]
        assert [e.version for e in await session.history("v0")] == list(range(10, 0, -1))
        assert [e.version for e in await session.history("v0", limit=4)] == [10, 9, 8, 7]


@pytest.mark.parametrize("settings_overrides", [SMALL_MESSAGES])
async def test_modules_and_sessions_page_to_fit(stub: Stub, server: RunningServer) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    for i in range(12):
        await stub.CreateModule(
            pb.CreateModuleRequest(
                session_id=sid,
                module_id=f"m{i:02}",
                module_type="Predict",
                signature=module_pb2.Signature(text="q -> a", instructions="i" * 60_000),
            )
        )
    pages = await _pages(
        lambda token: stub.ListModules(pb.ListModulesRequest(session_id=sid, page_token=token)),
        "modules",
    )
    assert len(pages) > 1
    assert [m.module_id for page in pages for m in page] == [f"m{i:02}" for i in range(12)]
    async with AsyncBridgeClient(server.target) as client:
        listed = await client.session(sid).list_modules()
        assert [m.module_id for m in listed] == [f"m{i:02}" for i in range(12)]

    metadata = {f"key{k:02}": "m" * 1_000 for k in range(64)}
    for _ in range(12):
        await stub.CreateSession(pb.CreateSessionRequest(metadata=metadata))
    pages = await _pages(
        lambda token: stub.ListSessions(pb.ListSessionsRequest(page_size=1000, page_token=token)),
        "sessions",
    )
    assert len(pages) > 1
    assert len({s.session_id for page in pages for s in page}) == 13


@pytest.mark.parametrize("settings_overrides", [{**SMALL_MESSAGES, "watch_queue_size": 2}])
async def test_a_resync_larger_than_a_message_comes_in_parts(stub: Stub) -> None:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    large = [f"v{i}" for i in range(8)]  # 8 x 150 KB: past the 512 KiB message limit
    small = ["t0", "t1", "t2"]
    for name in large + small:
        await stub.RegisterVariable(
            pb.RegisterVariableRequest(
                session_id=sid,
                name=name,
                type=variable_pb2.VARIABLE_TYPE_STRING,
                initial_value=sv(name[-1] * (VALUE if name in large else 1)),
            )
        )
    stream = stub.WatchVariables(pb.WatchVariablesRequest(session_id=sid, include_initial=True))
    for _ in large + small:  # the subscription is live once its initial snapshot arrived
        assert (await stream.read()).WhichOneof("event") == "change"
    # One atomic batch publishes 3 changes at once, more than the watcher's queue of 2 holds:
    # it gets a resync, the state of all 11 variables, which does not fit in one message.
    writes = [pb.VariableWrite(name=n, value=sv("z")) for n in small]
    await stub.BatchUpdateVariables(
        pb.BatchUpdateVariablesRequest(session_id=sid, writes=writes, atomic=True)
    )
    parts = []
    for _ in large + small:  # bounded: at most one part per variable
        event = await stream.read()
        assert event.WhichOneof("event") == "resync"
        parts.append(event.resync)
        if not event.resync.more:
            break
    assert len(parts) > 1 and not parts[-1].more
    assert sorted(v.name for part in parts for v in part.variables) == sorted(large + small)
    stream.cancel()


@pytest.mark.parametrize("store_url", ["memory", "sqlite"], indirect=True)
async def test_a_forged_page_token_is_invalid_argument(stub: Stub) -> None:
    """A token is an offset anyone can encode: one past what a store can take (SQLite's OFFSET
    is a 64-bit integer) is refused as not issued, never INTERNAL."""
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    calls: dict[str, Callable[[str], Awaitable[Any]]] = {
        "o": lambda t: stub.ListSessions(pb.ListSessionsRequest(page_token=t)),
        "j": lambda t: stub.ListOptimizations(
            pb.ListOptimizationsRequest(session_id=sid, page_token=t)
        ),
        "v": lambda t: stub.ListVariables(pb.ListVariablesRequest(session_id=sid, page_token=t)),
        "m": lambda t: stub.ListModules(pb.ListModulesRequest(session_id=sid, page_token=t)),
    }
    for kind, call in calls.items():
        for offset in ("9" * 30, "1_0", " 7", "+7", "٣"):
            token = base64.urlsafe_b64encode(f"{kind}:{offset}".encode()).decode()
            rich = await expect_error(
                call(token), grpc.StatusCode.INVALID_ARGUMENT, "INVALID_REQUEST"
            )
            assert rich.fields == ["page_token"]
