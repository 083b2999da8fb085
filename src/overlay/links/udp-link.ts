// One established UDP link: datagram framing, the small reliable ordered channel for protocol frames,
// keepalive and idle timeout. The handshake, sockets and demultiplexing live in udp.ts, whose header
// describes the wire format.
import type { Socket } from "node:dgram";
import { LinkCore } from "./link-core.js";
import type { Link, LinkEvents } from "./link.js";
import { type LinkTimeouts, MAX_FRAME } from "./stream.js";

/** Largest UDP payload over IPv4 (65535 − 8 UDP − 20 IP). */
export const UDP_MAX_PAYLOAD = 65507;
export const PKT_INIT = 1;
export const PKT_CHALLENGE = 2;
export const PKT_CONFIRM = 3;
export const PKT_ACCEPT = 4;
export const PKT_CLOSE = 5;
export const PKT_RESET = 6;
export const PKT_DATA = 0x10;
export const PKT_DATA_ACK = 0x11;
/** type ‖ receiver's cookie (8). */
export const DATA_HEADER = 9;
/** next expected seq (u32) ‖ bitmap of the 64 seqs after it (2 × u32). */
const ACK_BLOCK = 12;
const REC_UNRELIABLE = 0;
const REC_RELIABLE = 1;
/** Reliable frames in flight (and the receiver's reorder buffer). */
export const WINDOW = 64;
/** Reliable frames waiting for window space before the link gives up on its peer. */
const MAX_WAITING = 16384;
const MIN_RTO_MS = 50;
const INITIAL_RTO_MS = 250;
const MAX_RTO_MS = 3000;
const SLAB_BYTES = 512 * 1024;
const MAX_PENDING_INPUT = 4096;

export interface UdpHooks {
  /** Tests: return true to drop an outgoing data or close datagram (loss injection). Handshakes never are. */
  dropDatagram?(datagram: Buffer): boolean;
}

export interface UdpLinkOptions {
  socket: Socket;
  /** For an unconnected (listener) socket: where to send. */
  address: string;
  port: number;
  connected: boolean;
  localCookie: Buffer;
  remoteCookie: Buffer;
  remoteKey: Buffer;
  remote: string;
  outbound: boolean;
  priority: number;
  timeouts: LinkTimeouts;
  /** Coalesce small frames into datagrams up to this size (a bigger single frame goes alone). */
  datagramBytes: number;
  congestionBytes: number;
  hooks: UdpHooks | undefined;
  /** Called once when the link closes (listener: forget the address; dialer: close the socket). */
  release(): void;
}

interface InFlight {
  seq: number;
  frame: Buffer;
  sentAt: number;
  retransmitted: boolean;
  sacked: boolean;
  /** The link's reliable-transmission serial at this frame's last (re)transmission. */
  tx: number;
}

function flushTick(link: UdpLink): void {
  link.flush();
}

function ackTick(link: UdpLink): void {
  link.sendPendingAck();
}

export class UdpLink extends LinkCore implements Link {
  datagramsIn = 0;
  datagramsOut = 0;
  /** Frames too big for one datagram, dropped on send. */
  droppedOversize = 0;
  retransmits = 0;

  private readonly o: UdpLinkOptions;
  private readonly cookieHi: number;
  private readonly cookieLo: number;
  private pendingInput: Buffer[] = [];
  // Send: datagrams are built in a slab; the socket keeps views of the finished ones.
  private slab = Buffer.allocUnsafe(SLAB_BYTES);
  private dgStart = 0;
  private dgEnd = 0;
  private dgOpen = false;
  private dgRecords = 0;
  private flushQueued = false;
  private lastSend: number;
  private lastRecv: number;
  // Reliable sender.
  private sndUna = 0;
  private sndNext = 0;
  private readonly inflight: InFlight[] = [];
  private readonly waiting: Buffer[] = [];
  private srtt = 0;
  private rttvar = 0;
  private rto = INITIAL_RTO_MS;
  private rtoTimer: NodeJS.Timeout | undefined;
  /** Counts reliable (re)transmissions; `ackedTx` is the highest serial the peer acknowledged. */
  private txSerial = 0;
  private ackedTx = 0;
  // Reliable receiver.
  private rcvNext = 0;
  private readonly reorder: Array<Buffer | undefined> = new Array(WINDOW);
  private reorderCount = 0;
  private ackPending = false;
  private ackQueued = false;
  private keepaliveTimer: NodeJS.Timeout;
  private idleTimer: NodeJS.Timeout;

  constructor(o: UdpLinkOptions) {
    const now = Date.now();
    super({
      remoteKey: o.remoteKey,
      remote: o.remote,
      outbound: o.outbound,
      priority: o.priority,
      openedAt: now,
    });
    this.o = o;
    this.lastSend = now;
    this.lastRecv = now;
    this.cookieHi = o.localCookie.readUInt32BE(0);
    this.cookieLo = o.localCookie.readUInt32BE(4);
    this.keepaliveTimer = setTimeout(() => this.onKeepaliveTimer(), o.timeouts.keepaliveMs);
    this.idleTimer = setTimeout(() => this.onIdleTimer(), o.timeouts.idleMs);
    this.announcePriority();
  }

  get congested(): boolean {
    return this.o.socket.getSendQueueSize() > this.o.congestionBytes;
  }

  /** Reliable frames sent but not yet acknowledged, plus those waiting for window space. */
  get unacked(): number {
    return this.inflight.length + this.waiting.length;
  }

  setHandler(events: LinkEvents): void {
    if (!this.attachHandler(events)) return;
    const pending = this.pendingInput;
    this.pendingInput = [];
    for (const frame of pending) {
      if (this.closed) break;
      this.deliver(frame);
    }
  }

  /** True when a data or close datagram is addressed to this link (its cookie). */
  matches(msg: Buffer): boolean {
    return msg.readUInt32BE(1) === this.cookieHi && msg.readUInt32BE(5) === this.cookieLo;
  }

  /** True when a reset names the peer's cookie: the peer no longer knows this link. */
  resetMatches(msg: Buffer): boolean {
    return msg.length >= DATA_HEADER && this.o.remoteCookie.equals(msg.subarray(1, DATA_HEADER));
  }

  /** True when `cookie` is this link's own cookie (a repeated handshake for this very link). */
  hasLocalCookie(cookie: Buffer): boolean {
    return cookie.readUInt32BE(0) === this.cookieHi && cookie.readUInt32BE(4) === this.cookieLo;
  }

  send(frame: Uint8Array): void {
    if (this.closed || frame.length === 0 || frame.length > MAX_FRAME) return;
    const type = frame[0];
    if (type === 9 || type === 10) {
      if (DATA_HEADER + ACK_BLOCK + 3 + frame.length > UDP_MAX_PAYLOAD) {
        this.droppedOversize++;
        return;
      }
      this.appendRecord(REC_UNRELIABLE, 0, frame);
      return;
    }
    if (DATA_HEADER + ACK_BLOCK + 7 + frame.length > UDP_MAX_PAYLOAD) {
      this.droppedOversize++;
      return;
    }
    const copy = Buffer.allocUnsafe(frame.length);
    copy.set(frame);
    if (this.inflight.length < WINDOW && this.waiting.length === 0) this.transmitReliable(copy);
    else if (this.waiting.length >= MAX_WAITING) this.close("peer stopped acknowledging protocol frames");
    else this.waiting.push(copy);
  }

  private transmitReliable(frame: Buffer): void {
    const seq = this.sndNext;
    this.sndNext = (seq + 1) >>> 0;
    this.inflight.push({
      seq,
      frame,
      sentAt: Date.now(),
      retransmitted: false,
      sacked: false,
      tx: ++this.txSerial,
    });
    this.appendRecord(REC_RELIABLE, seq, frame);
    if (!this.rtoTimer) this.rtoTimer = setTimeout(() => this.onRtoTimer(), this.rto);
  }

  /** Add one record to the open datagram, starting a new one when it would not fit. */
  private appendRecord(kind: number, seq: number, frame: Uint8Array): void {
    const recLen = (kind === REC_RELIABLE ? 7 : 3) + frame.length;
    if (this.dgOpen && this.dgRecords > 0 && this.dgEnd - this.dgStart + recLen > this.o.datagramBytes) {
      this.flushDatagram();
    }
    if (!this.dgOpen) this.openDatagram();
    const s = this.slab;
    let p = this.dgEnd;
    s[p] = kind;
    s.writeUInt16BE(frame.length, p + 1);
    p += 3;
    if (kind === REC_RELIABLE) {
      s.writeUInt32BE(seq, p);
      p += 4;
    }
    s.set(frame, p);
    this.dgEnd = p + frame.length;
    this.dgRecords++;
    if (!this.flushQueued) {
      this.flushQueued = true;
      process.nextTick(flushTick, this);
    }
  }

  private openDatagram(): void {
    if (this.slab.length - this.dgEnd < UDP_MAX_PAYLOAD) {
      this.slab = Buffer.allocUnsafe(SLAB_BYTES);
      this.dgEnd = 0;
    }
    this.dgStart = this.dgEnd;
    const s = this.slab;
    const p = this.dgStart;
    s[p] = this.ackPending ? PKT_DATA_ACK : PKT_DATA;
    this.o.remoteCookie.copy(s, p + 1);
    this.dgEnd = p + DATA_HEADER;
    if (this.ackPending) {
      this.writeAck(s, this.dgEnd);
      this.dgEnd += ACK_BLOCK;
      this.ackPending = false;
    }
    this.dgOpen = true;
    this.dgRecords = 0;
  }

  private writeAck(s: Buffer, p: number): void {
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

  /** Send everything queued this tick. */
  flush(): void {
    this.flushQueued = false;
    if (!this.closed) this.flushDatagram();
  }

  private flushDatagram(): void {
    if (!this.dgOpen) return;
    this.dgOpen = false;
    const out = this.slab.subarray(this.dgStart, this.dgEnd);
    this.dgStart = this.dgEnd;
    this.transmit(out);
  }

  private transmit(out: Buffer): void {
    this.bytesOut += out.length;
    this.datagramsOut++;
    this.lastSend = Date.now();
    if (this.o.hooks?.dropDatagram?.(out)) return;
    if (this.o.connected) this.o.socket.send(out);
    else this.o.socket.send(out, this.o.port, this.o.address);
  }

  /** An ack that no outgoing datagram carried this turn of the event loop goes alone. */
  sendPendingAck(): void {
    this.ackQueued = false;
    if (this.closed || !this.ackPending) return;
    this.flushDatagram();
    this.openDatagram();
    this.flushDatagram();
  }

  /** A data datagram whose cookie matched. Malformed content closes the link. */
  receive(msg: Buffer): void {
    if (this.closed) return;
    const len = msg.length;
    this.bytesIn += len;
    this.datagramsIn++;
    this.lastRecv = Date.now();
    let pos = DATA_HEADER;
    if (msg[0] === PKT_DATA_ACK) {
      if (len < DATA_HEADER + ACK_BLOCK) {
        this.close("malformed datagram (short ack)");
        return;
      }
      if (!this.onAck(msg.readUInt32BE(pos), msg.readUInt32BE(pos + 4), msg.readUInt32BE(pos + 8))) return;
      pos += ACK_BLOCK;
    }
    while (pos < len && !this.closed) {
      if (len - pos < 3) {
        this.close("malformed datagram (truncated record)");
        return;
      }
      const kind = msg[pos]!;
      const flen = msg.readUInt16BE(pos + 1);
      pos += 3;
      if (kind === REC_UNRELIABLE) {
        if (flen === 0 || len - pos < flen) {
          this.close("malformed datagram (bad frame length)");
          return;
        }
        const type = msg[pos];
        if (type !== 9 && type !== 10) {
          this.close(`protocol frame type ${type} sent unreliably`);
          return;
        }
        this.deliver(msg.subarray(pos, pos + flen));
        pos += flen;
      } else if (kind === REC_RELIABLE) {
        if (flen === 0 || len - pos < flen + 4) {
          this.close("malformed datagram (bad frame length)");
          return;
        }
        this.receiveReliable(msg.readUInt32BE(pos), msg.subarray(pos + 4, pos + 4 + flen));
        pos += 4 + flen;
      } else {
        this.close(`malformed datagram (record kind ${kind})`);
        return;
      }
    }
  }

  private receiveReliable(seq: number, frame: Buffer): void {
    this.ackPending = true;
    if (!this.ackQueued) {
      this.ackQueued = true;
      setImmediate(ackTick, this);
    }
    const ahead = (seq - this.rcvNext) | 0;
    if (ahead === 0) {
      this.rcvNext = (this.rcvNext + 1) >>> 0;
      this.deliver(frame);
      // Drain frames that arrived early and are now in order.
      while (this.reorderCount > 0 && !this.closed) {
        const slot = this.rcvNext % WINDOW;
        const next = this.reorder[slot];
        if (next === undefined) break;
        this.reorder[slot] = undefined;
        this.reorderCount--;
        this.rcvNext = (this.rcvNext + 1) >>> 0;
        this.deliver(next);
      }
    } else if (ahead > 0 && ahead < WINDOW) {
      const slot = seq % WINDOW;
      if (this.reorder[slot] === undefined) {
        this.reorder[slot] = Buffer.from(frame);
        this.reorderCount++;
      }
    } else if (ahead >= WINDOW) {
      this.close("malformed datagram (sequence beyond the window)");
    }
    // ahead < 0: a duplicate of something delivered; the ack above tells the sender.
  }

  /** Returns false when the ack was invalid and the link closed. */
  private onAck(next: number, lo: number, hi: number): boolean {
    const acked = (next - this.sndUna) | 0;
    if (acked < 0) return true; // stale (reordered) ack
    if (acked > this.inflight.length) {
      this.close("malformed datagram (ack for unsent data)");
      return false;
    }
    const now = Date.now();
    // RTT samples only from frames acknowledged for the first time and sent once (Karn): a frame
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
    // A frame is lost (not merely reordered) once three frames sent after its last transmission
    // have arrived; its retransmission gets a new serial, so a lost retransmission is found the same way.
    for (const f of this.inflight) {
      if (!f.sacked && f.tx + 3 <= this.ackedTx) this.retransmit(f, now);
    }
    if (sample >= 0) this.sampleRtt(sample);
    while (this.waiting.length > 0 && this.inflight.length < WINDOW) {
      this.transmitReliable(this.waiting.shift()!);
    }
    if (this.inflight.length === 0 && this.rtoTimer) {
      clearTimeout(this.rtoTimer);
      this.rtoTimer = undefined;
    }
    return true;
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

  private retransmit(f: InFlight, now: number): void {
    f.sentAt = now;
    f.retransmitted = true;
    f.tx = ++this.txSerial;
    this.retransmits++;
    this.appendRecord(REC_RELIABLE, f.seq, f.frame);
  }

  private onRtoTimer(): void {
    this.rtoTimer = undefined;
    if (this.closed || this.inflight.length === 0) return;
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

  private deliver(frame: Buffer): void {
    if (frame[0] === 0) {
      this.receiveDummy(frame);
      return;
    }
    if (!this.handler) {
      if (this.pendingInput.length < MAX_PENDING_INPUT) this.pendingInput.push(Buffer.from(frame));
      return;
    }
    this.handler.onFrame(frame);
  }

  private onKeepaliveTimer(): void {
    if (this.closed) return;
    const quiet = Date.now() - this.lastSend;
    const every = this.o.timeouts.keepaliveMs;
    if (quiet >= every - 1) {
      // An empty data datagram with an ack block: keeps the peer's idle timer and our acks fresh.
      this.flushDatagram();
      this.ackPending = true;
      this.openDatagram();
      this.flushDatagram();
      this.keepaliveTimer = setTimeout(() => this.onKeepaliveTimer(), every);
    } else {
      this.keepaliveTimer = setTimeout(() => this.onKeepaliveTimer(), every - quiet);
    }
  }

  private onIdleTimer(): void {
    if (this.closed) return;
    const silent = Date.now() - this.lastRecv;
    const limit = this.o.timeouts.idleMs;
    if (silent >= limit - 1) this.close(`no datagram received for ${limit} ms`);
    else this.idleTimer = setTimeout(() => this.onIdleTimer(), limit - silent);
  }

  /** Closes the link; unless the peer closed it, tells the peer with a close datagram. */
  close(reason: string, notifyPeer = true): void {
    if (!this.markClosed(reason)) return;
    clearTimeout(this.keepaliveTimer);
    clearTimeout(this.idleTimer);
    clearTimeout(this.rtoTimer);
    if (notifyPeer) {
      const bye = Buffer.allocUnsafe(DATA_HEADER);
      bye[0] = PKT_CLOSE;
      this.o.remoteCookie.copy(bye, 1);
      try {
        if (this.o.hooks?.dropDatagram?.(bye)) {
          // dropped by a test hook
        } else if (this.o.connected) this.o.socket.send(bye);
        else this.o.socket.send(bye, this.o.port, this.o.address);
      } catch {
        // The socket is already closed.
      }
    }
    this.o.release();
    this.announceClosed(reason);
  }
}
