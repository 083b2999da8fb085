// Connection tracking for the firewall: a fixed-size open-addressing hash table of flows in typed
// arrays, so that a lookup allocates nothing and the table never grows past `maxFlows`. A flow is
// (remote address, local address, protocol, local port, remote port), the same key for both
// directions; it also keeps the remote's public key (to re-check the flow against new rules on a
// reload), the direction it was opened in, and when it expires. When the table is full the entry
// that expires soonest among a few looked at from a clock hand is evicted (counted).
import { randomBytes } from "node:crypto";

/**
 * A flow key in 32-bit words (big-endian reads of the packet): remote address 0..3, local address
 * 4..7, protocol 8, local port << 16 | remote port 9. Words, not bytes: a quarter of the work to
 * hash and compare.
 */
export const FLOW_KEY_WORDS = 10;
const PEER_BYTES = 32;
/** Slots looked at for an eviction victim. */
const EVICTION_SAMPLE = 16;

export const ORIGIN_INBOUND = 1;
export const ORIGIN_OUTBOUND = 2;
export const FLOW_REPLIED = 4;
export const FLOW_CLOSING = 8;

export class Conntrack {
  readonly maxFlows: number;
  /** The caller writes a flow key here (see FLOW_KEY_WORDS) before find() and insert(). */
  readonly key = new Uint32Array(FLOW_KEY_WORDS);
  evicted = 0;
  expired = 0;
  private count = 0;
  /** The hash of `key` computed by the last find() that looked it up. */
  private keyHash = 0;
  private lastSlot = 0;
  private hand = 0;
  private readonly capacity: number;
  private readonly mask: number;
  private readonly seed: number;
  private readonly used: Uint8Array;
  private readonly hashes: Uint32Array;
  private readonly keys: Uint32Array;
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
    this.keys = new Uint32Array(capacity * FLOW_KEY_WORDS);
    this.peers = new Uint8Array(capacity * PEER_BYTES);
    this.expiries = new Float64Array(capacity);
    this.state = new Uint8Array(capacity);
  }

  get size(): number {
    return this.count;
  }

  /** MurmurHash3 (x86, 32-bit) of `key`'s words, seeded. */
  private hash(): number {
    const k = this.key;
    let h = this.seed;
    for (let i = 0; i < FLOW_KEY_WORDS; i++) {
      let w = Math.imul(k[i]!, 0xcc9e2d51);
      w = Math.imul((w << 15) | (w >>> 17), 0x1b873593);
      h ^= w;
      h = (Math.imul((h << 13) | (h >>> 19), 5) + 0xe6546b64) | 0;
    }
    h ^= h >>> 16;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    return (h ^ (h >>> 16)) >>> 0;
  }

  /**
   * The slot of the live flow with `key`, or -1 (then `insert` may follow). An expired flow found is
   * removed. The slot found last is tried first: a burst of one flow's packets skips the hash.
   */
  find(now: number): number {
    const { used, keys, key } = this;
    const last = this.lastSlot;
    if (used[last] === 1) {
      const base = last * FLOW_KEY_WORDS;
      let j = 0;
      while (j < FLOW_KEY_WORDS && keys[base + j] === key[j]) j++;
      if (j === FLOW_KEY_WORDS && this.expiries[last]! > now) return last;
    }
    const h = this.hash();
    this.keyHash = h;
    const { hashes, mask } = this;
    for (let i = h & mask; used[i] === 1; i = (i + 1) & mask) {
      if (hashes[i] !== h) continue;
      const base = i * FLOW_KEY_WORDS;
      let j = 0;
      while (j < FLOW_KEY_WORDS && keys[base + j] === key[j]) j++;
      if (j < FLOW_KEY_WORDS) continue;
      if (this.expiries[i]! > now) {
        this.lastSlot = i;
        return i;
      }
      this.remove(i);
      this.expired++;
      return -1;
    }
    return -1;
  }

  /** Adds the flow in `key` after a find() that missed it, evicting one if the table is full. */
  insert(peer: Uint8Array, peerOffset: number, state: number, expires: number, now: number): number {
    if (this.count >= this.maxFlows) this.evictOne(now);
    const { used, mask } = this;
    const h = this.keyHash;
    let i = h & mask;
    while (used[i] === 1) i = (i + 1) & mask;
    used[i] = 1;
    this.hashes[i] = h;
    const base = i * FLOW_KEY_WORDS;
    for (let j = 0; j < FLOW_KEY_WORDS; j++) this.keys[base + j] = this.key[j]!;
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

  /** The flow keys (read-only use): slot's key is words slot * FLOW_KEY_WORDS onwards. */
  get flowKeys(): Uint32Array {
    return this.keys;
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
      this.keys.copyWithin(hole * FLOW_KEY_WORDS, j * FLOW_KEY_WORDS, (j + 1) * FLOW_KEY_WORDS);
      this.peers.copyWithin(hole * PEER_BYTES, j * PEER_BYTES, j * PEER_BYTES + PEER_BYTES);
      this.state[hole] = this.state[j]!;
      this.expiries[hole] = this.expiries[j]!;
      used[j] = 0;
      hole = j;
    }
  }
}
