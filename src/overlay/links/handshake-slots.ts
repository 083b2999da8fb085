// Inbound handshakes in flight (TLS and the 38-byte metadata) each hold a socket and a timer for up to
// 12 s before the remote has proved anything. One host that connects and stalls must not take the
// global slots from everyone else: each source has a share, and when the table is full the oldest
// handshake of the source holding the most slots makes room. Honest handshakes finish in a round
// trip, so the oldest one in the table is almost always a stalled one.
import { isIPv4 } from "node:net";
import { parseIPv6 } from "./multicast.js";
import { isLinkLocal6 } from "./uri.js";

export interface HandshakeLimits {
  /** Inbound handshakes in flight at once. */
  total: number;
  /** Of those, from one source (see sourceOf). */
  perSource: number;
  /** An inbound connection that sent no byte for this long is closed (capped by the handshake deadline). */
  firstByteMs: number;
}

export const DEFAULT_HANDSHAKE_LIMITS: HandshakeLimits = { total: 256, perSource: 8, firstByteMs: 3000 };

/** Why a handshake lost or never got its slot; the keys of `HandshakeSlots.refused`. */
export type HandshakeRefusal = "source_limit" | "table_full" | "evicted" | "silent";

/**
 * The source a connection counts against: an IPv4 address (IPv4-mapped ones too), an IPv6 /64
 * (one host or site is routinely given a whole /64, so per-address limits would not bind), a full
 * link-local address with its zone (every neighbour on a link shares fe80::/64), or "local" for
 * unix sockets.
 */
export function sourceOf(ip: string): string {
  if (ip === "") return "local";
  const plain = ip.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/i, "");
  if (isIPv4(plain)) return plain;
  if (isLinkLocal6(plain)) return plain.toLowerCase();
  const prefix = parseIPv6(plain.split("%")[0]!).subarray(0, 8).toString("hex");
  return `${prefix.match(/.{4}/g)!.join(":")}::/64`;
}

export type Admission<T> = { ok: true; evicted: T | undefined } | { ok: false; reason: HandshakeRefusal };

/** The table of inbound handshakes in flight; T is whatever the caller closes on eviction. */
export class HandshakeSlots<T> {
  private readonly limits: Pick<HandshakeLimits, "total" | "perSource">;
  /** Per source, its handshakes in arrival order with their sequence numbers (lower is older). */
  private readonly bySource = new Map<string, Map<T, number>>();
  private count = 0;
  private seq = 0;
  readonly refused: Record<HandshakeRefusal, number> = {
    source_limit: 0,
    table_full: 0,
    evicted: 0,
    silent: 0,
  };

  constructor(limits: Pick<HandshakeLimits, "total" | "perSource">) {
    this.limits = limits;
  }

  get size(): number {
    return this.count;
  }

  /** Slots `source` holds now. */
  held(source: string): number {
    return this.bySource.get(source)?.size ?? 0;
  }

  /**
   * Takes a slot for `item` from `source`. When the table is full, the oldest handshake of the
   * source holding the most slots is dropped from the table and returned for the caller to close;
   * a source already holding as many as the largest gets nothing (evicting would only move a slot
   * between equals).
   */
  acquire(source: string, item: T): Admission<T> {
    const mine = this.held(source);
    if (mine >= this.limits.perSource) {
      this.refused.source_limit++;
      return { ok: false, reason: "source_limit" };
    }
    let evicted: T | undefined;
    if (this.count >= this.limits.total) {
      const victim = this.largestSource();
      if (!victim || this.held(victim) <= mine) {
        this.refused.table_full++;
        return { ok: false, reason: "table_full" };
      }
      const items = this.bySource.get(victim)!;
      evicted = items.keys().next().value as T;
      this.remove(victim, evicted);
      this.refused.evicted++;
    }
    let items = this.bySource.get(source);
    if (!items) {
      items = new Map();
      this.bySource.set(source, items);
    }
    items.set(item, this.seq++);
    this.count++;
    return { ok: true, evicted };
  }

  /** Gives the slot back (handshake finished or failed); false when it was not held (evicted). */
  release(source: string, item: T): boolean {
    return this.remove(source, item);
  }

  private remove(source: string, item: T): boolean {
    const items = this.bySource.get(source);
    if (!items?.delete(item)) return false;
    this.count--;
    if (items.size === 0) this.bySource.delete(source);
    return true;
  }

  /** The source with the most slots; among equals, the one whose oldest handshake is oldest. */
  private largestSource(): string | undefined {
    let best: string | undefined;
    let bestSize = 0;
    let bestOldest = Number.POSITIVE_INFINITY;
    for (const [source, items] of this.bySource) {
      const oldest = items.values().next().value as number;
      if (items.size > bestSize || (items.size === bestSize && oldest < bestOldest)) {
        best = source;
        bestSize = items.size;
        bestOldest = oldest;
      }
    }
    return best;
  }
}
