// BridgeClient (one connection) and SessionHandle (everything inside one session).
import * as grpc from "@grpc/grpc-js";

import { BridgeError, DeadlineExceededError, UnavailableError, fromServiceError } from "./errors";
import { HostServer, ServeOptions } from "./host";
import { ApplyResult, Job, applyResultFromProto, jobFromProto } from "./jobs";
import { bridgeServiceClient } from "./proto";
import { VariableSearchSpec, searchSpecToProto } from "./search";
import {
  BatchResult,
  Constraints,
  EvaluateStreamEvent,
  ExecuteResult,
  ExecuteStreamEvent,
  Evaluation,
  Example,
  HistoryEntry,
  LMConfig,
  Module,
  PingResult,
  ServerInfo,
  Session,
  Signature,
  Variable,
  VariableType,
  WatchEvent,
  WriteResult,
  batchResultFromProto,
  constraintsToProto,
  evaluateEventFromProto,
  evaluationFromProto,
  executeResultFromProto,
  historyEntryFromProto,
  lmToProto,
  moduleFromProto,
  serverInfoFromProto,
  sessionFromProto,
  signatureToProto,
  statusError,
  streamEventFromProto,
  variableFromProto,
  variableTypeFromProto,
  variableTypeToProto,
  watchEventFromProto,
} from "./types";
import { Float64, Int64, Json, PbValue, Tensor, ValueInput, toLong, toStruct, toTimestamp, toValue, toValueMap } from "./values";

/** Where `BridgeClient` connects by default (the sidecar's default address). */
export const DEFAULT_TARGET = "127.0.0.1:50051";
/** How much longer than `timeoutMs` of an execution the gRPC deadline is, so the server's fires first. */
const SERVER_TIMEOUT_GRACE_MS = 2000;

export interface BridgeClientOptions {
  /** Deadline of each call in milliseconds (default 30000; `null`: none). Watches have none. */
  timeoutMs?: number | null;
  /** Sent with every call, e.g. `{authorization: "Bearer <token>"}`. */
  metadata?: Record<string, string>;
  /** TLS / mTLS (`grpc.credentials.createSsl(...)`); default plaintext. */
  credentials?: grpc.ChannelCredentials;
  /** gRPC channel options, e.g. `{"grpc.max_receive_message_length": 64 << 20}`. */
  channelOptions?: grpc.ChannelOptions;
}

// Wire objects are untyped proto-loader output.
type Pb = any;
type UnaryMethod = (req: Pb, md: grpc.Metadata, opts: grpc.CallOptions, cb: (err: grpc.ServiceError | null, res: Pb) => void) => grpc.ClientUnaryCall;
type StreamMethod = (req: Pb, md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientReadableStream<Pb>;

/** The channel, stub and call settings shared by a client and its session handles. */
class Transport {
  closed = false;
  /** `serve` connections made through this client: `BridgeClient.close()` stops them (grpc-js lets open streams outlive the channel's close). */
  readonly hosts = new Set<HostServer>();
  constructor(
    readonly stub: grpc.Client,
    readonly target: string,
    public timeoutMs: number | null,
    readonly metadata: Record<string, string>,
  ) {}

  private callMetadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    for (const [k, v] of Object.entries(this.metadata)) md.set(k.toLowerCase(), v);
    return md;
  }

  deadline(executionTimeoutMs = 0): grpc.Deadline | undefined {
    if (this.timeoutMs === null) return undefined;
    const ms = executionTimeoutMs > 0 ? Math.max(this.timeoutMs, executionTimeoutMs + SERVER_TIMEOUT_GRACE_MS) : this.timeoutMs;
    return Date.now() + ms;
  }

  private checkOpen(): void {
    if (this.closed) throw new Error("the client has been closed; create a new one to make more calls");
  }

  unary(method: string, request: Pb, executionTimeoutMs = 0): Promise<Pb> {
    this.checkOpen();
    const fn = (this.stub as unknown as Record<string, UnaryMethod>)[method];
    const deadline = this.deadline(executionTimeoutMs);
    return new Promise((resolve, reject) => {
      fn.call(this.stub, request, this.callMetadata(), deadline === undefined ? {} : { deadline }, (err, res) => {
        if (err) reject(fromServiceError(err, this.target));
        else resolve(res);
      });
    });
  }

  /** A bidirectional stream without a deadline (Connect). */
  duplex(method: string): grpc.ClientDuplexStream<Pb, Pb> {
    this.checkOpen();
    const fn = (this.stub as unknown as Record<string, (md: grpc.Metadata, opts: grpc.CallOptions) => grpc.ClientDuplexStream<Pb, Pb>>)[method];
    return fn.call(this.stub, this.callMetadata(), {});
  }

  stream(method: string, request: Pb, deadline: grpc.Deadline | undefined): grpc.ClientReadableStream<Pb> {
    this.checkOpen();
    const fn = (this.stub as unknown as Record<string, StreamMethod>)[method];
    return fn.call(this.stub, request, this.callMetadata(), deadline === undefined ? {} : { deadline });
  }
}

/**
 * A server stream as an async iterable: `for await (const event of stream)`. `cancel()` (from
 * anywhere) ends the iteration quietly; leaving a `for await` loop early cancels the call too.
 * A failure of the call is thrown from the loop as a `BridgeError`.
 */
export class BridgeStream<T> implements AsyncIterable<T> {
  private cancelled = false;
  private iterating = false;
  private call: grpc.ClientReadableStream<Pb> | undefined;
  private readonly pending: Promise<grpc.ClientReadableStream<Pb>>;

  constructor(
    call: grpc.ClientReadableStream<Pb> | Promise<grpc.ClientReadableStream<Pb>>,
    private readonly convert: (message: Pb) => T | undefined,
    private readonly target: string,
  ) {
    const adopt = (c: grpc.ClientReadableStream<Pb>) => {
      // Errors are delivered through iteration; this keeps an un-iterated stream from crashing the process.
      c.on("error", () => undefined);
      this.call = c;
      if (this.cancelled) c.cancel();
      return c;
    };
    if (call instanceof Promise) {
      this.pending = call.then(adopt);
      this.pending.catch(() => undefined); // reported when iterated
    } else {
      this.pending = Promise.resolve(adopt(call));
    }
  }

  /** Stop the stream; the server side is cancelled and iteration ends without an error. */
  cancel(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.call?.cancel();
  }

  get isCancelled(): boolean {
    return this.cancelled;
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    if (this.iterating) throw new Error("a BridgeStream can be iterated once");
    this.iterating = true;
    try {
      const call = await this.pending;
      for await (const message of call) {
        if (this.cancelled) return;
        const event = this.convert(message);
        if (event !== undefined) yield event;
      }
    } catch (err) {
      if (this.cancelled) return;
      throw fromServiceError(err, this.target);
    } finally {
      if (!this.cancelled) {
        this.cancelled = true;
        this.call?.cancel(); // no-op when the stream already ended
      }
    }
  }
}

/** `executeStream`'s stream: also `result()`, which skips to the final `ExecuteResult`. */
export class ExecutionStream extends BridgeStream<ExecuteStreamEvent> {
  /** Consume the stream and return its final result. */
  async result(): Promise<ExecuteResult> {
    for await (const event of this) {
      if (event.type === "result") return event.result;
    }
    throw new BridgeError("the execution stream ended without a result", { code: "INTERNAL" });
  }
}

/** `evaluateStream`'s stream: also `result()`, which skips to the final `Evaluation`. */
export class EvaluationStream extends BridgeStream<EvaluateStreamEvent> {
  /** Consume the stream (calling `progress` for each progress event) and return the final evaluation. */
  async result(progress?: (completed: number, total: number) => void): Promise<Evaluation> {
    for await (const event of this) {
      if (event.type === "result") return event.evaluation;
      progress?.(event.completed, event.total);
    }
    throw new BridgeError("the evaluation stream ended without a result", { code: "INTERNAL" });
  }
}

/**
 * A connection to a dspy-bridge sidecar. Calls connect lazily; `waitUntilReady` waits for the
 * sidecar. Call `close()` when done.
 */
export class BridgeClient {
  private readonly transport: Transport;
  private readonly grpcClient: grpc.Client;

  constructor(target: string = DEFAULT_TARGET, options: BridgeClientOptions = {}) {
    const Service = bridgeServiceClient();
    this.grpcClient = new Service(target, options.credentials ?? grpc.credentials.createInsecure(), options.channelOptions ?? {});
    const timeoutMs = options.timeoutMs === undefined ? 30_000 : options.timeoutMs;
    this.transport = new Transport(this.grpcClient, target, timeoutMs, { ...(options.metadata ?? {}) });
  }

  /** The address this client dials. */
  get target(): string {
    return this.transport.target;
  }

  /** Default deadline of each call in milliseconds (`null`: none); may be changed. */
  get timeoutMs(): number | null {
    return this.transport.timeoutMs;
  }
  set timeoutMs(value: number | null) {
    this.transport.timeoutMs = value;
  }

  /**
   * Close the connection: new calls fail, `serve` connections made through this client stop
   * serving (their `close()` is started; its calls in flight are aborted). Unary calls already
   * in flight run to their end; cancel streams (`stream.cancel()`) to stop them. Safe to call twice.
   */
  close(): void {
    this.transport.closed = true;
    for (const host of this.transport.hosts) void host.close();
    this.transport.hosts.clear();
    this.grpcClient.close();
  }

  /** Resolve once the sidecar accepts connections; `UnavailableError` after `timeoutMs`. */
  waitUntilReady(timeoutMs = 10_000): Promise<void> {
    return new Promise((resolve, reject) => {
      this.grpcClient.waitForReady(Date.now() + timeoutMs, (err) => {
        if (err) {
          reject(new UnavailableError(`could not connect to ${this.target} within ${timeoutMs}ms`, { hint: "is the dspy-bridge sidecar running? Start it with `dspy-bridge serve`", cause: err }));
        } else resolve();
      });
    });
  }

  /** Check the sidecar is alive; echoes `message` with the server time and version. */
  async ping(message = ""): Promise<PingResult> {
    const start = performance.now();
    const r = await this.transport.unary("Ping", { message });
    return { message: r.message, serverTime: toTimestamp(r.server_time), version: r.version, latencyMs: performance.now() - start };
  }

  /** What the sidecar offers (module types, variable types, ...) and its configuration. */
  async serverInfo(): Promise<ServerInfo> {
    return serverInfoFromProto(await this.transport.unary("GetServerInfo", {}));
  }

  /**
   * Create a session and return a handle bound to it. `sessionId` empty lets the server make an
   * unguessable one; `ttlSeconds` 0 uses the server default.
   */
  async createSession(options: { sessionId?: string; metadata?: Record<string, string>; ttlSeconds?: number } = {}): Promise<SessionHandle> {
    const r = await this.transport.unary("CreateSession", {
      session_id: options.sessionId ?? "",
      metadata: { ...(options.metadata ?? {}) },
      ttl_seconds: toLong(options.ttlSeconds ?? 0),
    });
    const session = sessionFromProto(r.session);
    return new SessionHandle(this.transport, session.sessionId, session);
  }

  /** A handle for an existing session (no call is made; `SessionHandle.get` checks it). */
  session(sessionId: string): SessionHandle {
    return new SessionHandle(this.transport, sessionId);
  }

  /** Every session, oldest first, fetched a page at a time as the iteration proceeds. */
  async *listSessions(options: { pageSize?: number } = {}): AsyncGenerator<Session, void, undefined> {
    let token = "";
    do {
      const r = await this.transport.unary("ListSessions", { page_size: options.pageSize ?? 0, page_token: token });
      for (const s of r.sessions ?? []) yield sessionFromProto(s);
      token = r.next_page_token ?? "";
    } while (token);
  }
}

export interface UpdateOptions {
  /** Write only if this is the current version; else `VersionConflictError` (`.currentVersion`). */
  expectedVersion?: number;
  /** Who writes (recorded in history); empty means `host`. */
  source?: string;
  /** Why (recorded in history). */
  reason?: string;
}

/** One write of `batchUpdate`. */
export interface BatchWrite {
  name: string;
  value: ValueInput;
  expectedVersion?: number;
}

export interface ExecuteOptions {
  /** Variable name -> value used instead of the bound variable for this call only. */
  overrides?: Record<string, ValueInput>;
  /** Server-side deadline of the execution; the call's deadline is extended to cover it. */
  timeoutMs?: number;
  /** Return the LM calls in `ExecuteResult.trace`. */
  includeTrace?: boolean;
}

export interface CreateModuleOptions {
  /** Identifier to use; empty lets the server make one. */
  moduleId?: string;
  /** Module parameter -> variable name, e.g. `{temperature: "temp"}`. */
  bindings?: Record<string, string>;
  /** Type-specific configuration (JSON), e.g. `{max_iters: 5}`. */
  config?: Record<string, unknown>;
  /** LM override for this module: a model string or an `LMConfig`. */
  lm?: LMConfig | string;
}

export interface EvaluateOptions {
  /** The metric's options, e.g. `{field: "answer"}`. */
  metricOptions?: Record<string, unknown>;
  /** Examples run at once (0 = the server default, 4). */
  numThreads?: number;
  /** Variable values used instead of the bound variables for this evaluation only. */
  overrides?: Record<string, ValueInput>;
  /** A past module version to evaluate (0 = current). */
  moduleVersion?: number;
  /** Extends the call's deadline to at least this many milliseconds. */
  timeoutMs?: number;
}

export interface StartOptimizationOptions {
  /** Validation examples (default: the optimizer uses the trainset). */
  valset?: Example[];
  /** The metric's options. */
  metricOptions?: Record<string, unknown>;
  /** The optimizer's arguments, e.g. `{max_bootstrapped_demos: 2}` or `{k: 4}`. */
  config?: Record<string, unknown>;
  /** Make the result current as soon as the job succeeds. */
  apply?: boolean;
  /** What a `VariableSearch` searches (only with that optimizer). */
  variableSearch?: VariableSearchSpec;
}

/** Examples on the wire; `path` names the request field in error messages. */
function datasetToProto(dataset: Example[], path: string): Pb[] {
  return dataset.map((e, i) => ({ inputs: toValueMap(e.inputs, `${path}[${i}].inputs`), labels: toValueMap(e.labels ?? {}, `${path}[${i}].labels`) }));
}

/** Is `x` a value whose wire kind depends on the variable's type (a JS number, string, boolean)? */
function isAmbiguous(x: unknown): boolean {
  return typeof x === "number" || typeof x === "string" || typeof x === "boolean";
}

/**
 * Everything inside one session: LM, variables, modules, executions. Made by
 * `BridgeClient.createSession` or `BridgeClient.session`; cheap, shares the client's connection.
 *
 * The handle remembers the type of every variable it has seen (registered, read, listed, written)
 * so plain JS values are encoded as the variable expects: a whole number written to an INTEGER
 * variable goes as `int_value`, anything written to a JSON variable as `json_value`. For a
 * variable it has not seen yet, it reads the type once with GetVariable.
 */
export class SessionHandle {
  private readonly types = new Map<string, VariableType>();

  constructor(
    private readonly transport: Transport,
    readonly sessionId: string,
    /** The session as it was when `createSession` made this handle (unset for `client.session(id)`). */
    readonly session?: Session,
  ) {}

  private remember<T extends Variable>(v: T): T {
    this.types.set(v.name, v.type);
    this.types.set(v.id, v.type);
    return v;
  }

  private async typeOf(name: string): Promise<VariableType> {
    const known = this.types.get(name);
    if (known !== undefined) return known;
    return (await this.getVariable(name)).type;
  }

  private static encodeFor(type: VariableType | undefined, value: ValueInput, path: string): PbValue {
    if (value instanceof Int64 || value instanceof Float64 || value instanceof Json || value instanceof Tensor) return toValue(value, undefined, path);
    if (type === "json") return toValue(value, "json", path);
    if (type === "integer") return toValue(value, "int", path);
    return toValue(value, undefined, path);
  }

  /** Encode `value` for variable `name`, looking its type up when the JS value is ambiguous. */
  private async valueFor(name: string, value: ValueInput, path: string): Promise<PbValue> {
    const type = isAmbiguous(value) ? await this.typeOf(name) : this.types.get(name);
    return SessionHandle.encodeFor(type, value, path);
  }

  private async overridesFor(overrides: Record<string, ValueInput> | undefined): Promise<Record<string, PbValue>> {
    const out: Record<string, PbValue> = {};
    for (const [name, value] of Object.entries(overrides ?? {})) out[name] = await this.valueFor(name, value, `variable_overrides.${name}`);
    return out;
  }

  // ---------------------------------------------------------------- session

  /** The session, fresh from the server (`NotFoundError` when gone). */
  async get(): Promise<Session> {
    return sessionFromProto((await this.transport.unary("GetSession", { session_id: this.sessionId })).session);
  }

  /** Delete the session with everything it owns; its watch streams end. */
  async delete(): Promise<void> {
    await this.transport.unary("DeleteSession", { session_id: this.sessionId });
    this.types.clear();
  }

  /** Extend the session's TTL from now. */
  async heartbeat(): Promise<Session> {
    return sessionFromProto((await this.transport.unary("Heartbeat", { session_id: this.sessionId })).session);
  }

  /**
   * Set the session's language model: a LiteLLM model string (`openai/gpt-4o-mini`), `offline`
   * (the built-in deterministic test double), or an `LMConfig`; `options` are provider options.
   */
  async configureLm(model: string | LMConfig, options?: Omit<LMConfig, "model">): Promise<Session> {
    const lm: LMConfig = typeof model === "string" ? { model, ...(options ?? {}) } : model;
    const r = await this.transport.unary("ConfigureLM", { session_id: this.sessionId, lm: lmToProto(lm) });
    return sessionFromProto(r.session);
  }

  // ---------------------------------------------------------------- variables

  /**
   * Register a typed variable; resolves to it at version 1. `type` is `"float"`, `"integer"`,
   * `"string"`, `"boolean"`, `"choice"`, `"module"`, `"embedding"`, `"tensor"` or `"json"`.
   */
  async registerVariable(
    name: string,
    type: VariableType | string,
    initialValue: ValueInput,
    constraints: Constraints = {},
    options: { description?: string; metadata?: Record<string, string> } = {},
  ): Promise<Variable> {
    const wireType = variableTypeToProto(type);
    const r = await this.transport.unary("RegisterVariable", {
      session_id: this.sessionId,
      name,
      type: wireType,
      initial_value: SessionHandle.encodeFor(variableTypeFromProto(wireType), initialValue, "initial_value"),
      constraints: constraintsToProto(constraints),
      description: options.description ?? "",
      metadata: { ...(options.metadata ?? {}) },
    });
    return this.remember(variableFromProto(r.variable));
  }

  /** A variable by name or id (`NotFoundError` when unknown). */
  async getVariable(name: string): Promise<Variable> {
    const r = await this.transport.unary("GetVariable", { session_id: this.sessionId, name });
    return this.remember(variableFromProto(r.variable));
  }

  /** The variables whose names match a glob `pattern` (`*`, `?`, `[ab]`; empty = all), in name order. */
  async listVariables(pattern = ""): Promise<Variable[]> {
    const out: Variable[] = [];
    let token = "";
    do { // pages: each is cut to fit in one gRPC message
      const r = await this.transport.unary("ListVariables", { session_id: this.sessionId, pattern, page_token: token });
      for (const v of r.variables ?? []) out.push(this.remember(variableFromProto(v)));
      token = r.next_page_token ?? "";
    } while (token);
    return out;
  }

  /** Delete a variable and its history (`FailedPreconditionError` while a module is bound to it). */
  async deleteVariable(name: string): Promise<void> {
    await this.transport.unary("DeleteVariable", { session_id: this.sessionId, name });
    this.types.clear(); // name and id entries of that variable; cheap to relearn
  }

  /** Write a new version of a variable; resolves to it at its new version. */
  async updateVariable(name: string, value: ValueInput, options: UpdateOptions = {}): Promise<Variable> {
    const request: Pb = {
      session_id: this.sessionId,
      name,
      value: await this.valueFor(name, value, "value"),
      source: options.source ?? "",
      reason: options.reason ?? "",
    };
    if (options.expectedVersion !== undefined) request.expected_version = toLong(options.expectedVersion);
    return this.remember(variableFromProto((await this.transport.unary("UpdateVariable", request)).variable));
  }

  /**
   * Write several variables in one call: `{name: value}` or `[{name, value, expectedVersion}]`.
   * With `atomic`, all or nothing (the first failure rejects); without, each `WriteResult` says
   * whether its write succeeded (`ok`, `error`).
   */
  async batchUpdate(
    updates: Record<string, ValueInput> | BatchWrite[],
    options: { atomic?: boolean; source?: string; reason?: string } = {},
  ): Promise<WriteResult[]> {
    const writes: BatchWrite[] = Array.isArray(updates) ? updates : Object.entries(updates).map(([name, value]) => ({ name, value }));
    const wire: Pb[] = [];
    for (const [i, w] of writes.entries()) {
      const item: Pb = { name: w.name, value: await this.valueFor(w.name, w.value, `writes[${i}].value`) };
      if (w.expectedVersion !== undefined) item.expected_version = toLong(w.expectedVersion);
      wire.push(item);
    }
    const r = await this.transport.unary("BatchUpdateVariables", {
      session_id: this.sessionId,
      writes: wire,
      atomic: options.atomic ?? false,
      source: options.source ?? "",
      reason: options.reason ?? "",
    });
    return (r.results ?? []).map((result: Pb, i: number) => {
      const error = statusError(result.error);
      const variable = result.variable ? this.remember(variableFromProto(result.variable)) : undefined;
      return { name: writes[i]?.name ?? "", ok: error === undefined, variable, error };
    });
  }

  /**
   * Stream variable changes (`{type: "change"}`), resyncs when this watcher fell behind, and
   * finally `{type: "sessionEnded"}`. `names` empty watches every variable. No deadline; stop
   * with `cancel()` or by leaving the `for await` loop.
   */
  watch(names: string | string[] = [], options: { includeInitial?: boolean } = {}): BridgeStream<WatchEvent> {
    const call = this.transport.stream(
      "WatchVariables",
      { session_id: this.sessionId, names: typeof names === "string" ? [names] : names, include_initial: options.includeInitial ?? false },
      undefined,
    );
    return new BridgeStream(call, watchEventFromProto, this.transport.target);
  }

  /** A variable's versions, newest first; `limit` = most entries (0 = all kept). */
  async history(name: string, options: { limit?: number } = {}): Promise<HistoryEntry[]> {
    const limit = options.limit ?? 0;
    const out: HistoryEntry[] = [];
    let token = "";
    do { // pages: each is cut to fit in one gRPC message
      const left = limit > 0 ? limit - out.length : 0;
      const r = await this.transport.unary("GetVariableHistory", { session_id: this.sessionId, name, limit: left, page_token: token });
      out.push(...(r.entries ?? []).map(historyEntryFromProto));
      token = r.next_page_token ?? "";
    } while (token && !(limit > 0 && out.length >= limit));
    return out;
  }

  /** Write a new version whose value equals that of `targetVersion`; resolves to the variable. */
  async rollback(name: string, targetVersion: number, options: UpdateOptions = {}): Promise<Variable> {
    const request: Pb = {
      session_id: this.sessionId,
      name,
      target_version: toLong(targetVersion),
      source: options.source ?? "",
      reason: options.reason ?? "",
    };
    if (options.expectedVersion !== undefined) request.expected_version = toLong(options.expectedVersion);
    return this.remember(variableFromProto((await this.transport.unary("RollbackVariable", request)).variable));
  }

  // ---------------------------------------------------------------- modules

  /**
   * Create a DSPy module (`Predict`, `ChainOfThought`, ...) from a signature in DSPy's string
   * form (`"question -> answer: int"`) or a structured `Signature`; resolves to it at version 1.
   */
  async createModule(moduleType: string, signature: string | Signature, options: CreateModuleOptions = {}): Promise<Module> {
    const request: Pb = {
      session_id: this.sessionId,
      module_id: options.moduleId ?? "",
      module_type: moduleType,
      signature: signatureToProto(signature),
      variable_bindings: { ...(options.bindings ?? {}) },
    };
    if (options.config && Object.keys(options.config).length) request.config = toStruct(options.config, "config");
    if (options.lm !== undefined) request.lm = lmToProto(options.lm);
    return moduleFromProto((await this.transport.unary("CreateModule", request)).module);
  }

  /** A module at its current version, or at an older `version`. */
  async getModule(moduleId: string, version = 0): Promise<Module> {
    const r = await this.transport.unary("GetModule", { session_id: this.sessionId, module_id: moduleId, version: toLong(version) });
    return moduleFromProto(r.module);
  }

  /** The session's modules, in id order. */
  async listModules(): Promise<Module[]> {
    const out: Module[] = [];
    let token = "";
    do { // pages: each is cut to fit in one gRPC message
      const r = await this.transport.unary("ListModules", { session_id: this.sessionId, page_token: token });
      out.push(...(r.modules ?? []).map(moduleFromProto));
      token = r.next_page_token ?? "";
    } while (token);
    return out;
  }

  /** Delete a module with all its versions. */
  async deleteModule(moduleId: string): Promise<void> {
    await this.transport.unary("DeleteModule", { session_id: this.sessionId, module_id: moduleId });
  }

  private async executeRequest(moduleId: string, inputs: Record<string, ValueInput>, options: ExecuteOptions): Promise<Pb> {
    return {
      session_id: this.sessionId,
      module_id: moduleId,
      inputs: toValueMap(inputs),
      variable_overrides: await this.overridesFor(options.overrides),
      options: { timeout_ms: toLong(options.timeoutMs ?? 0), include_trace: options.includeTrace ?? false },
    };
  }

  /**
   * Run a module once, its bound variables resolved at dispatch. `inputs`: one value per input
   * field. The result reports the exact variable versions used (`variablesUsed`).
   */
  async execute(moduleId: string, inputs: Record<string, ValueInput>, options: ExecuteOptions = {}): Promise<ExecuteResult> {
    const request = await this.executeRequest(moduleId, inputs, options);
    return executeResultFromProto(await this.transport.unary("Execute", request, options.timeoutMs ?? 0));
  }

  /** Run a module on many inputs; one item's failure does not fail the batch (see `BatchItemResult`). */
  async executeBatch(
    moduleId: string,
    items: Record<string, ValueInput>[],
    options: ExecuteOptions & { maxConcurrency?: number } = {},
  ): Promise<BatchResult> {
    const request = {
      session_id: this.sessionId,
      module_id: moduleId,
      items: items.map((inputs, i) => ({ inputs: toValueMap(inputs, `items[${i}].inputs`) })),
      variable_overrides: await this.overridesFor(options.overrides),
      options: { timeout_ms: toLong(options.timeoutMs ?? 0), include_trace: options.includeTrace ?? false },
      max_concurrency: options.maxConcurrency ?? 0,
    };
    return batchResultFromProto(await this.transport.unary("ExecuteBatch", request, options.timeoutMs ?? 0));
  }

  /**
   * Run a module once, streaming `{type: "chunk"}` (output text per field) and `{type: "status"}`
   * events, then `{type: "result"}` last. Cancelling the stream stops the LM call; `result()`
   * skips to the final `ExecuteResult`.
   */
  executeStream(moduleId: string, inputs: Record<string, ValueInput>, options: ExecuteOptions = {}): ExecutionStream {
    const call = this.executeRequest(moduleId, inputs, options).then((request) =>
      this.transport.stream("ExecuteStream", request, this.transport.deadline(options.timeoutMs ?? 0)),
    );
    return new ExecutionStream(call, streamEventFromProto, this.transport.target);
  }

  /** The module's DSPy state as DSPy's `save()` JSON (`version` 0 = current). */
  async exportState(moduleId: string, version = 0): Promise<string> {
    const r = await this.transport.unary("ExportModuleState", { session_id: this.sessionId, module_id: moduleId, version: toLong(version) });
    return r.state_json;
  }

  /**
   * Replace the module's DSPy state (JSON text of `Module.save(path)`, or the object of
   * `dump_state()`); resolves to the module at its new version.
   */
  async importState(moduleId: string, state: string | Record<string, unknown>, options: { expectedVersion?: number } = {}): Promise<Module> {
    const request: Pb = {
      session_id: this.sessionId,
      module_id: moduleId,
      state_json: typeof state === "string" ? state : JSON.stringify(state),
    };
    if (options.expectedVersion !== undefined) request.expected_version = toLong(options.expectedVersion);
    return moduleFromProto((await this.transport.unary("ImportModuleState", request)).module);
  }

  /** Make an old module version current again, as a new version equal to it; resolves to the module. */
  async revertModule(moduleId: string, toVersion: number, options: { expectedVersion?: number } = {}): Promise<Module> {
    const request: Pb = { session_id: this.sessionId, module_id: moduleId, to_version: toLong(toVersion) };
    if (options.expectedVersion !== undefined) request.expected_version = toLong(options.expectedVersion);
    return moduleFromProto((await this.transport.unary("RevertModule", request)).module);
  }

  // ---------------------------------------------------------------- evaluation

  private async evaluateRequest(moduleId: string, dataset: Example[], metric: string, options: EvaluateOptions): Promise<Pb> {
    return {
      session_id: this.sessionId,
      module_id: moduleId,
      dataset: datasetToProto(dataset, "dataset"),
      metric: { name: metric, options: toStruct(options.metricOptions ?? {}, "metric.options") },
      num_threads: options.numThreads ?? 0,
      variable_overrides: await this.overridesFor(options.overrides),
      module_version: toLong(options.moduleVersion ?? 0),
    };
  }

  /**
   * Run a module over a dataset and score every prediction with a metric (`exact_match`, `f1`,
   * `contains`, ... — see `ServerInfo.metrics`). A failed example carries its error (not thrown)
   * and scores 0; a bad request rejects before any work. With `progress`, the call streams
   * (EvaluateStream) and `progress(completed, total)` is called as examples finish.
   */
  async evaluate(moduleId: string, dataset: Example[], metric: string, options: EvaluateOptions & { progress?: (completed: number, total: number) => void } = {}): Promise<Evaluation> {
    if (options.progress !== undefined) return this.evaluateStream(moduleId, dataset, metric, options).result(options.progress);
    const request = await this.evaluateRequest(moduleId, dataset, metric, options);
    return evaluationFromProto(await this.transport.unary("Evaluate", request, options.timeoutMs ?? 0));
  }

  /**
   * `evaluate` with progress: streams `{type: "progress", completed, total}` as examples finish,
   * then `{type: "result", evaluation}` last. Cancelling the stream stops the evaluation;
   * `result()` skips to the final `Evaluation`.
   */
  evaluateStream(moduleId: string, dataset: Example[], metric: string, options: EvaluateOptions = {}): EvaluationStream {
    const call = this.evaluateRequest(moduleId, dataset, metric, options).then((evaluation) =>
      this.transport.stream("EvaluateStream", { evaluation }, this.transport.deadline(options.timeoutMs ?? 0)),
    );
    return new EvaluationStream(call, evaluateEventFromProto, this.transport.target);
  }

  // ---------------------------------------------------------------- optimization jobs

  /**
   * Start an optimization job of a module (its current version); resolves to it QUEUED or
   * RUNNING. `optimizer`: a DSPy optimizer (`ServerInfo.optimizers`: `LabeledFewShot`,
   * `BootstrapFewShot`, `MIPROv2`, `GEPA`, ...) or `VariableSearch` (with `variableSearch`).
   * A bad request (unknown optimizer or metric, bad config) rejects with
   * `InvalidArgumentError` before any work starts.
   */
  async startOptimization(moduleId: string, optimizer: string, trainset: Example[], metric: string, options: StartOptimizationOptions = {}): Promise<Job> {
    const request: Pb = {
      session_id: this.sessionId,
      module_id: moduleId,
      optimizer,
      config: toStruct(options.config ?? {}, "config"),
      trainset: datasetToProto(trainset, "trainset"),
      valset: datasetToProto(options.valset ?? [], "valset"),
      metric: { name: metric, options: toStruct(options.metricOptions ?? {}, "metric.options") },
      apply: options.apply ?? false,
    };
    if (options.variableSearch !== undefined) request.variable_search = searchSpecToProto(options.variableSearch);
    return jobFromProto((await this.transport.unary("StartOptimization", request)).job);
  }

  /** A job as it is now (`NotFoundError` when unknown). */
  async getOptimization(jobId: string): Promise<Job> {
    return jobFromProto((await this.transport.unary("GetOptimization", { session_id: this.sessionId, job_id: jobId })).job);
  }

  /**
   * Stream snapshots of a job as it progresses; the last one has a terminal status (`done`).
   * No deadline; stop with `cancel()` or by leaving the `for await` loop (the job keeps running).
   */
  watchOptimization(jobId: string): BridgeStream<Job> {
    const call = this.transport.stream("WatchOptimization", { session_id: this.sessionId, job_id: jobId }, undefined);
    return new BridgeStream(call, (m: Pb) => jobFromProto(m.job), this.transport.target);
  }

  /**
   * Wait until the job reaches a terminal status, following its WatchOptimization stream (no
   * polling); resolves to it then. `maxWaitMs` bounds the wait: past it, `DeadlineExceededError`
   * (the job keeps running).
   */
  async waitOptimization(jobId: string, options: { maxWaitMs?: number } = {}): Promise<Job> {
    const deadline = options.maxWaitMs === undefined ? undefined : Date.now() + options.maxWaitMs;
    const call = this.transport.stream("WatchOptimization", { session_id: this.sessionId, job_id: jobId }, deadline);
    let last: Job | undefined;
    try {
      for await (const job of new BridgeStream(call, (m: Pb) => jobFromProto(m.job), this.transport.target)) {
        last = job;
        if (job.done) return job;
      }
    } catch (err) {
      if (err instanceof DeadlineExceededError) {
        throw new DeadlineExceededError(`job ${jobId} is still ${last?.status ?? "not finished"} after ${options.maxWaitMs}ms`, { cause: err });
      }
      throw err;
    }
    return this.getOptimization(jobId); // the stream ended early: read it once more
  }

  /** Stop a job (it ends CANCELLED within seconds); a finished job is returned unchanged. */
  async cancelOptimization(jobId: string): Promise<Job> {
    return jobFromProto((await this.transport.unary("CancelOptimization", { session_id: this.sessionId, job_id: jobId })).job);
  }

  /** The session's jobs (of one module when `moduleId` is set), oldest first, a page at a time as the iteration proceeds. */
  async *listOptimizations(moduleId = "", options: { pageSize?: number } = {}): AsyncGenerator<Job, void, undefined> {
    let token = "";
    do {
      const r = await this.transport.unary("ListOptimizations", { session_id: this.sessionId, module_id: moduleId, page_size: options.pageSize ?? 0, page_token: token });
      for (const job of r.jobs ?? []) yield jobFromProto(job);
      token = r.next_page_token ?? "";
    } while (token);
  }

  /**
   * Make a SUCCEEDED job's result current: a new module version (source `optimizer:<job_id>`) or
   * variable writes (VariableSearch; `trialNumber` picks a trial other than the best).
   * `FailedPreconditionError` unless the job SUCCEEDED; applying twice changes nothing more.
   */
  async applyOptimization(jobId: string, options: { trialNumber?: number } = {}): Promise<ApplyResult> {
    const request: Pb = { session_id: this.sessionId, job_id: jobId };
    if (options.trialNumber !== undefined) request.trial_number = options.trialNumber;
    return applyResultFromProto(await this.transport.unary("ApplyOptimization", request));
  }

  // ---------------------------------------------------------------- host callbacks

  /**
   * Lend this process's functions to the session's programs over one `Connect` stream: tools
   * (`host:<name>` in a ReAct module's `config.tools`), metrics (`evaluate(..., "host:<name>")`,
   * `startOptimization(..., "host:<name>")`) and LMs (`configureLm("host:<name>")`). Resolves
   * once the sidecar welcomed the host; rejects when it refuses the `hello` (unknown session,
   * a bad name or schema, a name another connection offers with a different schema). Calls are
   * answered concurrently; a broken stream is reconnected with backoff. `close()` stops serving.
   */
  serve(options: ServeOptions): Promise<HostServer> {
    const transport = this.transport;
    const hosting = HostServer.start(() => transport.duplex("Connect"), transport.target, this.sessionId, options);
    return hosting.then((host) => {
      if (transport.closed) void host.close(); // the client was closed while this one connected
      else {
        transport.hosts.add(host);
        void host.done.finally(() => transport.hosts.delete(host)).catch(() => undefined);
      }
      return host;
    });
  }
}
