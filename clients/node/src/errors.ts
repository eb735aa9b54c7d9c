// Errors: every failed call rejects with a BridgeError (or a subclass chosen by status code),
// decoded from the google.rpc.Status the sidecar puts in the `grpc-status-details-bin` trailer.
import * as grpc from "@grpc/grpc-js";

import { rpcStatusTypes } from "./proto";

const DETAILS_KEY = "grpc-status-details-bin";

/** A gRPC status code name: `"INVALID_ARGUMENT"`, `"NOT_FOUND"`, ... */
export type StatusCodeName = keyof typeof grpc.status;

/** One invalid request field (from google.rpc.BadRequest); `field` is a path like `writes[2].value`. */
export interface FieldViolation {
  field: string;
  description: string;
}

export interface BridgeErrorOptions {
  code?: StatusCodeName;
  reason?: string;
  domain?: string;
  metadata?: Record<string, string>;
  fieldViolations?: FieldViolation[];
  retryDelayMs?: number;
  hint?: string;
  cause?: unknown;
}

/**
 * A failed call to the sidecar.
 *
 * `code` is the gRPC status name, `reason` the stable machine-readable reason
 * (`ErrorInfo.reason`, e.g. `SESSION_NOT_FOUND`; `""` when the failure happened below the sidecar,
 * e.g. no connection), `metadata` the ErrorInfo metadata, `fieldViolations` the BadRequest
 * violations. `message` reads `INVALID_ARGUMENT VARIABLE_CONSTRAINT_VIOLATION: ... (value)`;
 * `details` is the server's own message.
 */
export class BridgeError extends Error {
  static readonly defaultCode: StatusCodeName = "UNKNOWN";
  readonly code: StatusCodeName;
  /** The numeric gRPC status code. */
  readonly grpcCode: number;
  readonly details: string;
  readonly reason: string;
  readonly domain: string;
  readonly metadata: Record<string, string>;
  readonly fieldViolations: FieldViolation[];
  /** Milliseconds the server asks to wait before retrying (RetryInfo), if any. */
  readonly retryDelayMs: number | undefined;
  readonly hint: string;

  constructor(details: string, options: BridgeErrorOptions = {}) {
    const code = options.code ?? (new.target as typeof BridgeError).defaultCode;
    const reason = options.reason ?? "";
    const fieldViolations = options.fieldViolations ?? [];
    super(formatMessage(code, reason, details, fieldViolations, options.hint ?? ""), options.cause === undefined ? undefined : { cause: options.cause });
    this.name = new.target.name;
    this.code = code;
    this.grpcCode = grpc.status[code];
    this.details = details;
    this.reason = reason;
    this.domain = options.domain ?? "";
    this.metadata = { ...(options.metadata ?? {}) };
    this.fieldViolations = fieldViolations;
    this.retryDelayMs = options.retryDelayMs;
    this.hint = options.hint ?? "";
  }

  /** Whether repeating the same call may succeed. */
  get retryable(): boolean {
    return this.code === "UNAVAILABLE";
  }
}

function formatMessage(code: string, reason: string, details: string, violations: FieldViolation[], hint: string): string {
  const head = reason ? `${code} ${reason}` : code;
  let text = details ? `${head}: ${details}` : head;
  const fields = violations
    .filter((v) => v.field || (v.description && v.description !== details))
    .map((v) => (v.description === "" || v.description === details ? v.field : `${v.field}: ${v.description}`));
  if (fields.length) text += ` (${fields.join("; ")})`;
  if (hint) text += ` — ${hint}`;
  return text;
}

export class InvalidArgumentError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "INVALID_ARGUMENT";
}
export class NotFoundError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "NOT_FOUND";
}
export class AlreadyExistsError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "ALREADY_EXISTS";
}
export class FailedPreconditionError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "FAILED_PRECONDITION";
}
/** ABORTED: a stale `expectedVersion`. Re-read (or use `currentVersion`), reapply, retry. */
export class VersionConflictError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "ABORTED";
  /** The resource's version when the write was refused (`metadata.current_version`). */
  get currentVersion(): number | undefined {
    const raw = this.metadata.current_version;
    if (raw === undefined || raw === "") return undefined;
    const n = Number(raw);
    return Number.isFinite(n) ? n : undefined;
  }
}
export class ResourceExhaustedError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "RESOURCE_EXHAUSTED";
}
/** The sidecar is down, draining, or lost a worker mid-call: safe to retry with backoff. */
export class UnavailableError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "UNAVAILABLE";
}
export class DeadlineExceededError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "DEADLINE_EXCEEDED";
}
export class CancelledError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "CANCELLED";
}
export class UnauthenticatedError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "UNAUTHENTICATED";
}
export class PermissionDeniedError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "PERMISSION_DENIED";
}
export class UnimplementedError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "UNIMPLEMENTED";
}
/** INTERNAL or DATA_LOSS: a sidecar bug. */
export class InternalError extends BridgeError {
  static override readonly defaultCode: StatusCodeName = "INTERNAL";
}

const CLASS_BY_CODE: Partial<Record<StatusCodeName, typeof BridgeError>> = {
  INVALID_ARGUMENT: InvalidArgumentError,
  OUT_OF_RANGE: InvalidArgumentError,
  NOT_FOUND: NotFoundError,
  ALREADY_EXISTS: AlreadyExistsError,
  FAILED_PRECONDITION: FailedPreconditionError,
  ABORTED: VersionConflictError,
  RESOURCE_EXHAUSTED: ResourceExhaustedError,
  UNAVAILABLE: UnavailableError,
  DEADLINE_EXCEEDED: DeadlineExceededError,
  CANCELLED: CancelledError,
  UNAUTHENTICATED: UnauthenticatedError,
  PERMISSION_DENIED: PermissionDeniedError,
  UNIMPLEMENTED: UnimplementedError,
  INTERNAL: InternalError,
  DATA_LOSS: InternalError,
};

function codeName(code: number): StatusCodeName {
  const name = (grpc.status as unknown as Record<number, string>)[code];
  return (name ?? "UNKNOWN") as StatusCodeName;
}

/** A google.protobuf.Any as decoded by protobufjs or proto-loader. */
interface AnyLike {
  type_url?: string;
  value?: Uint8Array;
}

interface Decoded {
  reason: string;
  domain: string;
  metadata: Record<string, string>;
  fieldViolations: FieldViolation[];
  retryDelayMs?: number;
}

function decodeDetails(details: AnyLike[]): Decoded {
  const out: Decoded = { reason: "", domain: "", metadata: {}, fieldViolations: [] };
  const types = rpcStatusTypes();
  for (const detail of details) {
    const typeName = (detail.type_url ?? "").split("/").pop() ?? "";
    const bytes = detail.value ?? new Uint8Array();
    try {
      if (typeName === "google.rpc.ErrorInfo") {
        const info = types.ErrorInfo.toObject(types.ErrorInfo.decode(bytes), { defaults: true }) as {
          reason: string;
          domain: string;
          metadata?: Record<string, string>;
        };
        out.reason = info.reason;
        out.domain = info.domain;
        out.metadata = { ...(info.metadata ?? {}) };
      } else if (typeName === "google.rpc.BadRequest") {
        const bad = types.BadRequest.toObject(types.BadRequest.decode(bytes), { defaults: true, arrays: true }) as {
          field_violations: { field: string; description: string }[];
        };
        for (const v of bad.field_violations) out.fieldViolations.push({ field: v.field, description: v.description });
      } else if (typeName === "google.rpc.RetryInfo") {
        const retry = types.RetryInfo.toObject(types.RetryInfo.decode(bytes), { longs: Number, defaults: true }) as {
          retry_delay?: { seconds: number; nanos: number };
        };
        if (retry.retry_delay) out.retryDelayMs = retry.retry_delay.seconds * 1000 + retry.retry_delay.nanos / 1e6;
      }
    } catch {
      // An undecodable detail is ignored: the status code and message still tell what happened.
    }
  }
  return out;
}

/** A BridgeError from a google.rpc.Status (as found in batch results: `{code, message, details}`). */
export function fromStatus(code: number, message: string, details: AnyLike[] = [], extra: BridgeErrorOptions = {}): BridgeError {
  const name = codeName(code);
  const decoded = decodeDetails(details);
  const Cls = CLASS_BY_CODE[name] ?? BridgeError;
  return new Cls(message, { code: name, ...decoded, ...extra });
}

/** A BridgeError from a grpc-js call error, details decoded from the status trailer. */
export function fromServiceError(err: unknown, target?: string): BridgeError {
  if (err instanceof BridgeError) return err;
  const e = err as Partial<grpc.ServiceError> & Error;
  if (typeof e?.code !== "number") {
    return new BridgeError(String((e as Error)?.message ?? err), { code: "UNKNOWN", cause: err });
  }
  let details: AnyLike[] = [];
  let message = e.details ?? e.message ?? "";
  const raw = e.metadata?.get(DETAILS_KEY)?.[0];
  if (raw !== undefined && typeof raw !== "string") {
    try {
      const types = rpcStatusTypes();
      const status = types.Status.toObject(types.Status.decode(raw), { defaults: true, arrays: true }) as {
        message: string;
        details: AnyLike[];
      };
      details = status.details;
      message = status.message || message;
    } catch {
      // fall back to the plain status
    }
  }
  let hint: string | undefined;
  if (e.code === grpc.status.UNAVAILABLE && details.length === 0 && target) {
    hint = `is the dspy-bridge sidecar running at ${target}? Start it with \`dspy-bridge serve\``;
  }
  return fromStatus(e.code, message, details, { cause: err, ...(hint ? { hint } : {}) });
}
