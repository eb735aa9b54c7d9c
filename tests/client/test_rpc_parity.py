"""Client parity: every RPC of `BridgeService` (read from the generated descriptor of proto/) is
reached by the Python client's public API, sync and async.

`CLIENT_CALLS` says which public call reaches each RPC; the test fails naming any RPC without
one (a new RPC the client lacks), any mapping to an RPC the proto no longer declares, and any
call that does not actually send its RPC to the fake sidecar, which fails every call so that
nothing waits for a real answer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from dspy_bridge_client import AsyncSessionHandle, BridgeError
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb

from .conftest import Api
from .fake_server import METHODS, FakeBridge, rich_status

Call = Callable[[Any, Any], Any]
"""``(client, session_handle) -> result``: a coroutine, a stream or an iterator, or a value."""

DATASET = [({"q": "x"}, {"a": "y"})]


def lookup(order_id: str) -> str:
    """A host tool for `serve`."""
    return order_id


def serve_until_welcomed(session: Any) -> Any:
    """`serve`, sync or async, waiting for the welcome (the fake refuses the hello)."""
    if isinstance(session, AsyncSessionHandle):

        async def serve_async() -> None:
            server = await session.serve(tools={"lookup": lookup})
            try:
                await server.wait_connected(10)
            finally:
                await server.stop()

        return serve_async()
    server = session.serve(tools={"lookup": lookup})
    try:
        server.wait_connected(10)
    finally:
        server.stop()


CLIENT_CALLS: dict[str, Call] = {
    "Ping": lambda c, s: c.ping(),
    "GetServerInfo": lambda c, s: c.server_info(),
    "CreateSession": lambda c, s: c.create_session(),
    "GetSession": lambda c, s: s.get(),
    "ListSessions": lambda c, s: c.list_sessions(),
    "DeleteSession": lambda c, s: s.delete(),
    "Heartbeat": lambda c, s: s.heartbeat(),
    "ConfigureLM": lambda c, s: s.configure_lm("offline"),
    "RegisterVariable": lambda c, s: s.register_variable("v", "float", 0.5),
    "GetVariable": lambda c, s: s.get_variable("v"),
    "ListVariables": lambda c, s: s.list_variables(),
    "DeleteVariable": lambda c, s: s.delete_variable("v"),
    "UpdateVariable": lambda c, s: s.update_variable("v", 0.5),
    "BatchUpdateVariables": lambda c, s: s.batch_update({"v": 0.5}),
    "WatchVariables": lambda c, s: s.watch(),
    "GetVariableHistory": lambda c, s: s.history("v"),
    "RollbackVariable": lambda c, s: s.rollback("v", 1),
    "CreateModule": lambda c, s: s.create_module("Predict", "q -> a"),
    "GetModule": lambda c, s: s.get_module("m"),
    "ListModules": lambda c, s: s.list_modules(),
    "DeleteModule": lambda c, s: s.delete_module("m"),
    "Execute": lambda c, s: s.execute("m", {"q": "x"}),
    "ExecuteBatch": lambda c, s: s.execute_batch("m", [{"q": "x"}]),
    "ExecuteStream": lambda c, s: s.execute_stream("m", {"q": "x"}),
    "ExportModuleState": lambda c, s: s.export_state("m"),
    "ImportModuleState": lambda c, s: s.import_state("m", "{}"),
    "RevertModule": lambda c, s: s.revert_module("m", 1),
    "Evaluate": lambda c, s: s.evaluate("m", DATASET, "exact_match"),
    "EvaluateStream": lambda c, s: s.evaluate(
        "m", DATASET, "exact_match", progress=lambda done, total: None
    ),
    "StartOptimization": lambda c, s: s.start_optimization(
        "m", "LabeledFewShot", DATASET, "exact_match"
    ),
    "GetOptimization": lambda c, s: s.get_optimization("j"),
    "WatchOptimization": lambda c, s: s.watch_optimization("j"),
    "CancelOptimization": lambda c, s: s.cancel_optimization("j"),
    "ListOptimizations": lambda c, s: s.list_optimizations(),
    "ApplyOptimization": lambda c, s: s.apply_optimization("j"),
    "Connect": lambda c, s: serve_until_welcomed(s),
}

OMITTED: dict[str, str] = {}
"""RPCs deliberately left out of this client, with the reason. None today."""

RPCS = [m.name for m in pb.DESCRIPTOR.services_by_name["BridgeService"].methods]


def test_every_rpc_is_mapped_to_a_public_call_or_omitted_with_a_reason() -> None:
    assert len(RPCS) >= 30
    missing = [rpc for rpc in RPCS if rpc not in CLIENT_CALLS and rpc not in OMITTED]
    assert not missing, f"RPCs the Python client does not reach: {', '.join(missing)}"
    stale = [rpc for rpc in [*CLIENT_CALLS, *OMITTED] if rpc not in RPCS]
    assert not stale, f"mapped RPCs the proto does not declare: {', '.join(stale)}"
    assert not set(CLIENT_CALLS) & set(OMITTED)
    assert all(reason.strip() for reason in OMITTED.values())


async def _reach(api: Api, call: Call) -> str | None:
    """Makes the call (draining a stream or iterator); None when it failed as the fake makes
    every call fail, else what went wrong."""
    try:
        result = await api(call, api.client, api.client.session("s"))
        if hasattr(result, "__aiter__") or hasattr(result, "__iter__"):
            await api.collect(result)
    except BridgeError:
        return None
    return "the call succeeded against a sidecar that fails everything"


async def test_each_mapped_call_sends_its_rpc(api: Api, fake: FakeBridge) -> None:
    for name in METHODS:
        fake.replies[name] = rich_status(grpc.StatusCode.UNIMPLEMENTED, "recorded by the test")
    # A refused hello is final for `serve` (UNIMPLEMENTED would be retried with backoff).
    fake.replies["Connect"] = rich_status(
        grpc.StatusCode.FAILED_PRECONDITION, "recorded by the test"
    )
    unreached: list[str] = []
    for rpc, call in CLIENT_CALLS.items():
        fake.calls.clear()
        problem = await _reach(api, call)
        sent = [c.method for c in fake.calls]
        if problem is not None or rpc not in sent:
            unreached.append(f"{rpc} ({problem or 'sent ' + (', '.join(sent) or 'nothing')})")
    assert not unreached, f"mapped calls that do not reach their RPC: {'; '.join(unreached)}"
