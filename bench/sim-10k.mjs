#!/usr/bin/env node
// 10,000-node routing simulation: real Routers with real ed25519 signatures on a Barabási–Albert
// graph (m = 2) under a virtual clock. Prints convergence (virtual and wall time), delivery of random
// pairs, path stretch, control frames and DHT entries per node, and memory.
// Usage: node bench/sim-10k.mjs [nodes=10000] [pairs=10000] [cutFraction=0.05] [seed=1]
import { ensureBuilt } from "../bin/ensure-built.mjs";

ensureBuilt(); // compiles src/ to dist/ when the sources are newer
const { runScenario } = await import("../dist/routing/sim/scenario.js");

const [nodes = 10_000, pairs = 10_000, cutFraction = 0.05, seed = 1] = process.argv.slice(2).map(Number);
const t0 = Date.now();
const log = (line) => console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${line}`);
const r = runScenario({ nodes, pairs, cutFraction, seed, log, maxConvergeMs: 600_000 });
const mem = process.memoryUsage();
console.log(
  JSON.stringify(
    { ...r, rssMB: Math.round(mem.rss / 1e6), heapMB: Math.round(mem.heapUsed / 1e6), node: process.version },
    null,
    2,
  ),
);
