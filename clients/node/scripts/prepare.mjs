// `prepare`: makes the package usable when npm installs it from a directory
// (`npm install ./clients/node` in a project, or `--install-links` from elsewhere): copies the
// contract into it (scripts/copy-protos.mjs) and compiles the TypeScript to dist/.
// npm does not install a directory dependency's devDependencies, so when TypeScript is not
// reachable it is installed here first (the versions pinned in package-lock.json).
import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const run = (command, args) => execFileSync(command, args, { cwd: pkg, stdio: "inherit" });

function typescriptCompiler() {
  try {
    return createRequire(join(pkg, "package.json")).resolve("typescript/bin/tsc");
  } catch {
    return null;
  }
}

if (existsSync(join(pkg, "..", "..", "proto", "dspy_bridge"))) {
  run(process.execPath, [join(pkg, "scripts", "copy-protos.mjs")]);
}
let tsc = typescriptCompiler();
if (tsc === null) {
  run(npm, ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]);
  tsc = typescriptCompiler();
}
run(process.execPath, [tsc, "-p", "."]);
