"""The Python client against the real server: the flows a host runs, sync and async."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dspy_bridge.transport.server import RunningServer
from dspy_bridge_client import (
    AsyncBridgeClient,
    BridgeClient,
    InvalidArgumentError,
    NotFoundError,
    SessionEnded,
    VariableChange,
    VersionConflictError,
)
from tests.process import ServerProcess, server_process


async def test_async_client_variables_modules_and_errors(server: RunningServer) -> None:
    async with AsyncBridgeClient(server.target) as client:
        session = await client.create_session(metadata={"who": "test"})
        await session.configure_lm("offline")
        temperature = await session.register_variable("temperature", "float", 0.5, min=0, max=1)
        assert temperature.version == 1
        with pytest.raises(InvalidArgumentError) as bad:
            await session.update_variable("temperature", 1.5)
        assert bad.value.reason == "VARIABLE_CONSTRAINT_VIOLATION"
        assert [f.field for f in bad.value.field_violations] == ["value"]
        await session.update_variable("temperature", 0.25, expected_version=1)
        with pytest.raises(VersionConflictError) as stale:
            await session.update_variable("temperature", 0.3, expected_version=1)
        assert stale.value.current_version == 2

        await session.create_module(
            "Predict", "question -> answer", module_id="qa", bindings={"temperature": "temperature"}
        )
        result = await session.execute("qa", question="What is a sidecar?")
        assert isinstance(result["answer"], str) and result["answer"]
        assert result.variables_used["temperature"].version == 2
        batch = await session.execute_batch("qa", [{"question": "a"}, {"wrong": "b"}])
        assert batch[0].error is None and batch[1].error is not None
        assert batch[1].error.reason == "INVALID_INPUT"
        with pytest.raises(NotFoundError):
            await session.execute("missing", question="x")
        await session.delete()


@pytest.fixture(scope="module")
def sidecar() -> Iterator[ServerProcess]:
    with server_process("--workers", "0") as process:
        yield process


def test_sync_client_watch_history_and_rollback(sidecar: ServerProcess) -> None:
    with BridgeClient(sidecar.target) as client:
        session = client.create_session()
        session.register_variable("n", "integer", 0)
        with session.watch(["n"], include_initial=True) as stream:
            events = iter(stream)
            first = next(events)
            assert isinstance(first, VariableChange) and first.variable.version == 1
            for i in range(1, 4):
                session.update_variable("n", i, reason=f"step {i}")
            seen = [next(events).variable.version for _ in range(3)]
            assert seen == [2, 3, 4]
            session.delete()
            assert isinstance(next(events), SessionEnded)


def test_sync_client_history_rollback_and_state(sidecar: ServerProcess) -> None:
    with BridgeClient(sidecar.target) as client:
        session = client.create_session()
        session.configure_lm("offline")
        session.register_variable("t", "float", 0.1)
        for x in (0.2, 0.3):
            session.update_variable("t", x)
        assert [h.version for h in session.history("t")] == [3, 2, 1]
        assert session.rollback("t", 1).value == 0.1
        session.create_module("ChainOfThought", "question -> answer", module_id="cot")
        state = session.export_state("cot")
        assert session.import_state("cot", state).version == 2
        streamed = session.execute_stream("cot", question="stream?").result()
        assert set(streamed.outputs) == {"reasoning", "answer"}
