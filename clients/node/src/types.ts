// Typed results: plain JS objects with camelCase fields; the wire shapes stay hidden.
import { BridgeError, fromStatus } from "./errors";
import {
  BridgeValue,
  JsonValue,
  PbStruct,
  PbTimestamp,
  PbValue,
  fromStruct,
  fromValue,
  fromValueMap,
  longToNumber,
  toTimestamp,
  ValueInput,
} from "./values";

/** Variable types, as `registerVariable` takes them (case-insensitive; `VARIABLE_TYPE_FLOAT` works too). */
export type VariableType = "float" | "integer" | "string" | "boolean" | "choice" | "module" | "embedding" | "tensor" | "json";

export const VARIABLE_TYPES: readonly VariableType[] = ["float", "integer", "string", "boolean", "choice", "module", "embedding", "tensor", "json"];

export function variableTypeToProto(type: string): string {
  const short = type.toLowerCase().replace(/^variable_type_/, "");
  const aliases: Record<string, VariableType> = { int: "integer", bool: "boolean", str: "string", double: "float" };
  const name = (aliases[short] ?? short) as VariableType;
  if (!VARIABLE_TYPES.includes(name)) {
    throw new TypeError(`unknown variable type ${JSON.stringify(type)}; one of ${VARIABLE_TYPES.join(", ")}`);
  }
  return `VARIABLE_TYPE_${name.toUpperCase()}`;
}

export function variableTypeFromProto(type: string | number | undefined): VariableType {
  return String(type ?? "").toLowerCase().replace(/^variable_type_/, "") as VariableType;
}

/** Rules a variable's value must satisfy; which apply depends on the type. */
export interface Constraints {
  /** Inclusive bounds (FLOAT, INTEGER). */
  min?: number;
  max?: number;
  /** Grid: the value must be `min + k * step` (FLOAT, INTEGER). */
  step?: number;
  /** Allowed values (CHOICE: required; STRING, MODULE: optional). */
  choices?: string[];
  /** A regular expression the whole string must match (STRING). */
  pattern?: string;
  /** Length in characters (STRING); `maxLength` also bounds serialized JSON. */
  minLength?: number;
  maxLength?: number;
  /** EMBEDDING: the vector length. TENSOR: the shape (0 = any size in that dimension). */
  dims?: number[];
  /** Required TENSOR element type (`float32`, ...). */
  dtype?: string;
}

/** Which language model to call (`model`: a LiteLLM model string or `offline`). */
export interface LMConfig {
  model: string;
  apiBase?: string;
  /** Name of the *server's* environment variable holding the API key. */
  apiKeyEnv?: string;
  /** Provider options, e.g. `{temperature: 0.2, max_tokens: 512}` (sent as strings). */
  options?: Record<string, string | number | boolean>;
}

export interface Session {
  sessionId: string;
  metadata: Record<string, string>;
  /** 0 means it never expires. */
  ttlSeconds: number;
  createTime?: Date;
  /** Unset when it never expires. */
  expireTime?: Date;
  variableCount: number;
  moduleCount: number;
  /** Unset means the server default. */
  lm?: LMConfig;
}

export interface Variable {
  id: string;
  sessionId: string;
  name: string;
  type: VariableType;
  value: BridgeValue;
  constraints: Constraints;
  description: string;
  metadata: Record<string, string>;
  /** Starts at 1 and grows by 1 with every write. */
  version: number;
  createTime?: Date;
  updateTime?: Date;
  /** Who wrote the current version (`host`, `optimizer:<job_id>`, ...). */
  source: string;
}

export interface HistoryEntry {
  version: number;
  value: BridgeValue;
  source: string;
  reason: string;
  updateTime?: Date;
}

/** One event of `SessionHandle.watch`. */
export type WatchEvent =
  | { type: "change"; kind: "initial" | "registered" | "updated" | "deleted"; variable: Variable; reason: string }
  | { type: "resync"; variables: Variable[]; skippedChanges: number }
  | { type: "sessionEnded"; reason: string };

/** The outcome of one write of `batchUpdate`. */
export interface WriteResult {
  name: string;
  ok: boolean;
  /** The variable at its new version (when `ok`). */
  variable?: Variable;
  /** The write's error (when not `ok`); not thrown. */
  error?: BridgeError;
}

export interface SignatureField {
  name: string;
  role: "input" | "output";
  /** DSPy's type notation: `str`, `int`, `list[str]`, ... */
  type: string;
  description: string;
}

/** A DSPy signature; give `text` (DSPy's string form) or `fields`. */
export interface Signature {
  text?: string;
  fields?: SignatureField[];
  instructions?: string;
}

export interface Module {
  moduleId: string;
  sessionId: string;
  moduleType: string;
  signature: Required<Signature>;
  config: { [key: string]: JsonValue };
  /** Module parameter -> variable name. */
  variableBindings: Record<string, string>;
  lm?: LMConfig;
  version: number;
  createTime?: Date;
  updateTime?: Date;
  demoCount: number;
}

export interface Usage {
  lmCalls: number;
  promptTokens: number;
  completionTokens: number;
  costUsd: number;
}

/** The value and version of a variable an execution used (version 0 when overridden). */
export interface VariableUsage {
  value: BridgeValue;
  version: number;
  overridden: boolean;
}

export interface LMCallTrace {
  model: string;
  messages: { [key: string]: JsonValue }[];
  completions: string[];
  options: { [key: string]: JsonValue };
}

export interface ExecuteResult {
  /** Every field of the prediction, `reasoning` included. */
  outputs: Record<string, BridgeValue>;
  /** The exact value and version of every bound variable used, by variable name. */
  variablesUsed: Record<string, VariableUsage>;
  usage: Usage;
  latencyMs: number;
  moduleVersion: number;
  /** The LM calls, when `includeTrace` was set. */
  trace: LMCallTrace[];
}

/** One item of `executeBatch`: outputs, or an error (not thrown). */
export interface BatchItemResult {
  ok: boolean;
  outputs: Record<string, BridgeValue>;
  error?: BridgeError;
  usage: Usage;
  latencyMs: number;
  /** The item's LM calls, when `includeTrace` was set. */
  trace: LMCallTrace[];
}

export interface BatchResult {
  results: BatchItemResult[];
  variablesUsed: Record<string, VariableUsage>;
  usage: Usage;
  latencyMs: number;
  moduleVersion: number;
}

/** One event of `SessionHandle.executeStream`; `result` is always last. */
export type ExecuteStreamEvent =
  | { type: "chunk"; field: string; text: string; last: boolean }
  | { type: "status"; message: string }
  | { type: "result"; result: ExecuteResult };

/** One example of a dataset: inputs, and the expected values of output fields. */
export interface Example {
  inputs: Record<string, ValueInput>;
  labels?: Record<string, ValueInput>;
}

export interface EvaluationResult {
  /** Position of the example in the dataset. */
  index: number;
  ok: boolean;
  outputs: Record<string, BridgeValue>;
  score: number;
  error?: BridgeError;
  latencyMs: number;
}

export interface Evaluation {
  /** Mean score over the dataset (failed examples count as 0). */
  score: number;
  results: EvaluationResult[];
  usage: Usage;
  moduleVersion: number;
  variablesUsed: Record<string, VariableUsage>;
  latencyMs: number;
}

/** One event of `SessionHandle.evaluateStream`; `result` is always last. */
export type EvaluateStreamEvent =
  | { type: "progress"; completed: number; total: number }
  | { type: "result"; evaluation: Evaluation };

export interface PingResult {
  message: string;
  serverTime?: Date;
  version: string;
  /** Round trip measured by the client. */
  latencyMs: number;
}

/** Limits on the fields of a request. */
export interface RequestLimits {
  maxMetadataEntries: number;
  maxMetadataKeyChars: number;
  maxMetadataValueChars: number;
  /** Longest variable or signature field description. */
  maxDescriptionChars: number;
  /** Longest `reason` of a variable write. */
  maxReasonChars: number;
  /** Longest signature text or instructions. */
  maxInstructionsChars: number;
  /** Largest config or options object (module config, optimizer config, metric options), serialized. */
  maxConfigBytes: number;
  /** Most examples in a dataset, trainset or valset. */
  maxDatasetExamples: number;
}

/** Limits on optimization, evaluation and search jobs. */
export interface JobLimits {
  /** Jobs running at once on the sidecar; more wait QUEUED. */
  maxRunningJobs: number;
  /** Job slots one named caller may hold at once; its further jobs wait QUEUED. */
  maxRunningJobsPerCaller: number;
  /** Jobs one caller may have QUEUED or RUNNING; past it `startOptimization` rejects with `ResourceExhaustedError` (`JOB_QUOTA_EXCEEDED`). */
  maxQueuedJobsPerCaller: number;
  /** Wall-clock limit of one job in milliseconds (past it the job fails `JOB_TIMEOUT`); undefined: no limit. */
  maxJobDurationMs?: number;
  /** Largest metric-call budget one optimization may ask for. */
  maxMetricCalls: number;
}

/** Limits on host callbacks (`serve`). */
export interface HostCallLimits {
  /** Most `serve` connections open at once for one session. */
  maxConnectionsPerSession: number;
  /** Most tools + metrics + LMs one `serve` may offer. */
  maxNames: number;
  /** Largest JSON Schema of one tool, in bytes. */
  maxSchemaBytes: number;
  /** Most calls waiting for answers on one connection. */
  maxCallsInFlight: number;
  /** Largest answer to one call, in bytes. */
  maxResultBytes: number;
  /** Deadline of a tool call when the tool sets no `timeoutMs`. */
  defaultToolTimeoutMs: number;
  /** Calls of one tool in flight per connection when the tool sets no `maxConcurrency`. */
  defaultToolMaxConcurrency: number;
  metricTimeoutMs: number;
  lmTimeoutMs: number;
}

/** How much the operator's LM allow-lists admit: counts, never the entries. */
export interface LMAllowLists {
  /** Entries of the api_base allow-list; 0: `configureLm`'s `apiBase` may only name the sidecar's own default endpoint (or none). */
  apiBaseCount: number;
  /** Patterns of the api_key_env allow-list; 0: `apiKeyEnv` may only name the sidecar's own default key variable (or none). */
  keyEnvPatternCount: number;
}

/** The limits a sidecar enforces (`serverInfo().limits`); 0 means unlimited where a field says so. */
export interface ServerLimits {
  /** Most sessions at once; 0 = unlimited. */
  maxSessions: number;
  /** Most variables in one session; 0 = unlimited. */
  maxVariablesPerSession: number;
  /** Largest serialized variable value in bytes; 0 = unlimited. */
  maxValueBytes: number;
  /** Largest gRPC message in bytes. */
  maxMessageBytes: number;
  /** Most RPCs served at once; 0 = unlimited. */
  maxConcurrentRpcs: number;
  /** Per-session byte budget; past it writes reject with `ResourceExhaustedError` (`SESSION_BUDGET_EXCEEDED`). 0 = unlimited. */
  maxSessionBytes: number;
  /** Most live sessions one named caller may own; 0 = unlimited. */
  maxSessionsPerCaller: number;
  /** Idle time after which a session expires when `createSession` gives none; 0 = never. */
  defaultSessionTtlSeconds: number;
  /** Longest `ttlSeconds` `createSession` accepts. */
  maxSessionTtlSeconds: number;
  /** Versions kept per variable in history; 0 = all. */
  maxHistoryVersions: number;
  requests: RequestLimits;
  jobs: JobLimits;
  hostCalls: HostCallLimits;
  lmAllowLists: LMAllowLists;
}

export interface ServerInfo {
  bridgeVersion: string;
  dspyVersion: string;
  pythonVersion: string;
  moduleTypes: string[];
  optimizers: string[];
  metrics: string[];
  variableTypes: VariableType[];
  storeBackend: string;
  pool: { workers: number; workersAlive: number; restarts: number; queueDepth: number; inFlight: number };
  /** The limits the sidecar enforces (0 means unlimited where a field says so). */
  limits: ServerLimits;
  defaultLmModel: string;
  startTime?: Date;
}

// ---- converters (wire objects are proto-loader output with keepCase) -------------------------

// Wire objects are untyped proto-loader output.
type Pb = any;

export function lmFromProto(lm: Pb): LMConfig | undefined {
  if (!lm || !lm.model) return undefined;
  return { model: lm.model, apiBase: lm.api_base ?? "", apiKeyEnv: lm.api_key_env ?? "", options: { ...(lm.options ?? {}) } };
}

export function lmToProto(lm: LMConfig | string): Pb {
  const config = typeof lm === "string" ? { model: lm } : lm;
  const options: Record<string, string> = {};
  for (const [k, v] of Object.entries(config.options ?? {})) options[k] = String(v);
  return { model: config.model, api_base: config.apiBase ?? "", api_key_env: config.apiKeyEnv ?? "", options };
}

export function sessionFromProto(s: Pb): Session {
  return {
    sessionId: s.session_id,
    metadata: { ...(s.metadata ?? {}) },
    ttlSeconds: longToNumber(s.ttl_seconds),
    createTime: toTimestamp(s.create_time as PbTimestamp),
    expireTime: toTimestamp(s.expire_time as PbTimestamp),
    variableCount: s.variable_count ?? 0,
    moduleCount: s.module_count ?? 0,
    lm: lmFromProto(s.lm),
  };
}

export function constraintsToProto(c: Constraints = {}): Pb {
  const out: Pb = {
    choices: c.choices ?? [],
    pattern: c.pattern ?? "",
    dims: (c.dims ?? []).map((d) => String(d)),
    dtype: c.dtype ?? "",
  };
  if (c.min !== undefined) out.min = c.min;
  if (c.max !== undefined) out.max = c.max;
  if (c.step !== undefined) out.step = c.step;
  if (c.minLength !== undefined) out.min_length = String(c.minLength);
  if (c.maxLength !== undefined) out.max_length = String(c.maxLength);
  return out;
}

export function constraintsFromProto(c: Pb): Constraints {
  const out: Constraints = {};
  if (!c) return out;
  if (c.min !== undefined && c.min !== null) out.min = c.min;
  if (c.max !== undefined && c.max !== null) out.max = c.max;
  if (c.step !== undefined && c.step !== null) out.step = c.step;
  if (c.choices?.length) out.choices = [...c.choices];
  if (c.pattern) out.pattern = c.pattern;
  if (c.min_length !== undefined && c.min_length !== null) out.minLength = longToNumber(c.min_length);
  if (c.max_length !== undefined && c.max_length !== null) out.maxLength = longToNumber(c.max_length);
  if (c.dims?.length) out.dims = c.dims.map((d: string) => longToNumber(d));
  if (c.dtype) out.dtype = c.dtype;
  return out;
}

export function variableFromProto(v: Pb): Variable {
  return {
    id: v.id,
    sessionId: v.session_id,
    name: v.name,
    type: variableTypeFromProto(v.type),
    value: fromValue(v.value as PbValue),
    constraints: constraintsFromProto(v.constraints),
    description: v.description ?? "",
    metadata: { ...(v.metadata ?? {}) },
    version: longToNumber(v.version),
    createTime: toTimestamp(v.create_time),
    updateTime: toTimestamp(v.update_time),
    source: v.source ?? "",
  };
}

export function historyEntryFromProto(e: Pb): HistoryEntry {
  return {
    version: longToNumber(e.version),
    value: fromValue(e.value),
    source: e.source ?? "",
    reason: e.reason ?? "",
    updateTime: toTimestamp(e.update_time),
  };
}

const CHANGE_KINDS: Record<string, "initial" | "registered" | "updated" | "deleted"> = {
  VARIABLE_CHANGE_KIND_INITIAL: "initial",
  VARIABLE_CHANGE_KIND_REGISTERED: "registered",
  VARIABLE_CHANGE_KIND_UPDATED: "updated",
  VARIABLE_CHANGE_KIND_DELETED: "deleted",
};

export function watchEventFromProto(m: Pb): WatchEvent | undefined {
  if (m.change) {
    const kind = CHANGE_KINDS[m.change.kind] ?? "updated";
    return { type: "change", kind, variable: variableFromProto(m.change.variable), reason: m.change.reason ?? "" };
  }
  if (m.resync) {
    return { type: "resync", variables: (m.resync.variables ?? []).map(variableFromProto), skippedChanges: longToNumber(m.resync.skipped_changes) };
  }
  if (m.session_ended) return { type: "sessionEnded", reason: m.session_ended.reason ?? "" };
  return undefined; // an event kind newer than this client
}

export function signatureToProto(signature: string | Signature): Pb {
  const sig = typeof signature === "string" ? { text: signature } : signature;
  return {
    text: sig.text ?? "",
    fields: (sig.fields ?? []).map((f) => ({
      name: f.name,
      role: f.role === "output" ? "FIELD_ROLE_OUTPUT" : "FIELD_ROLE_INPUT",
      type: f.type ?? "",
      description: f.description ?? "",
    })),
    instructions: sig.instructions ?? "",
  };
}

export function moduleFromProto(m: Pb): Module {
  return {
    moduleId: m.module_id,
    sessionId: m.session_id,
    moduleType: m.module_type,
    signature: {
      text: m.signature?.text ?? "",
      fields: (m.signature?.fields ?? []).map((f: Pb) => ({
        name: f.name,
        role: f.role === "FIELD_ROLE_OUTPUT" ? "output" : "input",
        type: f.type ?? "",
        description: f.description ?? "",
      })),
      instructions: m.signature?.instructions ?? "",
    },
    config: fromStruct(m.config as PbStruct),
    variableBindings: { ...(m.variable_bindings ?? {}) },
    lm: lmFromProto(m.lm),
    version: longToNumber(m.version),
    createTime: toTimestamp(m.create_time),
    updateTime: toTimestamp(m.update_time),
    demoCount: m.demo_count ?? 0,
  };
}

export function usageFromProto(u: Pb): Usage {
  return {
    lmCalls: longToNumber(u?.lm_calls),
    promptTokens: longToNumber(u?.prompt_tokens),
    completionTokens: longToNumber(u?.completion_tokens),
    costUsd: u?.cost_usd ?? 0,
  };
}

function variablesUsedFromProto(m: Pb): Record<string, VariableUsage> {
  const out: Record<string, VariableUsage> = {};
  for (const [name, u] of Object.entries<Pb>(m ?? {})) {
    out[name] = { value: fromValue(u.value), version: longToNumber(u.version), overridden: Boolean(u.overridden) };
  }
  return out;
}

function traceFromProto(trace: Pb[] | undefined): LMCallTrace[] {
  return (trace ?? []).map((t) => ({
    model: t.model ?? "",
    messages: (t.messages ?? []).map((s: Pb) => fromStruct(s)),
    completions: [...(t.completions ?? [])],
    options: fromStruct(t.options),
  }));
}

export function executeResultFromProto(r: Pb): ExecuteResult {
  return {
    outputs: fromValueMap(r.outputs),
    variablesUsed: variablesUsedFromProto(r.variables_used),
    usage: usageFromProto(r.usage),
    latencyMs: r.latency_ms ?? 0,
    moduleVersion: longToNumber(r.module_version),
    trace: traceFromProto(r.trace),
  };
}

export function statusError(status: Pb): BridgeError | undefined {
  if (!status || !status.code) return undefined;
  return fromStatus(status.code, status.message ?? "", status.details ?? []);
}

export function batchResultFromProto(r: Pb): BatchResult {
  return {
    results: (r.results ?? []).map((item: Pb) => {
      const error = statusError(item.error);
      return { ok: error === undefined, outputs: fromValueMap(item.outputs), error, usage: usageFromProto(item.usage), latencyMs: item.latency_ms ?? 0, trace: traceFromProto(item.trace) };
    }),
    variablesUsed: variablesUsedFromProto(r.variables_used),
    usage: usageFromProto(r.usage),
    latencyMs: r.latency_ms ?? 0,
    moduleVersion: longToNumber(r.module_version),
  };
}

export function evaluationFromProto(r: Pb): Evaluation {
  return {
    score: r.score ?? 0,
    results: (r.results ?? []).map((item: Pb) => {
      const error = statusError(item.error);
      return { index: item.index ?? 0, ok: error === undefined, outputs: fromValueMap(item.outputs), score: item.score ?? 0, error, latencyMs: item.latency_ms ?? 0 };
    }),
    usage: usageFromProto(r.usage),
    moduleVersion: longToNumber(r.module_version),
    variablesUsed: variablesUsedFromProto(r.variables_used),
    latencyMs: r.latency_ms ?? 0,
  };
}

export function evaluateEventFromProto(m: Pb): EvaluateStreamEvent | undefined {
  if (m.progress) return { type: "progress", completed: longToNumber(m.progress.completed), total: longToNumber(m.progress.total) };
  if (m.result) return { type: "result", evaluation: evaluationFromProto(m.result) };
  return undefined;
}

export function streamEventFromProto(m: Pb): ExecuteStreamEvent | undefined {
  if (m.chunk) return { type: "chunk", field: m.chunk.field, text: m.chunk.text, last: Boolean(m.chunk.last) };
  if (m.status) return { type: "status", message: m.status.message };
  if (m.result) return { type: "result", result: executeResultFromProto(m.result) };
  return undefined;
}

function serverLimitsFromProto(m: Pb): ServerLimits {
  const requests = m.requests ?? {};
  const jobs = m.jobs ?? {};
  const host = m.host_calls ?? {};
  const allowLists = m.lm_allow_lists ?? {};
  const duration = jobs.max_job_duration;
  return {
    maxSessions: m.max_sessions ?? 0,
    maxVariablesPerSession: m.max_variables_per_session ?? 0,
    maxValueBytes: longToNumber(m.max_value_bytes),
    maxMessageBytes: longToNumber(m.max_message_bytes),
    maxConcurrentRpcs: m.max_concurrent_rpcs ?? 0,
    maxSessionBytes: longToNumber(m.max_session_bytes),
    maxSessionsPerCaller: m.max_sessions_per_caller ?? 0,
    defaultSessionTtlSeconds: longToNumber(m.default_session_ttl_seconds),
    maxSessionTtlSeconds: longToNumber(m.max_session_ttl_seconds),
    maxHistoryVersions: m.max_history_versions ?? 0,
    requests: {
      maxMetadataEntries: requests.max_metadata_entries ?? 0,
      maxMetadataKeyChars: requests.max_metadata_key_chars ?? 0,
      maxMetadataValueChars: requests.max_metadata_value_chars ?? 0,
      maxDescriptionChars: requests.max_description_chars ?? 0,
      maxReasonChars: requests.max_reason_chars ?? 0,
      maxInstructionsChars: requests.max_instructions_chars ?? 0,
      maxConfigBytes: longToNumber(requests.max_config_bytes),
      maxDatasetExamples: requests.max_dataset_examples ?? 0,
    },
    jobs: {
      maxRunningJobs: jobs.max_running_jobs ?? 0,
      maxRunningJobsPerCaller: jobs.max_running_jobs_per_caller ?? 0,
      maxQueuedJobsPerCaller: jobs.max_queued_jobs_per_caller ?? 0,
      maxJobDurationMs: duration ? longToNumber(duration.seconds) * 1000 + Math.round((duration.nanos ?? 0) / 1e6) : undefined,
      maxMetricCalls: longToNumber(jobs.max_metric_calls),
    },
    hostCalls: {
      maxConnectionsPerSession: host.max_connections_per_session ?? 0,
      maxNames: host.max_names ?? 0,
      maxSchemaBytes: longToNumber(host.max_schema_bytes),
      maxCallsInFlight: host.max_calls_in_flight ?? 0,
      maxResultBytes: longToNumber(host.max_result_bytes),
      defaultToolTimeoutMs: longToNumber(host.default_tool_timeout_ms),
      defaultToolMaxConcurrency: host.default_tool_max_concurrency ?? 0,
      metricTimeoutMs: longToNumber(host.metric_timeout_ms),
      lmTimeoutMs: longToNumber(host.lm_timeout_ms),
    },
    lmAllowLists: { apiBaseCount: allowLists.api_base_count ?? 0, keyEnvPatternCount: allowLists.key_env_pattern_count ?? 0 },
  };
}

export function serverInfoFromProto(r: Pb): ServerInfo {
  const pool = r.pool ?? {};
  const limits = r.limits ?? {};
  return {
    bridgeVersion: r.bridge_version,
    dspyVersion: r.dspy_version,
    pythonVersion: r.python_version,
    moduleTypes: [...(r.module_types ?? [])],
    optimizers: [...(r.optimizers ?? [])],
    metrics: [...(r.metrics ?? [])],
    variableTypes: (r.variable_types ?? []).map(variableTypeFromProto),
    storeBackend: r.store_backend,
    pool: {
      workers: pool.workers ?? 0,
      workersAlive: pool.workers_alive ?? 0,
      restarts: longToNumber(pool.restarts),
      queueDepth: longToNumber(pool.queue_depth),
      inFlight: longToNumber(pool.in_flight),
    },
    limits: serverLimitsFromProto(limits),
    defaultLmModel: r.default_lm_model ?? "",
    startTime: toTimestamp(r.start_time),
  };
}

