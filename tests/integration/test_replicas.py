"""Several real sidecar processes on one real Redis (the scale-out guarantees, end to end).

- 8 writers split over two replicas doing read-modify-write with `expected_version`: no update
  lost or applied twice; a watcher on a third replica sees every version, in order.
- kill -9 of a replica while it runs a job and while writes go on: no acknowledged write lost,
  the job INTERRUPTED on the survivor within the lease bound, a watch resumed on the survivor
  with its token misses nothing.
- The ownership scenario: delete on A, re-create by another caller on A, access by the first
  caller through B → NOT_FOUND.

Everything waits on events (log lines, stream messages, RPC answers), never on sleeps.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import grpc

from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import job_pb2
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2 as vpb
from tests.conftest import redis_store_url
from tests.integration.rpc import expect_error, iv, rich_error
from tests.jobs.helpers import TERMINAL, setup, start_request
from tests.process import ServerProcess
from tests.redis_server import RedisServer

Stub = pb_grpc.BridgeServiceStub
LEASE_S = 2.0


@contextmanager
def replicas(count: int, url: str, *extra: str) -> Iterator[list[ServerProcess]]:
    """`count` sidecars on the store `url`, started one after another (each waits for its
    `serving` log line); all killed at the end."""
    started: list[ServerProcess] = []
    try:
        for _ in range(count):
            started.append(ServerProcess("--store", url, "--workers", "0", *extra))
        yield started
    finally:
        for server in started:
            if server.proc.poll() is None:
                server.kill()


async def stubs(stack: AsyncExitStack, servers: list[ServerProcess]) -> list[Stub]:
    out = []
    for server in servers:
        channel = await stack.enter_async_context(grpc.aio.insecure_channel(server.target))
        out.append(pb_grpc.BridgeServiceStub(channel))
    return out


async def _reads(call: Any) -> AsyncIterator[Any]:
    """The messages of a server stream through `read()` (so it may be mixed with reads)."""
    while True:
        message = await call.read()
        if message is grpc.aio.EOF:
            return
        yield message


class _Progress:
    """Wakes a waiter once a count reaches its target (an event, not a polling loop)."""

    def __init__(self) -> None:
        self._count = 0
        self._target = 0
        self._event = asyncio.Event()

    def reached(self, count: int) -> None:
        self._count = count
        if self._target and count >= self._target:
            self._event.set()

    async def wait_for(self, target: int) -> None:
        self._target, self._event = target, asyncio.Event()
        if self._count >= target:
            return
        await self._event.wait()


async def _counter(stub: Stub) -> str:
    sid = (await stub.CreateSession(pb.CreateSessionRequest())).session.session_id
    await stub.RegisterVariable(
        pb.RegisterVariableRequest(
            session_id=sid, name="n", type=vpb.VARIABLE_TYPE_INTEGER, initial_value=iv(0)
        )
    )
    return sid


async def _increment(stub: Stub, sid: str) -> int:
    """One read-modify-write with expected_version, retried on conflicts; the version written."""
    while True:
        current = (await stub.GetVariable(pb.GetVariableRequest(session_id=sid, name="n"))).variable
        try:
            reply = await stub.UpdateVariable(
                pb.UpdateVariableRequest(
                    session_id=sid,
                    name="n",
                    value=iv(current.value.int_value + 1),
                    expected_version=current.version,
                )
            )
        except grpc.aio.AioRpcError as err:
            if err.code() == grpc.StatusCode.ABORTED:
                continue  # another writer got there first: read again
            raise
        return int(reply.variable.version)


async def _watch_versions(stream: Any, until: int) -> list[tuple[int, int]]:
    seen = []
    async for event in _reads(stream):
        assert event.WhichOneof("event") == "change", event
        seen.append((event.change.variable.version, event.change.variable.value.int_value))
        if event.change.variable.version >= until:
            return seen
    return seen


async def test_eight_writers_on_two_replicas_lose_nothing_and_a_third_watches_all(
    redis_server: RedisServer,
) -> None:
    writers, each = 8, 25
    total = writers * each
    with replicas(3, redis_store_url(redis_server)) as servers:
        async with AsyncExitStack() as stack:
            a, b, c = await stubs(stack, servers)
            sid = await _counter(a)
            watch = c.WatchVariables(pb.WatchVariablesRequest(session_id=sid, include_initial=True))
            initial = await watch.read()
            assert initial.change.kind == vpb.VARIABLE_CHANGE_KIND_INITIAL
            watching = asyncio.create_task(_watch_versions(watch, total + 1))

            async def writer(stub: Stub) -> list[int]:
                return [await _increment(stub, sid) for _ in range(each)]

            written = await asyncio.wait_for(
                asyncio.gather(*(writer(a if i % 2 else b) for i in range(writers))), 240
            )
            versions = sorted(v for w in written for v in w)
            assert versions == list(range(2, total + 2))  # each write its own version, none lost
            final = (await b.GetVariable(pb.GetVariableRequest(session_id=sid, name="n"))).variable
            assert (final.version, final.value.int_value) == (total + 1, total)
            seen = await asyncio.wait_for(watching, 60)
            assert seen == [(v, v - 1) for v in range(2, total + 2)]  # every version, in order
            history = await c.GetVariableHistory(
                pb.GetVariableHistoryRequest(session_id=sid, name="n")
            )
            assert [(h.version, h.value.int_value) for h in history.entries] == [
                (v, v - 1) for v in range(total + 1, 0, -1)
            ]
            watch.cancel()


async def test_kill_9_of_a_replica_running_a_job_loses_no_acknowledged_write(
    redis_server: RedisServer,
) -> None:
    lease = ("--job-lease-seconds", str(LEASE_S))
    with replicas(2, redis_store_url(redis_server), *lease) as servers:
        doomed, survivor = servers
        async with AsyncExitStack() as stack:
            a, b = await stubs(stack, servers)
            sid = await setup(a, latency_ms=5_000)  # a job that runs for a long while
            await a.RegisterVariable(
                pb.RegisterVariableRequest(
                    session_id=sid, name="n", type=vpb.VARIABLE_TYPE_INTEGER, initial_value=iv(0)
                )
            )
            job = (await a.StartOptimization(start_request(sid, "BootstrapFewShot"))).job
            job_watch = b.WatchOptimization(
                pb.WatchOptimizationRequest(session_id=sid, job_id=job.job_id)
            )
            async for update in _reads(job_watch):  # snapshots read from Redis by the other replica
                if update.job.status == job_pb2.JOB_STATUS_RUNNING:
                    break

            # A watcher on the doomed replica; it keeps the token of each event it gets.
            watch = a.WatchVariables(pb.WatchVariablesRequest(session_id=sid, include_initial=True))
            token = (await watch.read()).resume_token
            acknowledged: list[int] = []  # values whose writes were answered OK
            progress = _Progress()

            async def write_on(stub: Stub, start: int) -> None:
                value = start
                while True:
                    try:
                        await stub.UpdateVariable(
                            pb.UpdateVariableRequest(session_id=sid, name="n", value=iv(value))
                        )
                    except grpc.aio.AioRpcError:
                        return  # its replica is gone
                    acknowledged.append(value)
                    progress.reached(len(acknowledged))
                    value += 2

            writing = [asyncio.create_task(write_on(a, 1)), asyncio.create_task(write_on(b, 2))]
            await asyncio.wait_for(progress.wait_for(20), 60)
            async for event in _reads(watch):  # the watcher follows along until the kill
                token = event.resume_token
                if event.change.variable.version >= 10:
                    break
            doomed.kill()
            killed_at = time.monotonic()
            await asyncio.wait_for(writing[0], 30)  # the doomed replica's writer stops
            # Writes go on through the survivor.
            await asyncio.wait_for(progress.wait_for(len(acknowledged) + 20), 60)
            assert not writing[1].done(), writing[1]
            writing[1].cancel()

            # The job: INTERRUPTED by the survivor within the lease bound (4/3 lease + slack).
            async for update in _reads(job_watch):
                if update.job.status in TERMINAL:
                    assert update.job.status == job_pb2.JOB_STATUS_INTERRUPTED
                    break
            interrupted_after = time.monotonic() - killed_at
            assert interrupted_after < LEASE_S * 4 / 3 + 3.0, interrupted_after

            # Every acknowledged write is in the history; the watch resumed on the survivor with
            # its token sees every version after it, in order, without include_initial.
            history = await b.GetVariableHistory(
                pb.GetVariableHistoryRequest(session_id=sid, name="n")
            )
            stored = {h.value.int_value for h in history.entries}
            assert set(acknowledged) <= stored
            last = max(h.version for h in history.entries)
            resumed = b.WatchVariables(pb.WatchVariablesRequest(session_id=sid, resume_token=token))
            versions = []
            async for event in _reads(resumed):
                assert event.WhichOneof("event") == "change", event
                versions.append(event.change.variable.version)
                if event.change.variable.version == last:
                    break
            assert versions == list(range(versions[0], last + 1))
            assert versions[0] <= min(
                h.version for h in history.entries if h.value.int_value in acknowledged[-20:]
            )
            resumed.cancel()
            job_watch.cancel()
        assert survivor.proc.poll() is None


async def test_a_deleted_session_made_anew_by_another_caller_is_not_found_across_replicas(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("ana ana-token\nbo bo-token\n")
    ana = (("authorization", "Bearer ana-token"),)
    bo = (("authorization", "Bearer bo-token"),)
    url = redis_store_url(redis_server)
    with replicas(2, url, "--auth-tokens-file", str(tokens)) as servers:
        async with AsyncExitStack() as stack:
            a, b = await stubs(stack, servers)
            request = pb.GetSessionRequest(session_id="shared-id")
            await a.CreateSession(pb.CreateSessionRequest(session_id="shared-id"), metadata=ana)
            assert (await b.GetSession(request, metadata=ana)).session.session_id == "shared-id"
            await a.DeleteSession(pb.DeleteSessionRequest(session_id="shared-id"), metadata=ana)
            # Delete on A: NOT_FOUND on B at once.
            await expect_error(
                b.GetSession(request, metadata=ana), grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND"
            )
            await a.CreateSession(pb.CreateSessionRequest(session_id="shared-id"), metadata=bo)
            # Ana, through B (which saw the id as hers), must not reach Bo's new session.
            await expect_error(
                b.GetSession(request, metadata=ana), grpc.StatusCode.NOT_FOUND, "SESSION_NOT_FOUND"
            )
            await expect_error(
                b.RegisterVariable(
                    pb.RegisterVariableRequest(
                        session_id="shared-id",
                        name="x",
                        type=vpb.VARIABLE_TYPE_INTEGER,
                        initial_value=iv(1),
                    ),
                    metadata=ana,
                ),
                grpc.StatusCode.NOT_FOUND,
                "SESSION_NOT_FOUND",
            )
            assert (await b.GetSession(request, metadata=bo)).session.session_id == "shared-id"


async def test_redis_killed_and_restarted_under_load_is_only_unavailable_then_recovers(
    tmp_path: Path,
) -> None:
    """Redis dies (kill -9) under load and comes back on the same port and data: calls fail
    only UNAVAILABLE `STORE_UNAVAILABLE` meanwhile, the sidecars recover by themselves, no
    acknowledged write is lost (AOF, appendfsync always), and a watcher resumes with its token
    on the other replica and misses nothing."""
    redis = RedisServer(tmp_path / "redis")
    redis.start()
    try:
        with replicas(2, f"{redis.url}?key_prefix=restart") as servers:
            async with AsyncExitStack() as stack:
                a, b = await stubs(stack, servers)
                sid = await _counter(a)
                watch = a.WatchVariables(
                    pb.WatchVariablesRequest(session_id=sid, include_initial=True)
                )
                token = (await watch.read()).resume_token
                acknowledged: list[int] = []
                failures: list[tuple[grpc.StatusCode, str]] = []
                progress = _Progress()
                stop = asyncio.Event()

                async def write_on(stub: Stub, start: int) -> None:
                    value = start
                    while not stop.is_set():
                        try:
                            await stub.UpdateVariable(
                                pb.UpdateVariableRequest(session_id=sid, name="n", value=iv(value))
                            )
                        except grpc.aio.AioRpcError as err:
                            rich = rich_error(err)
                            failures.append((rich.code, rich.reason))
                            down.set()
                            continue
                        acknowledged.append(value)
                        progress.reached(len(acknowledged))
                        value += 2

                down = asyncio.Event()
                writing = [
                    asyncio.create_task(write_on(a, 1)),
                    asyncio.create_task(write_on(b, 2)),
                ]
                await asyncio.wait_for(progress.wait_for(20), 60)
                watch_failed: list[grpc.StatusCode] = []

                async def follow() -> None:
                    nonlocal token
                    try:
                        async for event in _reads(watch):
                            token = event.resume_token
                    except grpc.aio.AioRpcError as err:
                        watch_failed.append(err.code())

                following = asyncio.create_task(follow())
                redis.kill()
                await asyncio.wait_for(down.wait(), 30)  # the writers see Redis gone
                await asyncio.wait_for(following, 30)  # and so does the watcher
                assert watch_failed == [grpc.StatusCode.UNAVAILABLE]
                redis.start()
                # The sidecars recover by themselves: writes succeed again through both.
                await asyncio.wait_for(progress.wait_for(len(acknowledged) + 40), 60)
                stop.set()
                await asyncio.wait_for(asyncio.gather(*writing), 30)
                assert failures, "the writers never saw Redis down"
                assert set(failures) == {(grpc.StatusCode.UNAVAILABLE, "STORE_UNAVAILABLE")}
                history = await b.GetVariableHistory(
                    pb.GetVariableHistoryRequest(session_id=sid, name="n")
                )
                stored = {h.value.int_value for h in history.entries}
                assert set(acknowledged) <= stored  # nothing acknowledged was lost
                last = max(h.version for h in history.entries)
                resumed = b.WatchVariables(
                    pb.WatchVariablesRequest(session_id=sid, resume_token=token)
                )
                versions = []
                async for event in _reads(resumed):
                    assert event.WhichOneof("event") == "change", event
                    versions.append(event.change.variable.version)
                    if event.change.variable.version == last:
                        break
                assert versions == list(range(versions[0], last + 1))
                resumed.cancel()
    finally:
        redis.kill()


async def test_a_restarting_replica_leaves_another_replicas_running_job_alone(
    redis_server: RedisServer,
) -> None:
    url = redis_store_url(redis_server)
    # Nothing here waits for a lease to lapse, so a long one: with LEASE_S a loaded machine can
    # starve the runner's renewals (every lease/3) past the lease, and the starting replica then
    # rightly marks the job INTERRUPTED.
    lease = ("--job-lease-seconds", "30")
    with replicas(2, url, *lease) as servers:
        runner, restarting = servers
        async with AsyncExitStack() as stack:
            (a,) = await stubs(stack, [runner])
            sid = await setup(a, latency_ms=5_000)
            job = (await a.StartOptimization(start_request(sid, "BootstrapFewShot"))).job
            watch = a.WatchOptimization(
                pb.WatchOptimizationRequest(session_id=sid, job_id=job.job_id)
            )
            async for update in _reads(watch):
                if update.job.status == job_pb2.JOB_STATUS_RUNNING:
                    break
            assert restarting.terminate() == 0
            # A new server on the same store: at start it marks INTERRUPTED only the jobs whose
            # lease lapsed, so the job running on the live replica stays RUNNING.
            with replicas(1, url, *lease) as (again,):
                (b,) = await stubs(stack, [again])
                request = pb.GetOptimizationRequest(session_id=sid, job_id=job.job_id)
                assert (await b.GetOptimization(request)).job.status == job_pb2.JOB_STATUS_RUNNING
                cancelled = await b.CancelOptimization(
                    pb.CancelOptimizationRequest(session_id=sid, job_id=job.job_id)
                )
                assert cancelled.job.status == job_pb2.JOB_STATUS_CANCELLED
            watch.cancel()
