// The DHT (spec 5.4): keyspace paths to each node's predecessor, greedy dhtLookup, and the
// bootstrap → ack → setup → teardown procedure.

import { KeyIndex } from "./keyspace.js";
import {
  BOOTSTRAP_INTERVAL,
  DHT_EXPIRY,
  type DhtEntry,
  type Peer,
  type RouterCore,
  type StoredInfo,
  cmpKey,
  dhtMapKey,
  ordered,
} from "./state.js";
import type { Tree } from "./tree.js";
import type { BootstrapAck, DhtSetup, DhtTeardown, TreeLabel } from "./types.js";
import {
  type Signer,
  encodeBootstrap,
  encodeBootstrapAck,
  encodeSetup,
  encodeTeardown,
  makeSetup,
  makeToken,
  verifyLabel,
  verifyToken,
} from "./wire.js";

const U64_MASK = (1n << 64n) - 1n;
const TRAFFIC_CACHE_MAX = 4096;

/** A DHT entry with its insertion number: equal keys tie-break by it, as the Map order does. */
interface IndexedEntry extends DhtEntry {
  readonly order: number;
}

/** A path is usable unless it came through a peer closed for a violation (awaiting removePeer). */
function viaOpenPeer(e: IndexedEntry): boolean {
  return e.peer === null || !e.peer.closed;
}

function teardownOf(e: DhtEntry): DhtTeardown {
  return { seq: e.seq, key: e.key, root: e.root, rootSeq: e.rootSeq };
}

function teardownOfSetup(s: DhtSetup): DhtTeardown {
  return { seq: s.seq, key: s.token.source, root: s.token.dest.root, rootSeq: s.token.dest.seq };
}

export class Dht {
  /** Every path through, from or to us; Map order is expiry order (expiry = creation + 2 h). */
  readonly entries = new Map<string, IndexedEntry>();
  /** Entries by the peer their setup came from, oldest first: a full table evicts from the largest. */
  private readonly byPeer = new Map<Peer, Set<IndexedEntry>>();
  /** The same entries by (key, order), for dhtLookup. */
  private readonly index = new KeyIndex<IndexedEntry>();
  private nextOrder = 0;
  /** Our own path to our predecessor. */
  prev: DhtEntry | null = null;
  /** The path for which we are the destination (our successor's). */
  next: DhtEntry | null = null;
  /** Destination key of our current and past prev paths. */
  private readonly dkeys = new Map<DhtEntry, Buffer>();
  private seq: bigint;
  private bwait = false;
  bootstrapAt: number | undefined;
  private bootstrapDeferred = false;
  // dhtLookup scratch (avoids a closure per packet)
  private best: Buffer = Buffer.alloc(0);
  private bestPeer: Peer | null = null;
  private readonly trafficCache = new Map<string, Peer | null>();
  /**
   * The last traffic lookup, until invalidate(): its key (copied: callers pass views of reused
   * buffers) and answer (undefined: none). Checked in JS before the key becomes a map key string.
   */
  private readonly lastTrafficKey = Buffer.alloc(32);
  private lastTrafficNext: Peer | null | undefined;

  constructor(
    private readonly core: RouterCore,
    private readonly signer: Signer,
    private readonly tree: Tree,
    initialSeq: bigint,
  ) {
    this.seq = initialSeq & U64_MASK;
  }

  /**
   * dhtLookup(dest, false) for traffic, memoised: the answer depends only on tree, peer and DHT
   * state, which traffic never changes, so the router calls invalidate() on every other event.
   */
  lookupTraffic(dest: Buffer): Peer | null {
    const last = this.lastTrafficNext;
    if (last !== undefined && cmpKey(dest, this.lastTrafficKey) === 0) return last;
    const id = dest.toString("latin1");
    let next = this.trafficCache.get(id);
    if (next === undefined) {
      next = this.lookup(dest, false);
      if (this.trafficCache.size >= TRAFFIC_CACHE_MAX) this.trafficCache.clear();
      this.trafficCache.set(id, next);
    }
    if (dest.length === this.lastTrafficKey.length) {
      dest.copy(this.lastTrafficKey);
      this.lastTrafficNext = next;
    }
    return next;
  }

  invalidate(): void {
    this.lastTrafficNext = undefined;
    if (this.trafficCache.size > 0) this.trafficCache.clear();
  }

  /**
   * dhtLookup (spec 5.4.3): the peer to forward toward target, or null when we are the closest.
   * Bootstraps stop strictly before target (at its predecessor).
   */
  lookup(target: Buffer, isBootstrap: boolean): Peer | null {
    const own = this.core.ownKey;
    const tree = this.tree;
    const root = tree.self.info.root;
    this.best = own;
    this.bestPeer = null;
    const peers = this.core.peers;
    // A peer marked closed (violation) stays in `peers` until removePeer: never pick it meanwhile.
    const parent = tree.parent;
    const parentOpen = parent === null || !parent.closed;
    if ((isBootstrap && cmpKey(target, own) === 0) || (cmpKey(root, target) < 0 && cmpKey(target, own) < 0)) {
      const towardRoot = parentOpen ? parent : this.openPeerUnder(root);
      if (towardRoot !== null) {
        this.best = root;
        this.bestPeer = towardRoot;
      }
    }
    // Peers and their ancestries are O(links × tree depth): bounded by the link count, which no
    // routing frame can grow (unlike the DHT entries, which go through the index below).
    if (parentOpen) this.ancestry(tree.self, parent, target, isBootstrap);
    for (const peer of peers.values()) {
      if (peer.info && !peer.closed) this.ancestry(peer.info, peer, target, isBootstrap);
    }
    for (const peer of peers.values()) {
      if (peer.info && !peer.closed && cmpKey(this.best, peer.key) === 0) this.bestPeer = peer;
    }
    this.closestEntry(target, isBootstrap);
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

  /**
   * What offering every entry to candidate() in Map order would pick: an exact key (traffic only;
   * the first inserted wins), else the greatest key in (best, target), the first inserted of its run.
   */
  private closestEntry(target: Buffer, isBootstrap: boolean): void {
    if (!isBootstrap && cmpKey(this.best, target) !== 0) {
      const exact = this.index.firstEqual(target, viaOpenPeer);
      if (exact !== undefined) {
        this.best = exact.key;
        this.bestPeer = exact.peer;
        return;
      }
    }
    const below = this.index.greatestBelow(target, this.best, viaOpenPeer);
    if (below !== undefined) {
      this.best = below.key;
      this.bestPeer = below.peer;
    }
  }

  /** An open peer whose loop-free info has this root (its path there avoids us), when our parent is closed. */
  private openPeerUnder(root: Buffer): Peer | null {
    for (const peer of this.core.peers.values()) {
      const s = peer.info;
      if (s && !peer.closed && !s.loop && s.info.root.equals(root)) return peer;
    }
    return null;
  }

  /** Take key (via peer) if best < key < target, or (not for bootstraps) key == target != best. */
  private candidate(key: Buffer, peer: Peer | null, target: Buffer, isBootstrap: boolean): void {
    const c = cmpKey(key, target);
    if (c < 0 ? cmpKey(this.best, key) < 0 : c === 0 && !isBootstrap && cmpKey(this.best, target) !== 0) {
      this.best = key;
      this.bestPeer = peer;
    }
  }

  private ancestry(s: StoredInfo, peer: Peer | null, target: Buffer, isBootstrap: boolean): void {
    this.candidate(s.info.root, peer, target, isBootstrap);
    const hops = s.info.hops;
    for (let i = 0; i < hops.length; i++) {
      const next = hops[i].next;
      this.candidate(next, peer, target, isBootstrap);
      // Same key reachable through an info known for longer: prefer that (more stable) link.
      const current = this.bestPeer?.info;
      if (current !== undefined && s.hseq < current.hseq && cmpKey(this.best, next) === 0) {
        this.bestPeer = peer;
      }
    }
  }

  /** _doBootstrap (spec 5.4.4). */
  doBootstrap(): void {
    if (this.bwait) return;
    const self = this.tree.self.info;
    const prev = this.prev;
    if (prev !== null && prev.rootSeq === self.seq && prev.root.equals(self.root)) return;
    if (!this.tree.isRoot()) {
      this.handleBootstrap(this.tree.label(), null);
      this.bwait = true;
    }
    this.bootstrapAt = this.core.now + BOOTSTRAP_INTERVAL;
  }

  /** Bootstrap from a peer (frame = the received frame) or our own (frame = null). */
  handleBootstrap(label: TreeLabel, frame: Buffer | null): void {
    const next = this.lookup(label.key, true);
    if (next !== null) {
      this.core.sendFrame(next, frame ?? encodeBootstrap(label));
      return;
    }
    if (label.key.equals(this.core.ownKey)) return;
    if (!verifyLabel(label)) {
      this.core.drop("bootstrap_bad_signature");
      return;
    }
    const ack: BootstrapAck = {
      bootstrap: label,
      token: makeToken(this.signer, label.key, this.tree.label()),
    };
    this.handleAck(ack, null);
  }

  handleAck(ack: BootstrapAck, frame: Buffer | null): void {
    const next = this.tree.lookup(ack.bootstrap);
    if (next !== null) {
      this.core.sendFrame(next, frame ?? encodeBootstrapAck(ack));
      return;
    }
    const own = this.core.ownKey;
    const token = ack.token;
    const dest = token.dest.key;
    const self = this.tree.self.info;
    if (dest.equals(own) || !ack.bootstrap.key.equals(own) || !token.source.equals(own)) {
      this.core.drop("ack_not_ours");
      return;
    }
    if (token.dest.seq !== self.seq || !token.dest.root.equals(self.root)) {
      this.core.drop("ack_stale_root");
      return;
    }
    const prev = this.prev;
    if (prev !== null) {
      const prevDest = this.dkeys.get(prev) as Buffer;
      const better = ordered(prevDest, dest, own);
      const staleSame = dest.equals(prevDest) && (prev.rootSeq !== self.seq || !prev.root.equals(self.root));
      if (!better && !staleSame) {
        this.core.drop("ack_not_better");
        return;
      }
    }
    if (!verifyToken(token)) {
      this.core.drop("ack_bad_signature");
      return;
    }
    this.prev = null;
    // dkeys holds just our own prev paths, in the same relative order as entries.
    for (const [e, d] of this.dkeys) {
      if (!d.equals(dest)) this.teardown(null, teardownOf(e));
    }
    this.seq = (this.seq + 1n) & U64_MASK;
    this.handleSetup(null, makeSetup(this.signer, this.seq, token), null);
  }

  /** A (verified) setup from peer `from`, or our own (from = null, frame = null). */
  handleSetup(from: Peer | null, setup: DhtSetup, frame: Buffer | null): void {
    const token = setup.token;
    const own = this.core.ownKey;
    const next = this.tree.lookup(token.dest);
    const self = this.tree.self.info;
    const root = token.dest.root;
    const rootSeq = token.dest.seq;
    const mapKey = dhtMapKey(token.source, root, rootSeq);
    let refuse: string | undefined;
    if (next === null && !token.dest.key.equals(own)) refuse = "setup_no_route";
    else if (rootSeq !== self.seq || !root.equals(self.root)) refuse = "setup_foreign_root";
    else if (this.entries.has(mapKey)) refuse = "setup_duplicate";
    if (refuse === undefined && from !== null && this.entries.size >= this.core.limits.dhtEntries) {
      if (!this.evictForFairShare(from)) {
        this.core.drop("setup_table_full");
        return;
      }
    }
    if (refuse !== undefined) {
      this.core.drop(refuse);
      if (from !== null) this.core.sendFrame(from, encodeTeardown(teardownOfSetup(setup)));
      return;
    }
    const entry: IndexedEntry = {
      order: this.nextOrder++,
      seq: setup.seq,
      key: token.source,
      peer: from,
      rest: next,
      root,
      rootSeq,
      expires: this.core.now + DHT_EXPIRY,
      mapKey,
    };
    this.entries.set(mapKey, entry);
    this.index.insert(entry);
    if (from !== null) {
      const mine = this.byPeer.get(from);
      if (mine === undefined) this.byPeer.set(from, new Set([entry]));
      else mine.add(entry);
    }
    if (from === null) {
      this.prev = entry;
      this.dkeys.set(entry, token.dest.key);
    }
    if (next !== null) {
      this.core.sendFrame(next, frame ?? encodeSetup(setup));
      return;
    }
    const current = this.next;
    if (current === null) {
      this.next = entry;
    } else if (entry.key.equals(current.key) || ordered(own, entry.key, current.key)) {
      this.teardown(null, teardownOf(current));
      this.next = entry;
    } else {
      this.teardown(null, teardownOf(entry));
    }
  }

  /** A teardown from peer `from`, or generated here (from = null) (spec 5.4.5). */
  teardown(from: Peer | null, td: DhtTeardown): void {
    const entry = this.entries.get(dhtMapKey(td.key, td.root, td.rootSeq));
    if (entry === undefined || entry.seq !== td.seq) return;
    let other: Peer | null;
    if (from === entry.peer) other = entry.rest;
    else if (from === entry.rest) other = entry.peer;
    else return;
    this.remove(entry);
    if (other !== null) this.core.sendFrame(other, encodeTeardown(td));
  }

  /**
   * The table is full and `from` brings a new setup: the peer whose setups hold the most entries
   * gives up its oldest, if it holds at least two more than `from` (else the setup is refused). A
   * link flooding setups fills the table with its own entries and then only displaces those; what
   * honest links set up stays, and their new setups still get in. Rare (only at the cap), so the
   * scan over peers is fine. The evicted path is torn down both ways, as a teardown would be.
   */
  private evictForFairShare(from: Peer): boolean {
    const have = this.byPeer.get(from)?.size ?? 0;
    let largest: Set<IndexedEntry> | undefined;
    for (const [peer, set] of this.byPeer) {
      if (peer !== from && set.size > (largest?.size ?? have + 1)) largest = set;
    }
    const victim = largest?.values().next().value;
    if (victim === undefined) return false;
    const td = encodeTeardown(teardownOf(victim));
    this.remove(victim);
    if (victim.peer !== null) this.core.sendFrame(victim.peer, td);
    if (victim.rest !== null) this.core.sendFrame(victim.rest, td);
    this.core.drop("setup_evicted_fair_share");
    return true;
  }

  private remove(entry: IndexedEntry): void {
    if (entry.peer !== null) {
      const mine = this.byPeer.get(entry.peer);
      mine?.delete(entry);
      if (mine?.size === 0) this.byPeer.delete(entry.peer);
    }
    this.entries.delete(entry.mapKey);
    this.index.delete(entry);
    this.dkeys.delete(entry);
    if (this.next === entry) this.next = null;
    if (this.prev === entry) {
      this.prev = null;
      // Other bad news may be on its way: bootstrap once the current event is done.
      this.bootstrapDeferred = true;
    }
  }

  /**
   * A peer closed for a violation keeps its paths until removePeer tears them down, but lookups
   * skip them: take them out of the index now, so a lookup does not walk past a hostile peer's
   * thousands of entries meanwhile.
   */
  peerClosed(peer: Peer): void {
    const mine = this.byPeer.get(peer);
    if (mine !== undefined) for (const e of mine) this.index.delete(e);
  }

  /**
   * Link loss (spec 5.4.6): as if a teardown for each path through it arrived from it. A full scan,
   * but once per link lost, not per frame; the teardowns go out in entry order as Go's do.
   */
  removePeer(peer: Peer): void {
    for (const e of this.entries.values()) {
      if (e.peer === peer || e.rest === peer) this.teardown(peer, teardownOf(e));
    }
  }

  /** Run a bootstrap deferred by a lost prev; the router calls this at the end of each event. */
  flushDeferred(): void {
    if (!this.bootstrapDeferred) return;
    this.bootstrapDeferred = false;
    this.doBootstrap();
  }

  /** Entries are in expiry order: the scan stops at the first live one (amortised O(1) per entry). */
  onTimeout(now: number): void {
    if (this.bootstrapAt !== undefined && now >= this.bootstrapAt) {
      this.bootstrapAt = undefined;
      this.bwait = false;
      this.doBootstrap();
    }
    for (const e of this.entries.values()) {
      if (e.expires > now) break;
      const td = teardownOf(e);
      if (e.peer !== null) this.core.sendFrame(e.peer, encodeTeardown(td));
      this.teardown(e.peer, td);
    }
  }

  nextTimeout(): number | undefined {
    let t = this.bootstrapAt;
    for (const e of this.entries.values()) {
      if (t === undefined || e.expires < t) t = e.expires;
      break;
    }
    return t;
  }

  /** For tests and the simulator: our prev path's destination and tree state. */
  prevInfo(): { dest: Buffer; root: Buffer; rootSeq: bigint } | undefined {
    const p = this.prev;
    if (p === null) return undefined;
    return { dest: this.dkeys.get(p) as Buffer, root: p.root, rootSeq: p.rootSeq };
  }
}
