// Shared state shapes, constants and key helpers of the routing core (spec 5.3–5.6, 12).
import type { TokenBucket } from "../util/token-bucket.js";
import type { TreeInfo, TreeLabel } from "./types.js";

export const TREE_TIMEOUT = 60 * 60 * 1000; // treeTIMEOUT: 1 h
export const TREE_ANNOUNCE = TREE_TIMEOUT / 2; // root re-seq interval: 30 min
export const HOLD_DOWN = 7000; // peerTIMEOUT + 1 s
export const BOOTSTRAP_INTERVAL = 1000;
export const DHT_EXPIRY = 2 * TREE_TIMEOUT;
export const PATH_TIMEOUT = 60 * 1000;
export const PATH_THROTTLE = 1000;

/** Local bounds against hostile peers (not protocol constants). */
export interface RouterLimits {
  /**
   * DHT entries in all (Go has no cap). A setup arriving when the table is full is dropped without a
   * teardown, so an honest peer relaying a flood does not get its legitimate paths torn down.
   */
  dhtEntries: number;
  /** Pathfinder entries (created only by local sends); the oldest (by creation or last expiry check) is dropped beyond this. */
  paths: number;
  /**
   * Signed control frames (DHT bootstraps, acks and setups, path notifies, lookups and responses)
   * accepted per second from one link, burst a quarter of that. Each costs a signature check or a
   * signature and may create state; beyond the budget they are dropped (the protocol retries on
   * timers). The burst is small because verifying it is one uninterrupted stretch of the event
   * loop: a burst of 2,000 held the admin socket and honest pings for 0.7-3.7 s on a loaded
   * machine (netns-tests/hostile.test.ts). The simulator's topologies converge as fast with it.
   */
  controlPerSecond: number;
}

export const DEFAULT_LIMITS: RouterLimits = { dhtEntries: 65536, paths: 65536, controlPerSecond: 1000 };
/** `expired` entries beyond this (plus two per peer) are pruned to the roots still in use. */
export const EXPIRED_SOFT_CAP = 64;

/** One live link as the router sees it. DHT entries point at these objects, never at reused ports. */
export interface Peer {
  readonly port: number;
  readonly key: Buffer;
  priority: number;
  /** The last verified tree info from this peer; undefined until its first tree frame. */
  info: StoredInfo | undefined;
  /** closePeer was called; frames are ignored until removePeer. */
  closed: boolean;
  /** What this link may still ask of us in signed control frames (RouterLimits.controlPerSecond). */
  readonly control: TokenBucket;
}

/** A tree info plus the local metadata of spec 5.3.1. */
export interface StoredInfo {
  readonly info: TreeInfo;
  /** When it was processed (ms). */
  readonly time: number;
  /** Processing order; smaller = known longer. 0 for infos we made ourselves. */
  readonly hseq: number;
  /** hop ports: for self these are our coordinates; for a peer's info, drop the last to get theirs. */
  readonly ports: number[];
  /** The key that sent this info: the next of the second-to-last hop, or the root. */
  readonly from: Buffer;
  /** Some key repeats among root and hop nexts. */
  readonly loop: boolean;
  /** Our signed label, cached while this is our self. */
  label?: TreeLabel;
}

export interface DhtEntry {
  readonly seq: bigint;
  readonly key: Buffer;
  /** Next hop toward the path's source; null when we are the source. */
  readonly peer: Peer | null;
  /** Next hop toward the path's destination; null when we are the destination. */
  readonly rest: Peer | null;
  readonly root: Buffer;
  readonly rootSeq: bigint;
  readonly expires: number;
  readonly mapKey: string;
}

export interface PathEntry {
  readonly key: Buffer;
  path: number[] | null;
  /** Last lookup / notify sent (ms). */
  ltime: number;
  ntime: number;
  /** Dropped after this unless used again. */
  expires: number;
  /** When the expiry queue next looks at this entry (≤ expires). */
  queuedUntil: number;
}

/** treeLess: plain byte order; smaller key = better root. */
export function keyLess(a: Buffer, b: Buffer): boolean {
  return a.compare(b) < 0;
}

/** a < b < c, strictly (dhtOrdered). */
export function ordered(a: Buffer, b: Buffer, c: Buffer): boolean {
  return a.compare(b) < 0 && b.compare(c) < 0;
}

/** A compact Map key for a 32-byte key. */
export function keyId(key: Buffer): string {
  return key.toString("latin1");
}

export function dhtMapKey(key: Buffer, root: Buffer, rootSeq: bigint): string {
  return `${key.toString("latin1")}${root.toString("latin1")}${rootSeq}`;
}

/** Tree distance between coordinates a[0..aLen) and b (spec 5.3.6); callers check roots first. */
export function treeDist(a: readonly number[], aLen: number, b: readonly number[]): number {
  const min = aLen < b.length ? aLen : b.length;
  let common = 0;
  while (common < min && a[common] === b[common]) common++;
  return aLen + b.length - 2 * common;
}

export function storeInfo(info: TreeInfo, time: number, hseq: number): StoredInfo {
  const hops = info.hops;
  const ports = new Array<number>(hops.length);
  const seen = new Set<string>([keyId(info.root)]);
  let loop = false;
  for (let i = 0; i < hops.length; i++) {
    ports[i] = hops[i].port;
    const id = keyId(hops[i].next);
    if (seen.has(id)) loop = true;
    seen.add(id);
  }
  const from = hops.length > 1 ? hops[hops.length - 2].next : info.root;
  return { info, time, hseq, ports, from, loop };
}

/** What the tree, DHT and pathfinder need from the router that owns them. */
export interface RouterCore {
  readonly ownKey: Buffer;
  readonly limits: RouterLimits;
  /** Live peers by port, in port-assignment order. */
  readonly peers: Map<number, Peer>;
  /** Time of the event being processed (ms). */
  readonly now: number;
  sendFrame(peer: Peer, frame: Buffer): void;
  drop(reason: string): void;
}

/**
 * Byte-order comparison of two keys in plain JS: random keys differ within the first byte or two,
 * so this beats a native Buffer.compare call in the per-packet lookups.
 */
export function cmpKey(a: Uint8Array, b: Uint8Array): number {
  const n = a.length < b.length ? a.length : b.length;
  for (let i = 0; i < n; i++) {
    const d = a[i] - b[i];
    if (d !== 0) return d;
  }
  return a.length - b.length;
}
