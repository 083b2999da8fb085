// Reassembly of traffic frames that a udp:// link split into fragments (so the kernel never
// fragments a datagram: a lost IP fragment would lose the whole datagram, a lost link fragment loses
// only its own frame). Fragment header after the record's kind and length:
//   frame id u32 ‖ index u8 ‖ count u8 ‖ offset u16
// Memory is bounded: at most MAX_ASSEMBLIES incomplete frames per link, each in a 64 KiB buffer
// allocated once and reused; a fragment of a new frame when all are busy evicts the oldest (a peer
// or an on-path flood of bogus first fragments costs real frames, never memory). Protocol frames are
// split too, but into reliable in-order segments (udp-link.ts), which need no reassembly table.
import { MAX_FRAME } from "./stream.js";

export const FRAG_HEADER = 8;
export const MAX_ASSEMBLIES = 8;
/** Fragments per frame: the header's count is a u8. */
export const MAX_FRAGMENTS = 255;

interface Assembly {
  id: number;
  count: number;
  /** Fragments received. */
  got: number;
  /** Payload bytes received. */
  bytes: number;
  /** Frame length, known once the last fragment arrived; −1 before. */
  total: number;
  /** Order of creation, for eviction. */
  born: number;
  seen: Uint8Array;
  buf: Buffer;
}

export const FRAG_OK = 0;
export const FRAG_MALFORMED = -1;

export class Reassembler {
  /** Incomplete frames evicted to make room for newer ones (flood, or loss). */
  evicted = 0;
  /** Fragments that contradicted their frame's earlier fragments, or repeated one. */
  refused = 0;
  completed = 0;
  private readonly slots: Array<Assembly | undefined> = new Array(MAX_ASSEMBLIES).fill(undefined);
  /** Finished assemblies whose buffers the next claims reuse (slots + free ≤ MAX_ASSEMBLIES). */
  private readonly free: Assembly[] = [];
  private born = 0;
  /** The last completed frame, valid until the next add(). */
  frame: Buffer = Buffer.alloc(0);

  /**
   * Adds one fragment. Returns FRAG_MALFORMED when the header cannot be from an honest sender (the
   * link closes), FRAG_OK otherwise; a frame this fragment completed is then in `frame` (length > 0).
   */
  add(id: number, index: number, count: number, offset: number, data: Buffer): number {
    this.frame = this.frame.subarray(0, 0);
    const len = data.length;
    if (count < 2 || index >= count || len === 0 || offset + len > MAX_FRAME) return FRAG_MALFORMED;
    let a = this.find(id);
    if (!a) a = this.claim(id, count);
    else if (a.count !== count) {
      this.refused++;
      return FRAG_OK;
    }
    if (a.seen[index] === 1) {
      this.refused++;
      return FRAG_OK;
    }
    if (index === count - 1) {
      if (a.total >= 0 && a.total !== offset + len) {
        this.refused++;
        return FRAG_OK;
      }
      a.total = offset + len;
    }
    a.seen[index] = 1;
    a.got++;
    a.bytes += len;
    data.copy(a.buf, offset);
    if (a.got < count) return FRAG_OK;
    const slot = this.slots.indexOf(a);
    this.slots[slot] = undefined;
    this.free.push(a);
    if (a.bytes !== a.total) {
      // Overlapping or gapped fragments: no honest sender makes them.
      this.refused++;
      return FRAG_OK;
    }
    this.completed++;
    this.frame = a.buf.subarray(0, a.total);
    return FRAG_OK;
  }

  /** Incomplete frames held now. */
  get pending(): number {
    let n = 0;
    for (const a of this.slots) if (a) n++;
    return n;
  }

  private find(id: number): Assembly | undefined {
    for (const a of this.slots) if (a && a.id === id) return a;
    return undefined;
  }

  private claim(id: number, count: number): Assembly {
    let slot = this.slots.indexOf(undefined);
    let reuse = this.free.pop();
    if (slot < 0) {
      slot = 0;
      for (let i = 1; i < MAX_ASSEMBLIES; i++) if (this.slots[i]!.born < this.slots[slot]!.born) slot = i;
      reuse = this.slots[slot];
      this.evicted++;
    }
    const a: Assembly = reuse ?? {
      id,
      count,
      got: 0,
      bytes: 0,
      total: -1,
      born: 0,
      seen: new Uint8Array(MAX_FRAGMENTS),
      buf: Buffer.alloc(MAX_FRAME),
    };
    a.id = id;
    a.count = count;
    a.got = 0;
    a.bytes = 0;
    a.total = -1;
    a.born = ++this.born;
    a.seen.fill(0);
    this.slots[slot] = a;
    return a;
  }
}
