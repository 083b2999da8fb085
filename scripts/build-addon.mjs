#!/usr/bin/env node
// npm's install step: build the N-API TUN addon with node-gyp against the running Node's own headers
// (<prefix>/include/node, shipped by Debian's, NodeSource's and the official builds), so installing
// needs no download. Without them node-gyp falls back to fetching the headers, as it always did.
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join, resolve } from "node:path";

const prefix = resolve(dirname(process.execPath), "..");
const args = ["rebuild"];
if (existsSync(join(prefix, "include", "node", "node_api.h"))) args.push(`--nodedir=${prefix}`);
// npm puts its bundled node-gyp on PATH for install scripts; a checkout also has it in devDependencies.
const result = spawnSync("node-gyp", args, { stdio: "inherit", shell: false });
if (result.error) {
  process.stderr.write(
    `planetd: cannot run node-gyp (${result.error.message}); the TUN addon is not built\n`,
  );
  process.exit(1);
}
process.exit(result.status ?? 1);
