// Connection tracking for the firewall: a fixed-size open-addressing hash table of flows in typed
// arrays, so that a lookup allocates nothing and the table never grows past `maxFlows`. A flow is
// (remote address, local address, protocol, local port, remote port), the same key for both
// directions; it also keeps the remote's public key (to re-check the flow against new rules on a
// reload), the direction it was opened in, and when it expires. When the table is full the entry
// that expires soonest among a few looked at from a clock hand is evicted (counted).
import { randomBytes } from "node:crypto";

/** remote address 16, local address 16, protocol 1, unused 1, local port 2, remote port 2. */
export const FLOW_KEY_BYTES = 38;
const KEY_STRIDE = 40;
const PEER_BYTES = 32;
/** Slots looked at for an eviction victim. */
const EVICTION_SAMPLE = 16;

export const ORIGIN_INBOUND = 1;
export const ORIGIN_OUTBOUND = 2;
export const FLOW_REPLIED = 4;
export const FLOW_CLOSING = 8;

export class Conntrack {
  readonly maxFlows: number;
  /** The caller writes a flow key here (see FLOW_KEY_BYTES) before hash(), find() and insert(). */
  readonly key = new Uint8Array(KEY_STRIDE);
  evicted = 0;
  expired = 0;
  private count = 0;
  private hand = 0;
  private readonly capacity: number;
  private readonly mask: number;
  private readonly seed: number;
  private readonly used: Uint8Array;
  private readonly hashes: Uint32Array;
  private readonly keys: Uint8Array;
  private readonly peers: Uint8Array;
  private readonly expiries: Float64Array;
  private readonly state: Uint8Array;

  constructor(maxFlows: number) {
    this.maxFlows = Math.max(1, Math.floor(maxFlows));
    // At most half full: short probe sequences.
    let capacity = 16;
    while (capacity < this.maxFlows * 2) capacity *= 2;
    this.capacity = capacity;
    this.mask = capacity - 1;
    // A per-process seed: remote parties choose addresses and ports, not where they land.
    this.seed = randomBytes(4).readUInt32LE(0);
    this.used = new Uint8Array(capacity);
    this.hashes = new Uint32Array(capacity);
    this.keys = new Uint8Array(capacity * KEY_STRIDE);
    this.peers = new Uint8Array(capacity * PEER_BYTES);
    this.expiries = new Float64Array(capacity);
    this.state = new Uint8Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** FNV-1a of `key`, seeded. */
  hash(): number {
    const k = this.key;
    let h = (0x811c9dc5 ^ this.seed) >>> 0;
    for (let i = 0; i < FLOW_KEY_BYTES; i++) h = Math.imul(h ^ k[i]!, 0x01000193);
    return h >>> 0;
  }

  /** The slot of the live flow with `key` (hash `h`), or -1. An expired flow found is removed. */
  find(h: number, now: number): number {
    const { used, hashes, keys, key, mask } = this;
    for (let i = h & mask; used[i] === 1; i = (i + 1) & mask) {
      if (hashes[i] !== h) continue;
      const base = i * KEY_STRIDE;
      let j = 0;
      while (j < FLOW_KEY_BYTES && keys[base + j] === key[j]) j++;
      if (j < FLOW_KEY_BYTES) continue;
      if (this.expiries[i]! > now) return i;
      this.remove(i);
      this.expired++;
      return -1;
    }
    return -1;
  }

  /** Adds the flow in `key` (not present: call find first), evicting one if the table is full. */
  insert(
    h: number,
    peer: Uint8Array,
    peerOffset: number,
    state: number,
    expires: number,
    now: number,
  ): number {
    if (this.count >= this.maxFlows) this.evictOne(now);
    const { used, mask } = this;
    let i = h & mask;
    while (used[i] === 1) i = (i + 1) & mask;
    used[i] = 1;
    this.hashes[i] = h;
    const base = i * KEY_STRIDE;
    for (let j = 0; j < FLOW_KEY_BYTES; j++) this.keys[base + j] = this.key[j]!;
    for (let j = 0; j < PEER_BYTES; j++) this.peers[i * PEER_BYTES + j] = peer[peerOffset + j]!;
    this.state[i] = state;
    this.expiries[i] = expires;
    this.count++;
    return i;
  }

  stateOf(slot: number): number {
    return this.state[slot]!;
  }

  update(slot: number, state: number, expires: number): void {
    this.state[slot] = state;
    this.expiries[slot] = expires;
  }

  expiresAt(slot: number): number {
    return this.expiries[slot]!;
  }

  /** The flow keys (read-only use): slot's key starts at slot * keyStride. */
  get flowKeys(): Uint8Array {
    return this.keys;
  }

  get keyStride(): number {
    return KEY_STRIDE;
  }

  /** Remote public keys: slot's starts at slot * 32. */
  get peerKeys(): Uint8Array {
    return this.peers;
  }

  /** Removes every flow for which `keep(slot)` is false; returns how many went. */
  retain(keep: (slot: number) => boolean): number {
    let removed = 0;
    for (let i = 0; i < this.capacity; i++) {
      // A removal shifts a later entry of the same cluster into slot i: look at it again.
      while (this.used[i] === 1 && !keep(i)) {
        this.remove(i);
        removed++;
      }
    }
    return removed;
  }

  /** Removes expired flows among the next `budget` slots from the sweep position. */
  sweep(now: number, budget: number): number {
    let removed = 0;
    for (let n = 0; n < budget; n++) {
      const i = this.hand;
      if (this.used[i] === 1 && this.expiries[i]! <= now) {
        this.remove(i);
        removed++;
        continue; // slot i may now hold a shifted entry
      }
      this.hand = (i + 1) & this.mask;
    }
    this.expired += removed;
    return removed;
  }

  get slots(): number {
    return this.capacity;
  }

  private evictOne(now: number): void {
    let victim = -1;
    let soonest = Number.POSITIVE_INFINITY;
    let seen = 0;
    for (let n = 0; n < this.capacity && seen < EVICTION_SAMPLE; n++) {
      const i = this.hand;
      this.hand = (i + 1) & this.mask;
      if (this.used[i] !== 1) continue;
      seen++;
      if (this.expiries[i]! <= now) {
        this.remove(i);
        this.expired++;
        return;
      }
      if (this.expiries[i]! < soonest) {
        soonest = this.expiries[i]!;
        victim = i;
      }
    }
    if (victim >= 0) {
      this.remove(victim);
      this.evicted++;
    }
  }

  /** Backward-shift deletion: later entries of the cluster move up so probes never hit a hole early. */
  private remove(slot: number): void {
    const { used, hashes, mask } = this;
    used[slot] = 0;
    this.count--;
    let hole = slot;
    for (let j = (slot + 1) & mask; used[j] === 1; j = (j + 1) & mask) {
      const home = hashes[j]! & mask;
      // The entry at j may move into the hole unless its home lies cyclically in (hole, j].
      const stays = hole <= j ? home > hole && home <= j : home > hole || home <= j;
      if (stays) continue;
      used[hole] = 1;
      hashes[hole] = hashes[j]!;
      this.keys.copyWithin(hole * KEY_STRIDE, j * KEY_STRIDE, j * KEY_STRIDE + KEY_STRIDE);
      this.peers.copyWithin(hole * PEER_BYTES, j * PEER_BYTES, j * PEER_BYTES + PEER_BYTES);
      this.state[hole] = this.state[j]!;
      this.expiries[hole] = this.expiries[j]!;
      used[j] = 0;
      hole = j;
    }
  }
}
