// Optimization jobs: typed `Job` views of the wire messages and the request pieces
// `SessionHandle.startOptimization` / `applyOptimization` send.
import { BridgeError } from "./errors";
import { Module, Variable, moduleFromProto, statusError, variableFromProto } from "./types";
import { BridgeValue, JsonValue, PbStruct, fromStruct, fromValueMap, longToNumber, toTimestamp } from "./values";

/** Where a job is in its life (as the Python client's `JobStatus`). */
export type JobStatus = "UNSPECIFIED" | "QUEUED" | "RUNNING" | "SUCCEEDED" | "FAILED" | "CANCELLED" | "INTERRUPTED";

/** The statuses a job never leaves. */
export const TERMINAL_JOB_STATUSES: readonly JobStatus[] = ["SUCCEEDED", "FAILED", "CANCELLED", "INTERRUPTED"];

/** How far a job has come: `phase` (`starting`, `scoring`, `optimizing`, `done`, ...), units `completed` of `total` (0 = unknown). */
export interface JobProgress {
  phase: string;
  completed: number;
  total: number;
  message: string;
}

/** A prompt/demo optimizer's result. `moduleVersion` is 0 until the result is applied. */
export interface ModuleVersionResult {
  moduleVersion: number;
  previousVersion: number;
  /** The metric before optimization (on the valset, else the trainset); unset when not measured. */
  scoreBefore?: number;
  /** The metric on the same examples after optimization. */
  scoreAfter?: number;
  demoCount: number;
  /** The optimized instructions, one per predictor. */
  instructions: string[];
  /** The optimized state in DSPy's `save()` JSON format. */
  stateJson: string;
}

/** How a VariableSearch trial ended. */
export type TrialState = "UNSPECIFIED" | "RUNNING" | "COMPLETE" | "PRUNED" | "FAIL";

/** One VariableSearch trial: the values tried and each objective's score. */
export interface Trial {
  number: number;
  /** The value tried for each searched variable, by variable name. */
  values: Record<string, BridgeValue>;
  /** By objective name: `metric`, `latency_ms`, `tokens`, `cost_usd`. */
  objectives: Record<string, number>;
  state: TrialState;
  errorMessage: string;
}

/** A VariableSearch's trials, its Pareto front and the proposed (best) trial. */
export interface VariableSearchResult {
  trials: Trial[];
  paretoFront: Trial[];
  best?: Trial;
}

/** An optimization or search job, as of the call that returned it. */
export interface Job {
  jobId: string;
  sessionId: string;
  moduleId: string;
  optimizer: string;
  status: JobStatus;
  /** True once the job reached a terminal status (it will not change again). */
  done: boolean;
  progress: JobProgress;
  /** The best metric score seen so far; unset until one is known. */
  bestScore?: number;
  /** Why the job failed (FAILED only). */
  error?: BridgeError;
  /** A prompt/demo optimizer's result, once SUCCEEDED. */
  moduleResult?: ModuleVersionResult;
  /** A VariableSearch's result, once SUCCEEDED. */
  variableSearchResult?: VariableSearchResult;
  /** True once the result has been made current (`apply` or `applyOptimization`). */
  applied: boolean;
  createTime?: Date;
  startTime?: Date;
  endTime?: Date;
  /** The optimizer configuration as given. */
  config: { [key: string]: JsonValue };
  /** The metric the job optimizes, and its options. */
  metric: string;
  metricOptions: { [key: string]: JsonValue };
  applyRequested: boolean;
  trainsetSize: number;
  valsetSize: number;
}

/** What `applyOptimization` changed: the job (now applied) and the new module version or the variables written. */
export interface ApplyResult {
  job: Job;
  /** The module at its new version (prompt/demo optimizers). */
  module?: Module;
  /** The variables at their new versions (VariableSearch). */
  variables: Variable[];
}

// ---- converters (proto-loader objects with keepCase, enums as strings, oneofs named) ----------

// Wire objects are untyped proto-loader output.
type Pb = any;

/** A proto3 `optional` field: proto-loader names the set member of its synthetic oneof `_<field>`. */
function optionalNumber(message: Pb, field: string): number | undefined {
  return message?.[`_${field}`] === field && typeof message[field] === "number" ? message[field] : undefined;
}

function enumName<T extends string>(value: string | number | undefined, prefix: string): T {
  return String(value ?? `${prefix}UNSPECIFIED`).replace(prefix, "") as T;
}

function moduleResultFromProto(m: Pb): ModuleVersionResult {
  return {
    moduleVersion: longToNumber(m.module_version),
    previousVersion: longToNumber(m.previous_version),
    scoreBefore: optionalNumber(m, "score_before"),
    scoreAfter: optionalNumber(m, "score_after"),
    demoCount: m.demo_count ?? 0,
    instructions: [...(m.instructions ?? [])],
    stateJson: m.state_json ?? "",
  };
}

function trialFromProto(t: Pb): Trial {
  return {
    number: t.number ?? 0,
    values: fromValueMap(t.values),
    objectives: { ...(t.objectives ?? {}) },
    state: enumName<TrialState>(t.state, "TRIAL_STATE_"),
    errorMessage: t.error_message ?? "",
  };
}

function searchResultFromProto(r: Pb): VariableSearchResult {
  return {
    trials: (r.trials ?? []).map(trialFromProto),
    paretoFront: (r.pareto_front ?? []).map(trialFromProto),
    best: r.best ? trialFromProto(r.best) : undefined,
  };
}

export function jobFromProto(j: Pb): Job {
  const status = enumName<JobStatus>(j.status, "JOB_STATUS_");
  const p = j.progress ?? {};
  return {
    jobId: j.job_id,
    sessionId: j.session_id,
    moduleId: j.module_id,
    optimizer: j.optimizer,
    status,
    done: TERMINAL_JOB_STATUSES.includes(status),
    progress: { phase: p.phase ?? "", completed: longToNumber(p.completed), total: longToNumber(p.total), message: p.message ?? "" },
    bestScore: optionalNumber(j, "best_score"),
    error: statusError(j.error),
    moduleResult: j.result === "module_result" ? moduleResultFromProto(j.module_result) : undefined,
    variableSearchResult: j.result === "variable_search_result" ? searchResultFromProto(j.variable_search_result) : undefined,
    applied: Boolean(j.applied),
    createTime: toTimestamp(j.create_time),
    startTime: toTimestamp(j.start_time),
    endTime: toTimestamp(j.end_time),
    config: fromStruct(j.config as PbStruct),
    metric: j.metric?.name ?? "",
    metricOptions: fromStruct(j.metric?.options as PbStruct),
    applyRequested: Boolean(j.apply_requested),
    trainsetSize: j.trainset_size ?? 0,
    valsetSize: j.valset_size ?? 0,
  };
}

export function applyResultFromProto(r: Pb): ApplyResult {
  return {
    job: jobFromProto(r.job),
    module: r.module ? moduleFromProto(r.module) : undefined,
    variables: (r.variables ?? []).map(variableFromProto),
  };
}
