// Which contract the client loads: in a checkout, the repository's proto/ (live), not the copy
// `prepare` put in the package at install time (it goes stale when the contract changes).
import assert from "node:assert/strict";
import { cpSync, existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, it } from "node:test";

import { protoDir } from "../src/index";

/** The package root (this file is dist/test/proto.test.js) and the repository's contract. */
const PACKAGE_ROOT = resolve(__dirname, "..", "..");
const REPO_PROTO = resolve(PACKAGE_ROOT, "..", "..", "proto");

describe("protoDir", () => {
  it("prefers the checkout's contract to the package's copy", () => {
    const copy = join(PACKAGE_ROOT, "proto");
    const made = !existsSync(copy);
    if (made) cpSync(REPO_PROTO, copy, { recursive: true }); // as `prepare` does on install
    try {
      assert.equal(protoDir(), REPO_PROTO);
    } finally {
      if (made) rmSync(copy, { recursive: true, force: true });
    }
  });

  it("DSPY_BRIDGE_PROTO_DIR comes first", () => {
    const dir = mkdtempSync(join(tmpdir(), "dspy-bridge-proto-"));
    cpSync(REPO_PROTO, dir, { recursive: true });
    process.env.DSPY_BRIDGE_PROTO_DIR = dir;
    try {
      assert.equal(protoDir(), resolve(dir));
    } finally {
      delete process.env.DSPY_BRIDGE_PROTO_DIR;
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
