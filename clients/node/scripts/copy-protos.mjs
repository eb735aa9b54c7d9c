// Copies the contract (../../proto) into the package so a packed/published tarball is self-contained.
// In a repository checkout this is not needed: the client reads ../../proto directly.
import { cpSync, existsSync, rmSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const source = join(pkg, "..", "..", "proto");
const target = join(pkg, "proto");
if (!existsSync(join(source, "dspy_bridge", "v1", "bridge_service.proto"))) {
  console.error(`copy-protos: ${source} holds no dspy_bridge protos`);
  process.exit(1);
}
rmSync(target, { recursive: true, force: true });
cpSync(source, target, { recursive: true, filter: (p) => !p.endsWith(".yaml") && !p.endsWith(".py") });
console.log(`copy-protos: ${source} -> ${target}`);
