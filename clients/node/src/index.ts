// @dspy-bridge/client — typed Node.js client for the dspy-bridge gRPC sidecar.
export { BridgeClient, BridgeStream, DEFAULT_TARGET, ExecutionStream, SessionHandle } from "./client";
export type { BatchWrite, BridgeClientOptions, CreateModuleOptions, ExecuteOptions, UpdateOptions } from "./client";
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
  Evaluation,
  EvaluationResult,
  Example,
  ExecuteResult,
  ExecuteStreamEvent,
  HistoryEntry,
  LMCallTrace,
  LMConfig,
  Module,
  PingResult,
  ServerInfo,
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
export { Float64, Int64, Json, Tensor, float64, int64, json } from "./values";
export type { BridgeValue, JsonValue, ValueInput } from "./values";
export { protoDir } from "./proto";
