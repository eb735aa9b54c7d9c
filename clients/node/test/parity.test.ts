// Client parity: every RPC of BridgeService, as declared in the repository's proto/, must be
// reachable through this client's public API. The mapping below says which public call reaches
// each RPC; the test fails naming any RPC without one (a new RPC the client lacks), any mapping
// to an RPC the proto no longer has, and any call that does not actually send its RPC (checked
// against an in-process server that records what arrives).
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { BridgeClient, BridgeError, Example, SessionHandle, float64 } from "../src/index";
import { RecordingBridge, bridgeServiceMethods, startRecordingBridge } from "../testlib/recordingBridge";

/** Drain an async iterable (a stream or a paged list). */
async function drain(items: AsyncIterable<unknown>): Promise<void> {
  for await (const _ of items) void _;
}

type PublicCall = (client: BridgeClient, session: SessionHandle) => Promise<unknown>;

const DATASET: Example[] = [{ inputs: { q: "x" }, labels: { a: "y" } }];

/** RPC -> the public client call that reaches it. */
const CLIENT_CALLS: Record<string, PublicCall> = {
  Ping: (c) => c.ping(),
  GetServerInfo: (c) => c.serverInfo(),
  CreateSession: (c) => c.createSession(),
  GetSession: (_, s) => s.get(),
  ListSessions: (c) => drain(c.listSessions()),
  DeleteSession: (_, s) => s.delete(),
  Heartbeat: (_, s) => s.heartbeat(),
  ConfigureLM: (_, s) => s.configureLm("offline"),
  RegisterVariable: (_, s) => s.registerVariable("v", "float", 0.5),
  GetVariable: (_, s) => s.getVariable("v"),
  ListVariables: (_, s) => s.listVariables(),
  DeleteVariable: (_, s) => s.deleteVariable("v"),
  UpdateVariable: (_, s) => s.updateVariable("v", float64(0.5)),
  BatchUpdateVariables: (_, s) => s.batchUpdate([{ name: "v", value: float64(0.5) }]),
  WatchVariables: (_, s) => drain(s.watch()),
  GetVariableHistory: (_, s) => s.history("v"),
  RollbackVariable: (_, s) => s.rollback("v", 1),
  CreateModule: (_, s) => s.createModule("Predict", "q -> a"),
  GetModule: (_, s) => s.getModule("m"),
  ListModules: (_, s) => s.listModules(),
  DeleteModule: (_, s) => s.deleteModule("m"),
  Execute: (_, s) => s.execute("m", { q: "x" }),
  ExecuteBatch: (_, s) => s.executeBatch("m", [{ q: "x" }]),
  ExecuteStream: (_, s) => s.executeStream("m", { q: "x" }).result(),
  ExportModuleState: (_, s) => s.exportState("m"),
  ImportModuleState: (_, s) => s.importState("m", "{}"),
  RevertModule: (_, s) => s.revertModule("m", 1),
  Evaluate: (_, s) => s.evaluate("m", DATASET, "exact_match"),
  EvaluateStream: (_, s) => s.evaluateStream("m", DATASET, "exact_match").result(),
  StartOptimization: (_, s) => s.startOptimization("m", "LabeledFewShot", DATASET, "exact_match"),
  GetOptimization: (_, s) => s.getOptimization("j"),
  WatchOptimization: (_, s) => drain(s.watchOptimization("j")),
  CancelOptimization: (_, s) => s.cancelOptimization("j"),
  ListOptimizations: (_, s) => drain(s.listOptimizations()),
  ApplyOptimization: (_, s) => s.applyOptimization("j"),
  Connect: (_, s) => s.serve({ tools: { t: () => "x" } }),
};

/** RPCs deliberately left out of this client, with the reason. None today. */
const OMITTED: Record<string, string> = {};

describe("parity with the BridgeService contract", () => {
  const rpcs = Object.keys(bridgeServiceMethods());

  it("maps every RPC of the proto to a public client call (or an omission with a reason)", () => {
    assert.ok(rpcs.length >= 30, `read ${rpcs.length} RPCs from proto/`);
    const missing = rpcs.filter((rpc) => !(rpc in CLIENT_CALLS) && !(rpc in OMITTED));
    assert.deepEqual(missing, [], `RPCs the Node client does not reach: ${missing.join(", ")}`);
    const stale = [...Object.keys(CLIENT_CALLS), ...Object.keys(OMITTED)].filter((rpc) => !rpcs.includes(rpc));
    assert.deepEqual(stale, [], `mapped RPCs the proto does not declare: ${stale.join(", ")}`);
    const both = Object.keys(OMITTED).filter((rpc) => rpc in CLIENT_CALLS);
    assert.deepEqual(both, [], `RPCs both mapped and omitted: ${both.join(", ")}`);
    for (const [rpc, reason] of Object.entries(OMITTED)) assert.ok(reason.trim().length > 0, `${rpc}: say why it is omitted`);
  });

  describe("each mapped call sends its RPC", () => {
    let bridge: RecordingBridge;
    let client: BridgeClient;
    before(async () => {
      bridge = await startRecordingBridge();
      client = new BridgeClient(bridge.target, { timeoutMs: 10_000 });
    });
    after(async () => {
      client?.close();
      await bridge?.stop();
    });

    it("reaches every mapped RPC", async () => {
      const unreached: string[] = [];
      for (const [rpc, call] of Object.entries(CLIENT_CALLS)) {
        bridge.calls.length = 0;
        try {
          await call(client, client.session("s"));
          unreached.push(`${rpc} (the call succeeded against a server that fails everything)`);
          continue;
        } catch (err) {
          assert.ok(err instanceof BridgeError, `${rpc}: ${String(err)}`);
        }
        if (!bridge.calls.includes(rpc)) unreached.push(`${rpc} (sent ${bridge.calls.join(", ") || "nothing"})`);
      }
      assert.deepEqual(unreached, [], `mapped calls that do not reach their RPC: ${unreached.join("; ")}`);
    });
  });
});
