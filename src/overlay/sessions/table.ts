// What Sessions keeps and for how long: sessions by remote key, the unproven ones in eviction
// order, packets waiting for a handshake, the admission budgets for handshakes from strangers, and
// the expiry sweep. Every map here is bounded; what a full table refuses or gives up is counted.
// The crypto and the handshakes stay in ../sessions.ts.
import { PrefixBuckets, TokenBucket } from "../../util/token-bucket.js";
import type { PendingBuffer, Session } from "./state.js";

/** Expiry scans run at most this often, so many sessions cost one sweep, not one per expiry. */
const SWEEP_GRANULARITY_MS = 1000;

/** The counters this table moves (a subset of SessionStats, shared with Sessions). */
export interface TableCounters {
  sessionsEvicted: number;
  buffersEvicted: number;
  sessionsExpired: number;
  buffersExpired: number;
}

export function mapKey(key: Uint8Array): string {
  const buf = Buffer.isBuffer(key) ? key : Buffer.from(key.buffer, key.byteOffset, key.byteLength);
  return buf.toString("latin1");
}

export class SessionTable {
  readonly sessions = new Map<string, Session>();
  /** Sessions no traffic has proven yet, oldest first: the ones a full table gives up first. */
  readonly unproven = new Map<string, Session>();
  /** Waiting packets, oldest write first. */
  readonly buffers = new Map<string, PendingBuffer>();
  pendingBytes = 0;
  // The session of the last send and of the last traffic received: a stream hits the same one
  // packet after packet, and comparing its key is cheaper than building a map key string.
  // removeSession clears them, so they never return a removed session.
  lastSent: Session | undefined;
  lastHeard: Session | undefined;
  private readonly newSessions: TokenBucket;
  /** 4,096 keyspace regions, 20 new sessions/s each: a key grinder cannot use one link's whole budget on one region. */
  private readonly newSessionsByPrefix = new PrefixBuckets(12, 20, 40);
  /** lower bound on the earliest expiry of any session or buffer */
  private nextSweep = Number.POSITIVE_INFINITY;

  constructor(
    private readonly maxSessions: number,
    private readonly maxPendingBytes: number,
    newSessionsPerSecond: number,
    private readonly counters: TableCounters,
  ) {
    this.newSessions = new TokenBucket(newSessionsPerSecond, 2 * newSessionsPerSecond);
  }

  /** Whether a handshake from `source`, for which we hold nothing, may cost us crypto and state. */
  mayCreate(source: Buffer, now: number, via: TokenBucket | undefined): boolean {
    // The link's budget first: a flooding link spends its own tokens, not the global ones.
    if (via !== undefined && !via.take(now)) return false;
    return this.newSessionsByPrefix.take(source, now) && this.newSessions.take(now);
  }

  addSession(k: string, s: Session, proven: boolean): void {
    this.sessions.set(k, s);
    if (!proven) this.unproven.set(k, s);
    this.schedule(s.expires);
  }

  removeSession(k: string): void {
    this.sessions.delete(k);
    this.unproven.delete(k);
    this.lastSent = undefined;
    this.lastHeard = undefined;
  }

  prove(s: Session): void {
    s.proven = true;
    this.unproven.delete(mapKey(s.key));
  }

  /**
   * Room for one more session. Unproven ones go first, oldest first; a proven one only for a
   * session we asked for (`wanted`), and then the one idle longest. Strangers never displace
   * sessions that carry traffic.
   */
  makeRoom(wanted: boolean): boolean {
    if (this.sessions.size < this.maxSessions) return true;
    const oldest = this.unproven.keys().next();
    if (!oldest.done) {
      this.removeSession(oldest.value);
      this.counters.sessionsEvicted++;
      return true;
    }
    if (!wanted) return false;
    // A full table of proven sessions and a local send to a new key: rare, so a scan is fine.
    let idlest: string | undefined;
    let idlestExpires = Number.POSITIVE_INFINITY;
    for (const [k, s] of this.sessions) {
      if (s.expires < idlestExpires) {
        idlest = k;
        idlestExpires = s.expires;
      }
    }
    if (idlest === undefined) return false;
    this.removeSession(idlest);
    this.counters.sessionsEvicted++;
    return true;
  }

  /**
   * Stores `data` as the packet waiting in `b` for key `k` (the latest only), moves `b` to the
   * newest end, and drops the oldest waiting packets beyond the byte cap: a workload writing to
   * many unreachable addresses must not hold 53 KB for each (their handshakes may still complete;
   * only the packet is lost).
   */
  keepPending(k: string, b: PendingBuffer, data: Buffer, expires: number): void {
    this.buffers.delete(k);
    this.buffers.set(k, b);
    this.pendingBytes += data.length - b.data.length;
    b.data = data;
    for (const [ok, ob] of this.buffers) {
      if (this.pendingBytes <= this.maxPendingBytes || ob === b) break;
      this.removeBuffer(ok, ob);
      this.counters.buffersEvicted++;
    }
    b.expires = expires;
    this.schedule(expires);
  }

  removeBuffer(k: string, b: PendingBuffer): void {
    this.buffers.delete(k);
    this.pendingBytes -= b.data.length;
  }

  nextTimeout(): number | undefined {
    return this.nextSweep === Number.POSITIVE_INFINITY ? undefined : this.nextSweep;
  }

  /** Drops sessions and buffers whose time is up. */
  sweep(now: number): void {
    if (now < this.nextSweep) return;
    let earliest = Number.POSITIVE_INFINITY;
    for (const [k, s] of this.sessions) {
      if (s.expires <= now) {
        this.removeSession(k);
        this.counters.sessionsExpired++;
      } else if (s.expires < earliest) earliest = s.expires;
    }
    for (const [k, b] of this.buffers) {
      if (b.expires <= now) {
        this.removeBuffer(k, b);
        this.counters.buffersExpired++;
      } else if (b.expires < earliest) earliest = b.expires;
    }
    this.nextSweep =
      earliest === Number.POSITIVE_INFINITY ? earliest : Math.max(earliest, now + SWEEP_GRANULARITY_MS);
  }

  private schedule(expires: number): void {
    if (expires < this.nextSweep) this.nextSweep = expires;
  }
}
