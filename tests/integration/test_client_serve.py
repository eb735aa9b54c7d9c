"""The Python client's `session.serve` against a real sidecar: sync (a background thread, the
sidecar in its own process) and asyncio; type hints become the JSON Schema the LM sees;
tools, metrics and LMs answered; errors as observations; reconnecting; a refused hello."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Literal

import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client import (
    AlreadyExistsError,
    AsyncBridgeClient,
    BridgeClient,
    HostCallContext,
    HostServer,
    NotFoundError,
    UnavailableError,
)
from dspy_bridge_client.host import json_schema, tool_schema
from tests.process import ServerProcess, server_process


def lookup_order(order_id: str, verbose: bool = False) -> str:
    """Where an order is.

    More text that is not part of the description."""
    if order_id == "99":
        raise LookupError("order 99 does not exist")
    return f"order {order_id} shipped"


def test_type_hints_become_json_schema() -> None:
    description, schema = tool_schema(lookup_order)
    assert description == "Where an order is."
    assert schema == {
        "type": "object",
        "properties": {
            "order_id": {"type": "string"},
            "verbose": {"type": "boolean", "default": False},
        },
        "required": ["order_id"],
    }
    assert json_schema(list[int]) == {"type": "array", "items": {"type": "integer"}}
    assert json_schema(dict[str, float]) == {
        "type": "object",
        "additionalProperties": {"type": "number"},
    }
    assert json_schema(Literal["a", "b"]) == {"enum": ["a", "b"]}
    assert json_schema(int | None) == {"type": "integer"}


def test_a_call_context_parameter_is_not_part_of_the_schema() -> None:
    def lookup(order_id: str, call: HostCallContext) -> str:
        return order_id

    assert tool_schema(lookup)[1] == {
        "type": "object",
        "properties": {"order_id": {"type": "string"}},
        "required": ["order_id"],
    }


@pytest.fixture(scope="module")
def sidecar() -> Iterator[ServerProcess]:
    with server_process("--workers", "1") as process:
        yield process


def test_sync_serve_lends_a_tool_to_react_from_a_background_thread(
    sidecar: ServerProcess,
) -> None:
    with BridgeClient(sidecar.target) as client:
        session = client.create_session()
        session.configure_lm("offline")
        with session.serve(tools={"lookup_order": lookup_order}) as hosting:
            assert hosting.connected and hosting.connection_id
            session.create_module(
                "ReAct",
                "order_id -> answer",
                module_id="agent",
                config={"tools": ["host:lookup_order"], "max_iters": 3},
            )
            result = session.execute("agent", order_id="42")
            trajectory = result["trajectory"]
            assert trajectory["tool_name_0"] == "host:lookup_order"
            assert trajectory["tool_args_0"] == {"order_id": "42"}
            assert trajectory["observation_0"] == "order 42 shipped"
            failed = session.execute("agent", order_id="99")
            assert failed["trajectory"]["observation_0"] == (
                "Error from host:lookup_order: LookupError: order 99 does not exist"
            )
        calls: list[HostCallContext] = []

        def where(order_id: str, call: HostCallContext) -> str:
            """Where an order is, and which call asked."""
            calls.append(call)
            return f"order {order_id} shipped"

        with session.serve(tools={"lookup_order": where}):
            result = session.execute("agent", order_id="7")
            assert result["trajectory"]["observation_0"] == "order 7 shipped"
            session.evaluate("agent", [({"order_id": "8"}, {"answer": "order 8"})], "contains")
        assert len(calls) == 2  # execute, then evaluate: neither is a job
        for call in calls:
            assert (call.name, call.module_id, call.job_id) == ("lookup_order", "agent", "")
            assert call.call_id and call.timeout_ms > 0 and call.deadline is not None
        with pytest.raises(UnavailableError) as gone:  # stopped: the tool is gone
            session.execute("agent", order_id="1")
        assert gone.value.reason == "HOST_DISCONNECTED"


def test_a_refused_hello_is_raised(sidecar: ServerProcess) -> None:
    def serving_threads() -> int:
        return sum(t.name == "dspy-bridge-host" for t in threading.enumerate())

    with BridgeClient(sidecar.target) as client:
        before = serving_threads()
        with (
            pytest.raises(NotFoundError),
            client.session("no-such-session").serve(tools={"t": lookup_order}),
        ):
            pass
        assert serving_threads() == before  # the refused host's thread and channel are gone
        session = client.create_session()
        with session.serve(tools={"lookup_order": lookup_order}):

            def lookup_order_v2(order_id: int) -> str:  # same name, another schema
                return str(order_id)

            other = session.serve(tools={"lookup_order": lookup_order_v2})
            with pytest.raises(AlreadyExistsError):
                other.wait_connected()
            other.stop()


async def test_async_serve_answers_metrics_and_lms_and_reconnects(server: RunningServer) -> None:
    scored: list[HostCallContext] = []

    async def quality(
        inputs: dict, labels: dict, prediction: dict, call: HostCallContext
    ) -> tuple[float, str]:
        scored.append(call)
        return (1.0 if prediction["answer"] == labels["answer"] else 0.5), "say Paris"

    def my_llm(messages: list[dict], options: dict) -> tuple[str, dict[str, int]]:
        assert messages[0]["role"] == "system"
        return "[[ ## answer ## ]]\nParis\n\n[[ ## completed ## ]]", {
            "prompt_tokens": 5,
            "completion_tokens": 2,
        }

    async with AsyncBridgeClient(server.target) as client:
        session = await client.create_session()
        hosting = await session.serve(metrics={"quality": quality}, lms={"mine": my_llm})
        async with hosting:
            await session.create_module(
                "Predict", "question -> answer", module_id="qa", lm="host:mine"
            )
            answer = await session.execute("qa", question="Capital of France?")
            assert answer["answer"] == "Paris" and answer.usage.prompt_tokens == 5
            evaluation = await session.evaluate(
                "qa",
                [({"question": "Capital of France?"}, {"answer": "Paris"})],
                metric="host:quality",
            )
            assert evaluation.score == 1.0
            assert [(c.name, c.job_id) for c in scored] == [("quality", "")]  # not a job
            # The sidecar ends every host stream (as on a restart): the client reconnects.
            assert server.hosts is not None
            server.hosts.close()  # unregisters every connection: one more is the client's new one
            await server.hosts.wait_connections(session.session_id, lambda n: n == 1, within=30)
            again = await session.execute("qa", question="Capital of France?")
            assert again["answer"] == "Paris"


def test_an_optimization_calls_the_host_tools_of_the_module_it_optimizes(
    sidecar: ServerProcess,
) -> None:
    """The job process builds the ReAct module with its host tools; DSPy's threads call them
    through the job's channel to the front and the host's stream."""
    seen: list[str] = []
    jobs: set[tuple[str, str]] = set()  # (job_id, module_id) of every call
    lock = threading.Lock()

    async def lookup(order_id: str, call: HostCallContext) -> str:
        """Where an order is."""
        with lock:
            seen.append(order_id)
            jobs.add((call.job_id, call.module_id))
        return f"order {order_id} shipped"

    trainset = [({"order_id": str(n)}, {"answer": f"order {n} shipped"}) for n in (11, 12, 13)]
    with BridgeClient(sidecar.target) as client:
        session = client.create_session()
        session.configure_lm("offline")
        with session.serve(tools={"lookup_order": lookup}):
            session.create_module(
                "ReAct",
                "order_id -> answer",
                module_id="agent",
                config={"tools": ["host:lookup_order"], "max_iters": 3},
            )
            job_ids = set()
            for optimizer in ("LabeledFewShot", "BootstrapFewShot"):
                job = session.start_optimization(
                    "agent", optimizer, trainset, "contains", valset=trainset[:2]
                )
                done = session.wait_optimization(job.job_id, max_wait=180)
                assert done.status == "SUCCEEDED", done.error
                job_ids.add(job.job_id)
    # Each call told the (async) tool which job and module it served.
    assert jobs == {(job_id, "agent") for job_id in job_ids}
    # Scoring before and after (and bootstrapping) ran the agent on these orders.
    assert {"11", "12"} <= set(seen)
    assert "13" in seen  # BootstrapFewShot ran the trainset's third example too


async def test_closing_a_client_stops_what_it_serves(server: RunningServer) -> None:
    """Both twins: `close` ends the client's `serve` connections (the sync one runs on a
    channel and thread of its own, which closing the client's channel would not end)."""
    assert server.hosts is not None
    hosts = server.hosts

    def sync_side() -> tuple[str, HostServer]:
        client = BridgeClient(server.target)
        session = client.create_session()
        hosting = session.serve(tools={"lookup_order": lookup_order})
        hosting.wait_connected()
        client.close()
        return session.session_id, hosting

    session_id, hosting = await asyncio.to_thread(sync_side)
    await hosts.wait_connections(session_id, lambda n: n == 0, within=30)
    assert not hosting.connected

    client = AsyncBridgeClient(server.target)
    session = await client.create_session()
    async_hosting = await session.serve(tools={"lookup_order": lookup_order})
    await async_hosting.wait_connected()
    await client.close()
    await hosts.wait_connections(session.session_id, lambda n: n == 0, within=30)
    assert not async_hosting.connected and async_hosting.error is None
