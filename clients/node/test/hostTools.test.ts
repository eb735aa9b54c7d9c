// Host tools: a real sidecar's ReAct module (driven by the offline LM) calling a Node function
// served with session.serve — the observation, many calls at once, cancel, a tool's error as the
// observation, a host that is gone, and serving across a network drop.
import assert from "node:assert/strict";
import { describe, it } from "node:test";

import { BridgeClient, FailedPreconditionError, HostCallContext, SessionHandle, UnavailableError } from "../src/index";
import { deferred } from "../testlib/deferred";
import { rejectsWith } from "../testlib/rejects";
import { sidecarPerFile } from "../testlib/sidecar";
import { startTcpProxy } from "../testlib/tcpProxy";

const env = sidecarPerFile();

const ORDER_SCHEMA = { type: "object", properties: { order_id: { type: "string", description: "the order's id" } }, required: ["order_id"] };

/** A session on the offline LM with a ReAct module `agent` (order_id -> status) using `host:lookup_order`. */
async function agentSession(): Promise<SessionHandle> {
  const session = await env.client.createSession();
  await session.configureLm("offline");
  return session;
}

async function createAgent(session: SessionHandle): Promise<void> {
  await session.createModule("ReAct", "order_id -> status", { moduleId: "agent", config: { tools: ["host:lookup_order"], max_iters: 3 } });
}

describe("host tools", () => {
  it("a ReAct module calls a Node tool; its output is the observation and reaches the prediction", async () => {
    const session = await agentSession();
    const seen: { args: unknown; moduleId: string; jobId: string; timeoutMs: number }[] = [];
    const host = await session.serve({
      tools: {
        lookup_order: {
          description: "Look up an order's status by its id",
          parameters: ORDER_SCHEMA,
          fn: (args, call) => {
            seen.push({ args, moduleId: call.moduleId, jobId: call.jobId, timeoutMs: call.timeoutMs });
            return `order ${String(args.order_id)}: shipped on Tuesday`;
          },
        },
      },
    });
    await createAgent(session);
    const result = await session.execute("agent", { order_id: "A-17" });
    assert.deepEqual(seen.map((s) => [s.args, s.moduleId, s.jobId]), [[{ order_id: "A-17" }, "agent", ""]]);
    assert.ok(seen[0]!.timeoutMs > 0);
    assert.match(String(result.outputs.status), /order A-17: shipped on Tuesday/);
    const trajectory = JSON.stringify(result.outputs.trajectory ?? result.outputs);
    assert.match(trajectory, /lookup_order/);
    assert.match(trajectory, /shipped on Tuesday/);
    await host.close();
    await session.delete();
  });

  it("a tool called by an optimization's runs is told the job and the module", async () => {
    const session = await agentSession();
    const calls = new Set<string>();
    const host = await session.serve({
      tools: {
        lookup_order: {
          parameters: ORDER_SCHEMA,
          fn: (args, call) => {
            calls.add(`${call.jobId}/${call.moduleId}`);
            return `order ${String(args.order_id)} shipped`;
          },
        },
      },
    });
    await createAgent(session);
    const orders = ["11", "12", "13"].map((id) => ({ inputs: { order_id: id }, labels: { status: `order ${id} shipped` } }));
    const job = await session.startOptimization("agent", "LabeledFewShot", orders, "contains", { valset: orders.slice(0, 2) });
    const done = await session.waitOptimization(job.jobId, { maxWaitMs: 120_000 });
    assert.equal(done.status, "SUCCEEDED", done.error?.message);
    assert.deepEqual([...calls], [`${job.jobId}/agent`]);
    await host.close();
    await session.delete();
  });

  it("answers many calls at once on one connection", async () => {
    const session = await agentSession();
    const items = 6;
    let inFlight = 0;
    let most = 0;
    const together = deferred();
    const release = deferred();
    const host = await session.serve({
      tools: {
        lookup_order: {
          parameters: ORDER_SCHEMA,
          fn: async (args) => {
            inFlight += 1;
            most = Math.max(most, inFlight);
            if (inFlight === 2) together.resolve(); // two calls are waiting on this process at once
            await release.promise;
            inFlight -= 1;
            return `order ${String(args.order_id)}: ok`;
          },
        },
      },
    });
    await createAgent(session);
    const batch = session.executeBatch("agent", Array.from({ length: items }, (_, i) => ({ order_id: `B-${i}` })), { maxConcurrency: items });
    await together.promise;
    assert.ok(host.inFlight >= 2);
    release.resolve();
    const result = await batch;
    assert.ok(most >= 2, `at most ${most} calls in flight`);
    assert.deepEqual(result.results.map((r) => r.ok), Array(items).fill(true));
    result.results.forEach((r, i) => assert.match(String(r.outputs.status), new RegExp(`order B-${i}: ok`)));
    assert.equal(host.inFlight, 0);
    await host.close();
    await session.delete();
  });

  it("a tool's error is the observation the agent reads", async () => {
    const session = await agentSession();
    const host = await session.serve({
      tools: {
        lookup_order: {
          parameters: ORDER_SCHEMA,
          fn: (args) => {
            throw new Error(`no order ${String(args.order_id)}`);
          },
        },
      },
    });
    await createAgent(session);
    const result = await session.execute("agent", { order_id: "Z-9" });
    assert.match(JSON.stringify(result.outputs), /no order Z-9/);
    await host.close();
    await session.delete();
  });

  it("a cancelled execution aborts the tool call's signal", async () => {
    const session = await agentSession();
    const started = deferred<HostCallContext>();
    const aborted = deferred<unknown>();
    const host = await session.serve({
      tools: {
        lookup_order: {
          parameters: ORDER_SCHEMA,
          fn: (_args, call) =>
            new Promise<string>((_resolve, reject) => {
              call.signal.addEventListener("abort", () => {
                aborted.resolve(call.signal.reason);
                reject(call.signal.reason);
              });
              started.resolve(call);
            }),
        },
      },
    });
    await createAgent(session);
    const stream = session.executeStream("agent", { order_id: "C-1" });
    const consumed = (async () => {
      for await (const _ of stream) void _;
    })();
    await started.promise;
    assert.equal(host.inFlight, 1);
    stream.cancel();
    await consumed;
    const reason = await aborted.promise;
    assert.match(String(reason), /CANCELLED/);
    assert.equal(host.inFlight, 0);
    await host.close();
    await session.delete();
  });

  it("a tool past its deadline is a timeout observation, and its signal aborts", async () => {
    const session = await agentSession();
    const aborted = deferred<unknown>();
    const host = await session.serve({
      tools: {
        lookup_order: {
          parameters: ORDER_SCHEMA,
          timeoutMs: 300,
          fn: (_args, call) =>
            new Promise<string>((_resolve, reject) => {
              call.signal.addEventListener("abort", () => {
                aborted.resolve(call.signal.reason);
                reject(call.signal.reason);
              });
            }),
        },
      },
    });
    await createAgent(session);
    const result = await session.execute("agent", { order_id: "T-1" });
    const trajectory = result.outputs.trajectory as { [key: string]: unknown };
    // The call's deadline is the tool's 300 ms capped by the execution's remaining time, so the
    // message may name a millisecond or two less on a loaded machine.
    assert.match(String(trajectory.observation_0), /timed out.*within \d+ ms/, "the agent saw a timeout observation");
    assert.match(String(await aborted.promise), /CANCELLED|DEADLINE_EXCEEDED/);
    assert.equal(host.inFlight, 0);
    await host.close();
    await session.delete();
  });

  it("names what is connected when a host tool is unknown, and fails UNAVAILABLE once the host is gone", async () => {
    const session = await agentSession();
    const unknown = await rejectsWith(createAgent(session), FailedPreconditionError);
    assert.equal(unknown.reason, "HOST_TOOL_UNAVAILABLE");
    const host = await session.serve({ tools: { lookup_order: { parameters: ORDER_SCHEMA, fn: () => "fine" } } });
    await createAgent(session);
    await host.close();
    const gone = await rejectsWith(session.execute("agent", { order_id: "D-1" }), UnavailableError);
    assert.equal(gone.reason, "HOST_DISCONNECTED");
    assert.ok(gone.retryable);
    await session.delete();
  });
});

describe("host tools and the client's close", () => {
  it("closing the client stops the serve connections made through it", async () => {
    const session = await agentSession();
    const own = new BridgeClient(env.sidecar.target, { timeoutMs: 30_000 });
    const host = await own.session(session.sessionId).serve({ tools: { lookup_order: { parameters: ORDER_SCHEMA, fn: () => "served" } } });
    await createAgent(session);
    own.close();
    await host.done; // resolves: serving ended as by host.close()
    const gone = await rejectsWith(session.execute("agent", { order_id: "F-1" }), UnavailableError);
    assert.equal(gone.reason, "HOST_DISCONNECTED");
    await session.delete();
  });
});

describe("host tools across a reconnect", () => {
  it("keeps serving after the network drops", async () => {
    const proxy = await startTcpProxy(env.sidecar.target);
    const viaProxy = new BridgeClient(proxy.target, { timeoutMs: 30_000 });
    try {
      const session = await agentSession();
      const reconnected = deferred();
      let welcomes = 0;
      const host = await viaProxy.session(session.sessionId).serve({
        tools: { lookup_order: { parameters: ORDER_SCHEMA, fn: (args) => `order ${String(args.order_id)}: served` } },
        reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
        onConnect: () => {
          welcomes += 1;
          if (welcomes === 2) reconnected.resolve();
        },
      });
      await createAgent(session);
      assert.match(String((await session.execute("agent", { order_id: "E-1" })).outputs.status), /order E-1: served/);
      proxy.cut();
      await reconnected.promise;
      assert.match(String((await session.execute("agent", { order_id: "E-2" })).outputs.status), /order E-2: served/);
      await host.close();
      await session.delete();
    } finally {
      viaProxy.close();
      await proxy.stop();
    }
  });
});
