// An in-process BridgeService built from the repository's proto/ (not from the client's own
// loading) that records which RPC each call reached and fails it. The parity test uses it to
// prove that a public client method really sends the RPC it is mapped to.
import { join, resolve } from "node:path";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";

/** The repository's proto/ directory (this file is dist/testlib/recordingBridge.js inside clients/node). */
export const REPO_PROTO_DIR = resolve(__dirname, "..", "..", "..", "..", "proto");
const VENDOR_DIR = resolve(__dirname, "..", "..", "vendor");

/** Every RPC of `dspy_bridge.v1.BridgeService` as the .proto declares it. */
export function bridgeServiceMethods(): grpc.ServiceDefinition {
  const definition = protoLoader.loadSync(join("dspy_bridge", "v1", "bridge_service.proto"), {
    keepCase: true,
    includeDirs: [REPO_PROTO_DIR, VENDOR_DIR],
  });
  const loaded = grpc.loadPackageDefinition(definition) as unknown as {
    dspy_bridge: { v1: { BridgeService: grpc.ServiceClientConstructor } };
  };
  return loaded.dspy_bridge.v1.BridgeService.service;
}

/** The failure every recorded call gets, so a client call never waits for a real answer. */
const RECORDED: grpc.StatusObject = { code: grpc.status.UNIMPLEMENTED, details: "recorded by the parity test", metadata: new grpc.Metadata() };

export interface RecordingBridge {
  target: string;
  /** RPC names in the order calls arrived. */
  calls: string[];
  stop(): Promise<void>;
}

export async function startRecordingBridge(): Promise<RecordingBridge> {
  const service = bridgeServiceMethods();
  const calls: string[] = [];
  const handlers: grpc.UntypedServiceImplementation = {};
  for (const [name, method] of Object.entries(service)) {
    const record = () => calls.push(name);
    if (!method.responseStream) {
      handlers[name] = (_call: unknown, callback: grpc.sendUnaryData<unknown>) => {
        record();
        callback(RECORDED);
      };
    } else {
      handlers[name] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        record();
        call.emit("error", RECORDED);
      };
    }
  }
  const server = new grpc.Server();
  server.addService(service, handlers);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  return {
    target: `127.0.0.1:${port}`,
    calls,
    stop: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
