"""`BridgeService` over gRPC: protos in, service calls, protos out. No behaviour lives here."""

from __future__ import annotations

import functools
import platform
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from grpc.aio import ServicerContext

from dspy_bridge import __version__
from dspy_bridge.config import Settings
from dspy_bridge.errors import BridgeError
from dspy_bridge.model import Variable, VariableType
from dspy_bridge.services import paging
from dspy_bridge.services.modules import ModuleService
from dspy_bridge.services.offload import convert_sized, off_loop
from dspy_bridge.services.sessions import SessionService
from dspy_bridge.services.variables import Resync, SessionGone, VariableService, WriteRequest
from dspy_bridge.services.watch import Change
from dspy_bridge.transport import convert
from dspy_bridge.transport.auth import CALLER
from dspy_bridge.transport.connect_rpc import ConnectRpcs
from dspy_bridge.transport.eval_rpcs import EvaluateRpcs
from dspy_bridge.transport.job_rpcs import JobRpcs
from dspy_bridge.transport.module_rpcs import ModuleRpcs
from dspy_bridge.transport.server_limits import server_limits
from dspy_bridge.transport.status import ok_status, to_status_proto
from dspy_bridge.transport.stream_headers import send_headers, sends_headers_when_ready
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2 as pb
from dspy_bridge_client._proto.dspy_bridge.v1 import bridge_service_pb2_grpc as pb_grpc
from dspy_bridge_client._proto.dspy_bridge.v1 import variable_pb2

Ctx: TypeAlias = ServicerContext[Any, Any]


@dataclass
class ServerFacts:
    """What GetServerInfo reports beyond settings; filled in by whoever owns each part."""

    store_backend: str
    dspy_version: str = ""
    module_types: list[str] = field(default_factory=list)
    optimizers: list[str] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    start_time: float = field(default_factory=time.time)
    pool_info: Callable[[], pb.PoolInfo] = lambda: pb.PoolInfo()


def _variables_to_proto(variables: list[Variable]) -> list[variable_pb2.Variable]:
    return [convert.variable_to_proto(v) for v in variables]


def _expected(request: Any) -> int | None:
    return request.expected_version if request.HasField("expected_version") else None


class BridgeServicer(ModuleRpcs, EvaluateRpcs, JobRpcs, ConnectRpcs, pb_grpc.BridgeServiceServicer):
    """All RPCs; module and execution RPCs come from `ModuleRpcs`."""

    def __init__(
        self,
        settings: Settings,
        facts: ServerFacts,
        sessions: SessionService,
        variables: VariableService,
        modules: ModuleService,
    ) -> None:
        self.settings = settings
        self.page_bytes = paging.page_bytes(settings.max_message_bytes)
        self.facts = facts
        self.sessions = sessions
        self.variables = variables
        self.modules = modules

    # -- server -----------------------------------------------------------------------------

    async def Ping(self, request: pb.PingRequest, context: Ctx) -> pb.PingResponse:
        return pb.PingResponse(
            message=request.message,
            server_time=convert.timestamp_from_seconds(time.time()),
            version=__version__,
        )

    async def GetServerInfo(
        self, request: pb.GetServerInfoRequest, context: Ctx
    ) -> pb.GetServerInfoResponse:
        s = self.settings
        return pb.GetServerInfoResponse(
            bridge_version=__version__,
            dspy_version=self.facts.dspy_version,
            python_version=platform.python_version(),
            module_types=self.facts.module_types,
            optimizers=self.facts.optimizers,
            metrics=self.facts.metrics,
            variable_types=[variable_pb2.VariableType.ValueType(t.value) for t in VariableType],
            store_backend=self.facts.store_backend,
            pool=self.facts.pool_info(),
            limits=server_limits(s),
            default_lm_model=s.default_lm_model(),
            start_time=convert.timestamp_from_seconds(self.facts.start_time),
        )

    # -- sessions ---------------------------------------------------------------------------

    async def CreateSession(
        self, request: pb.CreateSessionRequest, context: Ctx
    ) -> pb.CreateSessionResponse:
        session = await self.sessions.create(
            request.session_id, dict(request.metadata), request.ttl_seconds, CALLER.get() or ""
        )
        return pb.CreateSessionResponse(session=convert.session_to_proto(session))

    async def GetSession(
        self, request: pb.GetSessionRequest, context: Ctx
    ) -> pb.GetSessionResponse:
        session = await self.sessions.get(request.session_id)
        return pb.GetSessionResponse(session=convert.session_to_proto(session))

    async def ListSessions(
        self, request: pb.ListSessionsRequest, context: Ctx
    ) -> pb.ListSessionsResponse:
        page = await self.sessions.list_page(
            request.page_size, request.page_token, owner=CALLER.get()
        )
        sessions = paging.fit(page.items, convert.session_to_proto, self.page_bytes)
        return pb.ListSessionsResponse(
            sessions=sessions, next_page_token=page.token_after(len(sessions))
        )

    async def DeleteSession(
        self, request: pb.DeleteSessionRequest, context: Ctx
    ) -> pb.DeleteSessionResponse:
        await self.sessions.delete(request.session_id)
        return pb.DeleteSessionResponse()

    async def Heartbeat(self, request: pb.HeartbeatRequest, context: Ctx) -> pb.HeartbeatResponse:
        session = await self.sessions.heartbeat(request.session_id)
        return pb.HeartbeatResponse(session=convert.session_to_proto(session))

    async def ConfigureLM(
        self, request: pb.ConfigureLMRequest, context: Ctx
    ) -> pb.ConfigureLMResponse:
        lm = convert.lm_from_proto(request.lm) if request.HasField("lm") else None
        session = await self.sessions.configure_lm(request.session_id, lm)
        return pb.ConfigureLMResponse(session=convert.session_to_proto(session))

    # -- variables --------------------------------------------------------------------------

    async def RegisterVariable(
        self, request: pb.RegisterVariableRequest, context: Ctx
    ) -> pb.RegisterVariableResponse:
        initial = await convert_sized(
            request.ByteSize(), lambda: convert.value_from_proto(request.initial_value)
        )
        variable = await self.variables.register(
            request.session_id,
            request.name,
            convert.variable_type_from_proto(request.type),
            initial,
            convert.constraints_from_proto(request.constraints),
            request.description,
            dict(request.metadata),
        )
        return pb.RegisterVariableResponse(variable=convert.variable_to_proto(variable))

    async def GetVariable(
        self, request: pb.GetVariableRequest, context: Ctx
    ) -> pb.GetVariableResponse:
        variable = await self.variables.get(request.session_id, request.name)
        return pb.GetVariableResponse(variable=convert.variable_to_proto(variable))

    async def ListVariables(
        self, request: pb.ListVariablesRequest, context: Ctx
    ) -> pb.ListVariablesResponse:
        matching = await self.variables.list_matching(request.session_id, request.pattern)
        page = paging.page_of("v", matching, request.page_token, request.page_size)
        variables = await off_loop(
            lambda: paging.fit(page.items, convert.variable_to_proto, self.page_bytes)
        )
        return pb.ListVariablesResponse(
            variables=variables, next_page_token=page.token_after(len(variables))
        )

    async def DeleteVariable(
        self, request: pb.DeleteVariableRequest, context: Ctx
    ) -> pb.DeleteVariableResponse:
        await self.variables.delete(request.session_id, request.name)
        return pb.DeleteVariableResponse()

    async def UpdateVariable(
        self, request: pb.UpdateVariableRequest, context: Ctx
    ) -> pb.UpdateVariableResponse:
        value = await convert_sized(
            request.ByteSize(), lambda: convert.value_from_proto(request.value)
        )
        write = WriteRequest(request.name, value, _expected(request))
        variable = await self.variables.update(
            request.session_id, write, request.source, request.reason
        )
        return pb.UpdateVariableResponse(variable=convert.variable_to_proto(variable))

    async def BatchUpdateVariables(
        self, request: pb.BatchUpdateVariablesRequest, context: Ctx
    ) -> pb.BatchUpdateVariablesResponse:
        writes = await convert_sized(
            request.ByteSize(),
            lambda: [
                WriteRequest(w.name, convert.value_from_proto(w.value), _expected(w))
                for w in request.writes
            ],
        )
        outcomes = await self.variables.batch_update(
            request.session_id,
            writes,
            atomic=request.atomic,
            source=request.source,
            reason=request.reason,
        )
        results = [
            pb.VariableWriteResult(error=to_status_proto(o))
            if isinstance(o, BridgeError)
            else pb.VariableWriteResult(variable=convert.variable_to_proto(o), error=ok_status())
            for o in outcomes
        ]
        return pb.BatchUpdateVariablesResponse(results=results)

    @sends_headers_when_ready
    async def WatchVariables(
        self, request: pb.WatchVariablesRequest, context: Ctx
    ) -> AsyncIterator[pb.WatchVariablesResponse]:
        events = await self.variables.watch(
            request.session_id,
            list(request.names),
            request.include_initial,
            resume_token=request.resume_token,
        )
        try:
            # Subscribed: from here on no change can be missed, so the client may be told.
            await send_headers(context)
            async for event in events:
                if isinstance(event, Change):
                    yield pb.WatchVariablesResponse(
                        change=variable_pb2.VariableChange(
                            kind=variable_pb2.VariableChangeKind.ValueType(event.kind.value),
                            variable=convert.variable_to_proto(event.variable),
                            reason=event.reason,
                        ),
                        resume_token=event.position.token if event.position else "",
                    )
                elif isinstance(event, Resync):
                    # In parts when the state is larger than one message (`more` on all but the
                    # last); only the last carries the resume token (resuming mid-state loses it).
                    state = await off_loop(functools.partial(_variables_to_proto, event.variables))
                    pieces = paging.parts(state, self.page_bytes)
                    token = event.position.token if event.position else ""
                    for i, piece in enumerate(pieces):
                        last = i == len(pieces) - 1
                        yield pb.WatchVariablesResponse(
                            resync=pb.WatchResync(
                                variables=piece, skipped_changes=event.skipped, more=not last
                            ),
                            resume_token=token if last else "",
                        )
                elif isinstance(event, SessionGone):
                    yield pb.WatchVariablesResponse(
                        session_ended=pb.SessionEnded(reason=event.reason)
                    )
        finally:
            await events.aclose()

    async def GetVariableHistory(
        self, request: pb.GetVariableHistoryRequest, context: Ctx
    ) -> pb.GetVariableHistoryResponse:
        variable = await self.variables.get(request.session_id, request.name)
        kept = await self.variables.history(request.session_id, request.name, 0)
        page = paging.page_of("h", kept, request.page_token, request.limit)
        entries = await off_loop(
            lambda: paging.fit(
                page.items,
                lambda e: convert.history_entry_to_proto(variable.type, e),
                self.page_bytes,
            )
        )
        return pb.GetVariableHistoryResponse(
            entries=entries, next_page_token=page.token_after(len(entries))
        )

    async def RollbackVariable(
        self, request: pb.RollbackVariableRequest, context: Ctx
    ) -> pb.RollbackVariableResponse:
        variable = await self.variables.rollback(
            request.session_id,
            request.name,
            request.target_version,
            _expected(request),
            request.source,
            request.reason,
        )
        return pb.RollbackVariableResponse(variable=convert.variable_to_proto(variable))
