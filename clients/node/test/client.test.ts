// End-to-end tests against a real sidecar (python -m dspy_bridge serve --lm offline), started once.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import {
  AlreadyExistsError,
  BridgeClient,
  BridgeError,
  ExecuteStreamEvent,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  SessionHandle,
  Tensor,
  UnauthenticatedError,
  UnavailableError,
  VersionConflictError,
  WatchEvent,
  json,
} from "../src/index";
import { rejectsWith } from "../testlib/rejects";
import { Sidecar, startSidecar } from "../testlib/sidecar";

let sidecar: Sidecar;
let client: BridgeClient;

before(async () => {
  sidecar = await startSidecar();
  client = new BridgeClient(sidecar.target, { timeoutMs: 20_000 });
  await client.waitUntilReady();
});

after(async () => {
  client?.close();
  await sidecar?.stop();
});

describe("server", () => {
  it("pings and describes itself", async () => {
    const pong = await client.ping("hello");
    assert.equal(pong.message, "hello");
    assert.ok(pong.serverTime instanceof Date);
    assert.ok(pong.version.length > 0);
    const info = await client.serverInfo();
    assert.ok(info.moduleTypes.includes("Predict"));
    assert.ok(info.variableTypes.includes("integer"));
    assert.equal(info.pool.workers, 0);
    assert.equal(info.defaultLmModel, "offline");
    // The defaults the sidecar enforces.
    assert.equal(info.limits.maxSessions, 10_000);
    assert.equal(info.limits.requests.maxDatasetExamples, 10_000);
    assert.deepEqual([info.limits.jobs.maxRunningJobs, info.limits.jobs.maxRunningJobsPerCaller, info.limits.jobs.maxJobDurationMs], [2, 1, 3_600_000]);
    assert.equal(info.limits.hostCalls.defaultToolTimeoutMs, 30_000);
    assert.deepEqual(info.limits.lmAllowLists, { apiBaseCount: 0, keyEnvPatternCount: 1 });
  });

  it("reports the limits it was started with, and never the allow-lists' entries", async () => {
    const gateway = "http://127.0.0.1:9/internal-gateway";
    const tuned = await startSidecar(["--max-running-jobs", "5", "--max-job-seconds", "0", "--max-session-bytes", "1048576", "--lm-allowed-api-bases", gateway]);
    const other = new BridgeClient(tuned.target, { timeoutMs: 20_000 });
    try {
      const { limits } = await other.serverInfo();
      assert.deepEqual([limits.jobs.maxRunningJobs, limits.jobs.maxRunningJobsPerCaller, limits.jobs.maxJobDurationMs], [5, 3, undefined]);
      assert.equal(limits.maxSessionBytes, 1_048_576);
      assert.equal(limits.lmAllowLists.apiBaseCount, 1);
      assert.ok(!JSON.stringify(limits).includes("internal-gateway"));
    } finally {
      other.close();
      await tuned.stop();
    }
  });

  it("reports an unreachable sidecar as UNAVAILABLE", async () => {
    const dead = new BridgeClient("127.0.0.1:1", { timeoutMs: 5_000 });
    try {
      const err = await rejectsWith(dead.ping(), UnavailableError);
      assert.equal(err.code, "UNAVAILABLE");
      assert.equal(err.reason, "");
      assert.ok(err.retryable);
    } finally {
      dead.close();
    }
  });
});

describe("sessions", () => {
  it("creates, reads, lists, heartbeats and deletes a session", async () => {
    const session = await client.createSession({ metadata: { app: "node-test" }, ttlSeconds: 600 });
    assert.match(session.sessionId, /\S{8,}/);
    assert.deepEqual(session.session?.metadata, { app: "node-test" });
    assert.equal(session.session?.ttlSeconds, 600);
    assert.ok(session.session?.expireTime instanceof Date);

    const again = client.session(session.sessionId);
    const info = await again.get();
    assert.equal(info.sessionId, session.sessionId);
    assert.equal(info.variableCount, 0);

    const beat = await again.heartbeat();
    assert.ok(beat.expireTime!.getTime() >= session.session!.expireTime!.getTime());

    const ids: string[] = [];
    for await (const s of client.listSessions({ pageSize: 1 })) ids.push(s.sessionId);
    assert.ok(ids.includes(session.sessionId));

    await session.delete();
    const err = await rejectsWith(again.get(), NotFoundError);
    assert.equal(err.code, "NOT_FOUND");
    assert.equal(err.reason, "SESSION_NOT_FOUND");
    assert.equal(err.domain, "dspy-bridge");
  });

  it("takes a session id and refuses a duplicate", async () => {
    const id = `node-${process.pid}-dup`;
    const session = await client.createSession({ sessionId: id });
    assert.equal(session.sessionId, id);
    const err = await rejectsWith(client.createSession({ sessionId: id }), AlreadyExistsError);
    assert.equal(err.code, "ALREADY_EXISTS");
    await session.delete();
  });

  it("configures the session's LM", async () => {
    const session = await client.createSession();
    const info = await session.configureLm("offline", { options: { latency_ms: 0 } });
    assert.equal(info.lm?.model, "offline");
    assert.deepEqual(info.lm?.options, { latency_ms: "0" });
    await session.delete();
  });
});

describe("variables", () => {
  let session: SessionHandle;
  before(async () => {
    session = await client.createSession();
  });
  after(async () => {
    await session.delete();
  });

  it("registers variables of several types and reads them back as JS values", async () => {
    const f = await session.registerVariable("temperature", "float", 0.7, { min: 0, max: 1 }, { description: "sampling" });
    assert.equal(f.type, "float");
    assert.equal(f.value, 0.7);
    assert.equal(f.version, 1);
    assert.equal(f.source, "host");
    assert.deepEqual(f.constraints, { min: 0, max: 1 });
    assert.equal(f.description, "sampling");
    assert.ok(f.createTime instanceof Date);

    const i = await session.registerVariable("max_tokens", "integer", 256, { min: 1, max: 4096 });
    assert.equal(i.type, "integer");
    assert.equal(i.value, 256);
    assert.equal(typeof i.value, "number");

    const s = await session.registerVariable("greeting", "string", "hello", { pattern: "[a-z]+", maxLength: 10 });
    assert.equal(s.value, "hello");
    assert.deepEqual(s.constraints, { pattern: "[a-z]+", maxLength: 10 });

    const b = await session.registerVariable("verbose", "boolean", false);
    assert.equal(b.value, false);

    const c = await session.registerVariable("strategy", "module", "Predict", { choices: ["Predict", "ChainOfThought"] });
    assert.equal(c.value, "Predict");

    const ch = await session.registerVariable("tone", "choice", "formal", { choices: ["formal", "casual"] });
    assert.deepEqual(ch.constraints.choices, ["formal", "casual"]);

    const j = await session.registerVariable("config", "json", { retries: 3, tags: ["a", "b"], extra: null });
    assert.deepEqual(j.value, { retries: 3, tags: ["a", "b"], extra: null });

    const e = await session.registerVariable("embedding", "embedding", [0.1, 0.2, 0.3], { dims: [3] });
    assert.deepEqual(e.value, [0.1, 0.2, 0.3]);

    const t = await session.registerVariable("weights", "tensor", Tensor.fromArray([[1, 2], [3, 4]], "float32"), { dtype: "float32", dims: [2, 2] });
    assert.ok(t.value instanceof Tensor);
    assert.deepEqual(t.value.shape, [2, 2]);
    assert.deepEqual(t.value.values(), [1, 2, 3, 4]);

    const all = await session.listVariables();
    assert.deepEqual(
      all.map((v) => v.name),
      ["config", "embedding", "greeting", "max_tokens", "strategy", "temperature", "tone", "verbose", "weights"],
    );
    const some = await session.listVariables("t*");
    assert.deepEqual(some.map((v) => v.name), ["temperature", "tone"]);
    const byId = await session.getVariable(f.id);
    assert.equal(byId.name, "temperature");
  });

  it("writes whole numbers to INTEGER variables as integers, even from a fresh handle", async () => {
    const fresh = client.session(session.sessionId); // knows no types yet: looks the type up
    const v = await fresh.updateVariable("max_tokens", 512);
    assert.equal(v.value, 512);
    assert.equal(v.version, 2);
    const err = await rejectsWith(fresh.updateVariable("max_tokens", 1.5), InvalidArgumentError);
    assert.equal(err.fieldViolations[0]?.field, "value");
  });

  it("writes anything to a JSON variable as JSON", async () => {
    const v = await client.session(session.sessionId).updateVariable("config", "just a string");
    assert.equal(v.value, "just a string");
    const w = await session.updateVariable("config", json(42));
    assert.equal(w.value, 42);
  });

  it("rejects a constraint violation with INVALID_ARGUMENT and a field violation", async () => {
    const err = await rejectsWith(session.updateVariable("temperature", 1.5), InvalidArgumentError);
    assert.equal(err.code, "INVALID_ARGUMENT");
    assert.equal(err.grpcCode, 3);
    assert.equal(err.reason, "VARIABLE_CONSTRAINT_VIOLATION");
    assert.deepEqual(err.fieldViolations.map((v) => v.field), ["value"]);
    assert.match(err.fieldViolations[0]!.description, /max/);
    assert.match(err.message, /^INVALID_ARGUMENT VARIABLE_CONSTRAINT_VIOLATION: .*\(value\)$/);
    // A bad request never changes state.
    assert.equal((await session.getVariable("temperature")).version, 1);

    const bad = await rejectsWith(session.registerVariable("pick", "choice", "c", { choices: ["a", "b"] }), InvalidArgumentError);
    assert.ok(bad.fieldViolations.length > 0);
    await rejectsWith(session.getVariable("nope"), NotFoundError);
  });

  it("refuses a stale expectedVersion with VersionConflictError and the current version", async () => {
    await session.registerVariable("counter", "integer", 0);
    const v2 = await session.updateVariable("counter", 1, { expectedVersion: 1, reason: "first" });
    assert.equal(v2.version, 2);
    const err = await rejectsWith(session.updateVariable("counter", 5, { expectedVersion: 1 }), VersionConflictError);
    assert.equal(err.code, "ABORTED");
    assert.equal(err.reason, "VERSION_CONFLICT");
    assert.equal(err.currentVersion, 2);
    assert.equal(err.metadata.current_version, "2");
    // read-modify-write retry with the version the error reported
    const v3 = await session.updateVariable("counter", 2, { expectedVersion: err.currentVersion });
    assert.equal(v3.version, 3);
    assert.equal(v3.value, 2);
  });

  it("batch-updates atomically or write by write", async () => {
    const atomicErr = await rejectsWith(session.batchUpdate({ temperature: 0.1, max_tokens: 99999 }, { atomic: true }), InvalidArgumentError);
    assert.equal(atomicErr.reason, "VARIABLE_CONSTRAINT_VIOLATION");
    assert.equal((await session.getVariable("temperature")).version, 1, "atomic: nothing written");

    const results = await session.batchUpdate(
      [
        { name: "temperature", value: 0.2 },
        { name: "max_tokens", value: 99999 },
        { name: "verbose", value: true, expectedVersion: 7 },
      ],
      { reason: "batch" },
    );
    assert.deepEqual(results.map((r) => [r.name, r.ok]), [["temperature", true], ["max_tokens", false], ["verbose", false]]);
    assert.equal(results[0]!.variable?.value, 0.2);
    assert.ok(results[1]!.error instanceof InvalidArgumentError);
    assert.ok(results[2]!.error instanceof VersionConflictError);
    assert.equal((results[2]!.error as VersionConflictError).currentVersion, 1);
  });

  it("keeps history newest first and rolls back as a new version", async () => {
    await session.registerVariable("rate", "float", 0.1);
    await session.updateVariable("rate", 0.2, { source: "tuner", reason: "try 0.2" });
    await session.updateVariable("rate", 0.3, { reason: "try 0.3" });
    const history = await session.history("rate");
    assert.deepEqual(history.map((e) => [e.version, e.value]), [[3, 0.3], [2, 0.2], [1, 0.1]]);
    assert.equal(history[1]!.source, "tuner");
    assert.equal(history[1]!.reason, "try 0.2");
    assert.equal((await session.history("rate", { limit: 1 })).length, 1);

    const rolled = await session.rollback("rate", 1, { reason: "back to start" });
    assert.equal(rolled.version, 4);
    assert.equal(rolled.value, 0.1);
    const after4 = await session.history("rate", { limit: 1 });
    assert.deepEqual([after4[0]!.version, after4[0]!.value, after4[0]!.reason], [4, 0.1, "back to start"]);
    await rejectsWith(session.rollback("rate", 1, { expectedVersion: 2 }), VersionConflictError);
  });

  it("deletes a variable", async () => {
    await session.registerVariable("scratch", "string", "x");
    await session.deleteVariable("scratch");
    await rejectsWith(session.getVariable("scratch"), NotFoundError);
  });
});

describe("watch", () => {
  it("streams updates in version order, and stops on cancel", async () => {
    const session = await client.createSession();
    await session.registerVariable("level", "integer", 0, { min: 0, max: 100 });
    await session.registerVariable("other", "string", "x");
    const stream = session.watch(["level"], { includeInitial: true });
    const events = stream[Symbol.asyncIterator]();

    // The INITIAL event proves the watch is registered: no sleep needed before writing.
    const first = await events.next();
    assert.equal(first.done, false);
    const initial = first.value as WatchEvent;
    assert.equal(initial.type, "change");
    assert.ok(initial.type === "change" && initial.kind === "initial" && initial.variable.version === 1);

    for (let n = 1; n <= 5; n += 1) await session.updateVariable("level", n * 10, { reason: `step ${n}` });
    await session.updateVariable("other", "not watched");

    const seen: [number, unknown, string][] = [];
    for (let n = 1; n <= 5; n += 1) {
      const next = await events.next();
      assert.equal(next.done, false);
      const event = next.value as WatchEvent;
      assert.ok(event.type === "change" && event.kind === "updated", JSON.stringify(event));
      seen.push([event.variable.version, event.variable.value, event.reason]);
    }
    assert.deepEqual(seen, [
      [2, 10, "step 1"],
      [3, 20, "step 2"],
      [4, 30, "step 3"],
      [5, 40, "step 4"],
      [6, 50, "step 5"],
    ]);

    stream.cancel();
    assert.equal((await events.next()).done, true);
    assert.ok(stream.isCancelled);
    await session.delete();
  });

  it("watches every variable and ends with sessionEnded when the session is deleted", async () => {
    const session = await client.createSession();
    await session.registerVariable("a", "float", 1);
    const stream = session.watch([], { includeInitial: true });
    const kinds: string[] = [];
    for await (const event of stream) {
      if (event.type === "change") {
        kinds.push(`${event.kind}:${event.variable.name}`);
        if (event.kind === "initial") await session.registerVariable("b", "boolean", true);
        if (event.kind === "registered") await session.delete();
      } else {
        kinds.push(event.type);
      }
    }
    assert.deepEqual(kinds, ["initial:a", "registered:b", "sessionEnded"]);
  });

  it("reports a watch on an unknown session as NOT_FOUND from the loop", async () => {
    const stream = client.session("no-such-session").watch();
    await rejectsWith(
      (async () => {
        for await (const _ of stream) void _;
      })(),
      NotFoundError,
    );
  });
});

describe("modules", () => {
  let session: SessionHandle;
  before(async () => {
    session = await client.createSession();
    await session.configureLm("offline");
    await session.registerVariable("temperature", "float", 0.7, { min: 0, max: 2 });
    await session.registerVariable("strategy", "module", "Predict", { choices: ["Predict", "ChainOfThought"] });
  });
  after(async () => {
    await session.delete();
  });

  it("creates a module with bindings and executes it, reporting the variable versions used", async () => {
    const module = await session.createModule("Predict", "question -> answer: int", {
      moduleId: "qa",
      bindings: { temperature: "temperature", module_type: "strategy" },
    });
    assert.equal(module.moduleId, "qa");
    assert.equal(module.version, 1);
    assert.deepEqual(module.variableBindings, { temperature: "temperature", module_type: "strategy" });
    assert.deepEqual(
      module.signature.fields.map((f) => [f.name, f.role, f.type]),
      [["question", "input", "str"], ["answer", "output", "int"]],
    );

    const first = await session.execute("qa", { question: "What is 2 + 2?" });
    assert.equal(typeof first.outputs.answer, "number");
    assert.ok(Number.isInteger(first.outputs.answer));
    assert.deepEqual(first.variablesUsed.temperature, { value: 0.7, version: 1, overridden: false });
    assert.deepEqual(first.variablesUsed.strategy, { value: "Predict", version: 1, overridden: false });
    assert.equal(first.moduleVersion, 1);
    assert.ok(first.usage.lmCalls >= 1);

    await session.updateVariable("temperature", 0.2, { reason: "less random" });
    await session.updateVariable("strategy", "ChainOfThought");
    const second = await session.execute("qa", { question: "What is 2 + 2?" }, { includeTrace: true, timeoutMs: 10_000 });
    assert.deepEqual(second.variablesUsed.temperature, { value: 0.2, version: 2, overridden: false });
    assert.equal(second.variablesUsed.strategy?.version, 2);
    assert.ok("reasoning" in second.outputs, "ChainOfThought adds reasoning");
    assert.ok(second.trace.length >= 1);
    assert.ok(second.trace[0]!.messages.length >= 1);

    const overridden = await session.execute("qa", { question: "2+2?" }, { overrides: { temperature: 1.5 } });
    assert.deepEqual(overridden.variablesUsed.temperature, { value: 1.5, version: 0, overridden: true });
    await rejectsWith(session.execute("qa", { question: "2+2?" }, { overrides: { temperature: 5 } }), InvalidArgumentError);

    const modules = await session.listModules();
    assert.deepEqual(modules.map((m) => m.moduleId), ["qa"]);
    assert.equal((await session.getModule("qa")).moduleType, "Predict");
  });

  it("rejects bad modules with the right errors", async () => {
    await rejectsWith(session.createModule("Predict", "question -> -> answer"), InvalidArgumentError);
    await rejectsWith(session.createModule("NoSuchModule", "q -> a"), InvalidArgumentError);
    await session.registerVariable("label", "string", "x");
    await rejectsWith(session.createModule("Predict", "q -> a", { bindings: { temperature: "label" } }), FailedPreconditionError);
    await rejectsWith(session.execute("missing", { q: "x" }), NotFoundError);
  });

  it("streams chunks, then the result last", async () => {
    await session.createModule("Predict", "topic -> story", { moduleId: "writer", config: {} });
    const events: ExecuteStreamEvent[] = [];
    for await (const event of session.executeStream("writer", { topic: "a robot" })) events.push(event);
    const types = events.map((e) => e.type);
    assert.equal(types.at(-1), "result");
    assert.equal(types.filter((t) => t === "result").length, 1);
    const chunks = events.filter((e): e is Extract<ExecuteStreamEvent, { type: "chunk" }> => e.type === "chunk");
    assert.ok(chunks.length >= 1);
    assert.ok(types.indexOf("chunk") < types.indexOf("result"));
    const result = (events.at(-1) as Extract<ExecuteStreamEvent, { type: "result" }>).result;
    const streamed = chunks.filter((c) => c.field === "story").map((c) => c.text).join("");
    assert.equal(streamed, result.outputs.story);
    assert.ok(chunks.some((c) => c.field === "story" && c.last));

    const quick = await session.executeStream("writer", { topic: "a cat" }).result();
    assert.equal(typeof quick.outputs.story, "string");

    await rejectsWith(session.executeStream("missing", { topic: "x" }).result(), NotFoundError);
  });

  it("runs a batch where one item's failure does not fail the batch", async () => {
    const batch = await session.executeBatch("qa", [{ question: "1+1?" }, { wrong_field: "x" }, { question: "2+2?" }], { maxConcurrency: 2 });
    assert.deepEqual(batch.results.map((r) => r.ok), [true, false, true]);
    assert.ok(batch.results[1]!.error instanceof BridgeError);
    assert.equal(typeof batch.results[2]!.outputs.answer, "number");
    assert.deepEqual(batch.results[0]!.trace, [], "no trace unless asked");
    const traced = await session.executeBatch("qa", [{ question: "3+3?" }], { includeTrace: true });
    assert.ok(traced.results[0]!.trace.length >= 1 && traced.results[0]!.trace[0]!.messages.length >= 1);
  });

  it("evaluates a module on a dataset", async () => {
    const evaluation = await session.evaluate(
      "qa",
      [
        { inputs: { question: "1+1?" }, labels: { answer: 2 } },
        { inputs: { question: "2+2?" }, labels: { answer: 4 } },
      ],
      "exact_match",
      { metricOptions: { field: "answer" } },
    );
    assert.equal(evaluation.results.length, 2);
    assert.deepEqual(evaluation.results.map((r) => r.index), [0, 1]);
    assert.ok(evaluation.results.every((r) => r.ok && typeof r.outputs.answer === "number"));
    assert.ok(evaluation.score >= 0 && evaluation.score <= 1);
    const err = await rejectsWith(session.evaluate("qa", [{ inputs: { question: "x" } }], "no_such_metric"), InvalidArgumentError);
    assert.equal(err.reason, "UNKNOWN_METRIC");
  });

  it("exports and imports DSPy state as a new module version", async () => {
    const state = await session.exportState("qa");
    const parsed = JSON.parse(state);
    assert.ok(Array.isArray(parsed.demos));
    parsed.demos = [{ question: "What is 2 + 2?", answer: 4 }];
    const before = await session.getModule("qa");
    const imported = await session.importState("qa", parsed, { expectedVersion: before.version });
    assert.equal(imported.version, before.version + 1);
    assert.equal(imported.demoCount, 1);
    await rejectsWith(session.importState("qa", state, { expectedVersion: before.version }), VersionConflictError);
    const reverted = await session.revertModule("qa", before.version);
    assert.equal(reverted.version, before.version + 2);
    assert.equal(reverted.demoCount, 0);
    await session.deleteModule("qa");
    await rejectsWith(session.getModule("qa"), NotFoundError);
  });
});

describe("a sidecar that requires a bearer token", () => {
  const token = "node-test-token";
  let secured: Sidecar;
  before(async () => {
    secured = await startSidecar(["--auth-token", token]);
  });
  after(async () => {
    await secured?.stop();
  });

  it("refuses calls without the token and accepts them with it as metadata", async () => {
    const anonymous = new BridgeClient(secured.target, { timeoutMs: 20_000 });
    const refused = await rejectsWith(anonymous.createSession(), UnauthenticatedError);
    assert.equal(refused.reason, "AUTH_REQUIRED");
    anonymous.close();

    const wrong = new BridgeClient(secured.target, { timeoutMs: 20_000, metadata: { authorization: "Bearer nope" } });
    assert.equal((await rejectsWith(wrong.createSession(), UnauthenticatedError)).reason, "AUTH_INVALID");
    wrong.close();

    const authorized = new BridgeClient(secured.target, {
      timeoutMs: 20_000,
      metadata: { authorization: `Bearer ${token}` },
    });
    const session = await authorized.createSession();
    assert.ok(session.sessionId);
    await session.delete();
    authorized.close();
  });
});
