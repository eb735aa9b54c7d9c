// Plain JS values <-> dspy_bridge.v1.Value (and google.protobuf Struct/Value/Timestamp).
//
// Encoding rule (JS -> wire):
//   string -> string_value, boolean -> bool_value, bigint -> int_value,
//   number -> float_value (JS has one number type; see `Int64` / variable types for integers),
//   null, arrays, plain objects -> json_value, Tensor -> tensor_value,
//   Int64(x) -> int_value, Float64(x) -> float_value, Json(x) -> json_value whatever x is.
// Decoding rule (wire -> JS):
//   float_value -> number, int_value -> number when it is a safe integer, else bigint,
//   string/bool as is, json_value -> plain JSON (numbers are JS numbers), tensor_value -> Tensor,
//   an unset Value -> undefined.

/** A JSON value as JS holds it. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };

/** Forces `int_value` (64-bit signed integer) on the wire. */
export class Int64 {
  readonly value: bigint;
  constructor(value: number | bigint | string) {
    if (typeof value === "number" && !Number.isInteger(value)) {
      throw new TypeError(`Int64 needs a whole number, got ${value}`);
    }
    this.value = BigInt(value);
    if (this.value < -(2n ** 63n) || this.value >= 2n ** 63n) {
      throw new RangeError(`${value} does not fit in 64 bits`);
    }
  }
}

/** Forces `float_value` (a double) on the wire. */
export class Float64 {
  constructor(readonly value: number) {}
}

/** Forces `json_value` on the wire, e.g. a JSON variable set to a bare string or number. */
export class Json {
  constructor(readonly value: JsonValue) {}
}

/** Shorthands: `int64(3)`, `float64(3)`, `json("fast")`. */
export const int64 = (value: number | bigint | string): Int64 => new Int64(value);
export const float64 = (value: number): Float64 => new Float64(value);
export const json = (value: JsonValue): Json => new Json(value);

const DTYPES: Record<string, { size: number; get: (v: DataView, o: number) => number | bigint; set: (v: DataView, o: number, x: number) => void }> = {
  float16: { size: 2, get: (v, o) => halfToFloat(v.getUint16(o, true)), set: () => { throw new TypeError("Tensor.fromArray does not write float16"); } },
  float32: { size: 4, get: (v, o) => v.getFloat32(o, true), set: (v, o, x) => v.setFloat32(o, x, true) },
  float64: { size: 8, get: (v, o) => v.getFloat64(o, true), set: (v, o, x) => v.setFloat64(o, x, true) },
  int8: { size: 1, get: (v, o) => v.getInt8(o), set: (v, o, x) => v.setInt8(o, x) },
  int16: { size: 2, get: (v, o) => v.getInt16(o, true), set: (v, o, x) => v.setInt16(o, x, true) },
  int32: { size: 4, get: (v, o) => v.getInt32(o, true), set: (v, o, x) => v.setInt32(o, x, true) },
  int64: { size: 8, get: (v, o) => v.getBigInt64(o, true), set: (v, o, x) => v.setBigInt64(o, BigInt(x), true) },
  uint8: { size: 1, get: (v, o) => v.getUint8(o), set: (v, o, x) => v.setUint8(o, x) },
  bool: { size: 1, get: (v, o) => v.getUint8(o), set: (v, o, x) => v.setUint8(o, x ? 1 : 0) },
};

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * 2 ** -14 * (frac / 1024);
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * 2 ** (exp - 15) * (1 + frac / 1024);
}

type Nested = number | boolean | Nested[];

/** A dense n-dimensional array, row-major, little-endian (`dspy_bridge.v1.Tensor`). */
export class Tensor {
  constructor(
    readonly dtype: string,
    readonly shape: number[],
    readonly data: Uint8Array,
  ) {}

  /** A tensor from (nested) arrays of numbers, e.g. `Tensor.fromArray([[1, 2], [3, 4]], "float32")`. */
  static fromArray(values: Nested[], dtype = "float32"): Tensor {
    const spec = DTYPES[dtype];
    if (spec === undefined) throw new TypeError(`unknown dtype ${dtype}`);
    const shape: number[] = [];
    for (let level: Nested = values; Array.isArray(level); level = level[0] ?? 0) shape.push(level.length);
    const flat = (values as unknown[]).flat(Infinity) as (number | boolean)[];
    const data = new Uint8Array(flat.length * spec.size);
    const view = new DataView(data.buffer);
    flat.forEach((x, i) => spec.set(view, i * spec.size, Number(x)));
    return new Tensor(dtype, shape, data);
  }

  /** The elements in row-major order (int64 elements as bigint). */
  values(): (number | bigint)[] {
    const spec = DTYPES[this.dtype];
    if (spec === undefined) throw new TypeError(`unknown dtype ${this.dtype}`);
    const view = new DataView(this.data.buffer, this.data.byteOffset, this.data.byteLength);
    const out: (number | bigint)[] = [];
    for (let o = 0; o + spec.size <= this.data.byteLength; o += spec.size) out.push(spec.get(view, o));
    return out;
  }
}

/** A decoded `Value`: what variable values, module inputs and outputs are in JS. */
export type BridgeValue = JsonValue | bigint | Tensor | undefined;
/** Anything `toValue` accepts. */
export type ValueInput = JsonValue | bigint | Tensor | Int64 | Float64 | Json;

// ---- wire shapes (proto-loader objects, keepCase) -------------------------------------------

/**
 * google.protobuf.Value as proto-loader reads/writes it. protobufjs defines the well-known types
 * with camelCase field names (even with `keepCase`), so these are camelCase.
 */
export interface PbJson {
  nullValue?: string | number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: PbStruct;
  listValue?: { values?: PbJson[] };
  kind?: string;
}
export interface PbStruct {
  fields?: Record<string, PbJson>;
}
export interface PbValue {
  float_value?: number;
  int_value?: string | number;
  string_value?: string;
  bool_value?: boolean;
  json_value?: PbJson;
  tensor_value?: { dtype?: string; shape?: (string | number)[]; data?: Uint8Array };
  kind?: string;
}
export interface PbTimestamp {
  seconds?: string | number;
  nanos?: number;
}

/** An int64 from the wire: a number when it is safe, else a bigint. */
export function fromLong(value: string | number | undefined | null): number | bigint {
  if (value === undefined || value === null || value === "") return 0;
  if (typeof value === "number") return value;
  const n = Number(value);
  return Number.isSafeInteger(n) ? n : BigInt(value);
}

/** An int64 the caller knows fits (versions, counts): always a number. */
export function longToNumber(value: string | number | undefined | null): number {
  return Number(value ?? 0);
}

/** An int64 for the wire (proto-loader accepts decimal strings). */
export function toLong(value: number | bigint): string {
  if (typeof value === "number" && !Number.isInteger(value)) {
    throw new TypeError(`expected a whole number, got ${value}`);
  }
  return BigInt(value).toString();
}

export function toTimestamp(ts: PbTimestamp | null | undefined): Date | undefined {
  if (ts === null || ts === undefined) return undefined;
  return new Date(Number(ts.seconds ?? 0) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6));
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  if (x === null || typeof x !== "object") return false;
  const proto = Object.getPrototypeOf(x);
  return proto === Object.prototype || proto === null;
}

export function toJsonPb(x: unknown, path = "value"): PbJson {
  if (x === null || x === undefined) return { nullValue: "NULL_VALUE" };
  if (typeof x === "number") {
    if (!Number.isFinite(x)) throw new TypeError(`${path}: ${x} is not valid JSON`);
    return { numberValue: x };
  }
  if (typeof x === "bigint") return { numberValue: Number(x) };
  if (typeof x === "string") return { stringValue: x };
  if (typeof x === "boolean") return { boolValue: x };
  if (Array.isArray(x)) return { listValue: { values: x.map((v, i) => toJsonPb(v, `${path}[${i}]`)) } };
  if (isPlainObject(x)) return { structValue: toStruct(x, path) };
  throw new TypeError(`${path}: cannot send ${Object.prototype.toString.call(x)} as JSON`);
}

export function toStruct(obj: Record<string, unknown>, path = "value"): PbStruct {
  const fields: Record<string, PbJson> = {};
  for (const [key, v] of Object.entries(obj)) fields[key] = toJsonPb(v, `${path}.${key}`);
  return { fields };
}

export function fromJsonPb(v: PbJson | null | undefined): JsonValue {
  if (v === null || v === undefined) return null;
  const kind = v.kind ?? firstSet(v, ["nullValue", "numberValue", "stringValue", "boolValue", "structValue", "listValue"]);
  switch (kind) {
    case "numberValue":
      return v.numberValue ?? 0;
    case "stringValue":
      return v.stringValue ?? "";
    case "boolValue":
      return v.boolValue ?? false;
    case "structValue":
      return fromStruct(v.structValue);
    case "listValue":
      return (v.listValue?.values ?? []).map(fromJsonPb);
    default:
      return null;
  }
}

export function fromStruct(s: PbStruct | null | undefined): { [key: string]: JsonValue } {
  const out: { [key: string]: JsonValue } = {};
  for (const [key, v] of Object.entries(s?.fields ?? {})) out[key] = fromJsonPb(v);
  return out;
}

function firstSet(obj: object, keys: string[]): string | undefined {
  const record = obj as Record<string, unknown>;
  return keys.find((k) => record[k] !== undefined && record[k] !== null);
}

/**
 * Encodes a JS value as a `dspy_bridge.v1.Value` (see the rule at the top of this file).
 * `intent` picks the kind for an ambiguous plain value: `"int"` sends a whole number as
 * `int_value`, `"json"` sends anything as `json_value`.
 */
export function toValue(x: ValueInput | undefined, intent?: "int" | "float" | "json", path = "value"): PbValue {
  if (x instanceof Int64) return { int_value: x.value.toString() };
  if (x instanceof Float64) return { float_value: x.value };
  if (x instanceof Json) return { json_value: toJsonPb(x.value, path) };
  if (x instanceof Tensor) {
    return { tensor_value: { dtype: x.dtype, shape: x.shape.map((d) => toLong(d)), data: Buffer.from(x.data.buffer, x.data.byteOffset, x.data.byteLength) } };
  }
  if (x === undefined) return {};
  if (intent === "json") return { json_value: toJsonPb(x, path) };
  if (typeof x === "bigint") return { int_value: new Int64(x).value.toString() };
  if (typeof x === "number") {
    if (intent === "int" && Number.isInteger(x)) return { int_value: toLong(x) };
    return { float_value: x };
  }
  if (typeof x === "string") return { string_value: x };
  if (typeof x === "boolean") return { bool_value: x };
  return { json_value: toJsonPb(x, path) };
}

/** Decodes a `dspy_bridge.v1.Value` (see the rule at the top of this file). */
export function fromValue(v: PbValue | null | undefined): BridgeValue {
  if (v === null || v === undefined) return undefined;
  const kind = v.kind ?? firstSet(v, ["float_value", "int_value", "string_value", "bool_value", "json_value", "tensor_value"]);
  switch (kind) {
    case "float_value":
      return v.float_value ?? 0;
    case "int_value":
      return fromLong(v.int_value);
    case "string_value":
      return v.string_value ?? "";
    case "bool_value":
      return v.bool_value ?? false;
    case "json_value":
      return fromJsonPb(v.json_value);
    case "tensor_value": {
      const t = v.tensor_value ?? {};
      const data = t.data ?? new Uint8Array();
      return new Tensor(t.dtype ?? "", (t.shape ?? []).map((d) => Number(d)), new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
    }
    default:
      return undefined;
  }
}

export function toValueMap(obj: Record<string, ValueInput> | undefined, path = "inputs"): Record<string, PbValue> {
  const out: Record<string, PbValue> = {};
  for (const [key, v] of Object.entries(obj ?? {})) out[key] = toValue(v, undefined, `${path}.${key}`);
  return out;
}

export function fromValueMap(obj: Record<string, PbValue> | null | undefined): Record<string, BridgeValue> {
  const out: Record<string, BridgeValue> = {};
  for (const [key, v] of Object.entries(obj ?? {})) out[key] = fromValue(v);
  return out;
}
