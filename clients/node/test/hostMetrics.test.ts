// Host metrics and LMs: a real sidecar's Evaluate and optimization jobs (GEPA included, its
// reflection reading the metric's feedback) scored by a Node metric, and an execution answered
// by a Node LM, served with session.serve.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { FailedPreconditionError } from "../src/index";
import { rejectsWith } from "../testlib/rejects";
import { sidecarPerFile } from "../testlib/sidecar";
import { HELD_OUT, SIGNATURE, TRAINSET } from "../testlib/topics";

const env = sidecarPerFile();

describe("host metrics", () => {
  it("an Evaluate is scored by a Node metric, with the example and prediction it scores", async () => {
    const session = await env.client.createSession();
    await session.configureLm("offline");
    await session.createModule("Predict", SIGNATURE, { moduleId: "clf" });
    const scored: { inputs: unknown; labels: unknown; options: unknown }[] = [];
    const host = await session.serve({
      metrics: {
        // Scores 1 for a prediction that names any topic at all (the unoptimized module never does).
        said_a_topic: {
          description: "1 when the prediction is one of the known topics",
          fn: ({ inputs, labels, prediction, options, jobId }) => {
            scored.push({ inputs, labels, options });
            assert.equal(jobId, "");
            const topics = options.topics as string[];
            return { score: topics.includes(String(prediction.topic)) ? 1 : 0.25, feedback: `expected ${String(labels.topic)}` };
          },
        },
      },
    });
    const dataset = HELD_OUT.slice(0, 3);
    const evaluation = await session.evaluate("clf", dataset, "host:said_a_topic", { metricOptions: { topics: ["sports", "weather", "cooking", "finance"] } });
    assert.equal(evaluation.results.length, 3);
    assert.ok(evaluation.results.every((r) => r.ok && r.score === 0.25), JSON.stringify(evaluation.results));
    assert.equal(evaluation.score, 0.25);
    assert.equal(scored.length, 3);
    assert.deepEqual(new Set(scored.map((s) => JSON.stringify(s.inputs))), new Set(dataset.map((e) => JSON.stringify(e.inputs))));
    assert.deepEqual(scored[0]!.options, { topics: ["sports", "weather", "cooking", "finance"] });

    const unknown = await rejectsWith(session.evaluate("clf", dataset, "host:nobody"), FailedPreconditionError);
    assert.equal(unknown.reason, "HOST_METRIC_UNAVAILABLE");
    assert.match(unknown.message, /said_a_topic/);
    await host.close();
    await session.delete();
  });
});

describe("host metrics in optimization", () => {
  it("an optimization job is scored by a Node metric (job process -> sidecar -> this process)", async () => {
    const session = await env.client.createSession();
    await session.configureLm("offline");
    await session.createModule("Predict", SIGNATURE, { moduleId: "clf" });
    const jobIds = new Set<string>();
    const host = await session.serve({
      metrics: {
        topic_match: ({ labels, prediction, jobId }) => {
          jobIds.add(jobId);
          const right = prediction.topic === labels.topic;
          return { score: right ? 1 : 0, feedback: right ? "right topic" : `the topic is ${String(labels.topic)}` };
        },
      },
    });
    const job = await session.startOptimization("clf", "LabeledFewShot", TRAINSET, "host:topic_match", { valset: HELD_OUT, config: { k: 12 } });
    const done = await session.waitOptimization(job.jobId, { maxWaitMs: 120_000 });
    assert.equal(done.status, "SUCCEEDED", done.error?.message);
    assert.equal(done.metric, "host:topic_match");
    assert.equal(done.moduleResult?.scoreBefore, 0);
    assert.equal(done.moduleResult?.scoreAfter, 1);
    assert.deepEqual([...jobIds], [job.jobId], "every score came from this process, for this job");
    await host.close();
    await session.delete();
  });
});

describe("a Node metric's feedback in GEPA", () => {
  it("GEPA scores candidates with a Node metric and its reflection (a Node LM) reads the metric's feedback", async () => {
    const session = await env.client.createSession();
    await session.configureLm("offline");
    await session.createModule("Predict", SIGNATURE, { moduleId: "clf" });
    const FEEDBACK = "FEEDBACK-node-51c: answer with the topic in one word";
    const reflectionPrompts: string[] = [];
    const jobIds = new Set<string>();
    const host = await session.serve({
      metrics: {
        quality: ({ labels, prediction, jobId }) => {
          jobIds.add(jobId);
          return { score: prediction.topic === labels.topic ? 1 : 0.25, feedback: FEEDBACK };
        },
      },
      lms: {
        reflector: ({ messages }) => {
          reflectionPrompts.push(JSON.stringify(messages));
          return "```\nName the topic of the text in one word.\n```";
        },
      },
    });
    const job = await session.startOptimization("clf", "GEPA", TRAINSET.slice(0, 6), "host:quality", {
      valset: HELD_OUT.slice(0, 3),
      config: { max_metric_calls: 12, reflection_minibatch_size: 2, reflection_lm: "host:reflector" },
    });
    const done = await session.waitOptimization(job.jobId, { maxWaitMs: 180_000 });
    assert.equal(done.status, "SUCCEEDED", done.error?.message);
    assert.deepEqual([...jobIds], [job.jobId]);
    // Only this metric scores 0.25: a built-in metric would give 0 for a wrong topic.
    assert.ok(done.moduleResult!.scoreBefore! >= 0.25 && done.bestScore! >= 0.25, JSON.stringify(done.moduleResult));
    assert.ok(reflectionPrompts.length >= 1, "GEPA never asked its reflection LM");
    assert.ok(reflectionPrompts.some((p) => p.includes(FEEDBACK)), "the metric's feedback reached GEPA's reflection");
    await host.close();
    await session.delete();
  });
});

describe("host LMs", () => {
  it("an execution is answered by a Node LM, with the prompt it was sent", async () => {
    const session = await env.client.createSession();
    const prompts: { messages: unknown[]; options: unknown }[] = [];
    const host = await session.serve({
      lms: {
        house_llm: ({ messages, options }) => {
          prompts.push({ messages, options });
          return { text: "[[ ## answer ## ]]\nforty-two\n\n[[ ## completed ## ]]", usage: { promptTokens: 11, completionTokens: 3 } };
        },
      },
    });
    await session.configureLm("host:house_llm");
    await session.createModule("Predict", "question -> answer", { moduleId: "qa" });
    const result = await session.execute("qa", { question: "What is six times seven?" });
    assert.equal(result.outputs.answer, "forty-two");
    assert.equal(prompts.length, 1);
    assert.match(JSON.stringify(prompts[0]!.messages), /six times seven/);
    assert.ok(result.usage.promptTokens >= 11 && result.usage.completionTokens >= 3, JSON.stringify(result.usage));
    await host.close();
    await session.delete();
  });
});
