// What a `VariableSearch` job searches, as a plain object, and its wire form (VariableSearchSpec).
import { PbValue, ValueInput, toLong, toValue } from "./values";

/**
 * How one variable is searched: a range (`{low, high, step, log}`, FLOAT/INTEGER), a list of
 * choices (or `{choices}`), or `null` to search what the variable's own constraints allow.
 */
export type SearchRange = { low?: number; high?: number; step?: number; log?: boolean; choices?: ValueInput[] } | ValueInput[] | null;

/** The `variableSearch` option of `startOptimization(moduleId, "VariableSearch", ...)`. */
export interface VariableSearchSpec {
  /** Variable name (bound to the module) -> how it is searched. */
  variables: Record<string, SearchRange>;
  /** How the next values are proposed (default `tpe`; `grid` needs choices or stepped ranges). */
  sampler?: "tpe" | "random" | "grid";
  /** Trials to run; 0 = the server default (20; grid: the whole grid). */
  nTrials?: number;
  /**
   * Objective names (`metric`, `latency_ms`, `tokens`, `cost_usd`), or name -> `maximize` /
   * `minimize`; empty = maximize `metric`.
   */
  objectives?: string[] | Record<string, "maximize" | "minimize" | "">;
  /** Sampler seed, for reproducible searches. */
  seed?: number;
}

const SAMPLERS = { tpe: "SEARCH_SAMPLER_TPE", random: "SEARCH_SAMPLER_RANDOM", grid: "SEARCH_SAMPLER_GRID" } as const;
const DIRECTIONS = { "": "OBJECTIVE_DIRECTION_UNSPECIFIED", maximize: "OBJECTIVE_DIRECTION_MAXIMIZE", minimize: "OBJECTIVE_DIRECTION_MINIMIZE" } as const;
const RANGE_KEYS = new Set(["low", "high", "step", "log", "choices"]);

// Wire objects are untyped proto-loader input.
type Pb = any;

function variableToProto(name: string, range: SearchRange): Pb {
  const out: Pb = { name, log: false, choices: [] as PbValue[] };
  if (range === null || range === undefined) return out;
  const choices = (list: ValueInput[]) => list.map((c, i) => toValue(c, undefined, `variable_search.variables.${name}.choices[${i}]`));
  if (Array.isArray(range)) {
    out.choices = choices(range);
    return out;
  }
  if (typeof range !== "object") throw new TypeError(`${name}: give a range object or a list of choices, not ${JSON.stringify(range)}`);
  const unknown = Object.keys(range).filter((k) => !RANGE_KEYS.has(k));
  if (unknown.length) throw new TypeError(`${name}: unknown keys ${unknown.join(", ")}; use low, high, step, log, choices`);
  for (const key of ["low", "high", "step"] as const) {
    if (range[key] !== undefined) out[key] = range[key];
  }
  out.log = Boolean(range.log);
  out.choices = choices(range.choices ?? []);
  return out;
}

/** The wire `VariableSearchSpec`; `TypeError` for an unknown sampler, direction or range key. */
export function searchSpecToProto(spec: VariableSearchSpec): Pb {
  const sampler = spec.sampler ?? "tpe";
  if (!(sampler in SAMPLERS)) throw new TypeError(`sampler must be one of ${Object.keys(SAMPLERS).join(", ")}, not ${JSON.stringify(sampler)}`);
  const pairs: [string, string][] = Array.isArray(spec.objectives)
    ? spec.objectives.map((name) => [name, ""])
    : Object.entries(spec.objectives ?? {});
  const objectives = pairs.map(([name, direction]) => {
    if (!(direction in DIRECTIONS)) throw new TypeError(`objective ${name}: direction must be "maximize" or "minimize"`);
    return { name, direction: DIRECTIONS[direction as keyof typeof DIRECTIONS] };
  });
  const out: Pb = {
    variables: Object.entries(spec.variables).map(([name, range]) => variableToProto(name, range)),
    sampler: SAMPLERS[sampler],
    n_trials: spec.nTrials ?? 0,
    objectives,
  };
  if (spec.seed !== undefined) out.seed = toLong(spec.seed);
  return out;
}
