// Loads the contract (.proto files) at runtime: the gRPC service for calls, and protobufjs
// types for the google.rpc.Status error details.
import { existsSync } from "node:fs";
import { join, resolve } from "node:path";

import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import * as protobuf from "protobufjs";

/** The package's root directory (this file is `dist/src/proto.js`). */
const PACKAGE_ROOT = resolve(__dirname, "..", "..");
/** Protos this package vendors (google/rpc/error_details.proto). */
const VENDOR_DIR = join(PACKAGE_ROOT, "vendor");
const SERVICE_PROTO = "dspy_bridge/v1/bridge_service.proto";

/**
 * Where the dspy_bridge protos are: `$DSPY_BRIDGE_PROTO_DIR`, else the repository's `proto/`
 * (`<pkg>/../../proto`) when the package is in a checkout (or linked from one), else the copy
 * inside a packed package (`<pkg>/proto`). The checkout's contract comes before the copy, which
 * `prepare` made at install time and goes stale when the contract changes.
 */
export function protoDir(): string {
  const candidates = [
    process.env.DSPY_BRIDGE_PROTO_DIR,
    join(PACKAGE_ROOT, "..", "..", "proto"),
    join(PACKAGE_ROOT, "proto"),
  ].filter((dir): dir is string => Boolean(dir));
  for (const dir of candidates) {
    if (existsSync(join(dir, SERVICE_PROTO))) return resolve(dir);
  }
  throw new Error(
    `@dspy-bridge/client: cannot find ${SERVICE_PROTO} in ${candidates.join(", ")}; ` +
      "set DSPY_BRIDGE_PROTO_DIR to the repository's proto/ directory",
  );
}

/** proto-loader options: field names as in the .proto, int64 as decimal strings (converted later). */
const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
};

let serviceCtor: grpc.ServiceClientConstructor | undefined;

/** The generated-at-runtime `dspy_bridge.v1.BridgeService` client class. */
export function bridgeServiceClient(): grpc.ServiceClientConstructor {
  if (serviceCtor === undefined) {
    const definition = protoLoader.loadSync(SERVICE_PROTO, {
      ...LOADER_OPTIONS,
      includeDirs: [protoDir(), VENDOR_DIR],
    });
    const loaded = grpc.loadPackageDefinition(definition) as unknown as {
      dspy_bridge: { v1: { BridgeService: grpc.ServiceClientConstructor } };
    };
    serviceCtor = loaded.dspy_bridge.v1.BridgeService;
  }
  return serviceCtor;
}

export interface StatusTypes {
  Status: protobuf.Type;
  ErrorInfo: protobuf.Type;
  BadRequest: protobuf.Type;
  RetryInfo: protobuf.Type;
  byTypeUrl: Map<string, protobuf.Type>;
}

let statusTypes: StatusTypes | undefined;

/** protobufjs types of google.rpc.Status and the error details the sidecar sends. */
export function rpcStatusTypes(): StatusTypes {
  if (statusTypes === undefined) {
    const includeDirs = [protoDir(), VENDOR_DIR];
    const root = new protobuf.Root();
    root.resolvePath = (_origin: string, target: string): string => {
      for (const dir of includeDirs) {
        const candidate = join(dir, target);
        if (existsSync(candidate)) return candidate;
      }
      return target; // google/protobuf/*.proto: protobufjs has them built in
    };
    root.loadSync(["google/rpc/status.proto", "google/rpc/error_details.proto"], {
      keepCase: true,
    });
    const lookup = (name: string) => root.lookupType(`google.rpc.${name}`);
    const byTypeUrl = new Map<string, protobuf.Type>();
    for (const name of ["ErrorInfo", "BadRequest", "RetryInfo", "DebugInfo", "PreconditionFailure", "ResourceInfo", "Help", "LocalizedMessage", "QuotaFailure", "RequestInfo"]) {
      byTypeUrl.set(`google.rpc.${name}`, lookup(name));
    }
    statusTypes = {
      Status: lookup("Status"),
      ErrorInfo: lookup("ErrorInfo"),
      BadRequest: lookup("BadRequest"),
      RetryInfo: lookup("RetryInfo"),
      byTypeUrl,
    };
  }
  return statusTypes;
}
