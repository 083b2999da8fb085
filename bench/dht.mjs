#!/usr/bin/env node
// dhtLookup on a DHT holding 10^5 entries (the cap raised from 65,536 through RouterLimits): lookups
// per second of Dht.lookup (keyspace index) against the full scan it replaced (copied below as the
// anchor), on the same table, peers and targets. Interleaved rounds; medians are printed.
// Usage: npx vite-node bench/dht.mjs [entries=100000] [rounds=5]
// Measured at 6d19799 on 2 shared cores (load 6-15): 43 -> 103,784 lookups/s. node bench/sim-10k.mjs,
// e42da7e and e42da7e + the index run side by side: user CPU 548.5 s -> 479.1 s, wall 2,112 s -> 1,997 s,
// probe phase 189 s -> 142 s; identical events (2,631,272), delivery and stretch.
import { randomBytes } from "node:crypto";
import { Dht } from "../src/routing/dht.ts";
import { DEFAULT_LIMITS, cmpKey, storeInfo } from "../src/routing/state.ts";

const [entries = 100_000, rounds = 5] = process.argv.slice(2).map(Number);
const SIG = Buffer.alloc(64);
const PEERS = 8;
const TARGETS = 4096;

const own = randomBytes(32);
const key = () => randomBytes(32);
let hseq = 0;
const chain = (root, len) =>
  storeInfo(
    { root, seq: 1n, hops: Array.from({ length: len }, (_, i) => ({ next: key(), port: i + 1, sig: SIG })) },
    0,
    ++hseq,
  );
const root = Buffer.alloc(32); // a low key, as real roots are
root[31] = 1;
const peers = new Map();
for (let port = 1; port <= PEERS; port++) {
  peers.set(port, { port, key: key(), priority: 0, info: chain(root, 1 + (port % 4)), closed: false });
}
const parent = peers.get(1);
let nextHop = null;
const tree = {
  self: parent.info,
  parent,
  lookup: () => nextHop,
  label: () => ({ sig: SIG, key: own, root, seq: 1n, path: [] }),
  isRoot: () => false,
};
const core = {
  ownKey: own,
  limits: { ...DEFAULT_LIMITS, dhtEntries: entries },
  peers,
  now: 0,
  sendFrame: () => {},
  drop: () => {},
};
const dht = new Dht(core, { publicKey: own }, tree, 1n);
const peerList = [...peers.values()];
const t0 = Date.now();
for (let i = 0; dht.entries.size < entries; i++) {
  // Relayed setups (what a hostile peer's flood creates): source via one peer, destination via another.
  nextHop = peerList[(i + 3) % PEERS];
  const dest = { sig: SIG, key: key(), root, seq: 1n, path: [] };
  dht.handleSetup(
    peerList[i % PEERS],
    { sig: SIG, seq: BigInt(i + 1), token: { sig: SIG, source: key(), dest } },
    SIG,
  );
}
console.log(`filled ${dht.entries.size} entries in ${Date.now() - t0} ms`);

/** The lookup as it was before the index (src/routing/dht.ts at e42da7e), decisions unchanged. */
class ScanLookup {
  best = own;
  bestPeer = null;
  lookup(target, isBootstrap) {
    this.best = own;
    this.bestPeer = null;
    const rootKey = tree.self.info.root;
    const par = tree.parent;
    const parentOpen = par === null || !par.closed;
    if (
      (isBootstrap && cmpKey(target, own) === 0) ||
      (cmpKey(rootKey, target) < 0 && cmpKey(target, own) < 0)
    ) {
      const towardRoot = parentOpen ? par : null;
      if (towardRoot !== null) {
        this.best = rootKey;
        this.bestPeer = towardRoot;
      }
    }
    if (parentOpen) this.ancestry(tree.self, par, target, isBootstrap);
    for (const peer of peers.values()) {
      if (peer.info && !peer.closed) this.ancestry(peer.info, peer, target, isBootstrap);
    }
    for (const peer of peers.values()) {
      if (peer.info && !peer.closed && cmpKey(this.best, peer.key) === 0) this.bestPeer = peer;
    }
    for (const e of dht.entries.values()) {
      if (e.peer === null || !e.peer.closed) this.candidate(e.key, e.peer, target, isBootstrap);
    }
    let bestPeer = this.bestPeer;
    if (bestPeer !== null) {
      for (const peer of peers.values()) {
        if (peer.info && !peer.closed && peer.priority < bestPeer.priority && peer.key.equals(bestPeer.key))
          bestPeer = peer;
      }
    }
    this.bestPeer = null;
    return bestPeer;
  }
  candidate(k, peer, target, isBootstrap) {
    const c = cmpKey(k, target);
    if (c < 0 ? cmpKey(this.best, k) < 0 : c === 0 && !isBootstrap && cmpKey(this.best, target) !== 0) {
      this.best = k;
      this.bestPeer = peer;
    }
  }
  ancestry(s, peer, target, isBootstrap) {
    this.candidate(s.info.root, peer, target, isBootstrap);
    const hops = s.info.hops;
    for (let i = 0; i < hops.length; i++) {
      const next = hops[i].next;
      this.candidate(next, peer, target, isBootstrap);
      const current = this.bestPeer?.info;
      if (current !== undefined && s.hseq < current.hseq && cmpKey(this.best, next) === 0)
        this.bestPeer = peer;
    }
  }
}
const scan = new ScanLookup();

// Half the targets are entry keys (exact hits, as traffic to known nodes), half random (bootstraps).
const all = [...dht.entries.values()];
const targets = Array.from({ length: TARGETS }, (_, i) =>
  i % 2 === 0 ? all[(i * 7919) % all.length].key : key(),
);
for (let i = 0; i < TARGETS; i++) {
  for (const boot of [false, true]) {
    if (dht.lookup(targets[i], boot) !== scan.lookup(targets[i], boot))
      throw new Error(`answers differ at ${i}`);
  }
}

/** Lookups per second over the targets, alternating traffic and bootstrap lookups, for ≥ minMs. */
function rate(fn, minMs) {
  let n = 0;
  let sink = 0;
  const start = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < minMs) {
    for (let i = 0; i < 64; i++) {
      if (fn(targets[n % TARGETS], (n & 1) === 1) !== null) sink++;
      n++;
    }
    elapsed = Number(process.hrtime.bigint() - start) / 1e6;
  }
  if (sink < 0) console.log(sink);
  return (n / elapsed) * 1000;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const before = [];
const after = [];
for (let r = 0; r < rounds; r++) {
  before.push(rate((t, b) => scan.lookup(t, b), 1500));
  after.push(rate((t, b) => dht.lookup(t, b), 1500));
  console.log(`round ${r + 1}: scan ${before[r].toFixed(0)}/s, index ${after[r].toFixed(0)}/s`);
}
const b = median(before);
const a = median(after);
console.log(
  `dhtLookup, ${dht.entries.size} entries, ${PEERS} peers, medians of ${rounds} interleaved rounds: ` +
    `full scan ${b.toFixed(0)} lookups/s, keyspace index ${a.toFixed(0)} lookups/s, ratio ${(a / b).toFixed(0)}x (${process.version})`,
);
