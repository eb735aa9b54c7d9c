// session.serve (host callbacks over Connect) against a real sidecar: hello and welcome, refused
// hellos, several connections, reconnecting after the network drops, the session going away.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { AlreadyExistsError, BridgeClient, BridgeError, InvalidArgumentError, NotFoundError, UnauthenticatedError } from "../src/index";
import { deferred } from "../testlib/deferred";
import { rejectsWith } from "../testlib/rejects";
import { Sidecar, sidecarPerFile, startSidecar } from "../testlib/sidecar";
import { startTcpProxy } from "../testlib/tcpProxy";

const env = sidecarPerFile();

const LOOKUP = {
  description: "Look up an order by its id",
  parameters: { type: "object", properties: { order_id: { type: "string", description: "the order's id" } }, required: ["order_id"] },
  fn: ({ order_id }: { [key: string]: unknown }) => `order ${String(order_id)}: shipped`,
};

describe("session.serve", () => {
  it("says hello, is welcomed with the names it offers, and closes", async () => {
    const session = await env.client.createSession();
    const host = await session.serve({
      tools: { lookup_order: LOOKUP, ping: () => "pong" },
      metrics: { quality: { description: "how good", fn: () => 1 }, strict: () => ({ score: 0, feedback: "no" }) },
      lms: { mine: () => "text" },
    });
    assert.match(host.connectionId, /\S+/);
    assert.deepEqual(host.welcome.tools, ["lookup_order", "ping"]);
    assert.deepEqual(host.welcome.metrics, ["quality", "strict"]);
    assert.deepEqual(host.welcome.lms, ["mine"]);
    assert.equal(host.connectionCount, 1);
    assert.equal(host.sessionId, session.sessionId);
    assert.equal(host.inFlight, 0);
    await host.close();
    await host.done; // resolves after close()
    await host.close(); // twice is fine
    await session.delete();
  });

  it("is refused for an unknown session, bad names and schemas, with the field named", async () => {
    await rejectsWith(env.client.session("no-such-session").serve({ tools: { lookup_order: LOOKUP } }), NotFoundError);
    const session = await env.client.createSession();
    const badName = await rejectsWith(session.serve({ tools: { "host:x": LOOKUP } }), InvalidArgumentError);
    assert.deepEqual(badName.fieldViolations.map((v) => v.field), ["hello.tools[0].name"]);
    const badSchema = await rejectsWith(
      session.serve({ tools: { lookup_order: { ...LOOKUP, parameters: { type: "object", properties: { "not an id": { type: "string" } } } } } }),
      InvalidArgumentError,
    );
    assert.deepEqual(badSchema.fieldViolations.map((v) => v.field), ["hello.tools[0].parameters.properties"]);
    await rejectsWith(session.serve({ metrics: { "1st": () => 1 } }), InvalidArgumentError);
    await assert.rejects(session.serve({ tools: { t: { ...LOOKUP, parameters: { bad: Number.NaN } } } }), TypeError);
    await session.delete();
  });

  it("lets several connections offer a name with the same schema, not a different one", async () => {
    const session = await env.client.createSession();
    const first = await session.serve({ tools: { lookup_order: LOOKUP } });
    const second = await session.serve({ tools: { lookup_order: LOOKUP } });
    assert.notEqual(first.connectionId, second.connectionId);
    const conflict = await rejectsWith(
      session.serve({ tools: { lookup_order: { ...LOOKUP, parameters: { type: "object", properties: { id: { type: "integer" } } } } } }),
      AlreadyExistsError,
    );
    assert.equal(conflict.reason, "HOST_NAME_CONFLICT");
    await Promise.all([first.close(), second.close()]);
    await session.delete();
  });

  it("reconnects and says hello again when the network drops", async () => {
    const proxy = await startTcpProxy(env.sidecar.target);
    const viaProxy = new BridgeClient(proxy.target, { timeoutMs: 30_000 });
    try {
      const session = await viaProxy.createSession();
      const drops: [string, boolean][] = [];
      const reconnected = deferred();
      const welcomes: string[] = [];
      const host = await session.serve({
        tools: { lookup_order: LOOKUP },
        reconnect: { initialDelayMs: 50, maxDelayMs: 500 },
        onConnect: (welcome) => {
          welcomes.push(welcome.connectionId);
          if (welcomes.length === 2) reconnected.resolve();
        },
        onDisconnect: (error, reconnecting) => {
          drops.push([error.code, reconnecting]);
        },
      });
      const firstConnection = host.connectionId;
      assert.deepEqual(welcomes, [firstConnection]);
      proxy.cut();
      await reconnected.promise;
      assert.equal(host.connectionCount, 2, `reconnected after ${JSON.stringify(drops)}`);
      assert.notEqual(host.connectionId, firstConnection);
      assert.ok(drops.length >= 1 && drops.every(([, reconnecting]) => reconnecting), JSON.stringify(drops));
      assert.deepEqual(host.welcome.tools, ["lookup_order"]);
      await host.close();
      await session.delete();
    } finally {
      viaProxy.close();
      await proxy.stop();
    }
  });

  it("stops serving, without reconnecting, when the session is deleted", async () => {
    const session = await env.client.createSession();
    const ended = deferred<[string, boolean]>();
    const host = await session.serve({ tools: { lookup_order: LOOKUP }, onDisconnect: (error, reconnecting) => ended.resolve([error.code, reconnecting]) });
    await session.delete();
    assert.deepEqual(await ended.promise, ["NOT_FOUND", false]);
    await assert.rejects(host.done, (err: unknown) => err instanceof NotFoundError);
    await host.close(); // a no-op now
  });

  it("ends at the first drop with reconnect: false", async () => {
    const proxy = await startTcpProxy(env.sidecar.target);
    const viaProxy = new BridgeClient(proxy.target, { timeoutMs: 30_000 });
    try {
      const session = await env.client.createSession();
      const host = await viaProxy.session(session.sessionId).serve({ tools: { lookup_order: LOOKUP }, reconnect: false });
      proxy.cut();
      await assert.rejects(host.done, (err: unknown) => err instanceof BridgeError && err.code !== "OK");
      assert.equal(host.connectionCount, 1);
      await session.delete();
    } finally {
      viaProxy.close();
      await proxy.stop();
    }
  });
});

describe("session.serve on a sidecar that requires a bearer token", () => {
  const token = "node-host-token";
  let secured: Sidecar;
  before(async () => {
    secured = await startSidecar(["--auth-token", token]);
  });
  after(async () => {
    await secured?.stop();
  });

  it("sends the client's metadata on Connect", async () => {
    const authorized = new BridgeClient(secured.target, { timeoutMs: 20_000, metadata: { authorization: `Bearer ${token}` } });
    const anonymous = new BridgeClient(secured.target, { timeoutMs: 20_000 });
    try {
      const session = await authorized.createSession();
      await rejectsWith(anonymous.session(session.sessionId).serve({ tools: { lookup_order: LOOKUP } }), UnauthenticatedError);
      const host = await session.serve({ tools: { lookup_order: LOOKUP } });
      assert.deepEqual(host.welcome.tools, ["lookup_order"]);
      await host.close();
      await session.delete();
    } finally {
      authorized.close();
      anonymous.close();
    }
  });
});
