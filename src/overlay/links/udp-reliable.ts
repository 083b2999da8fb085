// The receiving half of a udp:// link's reliable channel: protocol frames arrive as numbered
// segments (a frame over one segment is cut into several, the last one flagged as its end), are
// reordered within a window, and leave whole and in order. The sending half lives in udp-link.ts,
// next to the datagram builder it writes into.
import { MAX_FRAME } from "./stream.js";

/** Reliable segments in flight (and the receiver's reorder buffer). */
export const WINDOW = 64;
/** next expected seq (u32) ‖ bitmap of the 64 seqs after it (2 × u32). */
export const ACK_BLOCK = 12;

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
