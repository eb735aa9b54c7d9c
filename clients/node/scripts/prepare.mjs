// `prepare`: makes the package usable when npm installs it from a directory: `npm install
// /path/to/dspy-bridge/clients/node` from any project (npm links the folder and runs this there)
// or `./clients/node` from the checkout. It copies the contract into the package
// (scripts/copy-protos.mjs), installs the package's own dependencies into its own node_modules
// when they are not all there, and compiles the TypeScript to dist/.
// npm installs none of a linked folder's dependencies when the folder is outside the installing
// project, and never its devDependencies, so this installs them (the versions pinned in
// package-lock.json). Only the package's own node_modules counts: a TypeScript found further
// up (an enclosing project's node_modules) says nothing about @grpc/grpc-js being there. The
// nested `npm ci` includes devDependencies even when the install that runs this omits them
// (`--omit=dev`, NODE_ENV=production): TypeScript is needed to build.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const pkg = join(dirname(fileURLToPath(import.meta.url)), "..");
const npm = process.platform === "win32" ? "npm.cmd" : "npm";
const run = (command, args) => execFileSync(command, args, { cwd: pkg, stdio: "inherit" });

const manifest = JSON.parse(readFileSync(join(pkg, "package.json"), "utf8"));
const needed = [
  ...Object.keys(manifest.dependencies ?? {}),
  ...Object.keys(manifest.devDependencies ?? {}),
];
const installedHere = (name) => existsSync(join(pkg, "node_modules", name, "package.json"));

if (existsSync(join(pkg, "..", "..", "proto", "dspy_bridge"))) {
  run(process.execPath, [join(pkg, "scripts", "copy-protos.mjs")]);
}
if (!needed.every(installedHere)) {
  run(npm, ["ci", "--include=dev", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]);
}
run(process.execPath, [join(pkg, "node_modules", "typescript", "bin", "tsc"), "-p", "."]);
