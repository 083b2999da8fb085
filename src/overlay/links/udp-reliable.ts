// The reliable channel of a udp:// link for protocol frames: a frame is cut into numbered segments
// (the last one flagged as its end), at most WINDOW in flight, acknowledged cumulatively and
// selectively, retransmitted after an RTO (RFC 6298 style, 50 ms – 3 s, Karn's rule) or as soon as
// three segments sent after it were acknowledged; the receiver reorders within the window and hands
// on whole frames in order. The link (udp-link-send.ts) writes the segments into its datagrams.
import { MAX_FRAME } from "./stream.js";

/** Reliable segments in flight (and the receiver's reorder buffer). */
export const WINDOW = 64;
/** next expected seq (u32) ‖ bitmap of the 64 seqs after it (2 × u32). */
export const ACK_BLOCK = 12;
/** Segments waiting for window space before the link gives up on its peer. */
const MAX_WAITING = 16384;
const MIN_RTO_MS = 50;
const INITIAL_RTO_MS = 250;
const MAX_RTO_MS = 3000;

export interface Segment {
  seq: number;
  seg: Buffer;
  more: boolean;
  sentAt: number;
  retransmitted: boolean;
  sacked: boolean;
  /** The sender's transmission serial at this segment's last (re)transmission. */
  tx: number;
}

export class ReliableSender {
  retransmits = 0;
  /** Smoothed RTT and its variation in ms (0 until the first sample). */
  srtt = 0;
  rttvar = 0;
  private sndUna = 0;
  private sndNext = 0;
  private readonly inflight: Segment[] = [];
  private readonly waiting: Segment[] = [];
  private rto = INITIAL_RTO_MS;
  private rtoTimer: NodeJS.Timeout | undefined;
  /** Counts (re)transmissions; `ackedTx` is the highest serial the peer acknowledged. */
  private txSerial = 0;
  private ackedTx = 0;
  private stopped = false;
  private readonly append: (seg: Segment) => void;

  /** `append` writes one segment (with its seq and `more` flag) into the next datagram. */
  constructor(append: (seg: Segment) => void) {
    this.append = append;
  }

  /** Segments sent but not yet acknowledged, plus those waiting for window space. */
  get unacked(): number {
    return this.inflight.length + this.waiting.length;
  }

  /** Queues a copy of `frame` in segments of `segBytes`; false when the backlog overflowed. */
  send(frame: Uint8Array, segBytes: number): boolean {
    const count = Math.ceil(frame.length / segBytes);
    if (this.waiting.length + count > MAX_WAITING) return false;
    const copy = Buffer.allocUnsafe(frame.length);
    copy.set(frame);
    for (let at = 0; at < copy.length; at += segBytes) {
      const end = Math.min(copy.length, at + segBytes);
      const seg: Segment = {
        seq: 0,
        seg: copy.subarray(at, end),
        more: end < copy.length,
        sentAt: 0,
        retransmitted: false,
        sacked: false,
        tx: 0,
      };
      if (this.inflight.length < WINDOW && this.waiting.length === 0) this.transmit(seg);
      else this.waiting.push(seg);
    }
    return true;
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.rtoTimer);
  }

  /** An ack block from the peer; returns a reason to close the link when it is impossible. */
  onAck(next: number, lo: number, hi: number): string | undefined {
    const acked = (next - this.sndUna) | 0;
    if (acked < 0) return undefined; // stale (reordered) ack
    if (acked > this.inflight.length) return "malformed datagram (ack for unsent data)";
    const now = Date.now();
    // RTT samples only from segments acknowledged for the first time and sent once (Karn): one
    // that sat behind a hole was selectively acked long ago and would inflate the estimate.
    let sample = -1;
    if (acked > 0) {
      for (let i = acked - 1; i >= 0; i--) {
        const f = this.inflight[i]!;
        if (f.tx > this.ackedTx) this.ackedTx = f.tx;
        if (sample < 0 && !f.sacked && !f.retransmitted) sample = now - f.sentAt;
      }
      this.inflight.splice(0, acked);
      this.sndUna = next;
    }
    if ((lo | hi) !== 0) {
      for (let i = 1; i < this.inflight.length; i++) {
        const bit = i - 1;
        const set = bit < 32 ? (lo >>> bit) & 1 : (hi >>> (bit - 32)) & 1;
        if (set) {
          const f = this.inflight[i]!;
          if (!f.sacked && !f.retransmitted) sample = now - f.sentAt;
          f.sacked = true;
          if (f.tx > this.ackedTx) this.ackedTx = f.tx;
        }
      }
    }
    // A segment is lost (not merely reordered) once three sent after its last transmission have
    // arrived; its retransmission gets a new serial, so a lost retransmission is found the same way.
    for (const f of this.inflight) {
      if (!f.sacked && f.tx + 3 <= this.ackedTx) this.retransmit(f, now);
    }
    if (sample >= 0) this.sampleRtt(sample);
    while (this.waiting.length > 0 && this.inflight.length < WINDOW) this.transmit(this.waiting.shift()!);
    if (this.inflight.length === 0 && this.rtoTimer) {
      clearTimeout(this.rtoTimer);
      this.rtoTimer = undefined;
    }
    return undefined;
  }

  private transmit(seg: Segment): void {
    seg.seq = this.sndNext;
    this.sndNext = (seg.seq + 1) >>> 0;
    seg.sentAt = Date.now();
    seg.tx = ++this.txSerial;
    this.inflight.push(seg);
    this.append(seg);
    if (!this.rtoTimer) this.rtoTimer = setTimeout(() => this.onRtoTimer(), this.rto);
  }

  private sampleRtt(rtt: number): void {
    if (this.srtt === 0) {
      this.srtt = rtt;
      this.rttvar = rtt / 2;
    } else {
      this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.srtt - rtt);
      this.srtt = 0.875 * this.srtt + 0.125 * rtt;
    }
    this.rto = Math.min(MAX_RTO_MS, Math.max(MIN_RTO_MS, this.srtt + 4 * this.rttvar));
  }

  private retransmit(f: Segment, now: number): void {
    f.sentAt = now;
    f.retransmitted = true;
    f.tx = ++this.txSerial;
    this.retransmits++;
    this.append(f);
  }

  private onRtoTimer(): void {
    this.rtoTimer = undefined;
    if (this.stopped || this.inflight.length === 0) return;
    const now = Date.now();
    let any = false;
    for (const f of this.inflight) {
      if (!f.sacked && now - f.sentAt >= this.rto) {
        this.retransmit(f, now);
        any = true;
      }
    }
    if (any) this.rto = Math.min(MAX_RTO_MS, this.rto * 2);
    this.rtoTimer = setTimeout(() => this.onRtoTimer(), this.rto);
  }
}

export class ReliableReceiver {
  private rcvNext = 0;
  private readonly reorder: Array<Buffer | undefined> = new Array(WINDOW);
  private readonly reorderMore = new Uint8Array(WINDOW);
  private reorderCount = 0;
  /** A frame being rebuilt from its segments. */
  private relBuf: Buffer | undefined;
  private relLen = 0;
  private readonly deliver: (frame: Buffer) => void;

  /** `deliver` gets each whole frame, valid only during the call. */
  constructor(deliver: (frame: Buffer) => void) {
    this.deliver = deliver;
  }

  /** One segment; returns a reason to close the link when it cannot be from an honest sender. */
  receive(seq: number, seg: Buffer, more: boolean): string | undefined {
    const ahead = (seq - this.rcvNext) | 0;
    if (ahead === 0) {
      this.rcvNext = (this.rcvNext + 1) >>> 0;
      const bad = this.take(seg, more);
      if (bad) return bad;
      // Drain segments that arrived early and are now in order.
      while (this.reorderCount > 0) {
        const slot = this.rcvNext % WINDOW;
        const next = this.reorder[slot];
        if (next === undefined) break;
        this.reorder[slot] = undefined;
        this.reorderCount--;
        this.rcvNext = (this.rcvNext + 1) >>> 0;
        const bad2 = this.take(next, this.reorderMore[slot] === 1);
        if (bad2) return bad2;
      }
    } else if (ahead > 0 && ahead < WINDOW) {
      const slot = seq % WINDOW;
      if (this.reorder[slot] === undefined) {
        this.reorder[slot] = Buffer.from(seg);
        this.reorderMore[slot] = more ? 1 : 0;
        this.reorderCount++;
      }
    } else if (ahead >= WINDOW) {
      return "malformed datagram (sequence beyond the window)";
    }
    // ahead < 0: a duplicate of something delivered; the next ack tells the sender.
    return undefined;
  }

  /** Writes the ack block at `p`. */
  writeAck(s: Buffer, p: number): void {
    s.writeUInt32BE(this.rcvNext, p);
    let lo = 0;
    let hi = 0;
    if (this.reorderCount > 0) {
      for (let i = 0; i < WINDOW; i++) {
        // Bit i stands for seq rcvNext+1+i.
        if (this.reorder[(this.rcvNext + 1 + i) % WINDOW] !== undefined) {
          if (i < 32) lo |= 1 << i;
          else hi |= 1 << (i - 32);
        }
      }
    }
    s.writeUInt32BE(lo >>> 0, p + 4);
    s.writeUInt32BE(hi >>> 0, p + 8);
  }

  private take(seg: Buffer, more: boolean): string | undefined {
    if (!more && this.relLen === 0) {
      this.deliver(seg);
      return undefined;
    }
    if (this.relLen + seg.length > MAX_FRAME) return "malformed datagram (segmented frame too long)";
    if (!this.relBuf) this.relBuf = Buffer.allocUnsafe(MAX_FRAME);
    seg.copy(this.relBuf, this.relLen);
    this.relLen += seg.length;
    if (more) return undefined;
    const n = this.relLen;
    this.relLen = 0;
    this.deliver(this.relBuf.subarray(0, n));
    return undefined;
  }
}
