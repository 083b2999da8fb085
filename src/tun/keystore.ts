// The IPv6 adapter's memory (spec 8.1, 8.3): which key owns an address or /64, and the one packet
// waiting for each unresolved destination. Entries live 120 s after their last use; pending packets
// 120 s after they were stored. Maps are keyed by latin1 strings of the raw bytes: one short string
// per lookup is the cheapest hashable form of a Buffer slice in V8.
import { addressForKey, subnetForKey } from "../crypto/address.js";

export const KEY_STORE_TTL_MS = 120_000;
export const PENDING_TTL_MS = 120_000;
/**
 * Keys remembered at most. Keys are learned only from authenticated sessions and signed lookup
 * answers, both rate-limited upstream; the cap makes the bound explicit. The oldest learned goes first.
 */
export const MAX_KEYS = 65_536;
/** Destinations with a packet waiting for their key (a local workload scanning addresses): oldest first. */
export const MAX_PENDING = 4096;

export interface KeyEntry {
  readonly key: Buffer;
  readonly address: Buffer;
  readonly subnet: Buffer;
  expires: number;
  /** Until when this key's node takes TCP super-packets whole (src/tun/gso.ts); 0: never said so. */
  superPacketsUntil: number;
  /** Until when it rewrites the TCP checksums we send it, so we may leave them partial; 0: never said. */
  partialChecksumsUntil: number;
  /** When we last told this key's node that we take them. */
  superPacketsAnnounced: number;
}

export interface PendingPacket {
  packet: Buffer;
  /** 0x01 ‖ Sign(partialKey): deterministic, so it is signed once per destination and reused. */
  lookup: Buffer;
  /** Where the lookup goes: the destination's partial key (spec 3.3). */
  partialKey: Buffer;
  expires: number;
}

export class KeyStore {
  /** Entries and pending packets dropped to stay within MAX_KEYS and MAX_PENDING. */
  readonly evicted = { keys: 0, pending: 0 };
  private readonly byKey = new Map<string, KeyEntry>();
  private readonly byAddress = new Map<string, KeyEntry>();
  private readonly bySubnet = new Map<string, KeyEntry>();
  private readonly pendingByAddress = new Map<string, PendingPacket>();
  private readonly pendingBySubnet = new Map<string, PendingPacket>();
  // The entries of the last hit per lookup: a stream resolves the same destination, and hears from
  // the same source, packet after packet, and comparing bytes is cheaper than a map key string.
  // Cleared whenever an entry is added or removed, so a hit is always what the maps would say.
  private lastByKey: KeyEntry | undefined;
  private lastByAddress: KeyEntry | undefined;
  private lastBySubnet: KeyEntry | undefined;
  /** Never later than the earliest deadline: deadlines only move later, and new ones are now + TTL. */
  private earliest: number | undefined;

  get size(): number {
    return this.byKey.size;
  }

  get pendingCount(): number {
    return this.pendingByAddress.size + this.pendingBySubnet.size;
  }

  /** The entry for the 16-byte address at packet[offset], refreshed; undefined if unknown. */
  useAddress(packet: Buffer, offset: number, now: number): KeyEntry | undefined {
    let entry = this.lastByAddress;
    if (entry === undefined || !bytesAt(packet, offset, entry.address)) {
      entry = this.byAddress.get(packet.toString("latin1", offset, offset + 16));
      if (entry) this.lastByAddress = entry;
    }
    if (entry) entry.expires = now + KEY_STORE_TTL_MS;
    return entry;
  }

  /** The entry for the /64 at packet[offset], refreshed; undefined if unknown. */
  useSubnet(packet: Buffer, offset: number, now: number): KeyEntry | undefined {
    let entry = this.lastBySubnet;
    if (entry === undefined || !bytesAt(packet, offset, entry.subnet)) {
      entry = this.bySubnet.get(packet.toString("latin1", offset, offset + 8));
      if (entry) this.lastBySubnet = entry;
    }
    if (entry) entry.expires = now + KEY_STORE_TTL_MS;
    return entry;
  }

  /**
   * Record (or refresh) `key`. For a new key, the packets pending for its address and subnet are
   * removed and returned so the caller can send them; otherwise the result is empty.
   */
  learn(key: Buffer, now: number, flushed: Buffer[]): KeyEntry {
    const last = this.lastByKey;
    if (last !== undefined && key.length === last.key.length && bytesAt(key, 0, last.key)) {
      last.expires = now + KEY_STORE_TTL_MS;
      return last;
    }
    const id = key.toString("latin1");
    let entry = this.byKey.get(id);
    if (entry) {
      entry.expires = now + KEY_STORE_TTL_MS;
      this.lastByKey = entry;
      return entry;
    }
    this.forgetLastHits();
    if (this.byKey.size >= MAX_KEYS) {
      const oldest = this.byKey.entries().next().value;
      if (oldest) this.remove(oldest[0], oldest[1]);
      this.evicted.keys++;
    }
    const copy = Buffer.from(key);
    entry = {
      key: copy,
      address: addressForKey(copy),
      subnet: subnetForKey(copy),
      expires: now + KEY_STORE_TTL_MS,
      superPacketsUntil: 0,
      partialChecksumsUntil: 0,
      superPacketsAnnounced: Number.NEGATIVE_INFINITY,
    };
    this.byKey.set(id, entry);
    const addressId = entry.address.toString("latin1");
    const subnetId = entry.subnet.toString("latin1");
    this.byAddress.set(addressId, entry);
    this.bySubnet.set(subnetId, entry);
    const a = this.pendingByAddress.get(addressId);
    if (a) {
      this.pendingByAddress.delete(addressId);
      flushed.push(a.packet);
    }
    const s = this.pendingBySubnet.get(subnetId);
    if (s) {
      this.pendingBySubnet.delete(subnetId);
      flushed.push(s.packet);
    }
    this.noteDeadline(entry.expires);
    return entry;
  }

  /**
   * Keep a copy of `packet` as the single pending packet for the destination at packet[24..24+len]
   * (16 bytes for an address, 8 for a subnet), replacing any earlier one. A new record has an empty
   * `lookup` and `partialKey`; the caller fills them in for the next packets to this destination.
   */
  holdPending(packet: Buffer, isSubnet: boolean, now: number): PendingPacket {
    const map = isSubnet ? this.pendingBySubnet : this.pendingByAddress;
    const id = packet.toString("latin1", 24, isSubnet ? 32 : 40);
    const expires = now + PENDING_TTL_MS;
    let pending = map.get(id);
    if (pending) {
      pending.packet = Buffer.from(packet);
      pending.expires = expires;
    } else {
      if (this.pendingCount >= MAX_PENDING) {
        const other = map === this.pendingByAddress ? this.pendingBySubnet : this.pendingByAddress;
        const fuller = map.size >= other.size ? map : other;
        const oldest = fuller.keys().next().value;
        if (oldest !== undefined) fuller.delete(oldest);
        this.evicted.pending++;
      }
      pending = { packet: Buffer.from(packet), lookup: EMPTY, partialKey: EMPTY, expires };
      map.set(id, pending);
    }
    this.noteDeadline(expires);
    return pending;
  }

  nextDeadline(): number | undefined {
    return this.earliest;
  }

  /** Drop everything expired at `now`; returns how many key entries and pending packets went. */
  expire(now: number): { keys: number; pending: number } {
    let keys = 0;
    let pending = 0;
    let earliest: number | undefined;
    for (const [id, entry] of this.byKey) {
      if (entry.expires <= now) {
        this.remove(id, entry);
        keys++;
      } else if (earliest === undefined || entry.expires < earliest) {
        earliest = entry.expires;
      }
    }
    for (const map of [this.pendingByAddress, this.pendingBySubnet]) {
      for (const [id, p] of map) {
        if (p.expires <= now) {
          map.delete(id);
          pending++;
        } else if (earliest === undefined || p.expires < earliest) {
          earliest = p.expires;
        }
      }
    }
    this.earliest = earliest;
    return { keys, pending };
  }

  /** Snapshot for the admin API. */
  entries(): KeyEntry[] {
    return [...this.byKey.values()];
  }

  private remove(id: string, entry: KeyEntry): void {
    this.forgetLastHits();
    this.byKey.delete(id);
    const addressId = entry.address.toString("latin1");
    const subnetId = entry.subnet.toString("latin1");
    if (this.byAddress.get(addressId) === entry) this.byAddress.delete(addressId);
    if (this.bySubnet.get(subnetId) === entry) this.bySubnet.delete(subnetId);
  }

  private forgetLastHits(): void {
    this.lastByKey = undefined;
    this.lastByAddress = undefined;
    this.lastBySubnet = undefined;
  }

  private noteDeadline(deadline: number): void {
    if (this.earliest === undefined || deadline < this.earliest) this.earliest = deadline;
  }
}

const EMPTY = Buffer.alloc(0);

/** Whether buf[offset..] starts with `bytes` (the caller ensures buf is long enough). */
/** Whether buf holds `bytes` at offset: a JS loop, cheaper per packet than Buffer.compare's native call. */
export function bytesAt(buf: Uint8Array, offset: number, bytes: Uint8Array): boolean {
  for (let i = 0; i < bytes.length; i++) if (buf[offset + i] !== bytes[i]) return false;
  return true;
}
