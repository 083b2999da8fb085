// TunDevice over the planetd_tun N-API addon (src/tun/native/tun.c). The addon reads whole batches
// into one preallocated buffer; here each batch becomes an array of views into it. Writes are queued
// into another preallocated buffer and handed to the addon once the input that produced them (a
// socket read, a TUN batch) is handled, where runs of TCP segments become one GSO write
// (src/tun/native/offload.c).
import { createRequire } from "node:module";
import { addonPath } from "../util/addon-path.js";
import { beginInput, endInput, flushAtEndOfInput } from "../util/end-of-input.js";
import type { TunDevice } from "./device.js";

/** Spec 5.9: the largest IPv6 packet a session carries, and IPv6's minimum link MTU. */
export const TUN_MIN_MTU = 1280;
export const TUN_MAX_MTU = 53049;
/**
 * Offloads pay where the kernel's 64 KiB super-packets hold many segments; at large MTUs they hold
 * one. Measured under load (bench/iperf.sh, tcp://, offloads on vs PLANETD_TUN_OFFLOAD=off): on ahead
 * at 1420 and 8000, level or behind at 16000, behind at 53049 (~1419 vs ~1854 Mbit/s) while each read
 * was copied aside, cut and summed. Since one-segment reads stay in place and their checksums go
 * partial to planetd peers (src/tun/gso.ts), 53049 measured level (5 interleaved rounds, twice:
 * 3258 vs 3222 and 2975 vs 3287 Mbit/s; CPU per Gbit/s 398 vs 405 and 380 vs 374 ms/s): no gain to
 * switch the default for; the lead's quiet-machine run decides.
 */
export const OFFLOAD_MAX_MTU = 8192;

/**
 * Packets per wakeup; the kernel queue holds the rest until the next turn of the event loop. A 64 KiB
 * super-packet at IfMTU 1420 is cut into ~48 segments, so a batch holds at least two.
 */
const MAX_BATCH = 128;
/** Room for the batch; the addon only starts a read while a maximum-size packet still fits. */
const READ_BUFFER_BYTES = 512 * 1024;
/**
 * Free bytes the addon leaves before and after each packet it reads, which no other packet of the
 * batch uses (tun.h PACKET_HEADROOM, PACKET_TAILROOM): the session seals a packet where it lies.
 */
export const READ_HEADROOM = 128;
export const READ_TAILROOM = 16;
/** Packets queued for one writeBatch call (the addon's limit), and the bytes they may take. */
const MAX_WRITE_BATCH = 256;
const WRITE_BUFFER_BYTES = 512 * 1024;
/** Packets of this size or more are written from the caller's buffer (see writeNow). */
const DIRECT_WRITE_BYTES = 32 * 1024;
/** The addon's offload counters, in its enum order. */
const OFFLOAD_COUNTER_NAMES = [
  "gsoReads",
  "segmentsProduced",
  "checksumsCompleted",
  "offloadMalformed",
  "coalescedWrites",
  "coalescedSegments",
  "superPiecesRead",
  "superPacketsWritten",
  "superPacketsCutOnWrite",
  "checksumsLeftPartial",
] as const;
/** Int32s per packet in the addon's meta arrays: offset, length, gso_size (0: an ordinary packet). */
const META_STRIDE = 3;
/** Room for the segments of one super-packet cut by segment(): its bytes plus a header per segment. */
const CUT_BUFFER_BYTES = 160 * 1024;
const MAX_CUT_SEGMENTS = 256;

export interface TunOptions {
  /** "auto" lets the kernel pick tunN; otherwise the interface name (at most 15 characters). */
  name: string;
  /** Clamped to [1280, 53049] as Yggdrasil does with IfMTU. */
  mtu: number;
  /** The node's 16-byte address, assigned as address/prefixLength. */
  address: Buffer;
  /** 7 by default, so that all of 200::/7 routes to the interface. */
  prefixLength?: number;
  /** Checksum and TCP segmentation offloads (IFF_VNET_HDR); by default at an MTU ≤ OFFLOAD_MAX_MTU. */
  offload?: boolean;
}

export type TunCounters = {
  packetsRead: number;
  bytesRead: number;
  packetsWritten: number;
  bytesWritten: number;
  /** Writes the kernel refused (EAGAIN: queue full; EIO: interface down; others). */
  writeDrops: number;
  /** writeBatch calls: packetsWritten / writeBatches is the mean batch a crossing carried. */
  writeBatches: number;
};

export type OffloadCounters = Record<(typeof OFFLOAD_COUNTER_NAMES)[number], number>;

type Handle = object & { readonly __tunHandle: unique symbol };
type ReaderHandle = object & { readonly __readerHandle: unique symbol };

interface Addon {
  open(
    name: string,
    mtu: number,
    address: Buffer,
    prefixLength: number,
    buffer: Buffer,
    meta: Int32Array,
    onBatch: (count: number, errno: number) => void,
    offload: boolean,
  ): Handle;
  start(handle: Handle): void;
  write(handle: Handle, packet: Uint8Array): number;
  /**
   * Packets at meta[3i] (offset), meta[3i+1] (length) of buffer, meta[3i+2] their gso_size (a
   * super-packet from a planetd peer, else 0); returns how many were written.
   */
  writeBatch(handle: Handle, buffer: Uint8Array, meta: Int32Array, count: number): number;
  /**
   * Reads hand super-packets over whole (cut into pieces of at most maxBytes); 0 cuts them into
   * segments. partialChecksums: plain TCP packets keep the kernel's partial checksum (gso_size -1).
   */
  superPackets(handle: Handle, maxBytes: number, partialChecksums: boolean): void;
  /** Completes the TCP checksum of a plain IPv6/TCP packet in place; false if it is not one. */
  completeChecksum(packet: Uint8Array): boolean;
  /** A super-packet cut into gsoSize segments at meta[2i], meta[2i+1] of out; -1 if malformed. */
  cutSegments(packet: Uint8Array, gsoSize: number, out: Buffer, meta: Int32Array): number;
  counters(handle: Handle, into: Float64Array): void;
  /** 0: offloads on; -1: not asked for; else the errno with which the kernel refused them. */
  offloadError(handle: Handle): number;
  name(handle: Handle): string;
  close(handle: Handle): void;
  /** One datagram to an AF_UNIX socket path ("@" = abstract); 0 or an errno. */
  notify(socketPath: string, message: string): number;
  /** setsockopt(fd, IPPROTO_TCP, TCP_CONGESTION, name); 0 or an errno. */
  tcpCongestion(fd: number, name: string): number;
  /** send(2) without blocking: bytes sent (possibly fewer) or -errno. */
  sendNow(fd: number, bytes: Uint8Array): number;
  /** One sendmsg(2) of slab[start, end) with tails[i] inserted at offset cuts[i]; as sendNow. */
  sendParts(
    fd: number,
    slab: Uint8Array,
    start: number,
    end: number,
    cuts: Int32Array,
    tails: Uint8Array[],
    count: number,
  ): number;
  /** Reads a dup of a socket's fd into buffer; onRead(n, 0), then (0, 0) at its end or (0, errno). */
  streamReaderOpen(fd: number, buffer: Buffer, onRead: (n: number, errno: number) => void): ReaderHandle;
  streamReaderStart(handle: ReaderHandle): void;
  streamReaderClose(handle: ReaderHandle): void;
  /** glibc's malloc_trim(0): true when pages went back to the system (always false elsewhere). */
  mallocTrim(): boolean;
}

let addon: Addon | undefined;

function loadAddon(): Addon {
  if (addon) return addon;
  const path = addonPath("planetd_tun.node", import.meta.url, 2);
  if (path) {
    addon = createRequire(import.meta.url)(path) as Addon;
    return addon;
  }
  throw new Error(
    "TUN: native addon build/Release/planetd_tun.node is missing (run `npm install` or `npx node-gyp rebuild`)",
  );
}

/**
 * sd_notify(3): tells systemd (Type=notify) "READY=1", "RELOADING=1", "STOPPING=1" or a STATUS=.
 * False when not run by systemd ($NOTIFY_SOCKET unset) or the datagram could not be sent.
 */
export function systemdNotify(message: string, env: NodeJS.ProcessEnv = process.env): boolean {
  const socketPath = env.NOTIFY_SOCKET;
  if (!socketPath) return false;
  try {
    return loadAddon().notify(socketPath, message) === 0;
  } catch {
    return false; // no addon: readiness is best effort, the unit's timeout says the rest
  }
}

/**
 * Gives the pages of freed C heap memory back to the system (glibc malloc_trim). False when nothing
 * was returned or there is no addon: RSS then simply stays where it is.
 */
export function releaseFreedHeap(): boolean {
  try {
    return loadAddon().mallocTrim();
  } catch {
    return false;
  }
}

/**
 * Asks for congestion control `name` (e.g. "bbr") on a connected TCP socket's fd. False when it was
 * not set (no addon, no such algorithm, not allowed): the socket keeps the system's default.
 */
export function requestTcpCongestion(fd: number, name: string): boolean {
  try {
    return loadAddon().tcpCongestion(fd, name) === 0;
  } catch {
    return false;
  }
}

/**
 * A connected socket's send(2), without blocking and without SIGPIPE: it returns the bytes sent
 * (possibly fewer than given) or -errno (-11, EAGAIN: the socket buffer is full). Undefined without
 * the addon: the caller then writes through Node alone.
 */
export function socketSender(): ((fd: number, bytes: Uint8Array) => number) | undefined {
  try {
    return loadAddon().sendNow;
  } catch {
    return undefined;
  }
}

/** Most tails one sendParts call takes (sockopt.c SEND_PARTS_MAX). */
export const SEND_PARTS_MAX = 64;

/** The addon's sendParts (see Addon), or undefined without an addon that has it. */
export function socketPartsSender(): Addon["sendParts"] | undefined {
  try {
    const lib = loadAddon();
    return typeof lib.sendParts === "function" ? lib.sendParts : undefined;
  } catch {
    return undefined;
  }
}

/** A connected socket read by the addon: see openSocketReader. */
export interface SocketReader {
  /** Begin reading (idempotent). */
  start(): void;
  /** Stop and close the reader's own fd (idempotent): the connection ends once Node's is closed too. */
  close(): void;
}

/**
 * Reads a connected socket (a dup of fd) in the addon, once per readable wakeup, into `buffer`:
 * onRead(n, 0) with the bytes at buffer[0, n), then onRead(0, 0) at the end of the stream or
 * onRead(0, errno) when a read failed, after which it reads no more. The caller must have stopped
 * Node's own reading of the socket. Undefined without the addon (or one too old to have it).
 */
export function openSocketReader(
  fd: number,
  buffer: Buffer,
  onRead: (n: number, errno: number) => void,
): SocketReader | undefined {
  let lib: Addon;
  try {
    lib = loadAddon();
  } catch {
    return undefined;
  }
  if (typeof lib.streamReaderOpen !== "function") return undefined;
  const handle = lib.streamReaderOpen(fd, buffer, onRead);
  return { start: () => lib.streamReaderStart(handle), close: () => lib.streamReaderClose(handle) };
}

export function clampMtu(mtu: number): number {
  if (!Number.isFinite(mtu)) return TUN_MAX_MTU;
  return Math.min(TUN_MAX_MTU, Math.max(TUN_MIN_MTU, Math.floor(mtu)));
}

export class NativeTun implements TunDevice {
  readonly name: string;
  readonly mtu: number;
  readonly address: Buffer;
  readonly prefixLength: number;
  readonly counters: TunCounters = {
    packetsRead: 0,
    bytesRead: 0,
    packetsWritten: 0,
    bytesWritten: 0,
    writeDrops: 0,
    writeBatches: 0,
  };
  /** 0: offloads on; -1: not asked for; else the errno with which the kernel refused them. */
  readonly offloadError: number;
  readonly readRoom = { before: READ_HEADROOM, after: READ_TAILROOM };
  private readonly lib: Addon;
  private readonly handle: Handle;
  private readonly readBuffer: Buffer;
  private readonly meta: Int32Array;
  private readonly batch: Buffer[] = [];
  /** gso_size of each packet of the batch being delivered (0: ordinary). */
  private readonly batchGsoSizes = new Int32Array(MAX_BATCH);
  private cutBuffer: Buffer | undefined;
  private readonly cutMeta = new Int32Array(MAX_CUT_SEGMENTS * 2);
  private readonly cutSegments: Buffer[] = [];
  private readonly writeBuffer: Buffer;
  private readonly writeMeta: Int32Array;
  /** writeNow's one-packet meta: offset 0, length, gso_size. */
  private readonly directMeta = new Int32Array(META_STRIDE);
  private writeCount = 0;
  private writeBytes = 0;
  private flushScheduled = false;
  /** Bound once: the one callback each turn's flush is scheduled with. */
  private readonly flushQueued = (): void => {
    this.flushScheduled = false;
    this.flush();
  };
  private readonly offloadValues = new Float64Array(OFFLOAD_COUNTER_NAMES.length);
  private packetHandler: ((packets: Buffer[], gsoSizes: Int32Array) => void) | undefined;
  private errorHandler: ((err: Error) => void) | undefined;
  private started = false;
  private closed = false;

  constructor(options: TunOptions) {
    if (options.address.length !== 16) throw new Error("TUN: address must be 16 bytes");
    this.lib = loadAddon();
    this.mtu = clampMtu(options.mtu);
    this.address = Buffer.from(options.address);
    this.prefixLength = options.prefixLength ?? 7;
    this.readBuffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
    this.meta = new Int32Array(MAX_BATCH * META_STRIDE);
    this.writeBuffer = Buffer.allocUnsafeSlow(WRITE_BUFFER_BYTES);
    this.writeMeta = new Int32Array(MAX_WRITE_BATCH * META_STRIDE);
    this.handle = this.lib.open(
      options.name,
      this.mtu,
      this.address,
      this.prefixLength,
      this.readBuffer,
      this.meta,
      (count, errno) => this.onBatch(count, errno),
      options.offload ?? this.mtu <= OFFLOAD_MAX_MTU,
    );
    this.name = this.lib.name(this.handle);
    this.offloadError = this.lib.offloadError(this.handle);
  }

  /** Reading starts with the first handler, so the kernel queues packets until someone listens. */
  onPackets(handler: (packets: Buffer[], gsoSizes: Int32Array) => void): void {
    this.packetHandler = handler;
    if (!this.started && !this.closed) {
      this.started = true;
      this.lib.start(this.handle);
    }
  }

  /** A fatal read error (the interface was deleted under us); reading has stopped. */
  onError(handler: (err: Error) => void): void {
    this.errorHandler = handler;
  }

  /**
   * Queues one packet (copied: the caller's buffer is reused) for the flush at the end of the input
   * being handled (end-of-input.ts; outside any input, the next tick), so that an input's packets
   * cross into the addon once and in-order TCP segments can leave as one GSO write, in the same JS
   * call that read them; one of DIRECT_WRITE_BYTES or more is written at once (writeNow).
   */
  write(packet: Uint8Array, gsoSize = 0): void {
    if (packet.length > WRITE_BUFFER_BYTES) {
      this.counters.writeDrops++;
      return;
    }
    if (packet.length >= DIRECT_WRITE_BYTES) {
      this.writeNow(packet, gsoSize);
      return;
    }
    if (this.writeCount === MAX_WRITE_BATCH || this.writeBytes + packet.length > WRITE_BUFFER_BYTES)
      this.flush();
    const m = META_STRIDE * this.writeCount++;
    this.writeMeta[m] = this.writeBytes;
    this.writeMeta[m + 1] = packet.length;
    this.writeMeta[m + 2] = gsoSize;
    this.writeBuffer.set(packet, this.writeBytes);
    this.writeBytes += packet.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      flushAtEndOfInput(this.flushQueued);
    }
  }

  /**
   * A packet too large to join a coalesced run (src/tun/native/offload.c gro_run: a run stays within
   * 64 KiB) is written at once from the caller's buffer, after what is queued, instead of copied
   * into the queue: it leaves as one writev either way, and at IfMTU 65535 that copy was most of the
   * receiving daemon's memmove (issue 11). The addon may rewrite its TCP checksum field.
   */
  private writeNow(packet: Uint8Array, gsoSize: number): void {
    this.flush();
    if (this.closed) return;
    const meta = this.directMeta;
    meta[1] = packet.length;
    meta[2] = gsoSize;
    const written = this.lib.writeBatch(this.handle, packet, meta, 1);
    this.counters.writeBatches++;
    this.counters.packetsWritten += written;
    this.counters.writeDrops += 1 - written;
    this.counters.bytesWritten += packet.length;
  }

  /** Writes what write() queued now, in one addon call. */
  flush(): void {
    const count = this.writeCount;
    if (count === 0 || this.closed) return;
    const written = this.lib.writeBatch(this.handle, this.writeBuffer, this.writeMeta, count);
    this.counters.writeBatches++;
    this.counters.packetsWritten += written;
    this.counters.writeDrops += count - written;
    this.counters.bytesWritten += this.writeBytes; // queued bytes: exact unless something was dropped
    this.writeCount = 0;
    this.writeBytes = 0;
  }

  get offload(): boolean {
    return this.offloadError === 0;
  }

  /**
   * Reads hand TCP super-packets over whole, in pieces of at most maxBytes, with their gso_size
   * (onPackets' second argument), instead of cut into segments; with partialChecksums, plain TCP
   * packets come with the kernel's partial checksum and PARTIAL_CHECKSUM. Only with offloads.
   */
  enableSuperPackets(maxBytes: number, partialChecksums = false): void {
    if (this.offload) this.lib.superPackets(this.handle, maxBytes, partialChecksums);
  }

  /** Completes a PARTIAL_CHECKSUM packet's TCP checksum in place (src/tun/gso.ts); false if not one. */
  completeChecksum(packet: Buffer): boolean {
    return this.lib.completeChecksum(packet);
  }

  /** A super-packet cut into gsoSize segments with full checksums; views valid until the next call. */
  segment(packet: Buffer, gsoSize: number): Buffer[] {
    if (!this.cutBuffer) this.cutBuffer = Buffer.allocUnsafeSlow(CUT_BUFFER_BYTES);
    const out = this.cutSegments;
    const n = Math.max(0, this.lib.cutSegments(packet, gsoSize, this.cutBuffer, this.cutMeta));
    out.length = n;
    for (let i = 0; i < n; i++) {
      const off = this.cutMeta[2 * i]!;
      out[i] = this.cutBuffer.subarray(off, off + this.cutMeta[2 * i + 1]!);
    }
    return out;
  }

  /** Packet counters and the addon's offload counters (super-packets read and cut, runs coalesced). */
  stats(): TunCounters & OffloadCounters {
    this.lib.counters(this.handle, this.offloadValues);
    const out = { ...this.counters } as TunCounters & OffloadCounters;
    OFFLOAD_COUNTER_NAMES.forEach((name, i) => {
      out[name] = this.offloadValues[i]!;
    });
    return out;
  }

  close(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.lib.close(this.handle);
  }

  private onBatch(count: number, errno: number): void {
    const batch = this.batch;
    // A store to an array's length is a call into V8's runtime, changed or not (perf on an idle
    // daemon: Runtime_StoreCallbackProperty, JSArray::SetLength); a batch is one packet at idle.
    if (batch.length !== count) batch.length = count;
    const meta = this.meta;
    let bytes = 0;
    for (let i = 0; i < count; i++) {
      const off = meta[META_STRIDE * i]!;
      const len = meta[META_STRIDE * i + 1]!;
      this.batchGsoSizes[i] = meta[META_STRIDE * i + 2]!;
      batch[i] = this.readBuffer.subarray(off, off + len);
      bytes += len;
    }
    this.counters.packetsRead += count;
    this.counters.bytesRead += bytes;
    if (count > 0 && this.packetHandler) {
      beginInput();
      try {
        this.packetHandler(batch, this.batchGsoSizes);
      } finally {
        endInput();
      }
    }
    if (errno !== 0) {
      const err = new Error(`TUN: reading ${this.name} failed (errno ${errno}); the interface stopped`);
      if (this.errorHandler) this.errorHandler(err);
    }
  }
}

/** Create, configure and bring up a TUN interface. Throws an Error with an operator message. */
export function openTun(options: TunOptions): NativeTun {
  return new NativeTun(options);
}
