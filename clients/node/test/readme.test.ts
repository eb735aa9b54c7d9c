// The README's evaluation, job and host-callback examples, run exactly as written against a real sidecar.
// Every ```ts block preceded by `<!-- example -->` is taken, in order, as one program: it is
// type-checked against this client's sources, then transpiled and run with `session` (a session
// on the offline LM, as the README says) and a `console` that records what it prints. The other
// ```ts blocks (the quick start and the errors example) are each type-checked and run on their own.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";

import * as ts from "typescript";

import * as bridge from "../src/index";
import { Sidecar, startSidecar } from "../testlib/sidecar";

/** The package root (this file is dist/test/readme.test.js). */
const PACKAGE_ROOT = resolve(__dirname, "..", "..");
const README = join(PACKAGE_ROOT, "README.md");
const MARKED_BLOCK = /<!-- example -->\n```ts\n([\s\S]*?)\n```/g;

/** The README's example blocks, in order. */
function exampleBlocks(): string[] {
  return [...readFileSync(README, "utf8").matchAll(MARKED_BLOCK)].map((m) => m[1]!);
}

/** The other ```ts blocks (the quick start, errors): each a program of its own. */
function standaloneBlocks(): string[] {
  return [...readFileSync(README, "utf8").matchAll(/(<!-- example -->\n)?```ts\n([\s\S]*?)\n```/g)].filter((m) => !m[1]).map((m) => m[2]!);
}

/** Type errors of the examples as one module, with `client` and `session` declared as the README says (unless `standalone`). */
function typeErrors(code: string, standalone = false): string[] {
  const file = join(PACKAGE_ROOT, "readme-examples.ts");
  const declared = standalone
    ? ["", "", ""]
    : ['import type { BridgeClient, SessionHandle } from "@dspy-bridge/client";', "declare const client: BridgeClient;", "declare const session: SessionHandle;"];
  const source = [...declared, code, "export {};"].join("\n");
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ES2022,
    moduleResolution: ts.ModuleResolutionKind.Node10,
    types: ["node"],
    skipLibCheck: true,
    paths: { "@dspy-bridge/client": [join(PACKAGE_ROOT, "src", "index.ts")] },
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, language, ...rest) =>
    resolve(name) === file ? ts.createSourceFile(name, source, language) : getSourceFile(name, language, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  return ts.getPreEmitDiagnostics(program).map((d) => {
    const where = d.file && d.start !== undefined ? d.file.getLineAndCharacterOfPosition(d.start) : undefined;
    return `${where ? `line ${where.line - 2}: ` : ""}${ts.flattenDiagnosticMessageText(d.messageText, "\n")}`;
  });
}

type Example = (require: NodeRequire, exports: object, client: bridge.BridgeClient, session: bridge.SessionHandle, console: Pick<Console, "log">) => Promise<void>;

/** The examples as an async function (top-level `await` works; imports of the package resolve to this checkout). */
function compile(code: string): Example {
  return compileWith(code, ["require", "exports", "client", "session", "console"]) as Example;
}

/** `code` as an async function taking `names`. */
function compileWith(code: string, names: string[]): (...args: unknown[]) => Promise<void> {
  const js = ts.transpileModule(code, { compilerOptions: { module: ts.ModuleKind.CommonJS, target: ts.ScriptTarget.ES2022 } }).outputText;
  const AsyncFunction = Object.getPrototypeOf(async () => undefined).constructor as new (...args: string[]) => (...args: unknown[]) => Promise<void>;
  return new AsyncFunction(...names, js);
}

/** A `console` that records what is printed (`log`), for checking the examples' output. */
function recordingConsole(): { printed: string[]; console: Pick<Console, "log"> } {
  const printed: string[] = [];
  return { printed, console: { log: (...args: unknown[]) => void printed.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ")) } };
}

function localRequire(id: string): unknown {
  if (id === "@dspy-bridge/client") return bridge;
  return require(id);
}

let sidecar: Sidecar;
let client: bridge.BridgeClient;

before(async () => {
  sidecar = await startSidecar();
  client = new bridge.BridgeClient(sidecar.target, { timeoutMs: 60_000 });
  await client.waitUntilReady(30_000);
});

after(async () => {
  client?.close();
  await sidecar?.stop();
});

describe("README examples", () => {
  const code = exampleBlocks().join("\n");

  it("has the evaluation, job and host-callback examples", () => {
    assert.ok(exampleBlocks().length >= 3);
    for (const call of ["evaluate(", "evaluateStream(", "startOptimization(", "watchOptimization(", "waitOptimization(", "cancelOptimization(", "listOptimizations(", "applyOptimization(", "serve("]) {
      assert.ok(code.includes(call), `the README examples use ${call}`);
    }
  });

  it("type-check against the client", () => {
    assert.deepEqual(typeErrors(code), []);
  });

  it("run as written and print what they say", async () => {
    const session = await client.createSession();
    await session.configureLm("offline");
    const printed: string[] = [];
    const recorder = { log: (...args: unknown[]) => void printed.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ")) };
    await compile(code)(localRequire as NodeRequire, {}, client, session, recorder);

    const has = (pattern: RegExp) => assert.ok(printed.some((line) => pattern.test(line)), `printed a line matching ${pattern}:\n${printed.join("\n")}`);
    has(/^score \d/);
    has(/^evaluated \d+\/2$/);
    has(/^streamed score \d/);
    has(/^(QUEUED|RUNNING) /);
    has(/^SUCCEEDED done /);
    has(/^SUCCEEDED 0 -> 1$/);
    has(/^now at version 2 with 4 demos$/);
    has(/^cancelled: CANCELLED$/);
    has(/ LabeledFewShot SUCCEEDED true$/);
    has(/ BootstrapFewShot CANCELLED false$/);
    has(/^strategy = (Predict|ChainOfThought) version 2 by optimizer:/);
    has(/^serving \["lookup_order"\] as connection \S+$/);
    has(/^status: .*order A-17: shipped on Tuesday/);
    has(/^host metric score: 1$/);
    has(/^host LM says: It depends\.$/);
    assert.equal((await session.getModule("topics")).version, 2);
    await session.delete();
  });
});

describe("README quick start and errors", () => {
  const [quickStart, errors] = standaloneBlocks();

  it("type-check against the client", () => {
    assert.ok(quickStart && errors, "the README has the quick start and the errors blocks");
    assert.deepEqual(typeErrors(quickStart!, true), []);
    assert.deepEqual(typeErrors(errors!), []);
  });

  it("the quick start runs as written and prints what its comments say", async () => {
    const { printed, console } = recordingConsole();
    const story: string[] = [];
    const shim = { stdout: { write: (text: string) => story.push(text) } }; // the streamed story goes here, not into the test report
    await compileWith(quickStart!.replace("127.0.0.1:50051", sidecar.target), ["require", "exports", "console", "process"])(localRequire, {}, console, shim);
    assert.ok(story.join("").length > 0, "the story streamed");
    assert.match(printed[0]!, /^-?\d+$/, "the int answer");
    assert.equal(printed[1], JSON.stringify({ value: 0.7, version: 1, overridden: false }));
    assert.equal(printed[2], "2");
    assert.ok(printed.includes("initial 0.2 2") && printed.includes("updated 0.3 3"), printed.join("\n"));
  });

  it("the errors example runs as written, and the error is what its comments say", async () => {
    const session = await client.createSession();
    await session.registerVariable("temperature", "float", 0.7, { min: 0, max: 1 });
    await session.registerVariable("counter", "integer", 0);
    const { console } = recordingConsole();
    await compileWith(errors!, ["require", "exports", "session", "console"])(localRequire, {}, session, console);
    assert.equal((await session.getVariable("counter")).value, 1);
    const err = await session.updateVariable("temperature", 1.5).then(
      () => assert.fail("1.5 is above the max"),
      (e: unknown) => e as bridge.InvalidArgumentError,
    );
    assert.ok(err instanceof bridge.InvalidArgumentError);
    assert.deepEqual([err.code, err.grpcCode, err.reason], ["INVALID_ARGUMENT", 3, "VARIABLE_CONSTRAINT_VIOLATION"]);
    assert.deepEqual(err.fieldViolations.map((v) => v.field), ["value"]);
    await session.delete();
  });
});
