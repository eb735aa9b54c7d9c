"""Typed Python client for the dspy-bridge gRPC sidecar (sync and asyncio). Does not need DSPy.

::

    from dspy_bridge_client import BridgeClient

    with BridgeClient("127.0.0.1:50051") as client:
        session = client.create_session()
        session.configure_lm("offline")
        session.register_variable("temperature", "float", 0.7, min=0.0, max=1.0)
        session.create_module(
            "Predict", "question -> answer", module_id="qa", bindings={"temperature": "temperature"}
        )
        result = session.execute("qa", question="What is 2 + 2?")
        print(result["answer"], result.variables_used["temperature"].version)

The asyncio twin is `AsyncBridgeClient` (also `dspy_bridge_client.aio.BridgeClient`). Failed
calls raise `BridgeError` subclasses (`dspy_bridge_client.errors`).
"""

from __future__ import annotations

from dspy_bridge_client._streams import AsyncExecutionStream, AsyncStream, ExecutionStream, Stream
from dspy_bridge_client.aio import AsyncBridgeClient, AsyncSessionHandle
from dspy_bridge_client.client import DEFAULT_TARGET, BridgeClient, SessionHandle
from dspy_bridge_client.errors import (
    AlreadyExistsError,
    BridgeError,
    CancelledError,
    DeadlineExceededError,
    FailedPreconditionError,
    FieldViolation,
    InternalError,
    InvalidArgumentError,
    NotFoundError,
    PermissionDeniedError,
    ResourceExhaustedError,
    UnauthenticatedError,
    UnavailableError,
    UnimplementedError,
    VersionConflictError,
    from_rpc_error,
    from_status,
)
from dspy_bridge_client.host import AsyncHostServer, HostCallContext, HostServer
from dspy_bridge_client.jobs import (
    ApplyResult,
    Job,
    JobProgress,
    JobStatus,
    ModuleVersionResult,
    Trial,
    VariableSearchResult,
)
from dspy_bridge_client.limits import (
    HostCallLimits,
    JobLimits,
    LMAllowLists,
    RequestLimits,
    ServerLimits,
)
from dspy_bridge_client.search import search_spec
from dspy_bridge_client.types import (
    BatchResult,
    BatchResults,
    Constraints,
    Evaluation,
    EvaluationResult,
    ExecuteResult,
    ExecutionStatus,
    FieldRole,
    HistoryEntry,
    LMCallTrace,
    LMConfig,
    Module,
    OutputChunk,
    PingResult,
    PoolInfo,
    ServerInfo,
    Session,
    SessionEnded,
    Signature,
    SignatureField,
    StreamEvent,
    Usage,
    Variable,
    VariableChange,
    VariableChangeKind,
    VariableType,
    VariableUsage,
    WatchEvent,
    WatchResync,
    WriteResult,
)
from dspy_bridge_client.values import Json, Tensor, from_value, to_value

__version__ = "0.1.0"
"""The version of this client package."""

__all__ = [
    "DEFAULT_TARGET",
    "AlreadyExistsError",
    "ApplyResult",
    "AsyncBridgeClient",
    "AsyncExecutionStream",
    "AsyncHostServer",
    "AsyncSessionHandle",
    "AsyncStream",
    "BatchResult",
    "BatchResults",
    "BridgeClient",
    "BridgeError",
    "CancelledError",
    "Constraints",
    "DeadlineExceededError",
    "Evaluation",
    "EvaluationResult",
    "ExecuteResult",
    "ExecutionStatus",
    "ExecutionStream",
    "FailedPreconditionError",
    "FieldRole",
    "FieldViolation",
    "HistoryEntry",
    "HostCallContext",
    "HostCallLimits",
    "HostServer",
    "InternalError",
    "InvalidArgumentError",
    "Job",
    "JobLimits",
    "JobProgress",
    "JobStatus",
    "Json",
    "LMAllowLists",
    "LMCallTrace",
    "LMConfig",
    "Module",
    "ModuleVersionResult",
    "NotFoundError",
    "OutputChunk",
    "PermissionDeniedError",
    "PingResult",
    "PoolInfo",
    "RequestLimits",
    "ResourceExhaustedError",
    "ServerInfo",
    "ServerLimits",
    "Session",
    "SessionEnded",
    "SessionHandle",
    "Signature",
    "SignatureField",
    "Stream",
    "StreamEvent",
    "Tensor",
    "Trial",
    "UnauthenticatedError",
    "UnavailableError",
    "UnimplementedError",
    "Usage",
    "Variable",
    "VariableChange",
    "VariableChangeKind",
    "VariableSearchResult",
    "VariableType",
    "VariableUsage",
    "VersionConflictError",
    "WatchEvent",
    "WatchResync",
    "WriteResult",
    "__version__",
    "from_rpc_error",
    "from_status",
    "from_value",
    "search_spec",
    "to_value",
]
