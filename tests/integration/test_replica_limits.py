"""The per-session byte budget and the per-caller shares hold across real replicas on one real
Redis (they are kept in Redis, not in each replica's memory):

- a session filled through replica A refuses a write through replica B (SESSION_BUDGET_EXCEEDED,
  nothing changed), and a delete through either gives the bytes back to both;
- a caller's live sessions and the server-wide cap count the sessions made through any replica;
- a caller's queued/running jobs count on every replica; when the replica running one dies, its
  share comes back once the job's lease lapses (the job is INTERRUPTED by the survivor).

Everything waits on RPC answers and stream messages, never on sleeps.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import grpc

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from tests.conftest import redis_store_url
from tests.integration.rpc import expect_error
from tests.integration.test_replicas import Stub, replicas, stubs
from tests.integration.test_session_budget import CHUNK, fill, register_string, write_chunk
from tests.jobs.helpers import TERMINAL, slow_session, start_request
from tests.redis_server import RedisServer

FULL = grpc.StatusCode.RESOURCE_EXHAUSTED
#: Long enough that a live replica on a loaded 2-core machine never misses a renewal (its job
#: must keep counting); a dead one's job is INTERRUPTED within 4/3 of it.
JOB_LEASE_S = 5.0
ANA = (("authorization", "Bearer ana-token"),)
BO = (("authorization", "Bearer bo-token"),)


def _tokens(tmp_path: Path) -> str:
    tokens = tmp_path / "tokens"
    tokens.write_text("ana ana-token\nbo bo-token\n")
    return str(tokens)


async def test_a_session_filled_through_one_replica_is_full_through_the_other(
    redis_server: RedisServer,
) -> None:
    limits = ("--max-session-bytes", "1000000", "--max-value-bytes", "200000")
    with replicas(2, redis_store_url(redis_server), *limits) as servers:
        async with AsyncExitStack() as stack:
            a, b = await stubs(stack, servers)
            sid = (await a.CreateSession(pb.CreateSessionRequest())).session.session_id
            await register_string(a, sid, "x")
            written = await fill(a, sid, "x")
            assert 5 <= written < 10
            # Through B (which never saw these writes): full, with A's count.
            err = await expect_error(write_chunk(b, sid, "x"), FULL, "SESSION_BUDGET_EXCEEDED")
            assert int(err.metadata["limit"]) == 1_000_000
            assert int(err.metadata["used"]) > 1_000_000 - CHUNK
            await expect_error(register_string(b, sid, "y", CHUNK), FULL, "SESSION_BUDGET_EXCEEDED")
            got = await b.GetVariable(pb.GetVariableRequest(session_id=sid, name="x"))
            assert got.variable.version == written + 1  # the refused writes changed nothing
            listed = await a.ListVariables(pb.ListVariablesRequest(session_id=sid))
            assert [v.name for v in listed.variables] == ["x"]

            # A delete through B gives the bytes back on both replicas.
            await b.DeleteVariable(pb.DeleteVariableRequest(session_id=sid, name="x"))
            await register_string(a, sid, "x")
            for stub in (a, b, a, b):
                await write_chunk(stub, sid, "x")
            # So does deleting the session: the id made anew starts from nothing.
            await a.DeleteSession(pb.DeleteSessionRequest(session_id=sid))
            await b.CreateSession(pb.CreateSessionRequest(session_id=sid))
            await register_string(b, sid, "x")
            for stub in (a, b) * 4:
                await write_chunk(stub, sid, "x")


async def test_a_callers_session_share_and_the_server_cap_span_replicas(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    flags = (
        "--auth-tokens-file",
        _tokens(tmp_path),
        "--max-sessions-per-caller",
        "2",
        "--max-sessions",
        "4",
    )
    with replicas(2, redis_store_url(redis_server), *flags) as servers:
        async with AsyncExitStack() as stack:
            a, b = await stubs(stack, servers)
            first = (await a.CreateSession(pb.CreateSessionRequest(), metadata=ANA)).session
            await b.CreateSession(pb.CreateSessionRequest(), metadata=ANA)
            for stub in (a, b):  # her third, through either replica
                err = await expect_error(
                    stub.CreateSession(pb.CreateSessionRequest(), metadata=ANA),
                    FULL,
                    "SESSION_QUOTA_EXCEEDED",
                )
                assert err.metadata["limit"] == "2"
            listed = await b.ListSessions(pb.ListSessionsRequest(), metadata=ANA)
            assert len(listed.sessions) == 2  # the refusals stored nothing
            # Bo has his own share; the server-wide cap (4) counts everyone's.
            await a.CreateSession(pb.CreateSessionRequest(), metadata=BO)
            await b.CreateSession(pb.CreateSessionRequest(), metadata=BO)
            await b.DeleteSession(
                pb.DeleteSessionRequest(session_id=first.session_id), metadata=ANA
            )
            await a.CreateSession(pb.CreateSessionRequest(), metadata=ANA)  # her share is back
            await expect_error(
                b.CreateSession(pb.CreateSessionRequest(), metadata=BO), FULL, "SESSION_LIMIT"
            )


async def _until_status(stub: Stub, sid: str, job_id: str, wanted: set[int]) -> int:
    request = pb.WatchOptimizationRequest(session_id=sid, job_id=job_id)
    async with asyncio.timeout(120):  # a bound on a loaded machine, not an expectation
        async for update in stub.WatchOptimization(request, metadata=ANA):
            if update.job.status in wanted:
                return int(update.job.status)
    raise AssertionError(f"the watch of {job_id} ended before any of {wanted}")


async def test_a_callers_job_share_spans_replicas_and_comes_back_when_one_dies(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    flags = (
        "--auth-tokens-file",
        _tokens(tmp_path),
        "--max-queued-jobs-per-caller",
        "2",
        "--job-lease-seconds",
        str(JOB_LEASE_S),
    )
    with replicas(2, redis_store_url(redis_server), *flags) as servers:
        doomed, _survivor = servers
        async with AsyncExitStack() as stack:
            a, b = await stubs(stack, servers)
            ana_a = await slow_session(a, ANA)  # jobs that run for a long while
            on_a = (
                await a.StartOptimization(start_request(ana_a, "BootstrapFewShot"), metadata=ANA)
            ).job
            on_b = (
                await b.StartOptimization(start_request(ana_a, "BootstrapFewShot"), metadata=ANA)
            ).job
            for stub in (a, b):  # a third, through either replica
                err = await expect_error(
                    stub.StartOptimization(start_request(ana_a, "BootstrapFewShot"), metadata=ANA),
                    FULL,
                    "JOB_QUOTA_EXCEEDED",
                )
                assert (err.metadata["limit"], err.metadata["active"]) == ("2", "2")
            jobs = await b.ListOptimizations(
                pb.ListOptimizationsRequest(session_id=ana_a), metadata=ANA
            )
            assert {j.job_id for j in jobs.jobs} == {on_a.job_id, on_b.job_id}

            # The replica running one of her jobs dies: once the job's lease lapses the
            # survivor marks it INTERRUPTED, and her share is back on the survivor.
            doomed.kill()
            status = await _until_status(b, ana_a, on_a.job_id, TERMINAL)
            assert status == job_pb2.JOB_STATUS_INTERRUPTED
            again = (
                await b.StartOptimization(start_request(ana_a, "BootstrapFewShot"), metadata=ANA)
            ).job
            await expect_error(
                b.StartOptimization(start_request(ana_a, "BootstrapFewShot"), metadata=ANA),
                FULL,
                "JOB_QUOTA_EXCEEDED",
            )
            for job in (on_b, again):
                await b.CancelOptimization(
                    pb.CancelOptimizationRequest(session_id=ana_a, job_id=job.job_id), metadata=ANA
                )
