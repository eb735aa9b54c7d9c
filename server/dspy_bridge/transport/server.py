"""Assembles the sidecar — store, services, servicer, health, reflection — and runs it."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import cast

import dspy
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1._async import HealthServicer
from grpc_reflection.v1alpha import reflection

from dspy_bridge.config import Settings, setting_label
from dspy_bridge.errors import BridgeError, StartupError
from dspy_bridge.heap import settle_heap, young_threshold
from dspy_bridge.jobs.manager import JobManager
from dspy_bridge.jobs.metrics import METRIC_NAMES
from dspy_bridge.jobs.service import OptimizationService
from dspy_bridge.jobs.variable_search import KIND_NAME, VariableSearchKind
from dspy_bridge.log import get_logger
from dspy_bridge.observability import report_live_state, serve_metrics
from dspy_bridge.pool import PoolConfig, WorkerPool
from dspy_bridge.runtime import registry
from dspy_bridge.runtime.executor import Executor, InProcessExecutor
from dspy_bridge.services.host_hub import HostHub
from dspy_bridge.services.modules import ModuleService
from dspy_bridge.services.sessions import SessionService
from dspy_bridge.services.shared_watch import RedisWatchHub
from dspy_bridge.services.variables import VariableService
from dspy_bridge.services.watch import WatchHub
from dspy_bridge.store import RedisStore, SessionStore, open_store
from dspy_bridge.store.budget import with_session_budget
from dspy_bridge.transport import tls
from dspy_bridge.transport.auth import Authenticator
from dspy_bridge.transport.decode import add_service
from dspy_bridge.transport.instrument import instrumented
from dspy_bridge.transport.quiet_bind import core_stderr_held
from dspy_bridge.transport.request_limits import RequestLimits
from dspy_bridge.transport.servicer import BridgeServicer, ServerFacts
from dspy_bridge.transport.stdin_close import watch_stdin_close
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc

log = get_logger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["BridgeService"].full_name


@dataclass
class RunningServer:
    """A started server and what it owns; `stop()` drains and releases everything."""

    settings: Settings
    server: grpc.aio.Server
    health: HealthServicer
    hub: WatchHub
    executor: Executor
    store: SessionStore
    port: int
    background: list[asyncio.Task[None]]
    stop_metrics: Callable[[], None] | None = None
    #: Optimization jobs: their processes are stopped (jobs INTERRUPTED) before the store closes.
    jobs: JobManager | None = None
    #: Takes this server's live gauges out of the metrics registry.
    stop_gauges: Callable[[], None] | None = None
    #: Host callbacks (Connect streams): ended first on stop, so they do not hold the drain.
    hosts: HostHub | None = None

    @property
    def target(self) -> str:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::", "") else self.settings.host
        return f"{host}:{self.port}"

    async def stop(self, grace: float | None = None) -> None:
        """Stops intake, lets in-flight calls finish up to `grace` seconds, closes the store."""
        await self.health.enter_graceful_shutdown()
        if self.stop_gauges is not None:
            self.stop_gauges()
        self.hub.shutdown()
        if self.hosts is not None:
            self.hosts.close()
        await self.server.stop(self.settings.grace_seconds if grace is None else grace)
        if self.jobs is not None:
            await self.jobs.close()
        await self.executor.close()
        for task in self.background:
            task.cancel()
        for task in self.background:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.store.close()
        if self.stop_metrics is not None:
            self.stop_metrics()
        log.info("stopped")


async def build_executor(settings: Settings, hosts: HostHub | None = None) -> Executor:
    """`--workers 0`: execution in this process; otherwise a started worker pool. `hosts`
    answers the `host:` calls executions make."""
    if settings.workers == 0:
        return InProcessExecutor(host=hosts)
    pool = WorkerPool(
        PoolConfig(
            workers=settings.workers,
            concurrency=settings.worker_concurrency,
            queue_size=settings.worker_queue_size,
            max_requests=settings.worker_max_requests,
            max_rss_mb=settings.worker_max_rss_mb,
            backoff_seconds=settings.worker_restart_backoff_seconds,
            backoff_max_seconds=settings.worker_restart_backoff_max_seconds,
            start_timeout_seconds=settings.worker_start_timeout_seconds,
            grace_seconds=settings.grace_seconds,
            log_level=settings.log_level,
            log_format=settings.log_format,
            event_loop=settings.event_loop,
            gc_young_threshold=settings.gc_young_threshold,
        ),
        host=hosts,
    )
    await pool.start()
    return pool


async def _live_state(
    store: SessionStore, executor: Executor, jobs: JobManager
) -> dict[str, float]:
    """The values of the live gauges (see `observability.LiveState`)."""
    stats = executor.stats()
    job_counts = jobs.counts()
    return {
        "dspy_bridge_sessions": await store.count_sessions(),
        "dspy_bridge_jobs:running": job_counts["running"],
        "dspy_bridge_jobs:queued": job_counts["queued"],
        "dspy_bridge_executions_in_flight": stats.get("in_flight", 0),
        "dspy_bridge_workers_alive": stats.get("workers_alive", 0),
        "dspy_bridge_job_watchers": job_counts["watchers"],
    }


def pool_info(settings: Settings, executor: Executor) -> pb.PoolInfo:
    stats = executor.stats()
    return pb.PoolInfo(
        workers=settings.workers,
        workers_alive=stats.get("workers_alive", 0),
        restarts=stats.get("restarts", 0),
        queue_depth=stats.get("queue_depth", 0),
        in_flight=stats.get("in_flight", 0),
    )


def _bound_server(settings: Settings) -> tuple[grpc.aio.Server, int]:
    """A gRPC server listening (not yet serving) on the configured address, plaintext or TLS.
    Raises `StartupError` when the TLS files cannot be used or the address cannot be bound."""
    credentials = tls.server_credentials(settings)
    options = [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.so_reuseport", 0),
    ]
    server = grpc.aio.server(
        options=options,
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs or None,
    )
    address = f"{settings.host}:{settings.port}"
    try:
        with core_stderr_held():  # gRPC's own "Failed to add port" line: the error below says it
            if credentials is None:
                return server, server.add_insecure_port(address)
            return server, server.add_secure_port(address, credentials)
    except RuntimeError:  # grpc says only "Failed to bind to address"
        raise StartupError(
            f"{setting_label('port')}: cannot listen on {address}: the port is in use or the "
            f"host is not an address of this machine ({setting_label('host')})"
        ) from None


def _metrics_endpoint(settings: Settings) -> Callable[[], None] | None:
    """The /metrics endpoint started (its stop function), or None when it is off. Raises
    `StartupError` when its port cannot be bound."""
    if not settings.metrics_port:
        return None
    try:
        return serve_metrics(settings.metrics_port, settings.host)
    except OSError as exc:
        raise StartupError(
            f"{setting_label('metrics_port')}: cannot listen on "
            f"{settings.host}:{settings.metrics_port}: {exc.strerror or exc}"
        ) from None


async def _opened_store(settings: Settings) -> SessionStore:
    """The configured store, opened; a URL that cannot be used raises `StartupError`."""
    try:
        return await open_store(
            settings.store,
            history_limit=settings.history_limit,
            stream_length=settings.store_stream_length,
            lease_seconds=settings.job_lease_seconds,
        )
    except (ValueError, OSError, BridgeError) as exc:
        message = exc.message if isinstance(exc, BridgeError) else str(exc)
        raise StartupError(f"{setting_label('store')}: {message}") from None


async def start_server(settings: Settings, *, own_process: bool = False) -> RunningServer:
    """Builds and starts the server; returns once it accepts calls. Raises `StartupError`
    (unusable TLS or token files, a port that cannot be bound, a store that cannot be opened)
    before anything has started: no worker, no job marked INTERRUPTED.

    `own_process`: the server is the whole process (`serve`), so once started its heap is
    settled (`heap.py`) before `serving` is logged; tests run servers inside their own
    process and leave it False."""
    auth = Authenticator.from_settings(settings)
    server, port = _bound_server(settings)
    async with contextlib.AsyncExitStack() as undo:  # what to stop if a later step fails
        undo.push_async_callback(server.stop, 0)
        stop_metrics = _metrics_endpoint(settings)
        if stop_metrics is not None:
            undo.callback(stop_metrics)
        # Every session's bytes are counted and capped (--max-session-bytes), history included:
        # by a shared store next to its data (one count for every replica), else in-process.
        backend = await _opened_store(settings)
        store = with_session_budget(
            backend,
            max_bytes=settings.max_session_bytes,
            history_limit=settings.history_limit,
        )
        undo.push_async_callback(store.close)
        hub = (  # a shared store feeds watchers from Redis: changes made on any replica
            RedisWatchHub(backend, settings.watch_queue_size)
            if isinstance(backend, RedisStore)
            else WatchHub(settings.watch_queue_size)
        )
        sessions = SessionService(store, hub, settings)
        variables = VariableService(store, hub, settings)
        # -- host callbacks over Connect: one hub of host streams for the whole front --------
        hosts = HostHub(settings)
        executor = await build_executor(settings, hosts)
        undo.push_async_callback(executor.close)
        modules = ModuleService(store, executor, settings, hosts=hosts)
        sessions.on_session_gone(modules.session_gone)
        facts = ServerFacts(
            store_backend=store.backend,
            dspy_version=dspy.__version__,
            module_types=registry.module_types(),
            metrics=list(METRIC_NAMES),
            pool_info=lambda: pool_info(settings, executor),
        )
        servicer = BridgeServicer(settings, facts, sessions, variables, modules)
        servicer.hosts = hosts
        sessions.on_session_gone(hosts.session_gone_hook)
        # -- optimization jobs: jobs left running by a previous process are INTERRUPTED -------
        interrupted = await store.mark_running_jobs_interrupted(time.time())
        if interrupted:
            log.warning("jobs interrupted by a restart", jobs=[j.job_id for j in interrupted])
        job_manager = JobManager(
            store,
            max_running=settings.max_running_jobs,
            per_owner_running=settings.max_running_jobs_per_caller,
            per_owner_jobs=settings.max_queued_jobs_per_caller,
            max_seconds=settings.max_job_seconds,
            hosts=hosts,
        )
        servicer.jobs = OptimizationService(
            store, modules, job_manager, max_metric_calls=settings.max_job_metric_calls
        )
        servicer.jobs.register_kind(KIND_NAME, VariableSearchKind(store, variables))
        sessions.on_session_gone(job_manager.session_gone)
        facts.optimizers = servicer.jobs.optimizers()

        service = pb.DESCRIPTOR.services_by_name["BridgeService"]
        # The generated adder only looks the RPC methods up by name: the wrapped namespace fits.
        owner_check = sessions.check_owner if auth is not None and auth.owners else None
        wrapped = cast(
            pb_grpc.BridgeServiceServicer,
            instrumented(servicer, service, auth, owner_check, RequestLimits(settings).check),
        )
        # -- malformed request bytes: deserializers that never raise (transport/decode.py) -----
        add_service(server, service, wrapped)
        health = HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(health, server)
        reflection.enable_server_reflection(
            [
                SERVICE_NAME,
                health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
                reflection.SERVICE_NAME,
            ],
            server,
        )
        await server.start()
        serving = health_pb2.HealthCheckResponse.SERVING
        await health.set("", serving)
        await health.set(SERVICE_NAME, serving)
        background = [asyncio.create_task(sessions.run_expiry(settings.expiry_interval_seconds))]
        if store.shared:  # job leases: renewed here, lapsed ones interrupted by any replica
            background.append(
                asyncio.create_task(job_manager.run_leases(settings.job_lease_seconds))
            )
        # -- metrics: gauges read from the live server at each scrape ------------------------
        stop_gauges = report_live_state(
            asyncio.get_running_loop(), partial(_live_state, store, executor, job_manager)
        )
        undo.callback(stop_gauges)
        running = RunningServer(
            settings, server, health, hub, executor, store, port, background, stop_metrics
        )
        running.jobs = job_manager
        running.stop_gauges = stop_gauges
        running.hosts = hosts
        # `serving` is the last start-up line: a parent may stop reading once it has seen it.
        frozen = settle_heap(settings.gc_young_threshold) if own_process else 0
        log.info(
            "serving",
            host=settings.host,
            port=port,
            metrics_port=settings.metrics_port or None,
            store=store.backend,
            event_loop=type(asyncio.get_running_loop()).__module__.split(".")[0],
            auth="none" if auth is None else ("per-caller" if auth.owners else "shared-token"),
            tls=tls.mode(settings),
            gc_young_threshold=young_threshold(),
            frozen_objects=frozen,
        )
        undo.pop_all()  # started: `running.stop()` owns all of it now
    return running


async def serve(settings: Settings) -> None:
    """Runs until SIGTERM or SIGINT, then drains for `grace_seconds` and exits."""
    running = await start_server(settings, own_process=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # -- exit_on_stdin_close: a parent that died (closing our stdin) stops us like SIGTERM ----
    if settings.exit_on_stdin_close:

        def parent_gone() -> None:
            log.info("stdin_closed")
            stop.set()

        watch_stdin_close(lambda: loop.call_soon_threadsafe(parent_gone))
    await stop.wait()
    log.info("draining", grace_seconds=settings.grace_seconds)
    await running.stop()
