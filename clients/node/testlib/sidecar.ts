// Starts a real dspy-bridge sidecar as a child process for the tests and reads its port from the
// JSON log line {"event": "serving", "port": ...} on stderr.
import assert from "node:assert/strict";
import { ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { existsSync } from "node:fs";
import { resolve } from "node:path";
import { createInterface } from "node:readline";
import { after, before } from "node:test";

import { BridgeClient } from "../src/index";

/** The repository's virtualenv, made by `make install` (this file is dist/testlib/sidecar.js inside clients/node). */
const REPO_PYTHON = resolve(__dirname, "..", "..", "..", "..", ".venv", "bin", "python");

/** The interpreter that runs the sidecar: $DSPY_BRIDGE_PYTHON, else this checkout's own .venv. */
export const PYTHON = process.env.DSPY_BRIDGE_PYTHON || REPO_PYTHON;

export interface Sidecar {
  target: string;
  child: ChildProcess;
  /** Every stderr line so far (for failure messages). */
  log: string[];
  stop(): Promise<void>;
}

export async function startSidecar(extraArgs: string[] = []): Promise<Sidecar> {
  if (PYTHON === REPO_PYTHON && !existsSync(PYTHON)) {
    throw new Error(
      `no Python to run the sidecar at ${PYTHON} (the repository's .venv): run \`make install\` at the repository root, ` +
        "or set DSPY_BRIDGE_PYTHON to an interpreter with dspy-bridge installed",
    );
  }
  const child = spawn(
    PYTHON,
    ["-m", "dspy_bridge", "serve", "--host", "127.0.0.1", "--port", "0", "--workers", "0", "--lm", "offline", ...extraArgs],
    { env: { ...process.env, DSPY_BRIDGE_LOG_FORMAT: "json" }, stdio: ["ignore", "ignore", "pipe"] },
  );
  const log: string[] = [];
  const lines = createInterface({ input: child.stderr! });
  const port = await new Promise<number>((resolve, reject) => {
    const onExit = (code: number | null, signal: string | null) =>
      reject(new Error(`sidecar exited (code ${code}, signal ${signal}) before serving:\n${log.join("\n")}`));
    child.once("exit", onExit);
    child.once("error", reject);
    lines.on("line", (line) => {
      log.push(line);
      if (!line.startsWith("{")) return;
      try {
        const event = JSON.parse(line);
        if (event.event === "serving" && typeof event.port === "number") {
          child.off("exit", onExit);
          resolve(event.port);
        }
      } catch {
        // not JSON: keep reading
      }
    });
  });
  return {
    target: `127.0.0.1:${port}`,
    child,
    log,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = once(child, "exit");
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/**
 * One sidecar, and a client on it, for the test file calling this at its top level: started in
 * a `before` hook, stopped in an `after` hook. Read `.client` / `.sidecar` inside tests.
 */
export function sidecarPerFile(extraArgs: string[] = []): { readonly sidecar: Sidecar; readonly client: BridgeClient } {
  let sidecar: Sidecar | undefined;
  let client: BridgeClient | undefined;
  before(async () => {
    sidecar = await startSidecar(extraArgs);
    client = new BridgeClient(sidecar.target, { timeoutMs: 60_000 });
    await client.waitUntilReady(30_000);
  });
  after(async () => {
    client?.close();
    await sidecar?.stop();
  });
  return {
    get sidecar() {
      assert.ok(sidecar, "the sidecar starts in a before hook");
      return sidecar;
    },
    get client() {
      assert.ok(client, "the client is made in a before hook");
      return client;
    },
  };
}
