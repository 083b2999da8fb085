#!/usr/bin/env node
// npm's install step: build the N-API TUN addon with node-gyp against the running Node's own headers
// (<prefix>/include/node, shipped by Debian's, NodeSource's and the official builds), so installing
// needs no download. Without them node-gyp falls back to fetching the headers, as it always did.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const prefix = resolve(dirname(process.execPath), "..");
// Run by hand in a checkout, node-gyp is the devDependency in node_modules/.bin.
const root = resolve(dirname(new URL(import.meta.url).pathname), "..");
const env = { ...process.env, PATH: `${process.env.PATH ?? ""}:${join(root, "node_modules", ".bin")}` };
// node-gyp prefers npm's nodedir setting (an npmrc's, or npm_config_nodedir) over --nodedir, so the
// running Node's headers are handed over that way: an npmrc naming another Node cannot win.
if (existsSync(join(prefix, "include", "node", "node_api.h"))) env.npm_config_nodedir = prefix;
// npm puts its bundled node-gyp on PATH for install scripts; a checkout also has it in devDependencies.
const result = spawnSync("node-gyp", ["rebuild"], { stdio: "inherit", shell: false, env });
if (result.error) {
  process.stderr.write(
    `planetd: cannot run node-gyp (${result.error.message}); the TUN addon is not built\n`,
  );
  process.exit(1);
}
process.exit(result.status ?? 1);
