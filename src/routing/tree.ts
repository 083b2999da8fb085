// The spanning tree (spec 5.3): per-peer infos, parent selection (_fix), hold-down, expiry, treeLookup.
import {
  EXPIRED_SOFT_CAP,
  HOLD_DOWN,
  type Peer,
  type RouterCore,
  type StoredInfo,
  TREE_ANNOUNCE,
  TREE_TIMEOUT,
  keyId,
  keyLess,
  storeInfo,
  treeDist,
} from "./state.js";
import type { TreeInfo, TreeLabel } from "./types.js";
import { type Signer, appendTreeHop, encodeTree, makeLabel } from "./wire.js";

interface Expiry {
  seq: bigint;
  time: number;
}

export class Tree {
  /** Never null outside fix(). */
  self: StoredInfo;
  parent: Peer | null = null;
  /** Highest seq seen per root (keyId) and when it was first processed. */
  readonly expired = new Map<string, Expiry>();
  /** Hold-down after bad news from the parent: no parent selection until this time. */
  holdUntil: number | undefined;
  /** Self expiry (root: re-seq; non-root: the root's seq times out). */
  selfExpiresAt: number | undefined;
  private selfTimerFor: StoredInfo | undefined;
  private hseq = 0;
  /** Called when the tree settles after a change (the DHT's _doBootstrap). */
  afterFix: () => void = () => {};

  constructor(
    private readonly core: RouterCore,
    private readonly signer: Signer,
  ) {
    this.self = this.rootInfo(core.now, false);
    this.fixFrom(null);
  }

  get waiting(): boolean {
    return this.holdUntil !== undefined;
  }

  /** Our coordinates: the ports of our own hops. */
  coords(): number[] {
    return this.self.ports;
  }

  /** Our signed label for the current self (cached until self changes). */
  label(): TreeLabel {
    const self = this.self;
    if (!self.label) self.label = makeLabel(this.signer, self.info.root, self.info.seq, self.ports);
    return self.label;
  }

  isRoot(): boolean {
    return this.self.info.root.equals(this.core.ownKey);
  }

  /** A verified tree info from peer (spec 5.3.4 onward). */
  update(peer: Peer, info: TreeInfo): void {
    this.apply(peer, info);
    // Roots below ours that _fix never adopts (loops, expired seqs) escape its cleanup: bound them here.
    this.pruneExpiredIfLarge();
  }

  private apply(peer: Peer, info: TreeInfo): void {
    const now = this.core.now;
    const stored = storeInfo(info, now, ++this.hseq);
    const rootId = keyId(info.root);
    const exp = this.expired.get(rootId);
    if (!exp || exp.seq < info.seq) this.expired.set(rootId, { seq: info.seq, time: now });
    if (!peer.info) this.sendTree(peer); // first info from this peer: it may have missed ours
    peer.info = stored;
    if (peer === this.parent) {
      const self = this.self.info;
      const badNews = keyLess(self.root, info.root) || (info.root.equals(self.root) && info.seq <= self.seq);
      this.parent = null;
      if (badNews) {
        // Announce "I am my own root, seq 0" now and hold parent selection for 7 s, so that
        // neighbours losing the same root do not chase each other's stale infos.
        this.holdUntil = now + HOLD_DOWN;
        this.self = this.rootInfo(now, true);
        this.sendTreeAll();
      } else {
        this.fixFrom(null);
        this.afterFix();
        return;
      }
    }
    if (this.holdUntil === undefined) {
      this.fix();
      this.afterFix();
    }
  }

  /** A link went away (its DHT paths are the DHT's business). */
  remove(peer: Peer): void {
    const old = peer.info;
    peer.info = undefined;
    if (old !== undefined && this.self === old) {
      this.parent = null;
      this.fixFrom(null);
    }
  }

  onTimeout(now: number): void {
    if (this.holdUntil !== undefined && now >= this.holdUntil) {
      this.holdUntil = undefined;
      this.parent = null;
      this.fixFrom(null);
      this.afterFix();
    }
    if (this.selfExpiresAt !== undefined && now >= this.selfExpiresAt) {
      this.selfExpiresAt = undefined;
      if (this.self === this.selfTimerFor) {
        this.parent = null;
        this.fixFrom(null);
        this.afterFix();
      }
    }
  }

  nextTimeout(): number | undefined {
    const a = this.holdUntil;
    const b = this.selfExpiresAt;
    if (a === undefined) return b;
    if (b === undefined) return a;
    return a < b ? a : b;
  }

  fix(): void {
    this.fixFrom(this.self);
  }

  /** _fix with `current` as the starting self (null = start from scratch). */
  private fixFrom(current: StoredInfo | null): void {
    const now = this.core.now;
    const own = this.core.ownKey;
    const oldSelf = this.self;
    // A parent closed for a violation awaits removePeer: reselect as removePeer would.
    let self = current !== null && this.parent?.closed ? null : current;
    if (self === null || keyLess(own, self.info.root)) {
      self = this.rootInfo(now, false);
      this.parent = null;
    }
    let parent = self === current ? this.parent : null;
    for (const peer of this.core.peers.values()) {
      const s = peer.info;
      if (!s) continue;
      const id = keyId(s.info.root);
      const exp = this.expired.get(id);
      if (!exp || exp.seq < s.info.seq || (exp.seq === s.info.seq && s.time < exp.time))
        this.expired.set(id, { seq: s.info.seq, time: s.time });
    }
    for (const peer of this.core.peers.values()) {
      const s = peer.info;
      if (!s || s.loop || peer.closed) continue;
      const info = s.info;
      const exp = this.expired.get(keyId(info.root));
      if (exp) {
        if (info.seq < exp.seq) continue;
        // ≥ rather than >: with a virtual clock the self timer fires exactly at time + 1 h.
        if (info.seq === exp.seq && now - exp.time >= TREE_TIMEOUT) continue;
      }
      const cmp = info.root.compare(self.info.root);
      if (
        cmp < 0 ||
        (cmp === 0 && (info.seq > self.info.seq || (info.seq === self.info.seq && s.hseq < self.hseq)))
      ) {
        self = s;
        parent = peer;
      }
    }
    this.self = self;
    this.parent = parent;
    // Starting from scratch counts as a change (ironwood's oldSelf is nil then).
    if (self !== oldSelf || current === null) {
      this.selfTimerFor = self;
      if (parent === null) {
        this.selfExpiresAt = now + TREE_ANNOUNCE;
      } else {
        const exp = this.expired.get(keyId(self.info.root));
        this.selfExpiresAt = (exp ? exp.time : now) + TREE_TIMEOUT;
      }
      this.sendTreeAll();
    }
    for (const id of this.expired.keys()) {
      if (Buffer.from(id, "latin1").compare(self.info.root) > 0) this.expired.delete(id);
    }
  }

  /**
   * treeLookup (spec 5.3.6): the peer closest in tree space to label, or null for "here / no route".
   */
  lookup(label: TreeLabel): Peer | null {
    if (label.key.equals(this.core.ownKey)) return null;
    let best = this.self;
    let bestDist = best.info.root.equals(label.root)
      ? treeDist(best.ports, best.ports.length, label.path)
      : Number.POSITIVE_INFINITY;
    let bestPeer: Peer | null = null;
    for (const peer of this.core.peers.values()) {
      const s = peer.info;
      if (!s || peer.closed) continue;
      if (s.info.seq !== label.seq || !s.info.root.equals(label.root)) continue;
      const dist = treeDist(s.ports, s.ports.length - 1, label.path);
      let better = false;
      if (dist < bestDist) better = true;
      else if (dist > bestDist) better = false;
      else if (keyLess(s.from, best.from)) better = true;
      else if (bestPeer?.key.equals(peer.key) && peer.priority < bestPeer.priority) better = true;
      if (better) {
        best = s;
        bestDist = dist;
        bestPeer = peer;
      }
    }
    if (best.info.seq !== label.seq || !best.info.root.equals(label.root)) return null;
    return bestPeer;
  }

  /** Our self with one more hop toward peer, as a type-1 frame. */
  sendTree(peer: Peer): void {
    this.core.sendFrame(peer, encodeTree(appendTreeHop(this.signer, this.self.info, peer.key, peer.port)));
  }

  /** The seq-0 hello of a new link (spec 5.3.3). */
  sendHello(peer: Peer): void {
    const hello: TreeInfo = { root: this.core.ownKey, seq: 0n, hops: [] };
    this.core.sendFrame(peer, encodeTree(appendTreeHop(this.signer, hello, peer.key, peer.port)));
  }

  private sendTreeAll(): void {
    for (const peer of this.core.peers.values()) if (peer.info && !peer.closed) this.sendTree(peer);
  }

  private rootInfo(now: number, holdDown: boolean): StoredInfo {
    const seq = holdDown ? 0n : BigInt(Math.floor(now / 1000));
    return storeInfo({ root: this.core.ownKey, seq, hops: [] }, now, 0);
  }

  /** Beyond the soft cap, keep only the roots still in use (ours and our peers'). */
  private pruneExpiredIfLarge(): void {
    if (this.expired.size <= EXPIRED_SOFT_CAP + 2 * this.core.peers.size) return;
    const used = new Set<string>([keyId(this.self.info.root)]);
    for (const peer of this.core.peers.values()) if (peer.info) used.add(keyId(peer.info.info.root));
    for (const id of this.expired.keys()) if (!used.has(id)) this.expired.delete(id);
  }
}
