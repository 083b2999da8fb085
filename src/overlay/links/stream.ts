// The stream link: metadata handshake (spec 4.3), u16-BE framing (4.4), keepalive and idle timeout
// (4.5) and priority negotiation (4.6) over any byte stream — TCP, TLS and unix sockets alike.
import type { Socket } from "node:net";
import {
  SEND_PARTS_MAX,
  type SocketReader,
  openSocketReader,
  socketPartsSender,
  socketSender,
} from "../../tun/native.js";
import { beginInput, endInput, flushAtEndOfInput } from "../../util/end-of-input.js";
import { LinkCore } from "./link-core.js";
import type { Link, LinkEvents } from "./link.js";
import { readIntoSharedBuffer, sharedReadBuffer } from "./stream-read-buffer.js";
import { SLAB_BYTES, Slab, SlabQueue } from "./stream-slab.js";

export { sharedBufferReads } from "./stream-read-buffer.js";
export { sendSlabsAllocated } from "./stream-slab.js";

export interface LinkTimeouts {
  /** Deadline for writing our metadata and reading theirs. */
  handshakeMs: number;
  /** Send a keepalive after this long without writing. */
  keepaliveMs: number;
  /** Close when no complete frame arrived for this long. */
  idleMs: number;
}

export const DEFAULT_TIMEOUTS: LinkTimeouts = { handshakeMs: 6000, keepaliveMs: 4000, idleMs: 6000 };
export const MAX_FRAME = 65535;
/** Above this many queued bytes the link reports `congested`. */
export const CONGESTION_BYTES = 4 * 1024 * 1024;
/**
 * Traffic stops at CONGESTION_BYTES, protocol frames never do (spec 5.8); a peer that stops reading
 * altogether would let them pile up forever, so past this the link is closed.
 */
const STALLED_PEER_BYTES = 4 * CONGESTION_BYTES;

const META_MAGIC = Buffer.from("meta", "ascii");
const META_BYTES = 38;
const VERSION_MAJOR = 0;
const VERSION_MINOR = 4;
/**
 * Held tails (Link.sendJoined's held) by all stream links since start: sent from where they lay, and
 * copied to a slab because the kernel did not take them at the flush (the socket was full).
 */
export const heldTails = { sent: 0, copied: 0 };
const NO_TAIL = Buffer.alloc(0);

let directFlushes = 0;
/** Flushes the kernel took whole from the addon's send(2), by all stream links since start. */
export function flushesSentDirect(): number {
  return directFlushes;
}

export function encodeMetadata(publicKey: Buffer): Buffer {
  const out = Buffer.alloc(META_BYTES);
  META_MAGIC.copy(out, 0);
  out[4] = VERSION_MAJOR;
  out[5] = VERSION_MINOR;
  publicKey.copy(out, 6);
  return out;
}

/** Returns the remote key, or throws an Error whose message is the reason to log. */
export function decodeMetadata(meta: Buffer): Buffer {
  if (meta.length !== META_BYTES || !meta.subarray(0, 4).equals(META_MAGIC)) {
    throw new Error("bad metadata (not a yggdrasil 0.4 peer)");
  }
  if (meta[4] !== VERSION_MAJOR || meta[5] !== VERSION_MINOR) {
    throw new Error(`incompatible version (local 0.4, remote ${meta[4]}.${meta[5]})`);
  }
  return Buffer.from(meta.subarray(6, META_BYTES));
}

export interface HandshakeOptions {
  localKey: Buffer;
  outbound: boolean;
  remote: string;
  priority: number;
  timeouts?: Partial<LinkTimeouts>;
  congestionBytes?: number;
  now?: () => number;
}

/**
 * Exchange metadata on a connected socket. Resolves with a link whose reading is paused until
 * setHandler; rejects (and destroys the socket) on timeout, bad metadata or close.
 */
export function handshake(socket: Socket, opts: HandshakeOptions): Promise<StreamLink> {
  const timeouts = { ...DEFAULT_TIMEOUTS, ...opts.timeouts };
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let have = 0;
    const finish = (err: Error | undefined): void => {
      clearTimeout(timer);
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onError);
      if (err) {
        socket.destroy();
        reject(err);
        return;
      }
      socket.pause();
      const all = Buffer.concat(chunks, have);
      let remoteKey: Buffer;
      try {
        remoteKey = decodeMetadata(all.subarray(0, META_BYTES));
      } catch (e) {
        socket.destroy();
        reject(e as Error);
        return;
      }
      resolve(new StreamLink(socket, remoteKey, all.subarray(META_BYTES), opts, timeouts));
    };
    const onData = (chunk: Buffer): void => {
      chunks.push(chunk);
      have += chunk.length;
      if (have >= META_BYTES) finish(undefined);
    };
    const onClose = (): void => finish(new Error("connection closed during handshake"));
    const onError = (e: Error): void => finish(new Error(`handshake failed: ${e.message}`));
    const timer = setTimeout(() => finish(new Error("handshake timed out")), timeouts.handshakeMs);
    socket.on("data", onData);
    socket.on("close", onClose);
    socket.on("error", onError);
    socket.write(encodeMetadata(opts.localKey));
    socket.resume();
  });
}

export class StreamLink extends LinkCore implements Link {
  private readonly socket: Socket;
  private readonly timeouts: LinkTimeouts;
  private readonly congestionBytes: number;
  private pendingInput: Buffer | undefined;
  // Receive: a frame split across chunks is assembled here (2-byte header + up to 65535 bytes).
  private readonly rx = Buffer.allocUnsafe(2 + MAX_FRAME);
  private rxHave = 0;
  private rxNeed = 0;
  // Send: frames are copied into a slab and flushed as one write once the input that sent them is
  // handled (end-of-input.ts), or on the next tick when they came from a timer.
  private slab: Slab = Slab.take();
  private slabStart = 0;
  private slabEnd = 0;
  private flushQueued = false;
  /** Bound once: the one callback every flush is asked for with (no closure per frame). */
  private readonly flushAfterInput = (): void => this.flush();
  /**
   * Sockets Node writes for us (TLS): at most one write in Node at a time. Node's Writable queues the
   * writes made while one is pending and hands them over as one writev, and TLSWrap joins a writev's
   * buffers into a fresh backing store before it encrypts (issue 11: 941 MiB in 4 s, ~350 kB each, on
   * a tls:// sender at ~3 Gbit/s). Here the frames wait in the slabs instead, and each completion
   * writes the oldest slab's waiting bytes as one Buffer.
   */
  private readonly oneWriteAtATime: boolean;
  /** The slab whose bytes Node is writing (one-write mode). */
  private writing: Slab | undefined;
  /** Full slabs whose bytes wait for the write in Node to complete. */
  private readonly waiting = new SlabQueue();
  /** Bound once: the completion of the write in Node (one-write mode). */
  private readonly afterWrite = (err?: Error | null): void => {
    const slab = this.writing;
    this.writing = undefined;
    slab?.written();
    // A failed write destroyed the socket, whose "close" closes the link.
    if (!err && !this.closed) this.writeOldest();
  };
  /**
   * Plain TCP and unix sockets: a flush goes to the kernel with one send(2) from the addon while Node
   * has nothing queued, skipping Node's Writable machinery (issue 11: at idle ~18% of the CPU samples
   * of a TUN-to-link hop). TLS goes through Node, which encrypts.
   */
  private readonly sendNow: ((fd: number, bytes: Uint8Array) => number) | undefined;
  /**
   * Plain sockets: held tails (a packet sealed in the TUN's read buffer) are not copied into the
   * slab; the flush's one sendmsg(2) takes them from where they lie, between the slab's heads, at
   * heldCuts[i] (issue 11: the copy was a 53 kB memmove per packet at the default MTU).
   */
  private readonly sendParts: ReturnType<typeof socketPartsSender>;
  private readonly heldCuts = new Int32Array(SEND_PARTS_MAX);
  private readonly heldTails: Buffer[] = new Array<Buffer>(SEND_PARTS_MAX).fill(NO_TAIL);
  private heldCount = 0;
  private readonly fd: number;
  /**
   * Plain sockets: the addon reads, into the shared read buffer, instead of Node's Readable stream
   * and its fresh buffer per read (issue 11: at idle ~44% of a link-to-TUN hop's CPU samples).
   */
  private readonly reader: SocketReader | undefined;
  /**
   * Date.now() of the last write and of the last complete frame read: one timer checks them, where
   * re-arming a keepalive and an idle timer per packet cost two timer-list updates a packet.
   */
  private lastWriteAt = 0;
  private lastFrameAt = 0;
  private livenessTimer: NodeJS.Timeout | undefined;
  private readonly checkLiveness = (): void => {
    if (this.closed) return;
    const now = Date.now();
    const { idleMs, keepaliveMs } = this.timeouts;
    if (now - this.lastFrameAt >= idleMs) {
      this.close(`no frame received for ${idleMs} ms`);
      return;
    }
    if (now - this.lastWriteAt >= keepaliveMs) this.keepalive();
    const due = Math.min(this.lastWriteAt + keepaliveMs, this.lastFrameAt + idleMs);
    this.livenessTimer = setTimeout(this.checkLiveness, Math.max(1, due - now));
  };

  constructor(
    socket: Socket,
    remoteKey: Buffer,
    leftover: Buffer,
    opts: HandshakeOptions,
    timeouts: LinkTimeouts,
  ) {
    super({
      remoteKey,
      remote: opts.remote,
      outbound: opts.outbound,
      priority: opts.priority,
      openedAt: (opts.now ?? Date.now)(),
    });
    this.socket = socket;
    this.timeouts = timeouts;
    this.congestionBytes = opts.congestionBytes ?? CONGESTION_BYTES;
    this.bytesIn = META_BYTES + leftover.length;
    this.bytesOut = META_BYTES;
    this.pendingInput = leftover.length > 0 ? leftover : undefined;
    if (typeof socket.setNoDelay === "function") socket.setNoDelay(true);
    const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
    const plain = typeof fd === "number" && fd >= 0 && !(socket as { encrypted?: boolean }).encrypted;
    this.fd = plain ? fd : -1;
    this.sendNow = plain ? socketSender() : undefined;
    this.sendParts = plain ? socketPartsSender() : undefined;
    this.oneWriteAtATime = !plain;
    this.reader = plain ? this.takeOverReading(socket, fd) : undefined;
    if (this.reader === undefined && !this.readThroughNode(socket)) {
      socket.on("data", (chunk: Buffer) => {
        this.bytesIn += chunk.length;
        beginInput();
        try {
          this.receive(chunk);
        } finally {
          endInput();
        }
      });
    }
    socket.on("error", (e: Error) => this.close(e.message));
    socket.on("close", () => this.close("connection closed by peer"));
    socket.on("end", () => this.close("connection closed by peer"));
    this.lastWriteAt = Date.now();
    this.lastFrameAt = this.lastWriteAt;
    this.livenessTimer = setTimeout(this.checkLiveness, Math.min(timeouts.keepaliveMs, timeouts.idleMs));
    this.announcePriority();
  }

  get congested(): boolean {
    return this.queuedBytes() > this.congestionBytes;
  }

  /** Bytes waiting to go out: in Node, and (one-write mode, while Node writes) in the slabs. */
  private queuedBytes(): number {
    const inSlabs = this.writing === undefined ? 0 : this.waiting.bytes + this.slabEnd - this.slabStart;
    return this.socket.writableLength + inSlabs;
  }

  setHandler(events: LinkEvents): void {
    if (!this.attachHandler(events)) return;
    const pending = this.pendingInput;
    this.pendingInput = undefined;
    if (pending) this.receive(pending);
    if (this.closed) return;
    if (this.reader) this.reader.start();
    else this.socket.resume();
  }

  /**
   * Stops Node's reading of the socket for good (handshake() paused it, but a paused socket still
   * reads up to its high-water mark, and a pending read(0) would start it again) and opens the
   * addon's reader, started by setHandler. What Node had already read joins the pending input.
   */
  private takeOverReading(socket: Socket, fd: number): SocketReader | undefined {
    const handle = (socket as unknown as { _handle?: { readStop?: () => number; reading?: boolean } })
      ._handle;
    if (typeof handle?.readStop !== "function") return undefined;
    const reader = openSocketReader(fd, sharedReadBuffer(), (n, errno) => this.onRead(n, errno));
    if (reader === undefined) return undefined;
    (socket as unknown as { _read: () => void })._read = () => {};
    handle.reading = false;
    handle.readStop();
    this.keepWhatNodeRead(socket);
    return reader;
  }

  /** What Node's stream already read (and nobody took) joins the pending input. */
  private keepWhatNodeRead(socket: Socket): void {
    const buffered = socket.readableLength > 0 ? (socket.read() as Buffer | null) : null;
    if (buffered !== null) {
      this.bytesIn += buffered.length;
      this.pendingInput = this.pendingInput ? Buffer.concat([this.pendingInput, buffered]) : buffered;
    }
  }

  /** TLS: Node decrypts into the shared read buffer (stream-read-buffer.ts), when it can. */
  private readThroughNode(socket: Socket): boolean {
    if (!readIntoSharedBuffer(socket, (n) => this.onRead(n, 0))) return false;
    // handshake() paused the stream, but a paused socket reads on: keep that, later reads come here.
    this.keepWhatNodeRead(socket);
    return true;
  }

  private onRead(n: number, errno: number): void {
    if (n > 0) {
      this.bytesIn += n;
      beginInput();
      try {
        this.receive(sharedReadBuffer().subarray(0, n));
      } finally {
        endInput();
      }
      return;
    }
    this.close(errno === 0 ? "connection closed by peer" : `reading failed (errno ${errno})`);
  }

  send(frame: Uint8Array, held = false): void {
    if (held && this.sendParts !== undefined && this.socket.writableLength === 0) {
      this.sendHeld(NO_TAIL, frame as Buffer);
      return;
    }
    const at = this.reserve(frame.length);
    if (at >= 0) this.slab.buf.set(frame, at);
  }

  sendJoined(head: Uint8Array, tail: Uint8Array, held = false): void {
    // Held only while nothing waits in Node: a tail that would queue there is copied anyway.
    if (held && this.sendParts !== undefined && this.socket.writableLength === 0) {
      this.sendHeld(head, tail as Buffer);
      return;
    }
    const at = this.reserve(head.length + tail.length);
    if (at < 0) return;
    this.slab.buf.set(head, at);
    this.slab.buf.set(tail, at + head.length);
  }

  /** The u16 prefix and head go to the slab; the tail stays where it is until the flush. */
  private sendHeld(head: Uint8Array, tail: Buffer): void {
    if (this.heldCount === SEND_PARTS_MAX) this.flush();
    const at = this.reserve(head.length + tail.length, head.length);
    if (at < 0) return;
    this.slab.buf.set(head, at);
    this.heldCuts[this.heldCount] = this.slabEnd;
    this.heldTails[this.heldCount++] = tail;
  }

  /**
   * Room in the slab for a frame of this length after its u16 prefix: the offset to write it at, or
   * -1 to drop it. Only `inSlab` bytes of it go to the slab (the rest is a held tail).
   */
  private reserve(length: number, inSlab = length): number {
    if (this.closed || length > MAX_FRAME || length === 0) return -1;
    const queued = this.queuedBytes();
    if (queued > STALLED_PEER_BYTES) {
      this.close(`peer stopped reading (${queued} bytes queued)`);
      return -1;
    }
    const need = inSlab + 2;
    if (SLAB_BYTES - this.slabEnd < need) {
      this.flush();
      this.nextSlab();
    }
    const at = this.slabEnd + 2;
    this.slab.buf.writeUInt16BE(length, this.slabEnd);
    this.slabEnd += need;
    if (!this.flushQueued) {
      this.flushQueued = true;
      flushAtEndOfInput(this.flushAfterInput);
    }
    return at;
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.slabEnd === this.slabStart || this.closed) return;
    if (this.oneWriteAtATime) {
      this.lastWriteAt = Date.now();
      if (this.writing === undefined) this.writeOldest();
      return;
    }
    // The socket keeps a view of [start, end) until the write completes; later frames go after it.
    const slab = this.slab;
    const start = this.slabStart;
    let out = slab.buf.subarray(this.slabStart, this.slabEnd);
    this.slabStart = this.slabEnd;
    this.bytesOut += out.length;
    this.lastWriteAt = Date.now();
    if (this.heldCount > 0) {
      this.flushHeld(slab, start, this.slabEnd);
      return;
    }
    // Straight to the kernel only while nothing waits in Node, so bytes never overtake queued ones;
    // what the kernel does not take (full buffer, error) goes to Node, which queues it or reports.
    if (this.sendNow !== undefined && this.socket.writableLength === 0 && !this.socket.destroyed) {
      const sent = this.sendNow(this.fd, out);
      if (sent === out.length) {
        directFlushes++;
        return;
      }
      if (sent > 0) out = out.subarray(sent);
    }
    slab.writes++;
    this.socket.write(out, slab.written);
  }

  /**
   * slab[start, end) with the held tails at their cuts, in one sendmsg(2) while nothing waits in
   * Node. What the kernel does not take goes to Node in order: the slab's bytes as views (the slab
   * is reused only once their writes complete), the tails copied, as their buffer is the TUN's.
   */
  private flushHeld(slab: Slab, start: number, end: number): void {
    const count = this.heldCount;
    const cuts = this.heldCuts;
    const tails = this.heldTails;
    this.heldCount = 0;
    let tailBytes = 0;
    for (let i = 0; i < count; i++) tailBytes += tails[i]!.length;
    this.bytesOut += tailBytes;
    let skip = 0;
    if (this.socket.writableLength === 0 && !this.socket.destroyed) {
      skip = Math.max(0, this.sendParts!(this.fd, slab.buf, start, end, cuts, tails, count));
    }
    if (skip === end - start + tailBytes) directFlushes++;
    let at = start;
    for (let i = 0; i <= count; i++) {
      const cut = i < count ? cuts[i]! : end;
      if (skip >= cut - at) skip -= cut - at;
      else {
        slab.writes++;
        this.socket.write(slab.buf.subarray(at + skip, cut), slab.written);
        skip = 0;
      }
      at = cut;
      if (i === count) break;
      const tail = tails[i]!;
      tails[i] = NO_TAIL;
      if (skip >= tail.length) {
        skip -= tail.length;
        heldTails.sent++;
      } else {
        this.spill(tail, skip);
        skip = 0;
        heldTails.copied++;
      }
    }
  }

  /** Copies bytes[from, end) into the slab (taking fresh ones as they fill) and queues it on the socket. */
  private spill(bytes: Buffer, from: number): void {
    while (from < bytes.length) {
      if (this.slabEnd === SLAB_BYTES) this.nextSlab();
      const slab = this.slab;
      const n = Math.min(SLAB_BYTES - this.slabEnd, bytes.length - from);
      bytes.copy(slab.buf, this.slabEnd, from, from + n);
      slab.writes++;
      this.socket.write(slab.buf.subarray(this.slabEnd, this.slabEnd + n), slab.written);
      this.slabEnd += n;
      this.slabStart = this.slabEnd;
      from += n;
    }
  }

  /** The current slab is full: it returns to the pool once its writes complete. */
  private nextSlab(): void {
    // Only in one-write mode, while Node writes, does a full slab still hold bytes to write.
    if (this.slabEnd > this.slabStart) this.waiting.push(this.slab, this.slabStart, this.slabEnd);
    this.slab.retire();
    this.slab = Slab.take();
    this.slabStart = 0;
    this.slabEnd = 0;
  }

  /** One-write mode, nothing in Node: hands it the oldest bytes not yet written, as one Buffer. */
  private writeOldest(): void {
    // The current slab's bytes go once no full slab waits before them.
    if (this.waiting.bytes === 0 && this.slabEnd > this.slabStart) {
      this.waiting.push(this.slab, this.slabStart, this.slabEnd);
      this.slabStart = this.slabEnd;
    }
    const slab = this.waiting.shift();
    if (slab === undefined) return;
    this.bytesOut += slab.to - slab.from;
    this.writing = slab;
    this.socket.write(slab.buf.subarray(slab.from, slab.to), this.afterWrite);
  }

  /** A dummy frame (00 01 00), queued like any frame: it neither overtakes nor splits a write. */
  private keepalive(): void {
    const at = this.reserve(1);
    if (at < 0) return;
    this.slab.buf[at] = 0;
    this.lastWriteAt = Date.now();
  }

  private receive(chunk: Buffer): void {
    if (!this.handler) {
      // Reading is paused until the handler exists; keep anything that still slipped through.
      // Copied: the chunk may lie in the shared read buffer, which the next read overwrites.
      this.pendingInput = Buffer.concat(this.pendingInput ? [this.pendingInput, chunk] : [chunk]);
      this.socket.pause();
      return;
    }
    let pos = 0;
    let gotFrame = false;
    const end = chunk.length;
    while (pos < end && !this.closed) {
      if (this.rxHave > 0) {
        // Continue a frame that started in an earlier chunk.
        if (this.rxHave < 2) {
          this.rx[this.rxHave++] = chunk[pos++]!;
          if (this.rxHave < 2) continue;
          this.rxNeed = this.rx.readUInt16BE(0);
          if (this.rxNeed === 0) {
            this.close("zero-length frame");
            return;
          }
        }
        const take = Math.min(this.rxNeed + 2 - this.rxHave, end - pos);
        chunk.copy(this.rx, this.rxHave, pos, pos + take);
        this.rxHave += take;
        pos += take;
        if (this.rxHave === this.rxNeed + 2) {
          this.rxHave = 0;
          gotFrame = true;
          this.deliver(this.rx.subarray(2, 2 + this.rxNeed), false);
        }
        continue;
      }
      if (end - pos < 2) {
        this.rx[0] = chunk[pos++]!;
        this.rxHave = 1;
        break;
      }
      const len = chunk.readUInt16BE(pos);
      if (len === 0) {
        this.close("zero-length frame");
        return;
      }
      if (end - pos - 2 >= len) {
        gotFrame = true;
        this.deliver(chunk.subarray(pos + 2, pos + 2 + len), true);
        pos += 2 + len;
      } else {
        chunk.copy(this.rx, 0, pos, end);
        this.rxHave = end - pos;
        this.rxNeed = len;
        pos = end;
      }
    }
    if (gotFrame) this.lastFrameAt = Date.now();
  }

  /**
   * held: the frame lies in the chunk being parsed, which stays as it is until the event loop turns;
   * one assembled in rx does not (the next frame's start may overwrite rx in this same chunk).
   */
  private deliver(frame: Buffer, held: boolean): void {
    if (frame[0] === 0) {
      this.receiveDummy(frame);
      return;
    }
    this.handler!.onFrame(frame, held);
  }

  close(reason: string): void {
    if (!this.markClosed(reason)) return;
    clearTimeout(this.livenessTimer);
    this.reader?.close();
    this.socket.destroy();
    this.slab.retire();
    this.waiting.drop();
    this.announceClosed(reason);
  }
}
