// Traffic frames that a udp:// link split into fragments (so the kernel never fragments a datagram:
// a lost IP fragment would lose the whole datagram, a lost link fragment loses at most its frame).
// Fragment header after the record's kind and length:
//   frame id u32 ‖ index u8 ‖ count u8 ‖ offset u16
// A big frame is dozens of fragments, and at 10 % loss almost none would arrive whole, so repair is
// bounded but real: the sender keeps its last STORE_FRAMES fragmented frames (FragStore), and the
// receiver asks for the fragments missing from a frame that made no progress for a while (NACK,
// at most MAX_NACKS times, then the frame is given up). Traffic stays unordered and best effort.
// Memory is bounded: at most MAX_ASSEMBLIES incomplete frames per link, each in a 64 KiB buffer
// allocated once and reused; a fragment of a new frame when all are busy evicts the oldest (a peer
// or an on-path flood of bogus first fragments costs real frames, never memory). Protocol frames are
// split too, but into reliable in-order segments (udp-link-send.ts), which need no reassembly table.
import { MAX_FRAME } from "./stream.js";
import { BASE_DATAGRAM } from "./udp-pmtu.js";
import { udpRefusals } from "./udp-refusals.js";

export const FRAG_HEADER = 8;
export const MAX_ASSEMBLIES = 16;
/** Repair requests for one frame before the receiver gives it up. */
export const MAX_NACKS = 4;
/** Fragmented frames the sender keeps for repair. */
export const STORE_FRAMES = 32;
/** Frame ids remembered as finished, so a late repair does not open a new assembly. */
const RECENT_IDS = 32;
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
  /** Every fragment's length but the last's (which is no longer), known from the first; −1 before. */
  size: number;
  /** Order of creation, for eviction. */
  born: number;
  /** When a fragment last arrived or repair was last asked for. */
  lastAt: number;
  nacks: number;
  seen: Uint8Array;
  buf: Buffer;
}

export const FRAG_OK = 0;
export const FRAG_MALFORMED = -1;

export class Reassembler {
  /** Incomplete frames evicted to make room for newer ones (flood, or loss). */
  evicted = 0;
  /** Fragments that contradicted their frame's earlier fragments, repeated one, or came for a finished frame. */
  refused = 0;
  completed = 0;
  /** Frames given up after MAX_NACKS unanswered repair requests. */
  abandoned = 0;
  private readonly recent = new Float64Array(RECENT_IDS).fill(-1);
  private recentAt = 0;
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
  add(id: number, index: number, count: number, offset: number, data: Buffer, now = 0): number {
    this.frame = this.frame.subarray(0, 0);
    const len = data.length;
    if (count < 2 || index >= count || len === 0 || offset + len > MAX_FRAME) return FRAG_MALFORMED;
    // Honest senders cut a frame into fragments of one size, the last no longer: fragment i at
    // i × size. Held to that, fragments cannot overlap, so bytes === total below means every byte
    // came in this frame. Overlaps and a gap that cancel out would hand on what the reused buffer
    // held there before: an earlier frame, which Sessions opened in place (its plaintext).
    const size = index === count - 1 ? offset / index : len;
    if (!Number.isInteger(size) || len > size || offset !== index * size) return this.refuse();
    let a = this.find(id);
    if (!a) {
      if (this.recent.includes(id)) return this.refuse();
      a = this.claim(id, count);
    } else if (a.count !== count) {
      return this.refuse();
    }
    if (a.seen[index] === 1 || (a.size >= 0 && a.size !== size)) return this.refuse();
    a.size = size;
    if (index === count - 1) {
      if (a.total >= 0 && a.total !== offset + len) return this.refuse();
      a.total = offset + len;
    }
    a.seen[index] = 1;
    a.lastAt = now;
    a.got++;
    a.bytes += len;
    data.copy(a.buf, offset);
    if (a.got < count) return FRAG_OK;
    this.finish(a);
    // Overlapping or gapped fragments: no honest sender makes them.
    if (a.bytes !== a.total) return this.refuse();
    this.completed++;
    this.frame = a.buf.subarray(0, a.total);
    return FRAG_OK;
  }

  /** A fragment that repeated one, contradicted its frame, or came for a finished frame: dropped. */
  private refuse(): number {
    this.refused++;
    udpRefusals.reassemblyRefused.fragment++;
    return FRAG_OK;
  }

  /**
   * For each incomplete frame that made no progress for `waitMs`: hands `ask` the indexes it still
   * lacks (up to MAX_NACKS rounds, then gives the frame up). Returns whether any remain incomplete.
   */
  nackDue(now: number, waitMs: number, ask: (id: number, index: number) => void): boolean {
    let left = false;
    for (const a of this.slots) {
      if (!a) continue;
      if (now - a.lastAt < waitMs) {
        left = true;
      } else if (a.nacks >= MAX_NACKS) {
        this.abandoned++;
        udpRefusals.reassemblyRefused.abandoned++;
        this.finish(a);
      } else {
        a.nacks++;
        a.lastAt = now;
        left = true;
        for (let i = 0; i < a.count; i++) if (a.seen[i] === 0) ask(a.id, i);
      }
    }
    return left;
  }

  private finish(a: Assembly): void {
    this.slots[this.slots.indexOf(a)] = undefined;
    this.free.push(a);
    this.recent[this.recentAt] = a.id;
    this.recentAt = (this.recentAt + 1) % RECENT_IDS;
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
      udpRefusals.reassemblyRefused.evicted++;
    }
    const a: Assembly = reuse ?? {
      id,
      count,
      got: 0,
      bytes: 0,
      total: -1,
      size: -1,
      born: 0,
      lastAt: 0,
      nacks: 0,
      seen: new Uint8Array(MAX_FRAGMENTS),
      buf: Buffer.alloc(MAX_FRAME),
    };
    a.id = id;
    a.count = count;
    a.got = 0;
    a.bytes = 0;
    a.total = -1;
    a.size = -1;
    a.born = ++this.born;
    a.nacks = 0;
    a.seen.fill(0);
    this.slots[slot] = a;
    return a;
  }
}

/** The sender's copies of its last STORE_FRAMES fragmented frames, for repair; buffers are reused. */
export class FragStore {
  private readonly ids = new Float64Array(STORE_FRAMES).fill(-1);
  private readonly counts = new Uint8Array(STORE_FRAMES);
  private readonly lens = new Uint32Array(STORE_FRAMES);
  private readonly bufs: Array<Buffer | undefined> = new Array(STORE_FRAMES).fill(undefined);

  keep(id: number, frame: Uint8Array, count: number): void {
    this.slot(id, count, frame.length).set(frame);
  }

  /**
   * Keeps head ‖ tail as frame `id` and returns the kept frame (valid until the next keep): a
   * traffic frame sent in two parts is joined here, where it is copied anyway, and not first into
   * a fresh Buffer of its own.
   */
  keepJoined(id: number, head: Uint8Array, tail: Uint8Array, count: number): Buffer {
    const len = head.length + tail.length;
    const buf = this.slot(id, count, len);
    buf.set(head);
    buf.set(tail, head.length);
    return buf.subarray(0, len);
  }

  private slot(id: number, count: number, len: number): Buffer {
    const i = id % STORE_FRAMES;
    let buf = this.bufs[i];
    if (!buf) {
      buf = Buffer.allocUnsafe(MAX_FRAME);
      this.bufs[i] = buf;
    }
    this.ids[i] = id;
    this.counts[i] = count;
    this.lens[i] = len;
    return buf;
  }

  /** The kept frame with this id (valid until the next keep), or undefined. */
  frame(id: number): Buffer | undefined {
    const i = id % STORE_FRAMES;
    return this.ids[i] === id ? this.bufs[i]!.subarray(0, this.lens[i]) : undefined;
  }

  count(id: number): number {
    return this.counts[id % STORE_FRAMES]!;
  }
}

/** Where a link's datagram puts its type, its peer's cookie, and how much it adds around the body. */
export interface Envelope {
  type: number;
  cookie: Buffer;
  /** Bytes before the body (type ‖ cookie ‖ anything the link adds). */
  head: number;
  /** Bytes after it. */
  tail: number;
}

/**
 * The repair requests due now, as base-size datagrams of (frame id u32 ‖ fragment index u8)
 * pairs in `envelope`, appended to `out`. Returns whether frames remain incomplete.
 */
export function nackDatagrams(
  r: Reassembler,
  now: number,
  waitMs: number,
  envelope: Envelope,
  out: Buffer[],
): boolean {
  let d: Buffer | undefined;
  let n = envelope.head;
  const finish = () => {
    if (d) out.push(d.subarray(0, n + envelope.tail));
    d = undefined;
  };
  const left = r.nackDue(now, waitMs, (id, index) => {
    if (d && n + 5 > d.length - envelope.tail) finish();
    if (!d) {
      d = Buffer.alloc(BASE_DATAGRAM);
      d[0] = envelope.type;
      envelope.cookie.copy(d, 1);
      n = envelope.head;
    }
    d.writeUInt32BE(id, n);
    d[n + 4] = index;
    n += 5;
  });
  finish();
  return left;
}
