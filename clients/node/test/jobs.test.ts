// Optimization jobs and streamed evaluation end to end against a real sidecar (offline LM):
// a job watched to SUCCEEDED and applied, another cancelled, a VariableSearch applied by trial.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import {
  DeadlineExceededError,
  EvaluateStreamEvent,
  FailedPreconditionError,
  InvalidArgumentError,
  Job,
  NotFoundError,
  SessionHandle,
} from "../src/index";
import { rejectsWith } from "../testlib/rejects";
import { sidecarPerFile } from "../testlib/sidecar";
import { HELD_OUT, SIGNATURE, TRAINSET } from "../testlib/topics";

const env = sidecarPerFile();

/** A session with module `clf` (Predict, `text -> topic`) on the offline LM. */
async function topicSession(lmOptions: Record<string, number> = {}): Promise<SessionHandle> {
  const session = await env.client.createSession();
  await session.configureLm("offline", { options: lmOptions });
  await session.createModule("Predict", { text: SIGNATURE, instructions: "Classify the text's topic." }, { moduleId: "clf" });
  return session;
}

/** The share of held-out examples the module's current version labels right. */
async function heldOutScore(session: SessionHandle): Promise<number> {
  const batch = await session.executeBatch("clf", HELD_OUT.map((e) => e.inputs));
  const right = batch.results.filter((r, i) => r.ok && r.outputs.topic === HELD_OUT[i]!.labels!.topic).length;
  return right / HELD_OUT.length;
}

describe("optimization jobs", () => {
  it("watches a job to SUCCEEDED, applies its result, and lists and reads it", async () => {
    const session = await topicSession();
    assert.equal(await heldOutScore(session), 0, "the unoptimized module misses every held-out example");

    const job = await session.startOptimization("clf", "LabeledFewShot", TRAINSET, "exact_match", { valset: HELD_OUT, config: { k: 12 } });
    assert.ok(job.status === "QUEUED" || job.status === "RUNNING", job.status);
    assert.equal(job.done, false);
    assert.deepEqual([job.optimizer, job.moduleId, job.sessionId], ["LabeledFewShot", "clf", session.sessionId]);
    assert.deepEqual(job.config, { k: 12 });
    assert.deepEqual([job.metric, job.trainsetSize, job.valsetSize, job.applyRequested], ["exact_match", 12, 8, false]);
    assert.ok(job.createTime instanceof Date);

    const snapshots: Job[] = [];
    for await (const snapshot of session.watchOptimization(job.jobId)) snapshots.push(snapshot);
    const final = snapshots.at(-1)!;
    assert.ok(snapshots.length >= 2, `progress before the end: ${snapshots.map((s) => s.status).join(", ")}`);
    assert.equal(snapshots[0]!.done, false);
    assert.equal(snapshots.filter((s) => s.done).length, 1, "exactly the last snapshot is terminal");
    assert.equal(final.status, "SUCCEEDED");
    assert.equal(final.progress.phase, "done");
    assert.ok(snapshots.some((s) => s.progress.phase === "scoring" && s.progress.total > 0), snapshots.map((s) => s.progress.phase).join(", "));
    assert.ok(final.startTime instanceof Date && final.endTime instanceof Date);
    assert.equal(final.error, undefined);
    const result = final.moduleResult!;
    assert.equal(result.previousVersion, 1);
    assert.equal(result.moduleVersion, 0, "not applied yet");
    assert.equal(result.scoreAfter, 1);
    assert.ok(result.scoreBefore !== undefined && result.scoreBefore < 1);
    assert.equal(final.bestScore, 1);
    assert.equal(result.demoCount, 12);
    assert.ok(JSON.parse(result.stateJson));
    assert.equal(final.variableSearchResult, undefined);
    assert.equal(final.applied, false);

    const applied = await session.applyOptimization(job.jobId);
    assert.equal(applied.job.applied, true);
    assert.equal(applied.module?.version, 2);
    assert.equal(applied.module?.demoCount, 12);
    assert.deepEqual(applied.variables, []);
    assert.equal(applied.job.moduleResult?.moduleVersion, 2);
    assert.equal(await heldOutScore(session), 1, "the applied result labels every held-out example");
    const again = await session.applyOptimization(job.jobId);
    assert.equal(again.job.applied, true);
    assert.equal((await session.getModule("clf")).version, 2, "applying twice makes no new version");

    const read = await session.getOptimization(job.jobId);
    assert.deepEqual([read.status, read.applied], ["SUCCEEDED", true]);
    assert.equal((await session.waitOptimization(job.jobId)).status, "SUCCEEDED", "waiting on a finished job returns it");
    const listed: string[] = [];
    for await (const j of session.listOptimizations("clf", { pageSize: 1 })) listed.push(j.jobId);
    assert.deepEqual(listed, [job.jobId]);
    await session.delete();
  });

  it("cancels a running job, and refuses to apply it", async () => {
    const session = await topicSession({ latency_ms: 300 }); // slow enough to be cancelled mid-run
    const job = await session.startOptimization("clf", "BootstrapFewShot", TRAINSET, "exact_match", { valset: HELD_OUT, apply: true });
    assert.equal(job.applyRequested, true);
    // Cancel once the job is seen running, so the cancel stops a live optimizer process.
    for await (const snapshot of session.watchOptimization(job.jobId)) {
      if (snapshot.status === "RUNNING" || snapshot.done) break;
    }
    const cancelled = await session.cancelOptimization(job.jobId);
    assert.equal(cancelled.status, "CANCELLED");
    assert.equal(cancelled.done, true);
    const waited = await session.waitOptimization(job.jobId, { maxWaitMs: 30_000 });
    assert.deepEqual([waited.status, waited.applied, waited.moduleResult], ["CANCELLED", false, undefined]);
    const refused = await rejectsWith(session.applyOptimization(job.jobId), FailedPreconditionError);
    assert.ok(refused.reason.length > 0);
    assert.equal((await session.getModule("clf")).version, 1, "nothing applied");
    assert.equal((await session.cancelOptimization(job.jobId)).status, "CANCELLED", "cancelling twice returns it unchanged");

    const jobs: Job[] = [];
    for await (const j of session.listOptimizations()) jobs.push(j);
    assert.deepEqual(jobs.map((j) => [j.jobId, j.status]), [[job.jobId, "CANCELLED"]]);
    await session.delete();
  });

  it("bounds waitOptimization with maxWaitMs", async () => {
    const session = await topicSession({ latency_ms: 300 });
    const job = await session.startOptimization("clf", "BootstrapFewShot", TRAINSET, "exact_match");
    const err = await rejectsWith(session.waitOptimization(job.jobId, { maxWaitMs: 200 }), DeadlineExceededError);
    assert.match(err.message, new RegExp(`job ${job.jobId} is still`));
    assert.equal((await session.cancelOptimization(job.jobId)).status, "CANCELLED");
    await session.delete();
  });

  it("rejects bad job requests with precise errors and starts nothing", async () => {
    const session = await topicSession();
    const unknown = await rejectsWith(session.startOptimization("clf", "NoSuchOptimizer", TRAINSET, "exact_match"), InvalidArgumentError);
    assert.equal(unknown.reason, "UNKNOWN_OPTIMIZER");
    const badMetric = await rejectsWith(session.startOptimization("clf", "LabeledFewShot", TRAINSET, "no_such_metric"), InvalidArgumentError);
    assert.equal(badMetric.reason, "UNKNOWN_METRIC");
    const badConfig = await rejectsWith(session.startOptimization("clf", "LabeledFewShot", TRAINSET, "exact_match", { config: { nope: 1 } }), InvalidArgumentError);
    assert.ok(badConfig.fieldViolations.some((v) => v.field.includes("nope")), JSON.stringify(badConfig.fieldViolations));
    await rejectsWith(session.startOptimization("clf", "LabeledFewShot", [], "exact_match"), InvalidArgumentError);
    const jobs: Job[] = [];
    for await (const j of session.listOptimizations()) jobs.push(j);
    assert.deepEqual(jobs, []);
    const missing = await rejectsWith(session.getOptimization("no-such-job"), NotFoundError);
    assert.ok(missing.reason.length > 0);
    await rejectsWith(session.cancelOptimization("no-such-job"), NotFoundError);
    await rejectsWith(session.applyOptimization("no-such-job"), NotFoundError);
    await rejectsWith(session.waitOptimization("no-such-job"), NotFoundError);
    await session.delete();
  });

  it("runs a VariableSearch and applies a chosen trial's values", async () => {
    const session = await env.client.createSession();
    await session.configureLm("offline");
    await session.registerVariable("strategy", "module", "Predict", { choices: ["Predict", "ChainOfThought"] });
    await session.createModule("Predict", SIGNATURE, { moduleId: "clf", bindings: { module_type: "strategy" } });
    const job = await session.startOptimization("clf", "VariableSearch", TRAINSET.slice(0, 4), "exact_match", {
      variableSearch: { variables: { strategy: ["Predict", "ChainOfThought"] }, sampler: "grid", objectives: { metric: "maximize", tokens: "minimize" }, seed: 7 },
    });
    const done = await session.waitOptimization(job.jobId, { maxWaitMs: 120_000 });
    assert.equal(done.status, "SUCCEEDED", done.error?.message);
    const search = done.variableSearchResult!;
    assert.equal(done.moduleResult, undefined);
    assert.deepEqual(search.trials.map((t) => t.number), [0, 1]);
    assert.deepEqual(new Set(search.trials.map((t) => t.values.strategy)), new Set(["Predict", "ChainOfThought"]));
    assert.ok(search.trials.every((t) => t.state === "COMPLETE" && typeof t.objectives.metric === "number" && typeof t.objectives.tokens === "number"));
    assert.ok(search.paretoFront.length >= 1 && search.best !== undefined);

    const chosen = search.trials.find((t) => t.values.strategy === "ChainOfThought")!;
    const applied = await session.applyOptimization(job.jobId, { trialNumber: chosen.number });
    assert.equal(applied.module, undefined);
    assert.deepEqual(applied.variables.map((v) => [v.name, v.value, v.version, v.source]), [["strategy", "ChainOfThought", 2, `optimizer:${job.jobId}`]]);
    await assert.rejects(
      session.startOptimization("clf", "VariableSearch", TRAINSET, "exact_match", { variableSearch: { variables: { strategy: null }, sampler: "bogus" as "grid" } }),
      TypeError,
    );
    await session.delete();
  });
});

describe("streamed evaluation", () => {
  it("streams progress, then the evaluation last; cancels quietly", async () => {
    const session = await topicSession();
    const events: EvaluateStreamEvent[] = [];
    for await (const event of session.evaluateStream("clf", HELD_OUT, "exact_match", { numThreads: 2 })) events.push(event);
    const last = events.at(-1)!;
    assert.equal(last.type, "result");
    assert.equal(events.filter((e) => e.type === "result").length, 1);
    const progress = events.filter((e): e is Extract<EvaluateStreamEvent, { type: "progress" }> => e.type === "progress");
    assert.ok(progress.length >= 1);
    assert.ok(progress.every((p) => p.total === HELD_OUT.length && p.completed <= p.total));
    assert.deepEqual(progress.map((p) => p.completed), [...progress.map((p) => p.completed)].sort((a, b) => a - b), "completed only grows");
    const evaluation = (last as Extract<EvaluateStreamEvent, { type: "result" }>).evaluation;
    assert.equal(evaluation.results.length, HELD_OUT.length);
    assert.equal(evaluation.score, 0);

    const seen: [number, number][] = [];
    const viaCallback = await session.evaluate("clf", HELD_OUT, "exact_match", { progress: (completed, total) => seen.push([completed, total]) });
    assert.equal(viaCallback.results.length, HELD_OUT.length);
    assert.ok(seen.length >= 1 && seen.every(([, total]) => total === HELD_OUT.length));
    assert.equal((await session.evaluateStream("clf", HELD_OUT.slice(0, 2), "exact_match").result()).results.length, 2);

    const stream = session.evaluateStream("clf", HELD_OUT, "exact_match", { numThreads: 1 });
    const kinds: string[] = [];
    for await (const event of stream) {
      kinds.push(event.type);
      stream.cancel(); // ends the loop without an error
    }
    assert.ok(stream.isCancelled);
    assert.ok(kinds.length <= 1);

    const bad = await rejectsWith(session.evaluateStream("clf", HELD_OUT, "no_such_metric").result(), InvalidArgumentError);
    assert.equal(bad.reason, "UNKNOWN_METRIC");
    await rejectsWith(session.evaluateStream("missing", HELD_OUT, "exact_match").result(), NotFoundError);
    await session.delete();
  });
});
