// Host callbacks: `SessionHandle.serve` lends this process's functions to the session's DSPy
// programs as tools (`host:<name>` in a ReAct module's tools), metrics (`MetricSpec` /
// `evaluate(..., "host:<name>")`) and LMs (`configureLm("host:<name>")`). It opens one `Connect`
// stream (this process runs no server), says `hello`, and answers the calls the sidecar sends,
// many at once, each by its `call_id`; a `cancel` or the call's deadline aborts the call's
// `signal`. When the stream breaks, it reconnects with backoff and says `hello` again.
import * as grpc from "@grpc/grpc-js";

import { BridgeError, fromServiceError } from "./errors";
import { BridgeValue, JsonValue, PbStruct, ValueInput, fromStruct, fromValueMap, toLong, toStruct, toTimestamp, toValue } from "./values";

/** A JSON Schema (an object schema for tool parameters). */
export type JsonSchema = { [key: string]: JsonValue };

/** What every host function gets besides its input. */
export interface HostCallContext {
  /** The sidecar's identifier of this call. */
  callId: string;
  /** When the sidecar stops waiting (by the sidecar's clock); `signal` fires then by this process's clock. */
  deadline?: Date;
  /** Milliseconds the call had left when it was sent. */
  timeoutMs: number;
  /** Aborted when the sidecar cancels the call, its deadline passes, the connection drops or `close()` is called. */
  signal: AbortSignal;
}

/** What a tool gets besides its arguments: which execution or job called it. */
export interface HostToolCallContext extends HostCallContext {
  /** The module whose execution called the tool. */
  moduleId: string;
  /** The optimization job whose run called the tool; empty for `execute` and `evaluate`. */
  jobId: string;
}

/** A tool: called with the arguments the LM gave (shaped by `parameters`); its return value is the observation. */
export type HostToolFn = (args: { [key: string]: JsonValue }, call: HostToolCallContext) => ValueInput | void | Promise<ValueInput | void>;

/** A tool with what the LM should know about it. */
export interface HostTool {
  fn: HostToolFn;
  /** What the tool does; the LM reads it. */
  description?: string;
  /**
   * JSON Schema of the arguments: `{type: "object", properties: {order_id: {type: "string"}},
   * required: ["order_id"]}`. The LM sees these names, types and descriptions. Omitted: no arguments.
   */
  parameters?: JsonSchema;
  /** Longest one call may take (0 / omitted: the sidecar's default). */
  timeoutMs?: number;
  /** Most calls of this tool in flight at once on this connection (0 / omitted: the sidecar's default). */
  maxConcurrency?: number;
}

/** One prediction to score. */
export interface HostMetricInput {
  inputs: Record<string, BridgeValue>;
  /** The example's expected outputs. */
  labels: Record<string, BridgeValue>;
  /** The module's outputs. */
  prediction: Record<string, BridgeValue>;
  /** The `MetricSpec.options` given with the metric. */
  options: { [key: string]: JsonValue };
  /** The optimization job scoring; empty for `evaluate`. */
  jobId: string;
}

/** A metric: a score (higher is better, usually 0..1), or a score with feedback text (GEPA learns from it). */
export type HostMetricFn = (example: HostMetricInput, call: HostCallContext) => number | boolean | HostMetricScore | Promise<number | boolean | HostMetricScore>;
export interface HostMetricScore {
  score: number;
  feedback?: string;
}
export interface HostMetric {
  fn: HostMetricFn;
  description?: string;
}

/** One LM call: chat messages (`{role, content}`) and options (temperature, max_tokens, ...). */
export interface HostLMRequest {
  messages: { [key: string]: JsonValue }[];
  options: { [key: string]: JsonValue };
}
/** An LM: the completion text, or the text with the tokens used. */
export type HostLMFn = (request: HostLMRequest, call: HostCallContext) => string | HostLMCompletion | Promise<string | HostLMCompletion>;
export interface HostLMCompletion {
  text: string;
  usage?: { promptTokens?: number; completionTokens?: number };
}

export interface ReconnectOptions {
  /** First wait after a drop (default 100 ms); doubles per failed attempt, with jitter. */
  initialDelayMs?: number;
  /** Longest wait between attempts (default 5000 ms). */
  maxDelayMs?: number;
  /** Attempts in a row before giving up (default: unlimited). */
  maxAttempts?: number;
}

export interface ServeOptions {
  /** Name (referenced as `host:<name>`) -> a tool, or a bare function taking no arguments. */
  tools?: Record<string, HostTool | HostToolFn>;
  /** Name -> a metric, or a bare metric function. */
  metrics?: Record<string, HostMetric | HostMetricFn>;
  /** Name -> an LM function. */
  lms?: Record<string, HostLMFn>;
  /** Reconnect when the stream breaks (default true); `false` ends serving at the first drop. */
  reconnect?: boolean | ReconnectOptions;
  /** Told about every welcome: the first, and each after a reconnect. */
  onConnect?: (welcome: HostWelcome) => void;
  /** Told about every drop, and whether serving goes on (a reconnect follows) or has ended. */
  onDisconnect?: (error: BridgeError, reconnecting: boolean) => void;
}

/** What the sidecar accepted from `hello`. */
export interface HostWelcome {
  connectionId: string;
  tools: string[];
  metrics: string[];
  lms: string[];
}

// Wire objects are untyped proto-loader output.
type Pb = any;
type Stream = grpc.ClientDuplexStream<Pb, Pb>;

/** Codes after which saying `hello` again cannot succeed: serving ends instead of reconnecting. */
const FINAL_CODES = new Set(["INVALID_ARGUMENT", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "UNAUTHENTICATED", "FAILED_PRECONDITION", "UNIMPLEMENTED", "OUT_OF_RANGE"]);
/** How long `close()` waits for the sidecar to end the stream before cancelling it. */
const CLOSE_GRACE_MS = 5000;
/** Longest error text sent back for a failed call (the sidecar bounds answers; keep ours well inside). */
const MAX_ERROR_CHARS = 4000;

function errorText(err: unknown): string {
  const text = err instanceof Error ? err.message || err.name : String(err);
  return text.length > MAX_ERROR_CHARS ? `${text.slice(0, MAX_ERROR_CHARS)}…` : text || "error";
}

function helloFor(sessionId: string, options: ServeOptions): Pb {
  const tools = Object.entries(options.tools ?? {}).map(([name, t]) => {
    const tool: HostTool = typeof t === "function" ? { fn: t } : t;
    const wire: Pb = {
      name,
      description: tool.description ?? "",
      timeout_ms: toLong(tool.timeoutMs ?? 0),
      max_concurrency: tool.maxConcurrency ?? 0,
    };
    if (tool.parameters !== undefined) wire.parameters = toStruct(tool.parameters, `tools.${name}.parameters`);
    return wire;
  });
  const metrics = Object.entries(options.metrics ?? {}).map(([name, m]) => ({ name, description: typeof m === "function" ? "" : (m.description ?? "") }));
  const lms = Object.keys(options.lms ?? {}).map((name) => ({ name }));
  return { hello: { session_id: sessionId, tools, metrics, lms } };
}

/** A call being answered: aborted on cancel, deadline, drop or close. */
interface Running {
  controller: AbortController;
  timer: NodeJS.Timeout;
}

/**
 * The host side of `Connect`, made by `SessionHandle.serve`. Serving goes on (reconnecting as
 * needed) until `close()`; `done` settles when it has ended for good.
 */
export class HostServer {
  private stream: Stream | undefined;
  private readonly running = new Map<string, Running>();
  private closing = false;
  private welcomeInfo: HostWelcome = { connectionId: "", tools: [], metrics: [], lms: [] };
  private connections = 0;
  private resolveDone!: () => void;
  private rejectDone!: (err: BridgeError) => void;
  private wakeUp: (() => void) | undefined;

  /** Resolves after `close()`; rejects with the error that ended serving otherwise. */
  readonly done: Promise<void>;

  private constructor(
    private readonly open: () => Stream,
    private readonly target: string,
    /** The session served. */
    readonly sessionId: string,
    private readonly options: ServeOptions,
  ) {
    this.done = new Promise<void>((resolve, reject) => {
      this.resolveDone = resolve;
      this.rejectDone = reject;
    });
    this.done.catch(() => undefined); // observed through `done` by whoever cares
  }

  /** Connect and say `hello`; resolves once welcomed, rejects when the first `hello` is refused. */
  static async start(open: () => Stream, target: string, sessionId: string, options: ServeOptions): Promise<HostServer> {
    const server = new HostServer(open, target, sessionId, options);
    const hello = helloFor(sessionId, options); // a bad schema throws here, before any call
    await server.connect(hello);
    return server;
  }

  /** The sidecar's id of the current connection (changes on reconnect). */
  get connectionId(): string {
    return this.welcomeInfo.connectionId;
  }

  /** The names the sidecar accepted. */
  get welcome(): HostWelcome {
    return this.welcomeInfo;
  }

  /** Connections made so far (1 + reconnects). */
  get connectionCount(): number {
    return this.connections;
  }

  /** Calls being answered now. */
  get inFlight(): number {
    return this.running.size;
  }

  /** Stop serving: end the stream (the sidecar unregisters the names) and abort calls in flight. */
  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.wakeUp?.();
      this.abortAll("the host closed the connection");
      const stream = this.stream;
      if (stream) {
        stream.end(); // the sidecar ends the stream OK once it has read our end
        // A sidecar that does not answer the end in time gets the stream cancelled.
        setTimeout(() => stream.cancel(), CLOSE_GRACE_MS).unref();
      } else {
        this.resolveDone();
      }
    }
    await this.done.catch(() => undefined);
  }

  /**
   * Open a stream and say `hello`: resolves on `welcome`, rejects when the stream ends before.
   * After the welcome, the stream's end starts `reconnect` (or ends serving after `close()`).
   */
  private connect(hello: Pb): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const stream = this.open();
      this.stream = stream;
      let welcomed = false;
      stream.on("data", (message: Pb) => {
        if (message.message === "welcome") {
          const w = message.welcome ?? {};
          this.welcomeInfo = { connectionId: w.connection_id ?? "", tools: [...(w.tools ?? [])], metrics: [...(w.metrics ?? [])], lms: [...(w.lms ?? [])] };
          this.connections += 1;
          welcomed = true;
          this.options.onConnect?.(this.welcomeInfo);
          resolve();
        } else if (welcomed) {
          this.dispatch(stream, message);
        }
      });
      stream.on("error", () => undefined); // the final status comes through "status"
      stream.on("status", (status: grpc.StatusObject) => {
        if (this.stream === stream) this.stream = undefined;
        this.abortAll("the connection to the sidecar ended");
        const error =
          status.code === grpc.status.OK
            ? new BridgeError("the sidecar ended the host connection", { code: "UNAVAILABLE" })
            : fromServiceError(Object.assign(new Error(status.details), status), this.target);
        if (!welcomed) reject(error);
        else if (this.closing) this.resolveDone();
        else void this.reconnect(hello, error);
      });
      stream.write(hello);
    });
  }

  /** After a drop: say `hello` again with backoff until welcomed, or end serving. */
  private async reconnect(hello: Pb, dropped: BridgeError): Promise<void> {
    const policy = this.options.reconnect ?? true;
    const settings: ReconnectOptions = typeof policy === "object" ? policy : {};
    let error = dropped;
    for (let attempt = 1; ; attempt += 1) {
      const retrying = policy !== false && !this.closing && !FINAL_CODES.has(error.code) && attempt <= (settings.maxAttempts ?? Infinity);
      this.options.onDisconnect?.(error, retrying);
      if (!retrying) {
        if (this.closing) this.resolveDone();
        else this.rejectDone(error);
        return;
      }
      const base = Math.min(settings.maxDelayMs ?? 5000, (settings.initialDelayMs ?? 100) * 2 ** (attempt - 1));
      await this.sleep(base / 2 + Math.random() * (base / 2));
      if (this.closing) {
        this.resolveDone();
        return;
      }
      try {
        await this.connect(hello);
        return;
      } catch (err) {
        error = err as BridgeError;
      }
    }
  }

  /** Wait `ms`, or less when `close()` is called. */
  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      this.wakeUp = done;
    });
  }

  private abortAll(reason: string): void {
    for (const callId of [...this.running.keys()]) this.finish(callId, new BridgeError(reason, { code: "CANCELLED" }));
  }

  /** Forget a call; with `abort`, abort its signal (its answer, if any, is then dropped). */
  private finish(callId: string, abort?: BridgeError): void {
    const call = this.running.get(callId);
    if (!call) return;
    clearTimeout(call.timer);
    this.running.delete(callId);
    if (abort) call.controller.abort(abort);
  }

  private dispatch(stream: Stream, message: Pb): void {
    switch (message.message) {
      case "tool_call":
        return this.toolCall(stream, message.tool_call);
      case "metric_call":
        return this.metricCall(stream, message.metric_call);
      case "lm_call":
        return this.lmCall(stream, message.lm_call);
      case "cancel":
        return this.finish(message.cancel?.call_id ?? "", new BridgeError("the sidecar cancelled the call", { code: "CANCELLED" }));
      default:
        return; // a message kind newer than this client
    }
  }

  /** Run one call and send its answer, unless it was cancelled or its connection is gone. */
  private run<T>(stream: Stream, wire: Pb, work: (context: HostCallContext) => Promise<T>, answer: (result: T) => Pb, failure: (text: string) => Pb): void {
    const callId: string = wire.call_id;
    const controller = new AbortController();
    const timeoutMs = Number(wire.timeout_ms ?? 0);
    const timer = setTimeout(() => this.finish(callId, new BridgeError("the call's deadline passed", { code: "DEADLINE_EXCEEDED" })), timeoutMs > 0 ? timeoutMs : 2 ** 31 - 1);
    timer.unref();
    this.finish(callId, new BridgeError("the sidecar sent the call again", { code: "CANCELLED" }));
    this.running.set(callId, { controller, timer });
    const context: HostCallContext = { callId, deadline: toTimestamp(wire.deadline), timeoutMs, signal: controller.signal };
    const send = (message: Pb) => {
      if (this.running.get(callId)?.controller !== controller) return; // cancelled, past its deadline, or its connection dropped
      this.finish(callId);
      if (this.stream !== stream || stream.writableEnded) return;
      stream.write(message);
    };
    Promise.resolve()
      .then(() => work(context))
      .then(
        (result) => {
          let message: Pb;
          try {
            message = answer(result);
          } catch (err) {
            message = failure(errorText(err));
          }
          send(message);
        },
        (err: unknown) => send(failure(errorText(err))),
      );
  }

  private toolCall(stream: Stream, call: Pb): void {
    const entry = this.options.tools?.[call.tool];
    const fn = typeof entry === "function" ? entry : entry?.fn;
    const failure = (error: string) => ({ tool_result: { call_id: call.call_id, error } });
    this.run(
      stream,
      call,
      async (context) => {
        if (!fn) throw new Error(`this host offers no tool ${JSON.stringify(call.tool)}`);
        return fn(fromStruct(call.arguments as PbStruct), { ...context, moduleId: call.module_id ?? "", jobId: call.job_id ?? "" });
      },
      (output) => ({ tool_result: { call_id: call.call_id, output: toValue(output === undefined ? null : output) } }),
      failure,
    );
  }

  private metricCall(stream: Stream, call: Pb): void {
    const entry = this.options.metrics?.[call.metric];
    const fn = typeof entry === "function" ? entry : entry?.fn;
    this.run(
      stream,
      call,
      async (context) => {
        if (!fn) throw new Error(`this host offers no metric ${JSON.stringify(call.metric)}`);
        const example: HostMetricInput = {
          inputs: fromValueMap(call.inputs),
          labels: fromValueMap(call.labels),
          prediction: fromValueMap(call.prediction),
          options: fromStruct(call.options as PbStruct),
          jobId: call.job_id ?? "",
        };
        return fn(example, context);
      },
      (result) => {
        const scored = typeof result === "object" ? result : { score: Number(result) };
        if (!Number.isFinite(scored.score)) throw new TypeError(`the metric returned ${JSON.stringify(result)}, not a finite score`);
        return { metric_result: { call_id: call.call_id, score: scored.score, feedback: scored.feedback ?? "" } };
      },
      (error) => ({ metric_result: { call_id: call.call_id, error } }),
    );
  }

  private lmCall(stream: Stream, call: Pb): void {
    const fn = this.options.lms?.[call.lm];
    this.run(
      stream,
      call,
      async (context) => {
        if (!fn) throw new Error(`this host offers no LM ${JSON.stringify(call.lm)}`);
        const request: HostLMRequest = { messages: (call.messages ?? []).map((m: PbStruct) => fromStruct(m)), options: fromStruct(call.options as PbStruct) };
        return fn(request, context);
      },
      (result) => {
        const completion = typeof result === "string" ? { text: result } : result;
        if (typeof completion?.text !== "string") throw new TypeError("the LM returned no text");
        const usage = completion.usage ?? {};
        return {
          lm_result: {
            call_id: call.call_id,
            text: completion.text,
            usage: { lm_calls: "1", prompt_tokens: toLong(usage.promptTokens ?? 0), completion_tokens: toLong(usage.completionTokens ?? 0), cost_usd: 0 },
          },
        };
      },
      (error) => ({ lm_result: { call_id: call.call_id, error } }),
    );
  }
}
