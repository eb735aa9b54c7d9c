// @dspy-bridge/client — typed Node.js client for the dspy-bridge gRPC sidecar.
export { BridgeClient, BridgeStream, DEFAULT_TARGET, EvaluationStream, ExecutionStream, SessionHandle } from "./client";
export type {
  BatchWrite,
  BridgeClientOptions,
  CreateModuleOptions,
  EvaluateOptions,
  ExecuteOptions,
  StartOptimizationOptions,
  UpdateOptions,
} from "./client";
export {
  AlreadyExistsError,
  BridgeError,
  CancelledError,
  DeadlineExceededError,
  FailedPreconditionError,
  InternalError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
  UnimplementedError,
  VersionConflictError,
} from "./errors";
export type { BridgeErrorOptions, FieldViolation, StatusCodeName } from "./errors";
export { VARIABLE_TYPES } from "./types";
export type {
  BatchItemResult,
  BatchResult,
  Constraints,
  EvaluateStreamEvent,
  Evaluation,
  EvaluationResult,
  Example,
  ExecuteResult,
  ExecuteStreamEvent,
  HistoryEntry,
  HostCallLimits,
  JobLimits,
  LMAllowLists,
  LMCallTrace,
  LMConfig,
  Module,
  PingResult,
  RequestLimits,
  ServerInfo,
  ServerLimits,
  Session,
  Signature,
  SignatureField,
  Usage,
  Variable,
  VariableType,
  VariableUsage,
  WatchEvent,
  WriteResult,
} from "./types";
// Optimization jobs and VariableSearch specs.
export { TERMINAL_JOB_STATUSES } from "./jobs";
export type { ApplyResult, Job, JobProgress, JobStatus, ModuleVersionResult, Trial, TrialState, VariableSearchResult } from "./jobs";
export type { SearchRange, VariableSearchSpec } from "./search";
export { Float64, Int64, Json, Tensor, float64, int64, json } from "./values";
export type { BridgeValue, JsonValue, ValueInput } from "./values";
export { protoDir } from "./proto";
// Host callbacks (SessionHandle.serve).
export { HostServer } from "./host";
export type {
  HostCallContext,
  HostToolCallContext,
  HostLMCompletion,
  HostLMFn,
  HostLMRequest,
  HostMetric,
  HostMetricFn,
  HostMetricInput,
  HostMetricScore,
  HostTool,
  HostToolFn,
  HostWelcome,
  JsonSchema,
  ReconnectOptions,
  ServeOptions,
} from "./host";
