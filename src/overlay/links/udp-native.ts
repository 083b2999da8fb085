// The batched UDP socket over the planetd_udp addon (src/tun/native/udp.c): a threadpool job
// reads a batch with one recvmmsg into one of the socket's two receive buffers and opens the link
// datagrams whose receive key is registered (addOpenKey), one call into JS per batch while the
// next job fills the other buffer (udp_recv.c); sends queued into one of two preallocated buffers and
// handed, once per turn of the microtask queue, to a threadpool job (udp_send.c) that seals them
// (ChaCha20-Poly1305 under a key slot registered with addKey) and sends them with sendmmsg,
// equal-size runs to one peer as one GSO message, while JS fills the other buffer.
import { createRequire } from "node:module";
import { constants } from "node:os";
import { addonPath } from "../../util/addon-path.js";
import { ERR_EVENT, IcmpHintReader, udpIcmpHints } from "./udp-icmp-hints.js";
import type {
  FragmentRun,
  RemoteInfo,
  UdpErrorHandler,
  UdpMessageHandler,
  UdpSocket,
  UdpSocketOptions,
  UdpUnreachableHandler,
} from "./udp-socket-types.js";

type Handle = object & { readonly __udpHandle: unique symbol };

export interface NativeUdpAddon {
  open(
    family: number,
    address: string,
    port: number,
    bufferBytes: number,
    recvBuf0: Buffer,
    recvMeta0: Int32Array,
    recvBuf1: Buffer,
    recvMeta1: Int32Array,
    sendBuf0: Buffer,
    sendMeta0: Int32Array,
    sendBuf1: Buffer,
    sendMeta1: Int32Array,
    state: Int32Array,
    onEvent: (count: number, errno: number, slot: number) => void,
  ): Handle;
  setDest(h: Handle, slot: number, address: string, port: number): number;
  connect(h: Handle, address: string, port: number): number;
  /**
   * Hands the filled buffer to a send job unless one is out (its completion hands it over then);
   * with `wait`, a job out is waited for first. 0, or the errno of a datagram a job this thread
   * completed refused (its destination slot in state[S_ERR_SLOT]).
   */
  flush(h: Handle, wait: boolean): number;
  /**
   * Appends `frame` as `count` fragment datagrams (udp-link-send.ts's layout) to the buffer JS
   * fills, as send() would append each: count, or -ENOBUFS (no room, nothing queued) or -EINVAL.
   */
  sendFragments(
    h: Handle,
    frame: Uint8Array,
    count: number,
    id: number,
    cookie: Uint8Array,
    counterHi: number,
    counterLo: number,
    destSlot: number,
    keySlot: number,
  ): number;
  /** A 32-byte send key's slot, or -1 when the table is full (counted) or there is no cipher. */
  addKey(h: Handle, key: Uint8Array): number;
  /** Frees the slot once the datagrams queued under it have left. */
  dropKey(h: Handle, slot: number): void;
  /**
   * A 32-byte receive key for the datagrams carrying `cookie` (8 bytes) and key `phase`: its slot,
   * or -1 when the table is full (counted) or there is no cipher (JS opens them then).
   */
  addOpenKey(h: Handle, cookie: Uint8Array, phase: number, key: Uint8Array): number;
  /** Freed once no receive job can be using it. */
  dropOpenKey(h: Handle, slot: number): void;
  setTTL(h: Handle, ttl: number): number;
  sourceText(h: Handle, entry: number): string;
  address(h: Handle): { address: string; port: number; family: string };
  /** True when a send job still holds the fd: onEvent(0, 0, CLOSED_EVENT) follows once it is closed. */
  close(h: Handle): boolean;
  /** ICMP errors as hints (udp_err.c, udp-icmp-hints.ts); absent from an addon built before them. */
  errorHints?(h: Handle, entries: Int32Array): boolean;
  errorSourceText?(h: Handle, entry: number): string;
}

// Layouts shared with udp.c.
const RECV_SLOT = 65536;
const RECV_SLOTS = 16;
/** A GRO buffer holds at most 64 datagrams. */
const RECV_ENTRIES = RECV_SLOTS * 64;
const RM_STRIDE = 9;
const SM_STRIDE = 4;
const MAX_DESTS = 256;
const SEND_BYTES = 1024 * 1024;
const SEND_ENTRIES = 4096;
/** What udp_queue_fragments adds to each fragment: header, counter, record and fragment header, tag. */
const FRAG_DATAGRAM_OVERHEAD = 9 + 8 + 3 + 8 + 16;
export const S_QUEUED = 0;
export const S_BYTES = 1;
export const S_DROPPED = 2;
const S_ERR_SLOT = 3;
export const S_SENT = 4;
export const S_GSO_MSGS = 5;
export const S_GRO_BUFS = 6;
export const S_RECV_TRUNC = 7;
export const S_FLAGS = 8;
/**
 * Which send buffer JS fills; bytes a send job still holds; keys refused; datagrams not sealed;
 * bytes of a job the kernel refused with EAGAIN, waiting for POLLOUT.
 */
const S_FILL = 9;
export const S_INFLIGHT = 10;
export const S_KEYS_REFUSED = 11;
export const S_SEAL_FAILED = 12;
export const S_BLOCKED = 13;
/**
 * The receive buffer of the batch JS is handed; datagrams opened by a receive job, datagrams its
 * registered key did not open, receive keys refused (table full), receive jobs completed.
 */
const S_RBUF = 14;
export const S_OPENED = 15;
export const S_OPEN_FAILED = 16;
export const S_OPEN_KEYS_REFUSED = 17;
export const S_RECV_JOBS = 18;
/**
 * Where the adaptive paths ran (udp_recv.c, udp_send.c): reads done on the loop thread, the
 * datagrams they opened, send buffers handed to a threadpool job, and those sealed and sent on the
 * loop thread (a flush of at most PLANETD_UDP_SEND_INLINE datagrams with no job out).
 */
export const S_RECV_INLINE = 19;
export const S_OPENED_INLINE = 20;
export const S_SEND_JOBS = 21;
export const S_SEND_INLINE = 22;
/**
 * Frames a read handed to JS whole: all the fragment datagrams of one frame, in order, opened by
 * the socket, joined into one entry (udp_recv.c join_runs; PLANETD_UDP_JOIN=0 turns it off).
 */
export const S_JOINED = 23;
const S_COUNT = 24;
const NO_KEY = -1;
export const F_GRO = 1;
export const F_GSO = 2;
const RECV_EVENT = -2;
const CLOSED_EVENT = -3;

let addon: NativeUdpAddon | null | undefined;

/** What the native sockets counted (udpSocketTotals): refusals, drops, and what went through. */
export interface UdpSocketTotals {
  /** Native sockets open now. */
  sockets: number;
  sent: number;
  opened: number;
  gsoMessages: number;
  groBuffers: number;
  /** Traffic frames a read handed over whole, joined from their fragment datagrams (S_JOINED). */
  framesJoined: number;
  /** What became of the ICMP errors the sockets read from their error queues (udp-icmp-hints.ts). */
  icmpHints: typeof udpIcmpHints;
  /** Datagrams lost: send (queue full, no destination slot, the kernel refused), seal_failed, truncated, open_failed. */
  dropped: { send: number; seal_failed: number; truncated: number; open_failed: number };
  /** Keys the socket's tables had no room for (the link seals or opens them in JS instead). */
  keysRefused: { send: number; receive: number };
  /**
   * Where the work ran: `reads` are receive batches (a job's, or the loop thread's when a read
   * drained the socket), `opened` the datagrams those opened in place, `sends` send buffers sealed
   * and sent by a job or on the loop thread. A busy link shows jobs, an idle one inline work.
   */
  paths: {
    reads: { job: number; inline: number };
    opened: { job: number; inline: number };
    sends: { job: number; inline: number };
  };
}

/** The state[] words that only count up (the others are queue levels and flags). */
const COUNTERS = [
  S_DROPPED,
  S_SENT,
  S_GSO_MSGS,
  S_GRO_BUFS,
  S_RECV_TRUNC,
  S_KEYS_REFUSED,
  S_SEAL_FAILED,
  S_OPENED,
  S_OPEN_FAILED,
  S_OPEN_KEYS_REFUSED,
  S_RECV_JOBS,
  S_RECV_INLINE,
  S_OPENED_INLINE,
  S_SEND_JOBS,
  S_SEND_INLINE,
  S_JOINED,
];
/** Every open native socket, and the counts of the closed ones (a total never goes down). */
const openSockets = new Set<NativeUdpSocket>();
const closedCounts = new Float64Array(S_COUNT);

/**
 * The native sockets' counters summed over the open ones and those closed before (admin, metrics).
 * A socket's 32-bit counters wrap; each read folds what they moved since the last into a float, so
 * the totals stay exact while something (a scrape, getUdp) reads at least once per 2^32 datagrams.
 */
export function udpSocketTotals(): UdpSocketTotals {
  const sum = Float64Array.from(closedCounts);
  for (const s of openSockets) s.foldCounters(sum);
  return {
    sockets: openSockets.size,
    sent: sum[S_SENT]!,
    opened: sum[S_OPENED]!,
    gsoMessages: sum[S_GSO_MSGS]!,
    groBuffers: sum[S_GRO_BUFS]!,
    framesJoined: sum[S_JOINED]!,
    icmpHints: { ...udpIcmpHints },
    dropped: {
      send: sum[S_DROPPED]!,
      seal_failed: sum[S_SEAL_FAILED]!,
      truncated: sum[S_RECV_TRUNC]!,
      open_failed: sum[S_OPEN_FAILED]!,
    },
    keysRefused: { send: sum[S_KEYS_REFUSED]!, receive: sum[S_OPEN_KEYS_REFUSED]! },
    paths: {
      reads: { job: sum[S_RECV_JOBS]!, inline: sum[S_RECV_INLINE]! },
      opened: { job: sum[S_OPENED]! - sum[S_OPENED_INLINE]!, inline: sum[S_OPENED_INLINE]! },
      sends: { job: sum[S_SEND_JOBS]!, inline: sum[S_SEND_INLINE]! },
    },
  };
}

/** The addon, or undefined when it is not built (the caller falls back to node:dgram). */
export function loadNativeUdp(): NativeUdpAddon | undefined {
  if (addon !== undefined) return addon ?? undefined;
  addon = null;
  const path = addonPath("planetd_udp.node", import.meta.url, 3);
  if (!path) return undefined;
  try {
    addon = createRequire(import.meta.url)(path) as NativeUdpAddon;
  } catch {
    addon = null; // built for another Node ABI: dgram still works
  }
  return addon ?? undefined;
}

const errnoNames = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));

function errnoError(syscall: string, errno: number, where = ""): Error & { code: string; errno: number } {
  const code = errnoNames.get(errno) ?? `E${errno}`;
  return Object.assign(new Error(`${syscall} ${code}${where ? ` ${where}` : ""}`), { code, errno: -errno });
}

export function openNativeUdp(lib: NativeUdpAddon, o: UdpSocketOptions): UdpSocket {
  return new NativeUdpSocket(lib, o);
}

export class NativeUdpSocket implements UdpSocket {
  readonly kind = "native";
  /** send() copies into the socket's own queue. */
  readonly copiesOnSend = true;
  /** Counters shared with the addon (S_* indices): queue, drops, sends, GSO and GRO use. */
  readonly state = new Int32Array(S_COUNT);
  /** udpSocketTotals' view of state[]: the words at its last read, and what they added up to. */
  private readonly lastRead = new Uint32Array(S_COUNT);
  private readonly counted = new Float64Array(S_COUNT);
  private readonly lib: NativeUdpAddon;
  private readonly handle: Handle;
  /**
   * Each socket's own two receive buffers: a job reads and opens into one (on a worker thread,
   * so no two sockets may share them) while JS consumes the other.
   */
  private readonly recvBufs = [
    Buffer.allocUnsafeSlow(RECV_SLOT * RECV_SLOTS),
    Buffer.allocUnsafeSlow(RECV_SLOT * RECV_SLOTS),
  ];
  private readonly recvMetas = [
    new Int32Array(RECV_ENTRIES * RM_STRIDE),
    new Int32Array(RECV_ENTRIES * RM_STRIDE),
  ];
  /** JS fills sendBufs[state[S_FILL]] while a job seals and sends the other. */
  private readonly sendBufs = [Buffer.allocUnsafeSlow(SEND_BYTES), Buffer.allocUnsafeSlow(SEND_BYTES)];
  private readonly sendMetas = [
    new Int32Array(SEND_ENTRIES * SM_STRIDE),
    new Int32Array(SEND_ENTRIES * SM_STRIDE),
  ];
  private messageHandler: UdpMessageHandler | undefined;
  private errorHandler: UdpErrorHandler | undefined;
  /** ICMP errors read from the socket's error queue, as hints for the link at their address. */
  private readonly icmp: IcmpHintReader<Handle>;
  /** The source of the last datagram, as raw words (udp.c's layout) and as the object handed out. */
  private readonly from: RemoteInfo = { address: "", port: 0, key: "" };
  private readonly fromWords = new Int32Array(5);
  private fromKnown = false;
  /** Destination slots in the addon, by address and then port; destText for error messages. */
  private readonly dests = new Map<string, Map<number, number>>();
  private readonly destText: string[] = [];
  private lastDestAddress: string | undefined;
  private lastDestPort = 0;
  private lastDestSlot = -1;
  private flushQueued = false;
  private readonly flushTask = (): void => this.flushNow(true);
  private pendingError = 0;
  private pendingSlot = -1;
  private closed = false;
  private fdReleased: (() => void) | undefined;
  /**
   * The socket seals what is queued with a key slot (udp-seal.ts's Sealer registers its key), and
   * opens what arrives under a registered receive key (its Opener's).
   */
  readonly sealing = {
    addKey: (key: Uint8Array): number => (this.closed ? -1 : this.lib.addKey(this.handle, key)),
    dropKey: (slot: number): void => {
      if (!this.closed) this.lib.dropKey(this.handle, slot);
    },
    addOpenKey: (cookie: Uint8Array, phase: number, key: Uint8Array): number =>
      this.closed ? -1 : this.lib.addOpenKey(this.handle, cookie, phase, key),
    dropOpenKey: (slot: number): void => {
      if (!this.closed) this.lib.dropOpenKey(this.handle, slot);
    },
  };

  constructor(lib: NativeUdpAddon, o: UdpSocketOptions) {
    this.lib = lib;
    this.handle = lib.open(
      o.family,
      o.address ?? "",
      o.port ?? 0,
      o.bufferBytes ?? 4 * 1024 * 1024,
      this.recvBufs[0]!,
      this.recvMetas[0]!,
      this.recvBufs[1]!,
      this.recvMetas[1]!,
      this.sendBufs[0]!,
      this.sendMetas[0]!,
      this.sendBufs[1]!,
      this.sendMetas[1]!,
      this.state,
      (count, errno, slot) => this.onEvent(count, errno, slot),
    );
    this.icmp = new IcmpHintReader(lib, this.handle);
    openSockets.add(this);
  }

  onMessage(handler: UdpMessageHandler | undefined): void {
    this.messageHandler = handler;
  }

  onError(handler: UdpErrorHandler | undefined): void {
    this.errorHandler = handler;
  }

  onUnreachable(handler: UdpUnreachableHandler | undefined): boolean {
    this.icmp.handler = handler;
    return this.icmp.enabled;
  }

  /** `keySlot` (from sealing.addKey): the datagram's counter is written, the socket seals it. */
  send(data: Uint8Array, port?: number, address?: string, keySlot = NO_KEY): void {
    if (this.closed || data.length === 0 || data.length > RECV_SLOT - 1) return;
    const slot = address === undefined ? -1 : this.slotFor(address, port ?? 0);
    if (slot < -1) {
      this.state[S_DROPPED]!++;
      return;
    }
    const st = this.state;
    if (st[S_QUEUED]! >= SEND_ENTRIES || st[S_BYTES]! + data.length > SEND_BYTES) {
      // Full while a job is out: wait for it (JS outran the send thread) rather than drop.
      this.flushNow(false, true);
      if (st[S_QUEUED]! >= SEND_ENTRIES || st[S_BYTES]! + data.length > SEND_BYTES) {
        st[S_DROPPED]!++;
        return;
      }
    }
    const q = st[S_QUEUED]!;
    const at = st[S_BYTES]!;
    const fill = st[S_FILL]!;
    this.sendBufs[fill]!.set(data, at);
    const meta = this.sendMetas[fill]!;
    const m = q * SM_STRIDE;
    meta[m] = at;
    meta[m + 1] = data.length;
    meta[m + 2] = slot;
    meta[m + 3] = keySlot;
    st[S_QUEUED] = q + 1;
    st[S_BYTES] = at + data.length;
    this.queueFlush();
  }

  sendFragments(r: FragmentRun, port?: number, address?: string): boolean {
    if (this.closed) return false;
    const slot = address === undefined ? -1 : this.slotFor(address, port ?? 0);
    if (slot < -1) return false;
    const st = this.state;
    const bytes = r.count * FRAG_DATAGRAM_OVERHEAD + r.frame.length;
    // As send() does: wait for the job rather than drop.
    if (st[S_QUEUED]! + r.count > SEND_ENTRIES || st[S_BYTES]! + bytes > SEND_BYTES)
      this.flushNow(false, true);
    const { handle, lib } = this;
    const n = lib.sendFragments(
      handle,
      r.frame,
      r.count,
      r.id,
      r.cookie,
      r.counterHi,
      r.counterLo,
      slot,
      r.keySlot,
    );
    if (n !== r.count) return false;
    this.queueFlush();
    return true;
  }

  private queueFlush(): void {
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(this.flushTask);
    }
  }

  /** The addon's slot for a destination (the last one's is kept); -2 when it has none. */
  private slotFor(address: string, port: number): number {
    if (address === this.lastDestAddress && port === this.lastDestPort) return this.lastDestSlot;
    const slot = this.destSlot(address, port);
    return slot < 0 ? -2 : slot;
  }

  /** The addon's slot for a destination; -1 when the address is not one of this socket's family. */
  private destSlot(address: string, port: number): number {
    let byPort = this.dests.get(address);
    let slot = byPort?.get(port);
    if (slot === undefined) {
      if (this.destText.length >= MAX_DESTS) {
        // Slots are reused only once no queued or in-flight datagram still names one.
        this.flushNow(false);
        if (this.state[S_QUEUED]! > 0 || this.state[S_INFLIGHT]! > 0) return -1;
        this.dests.clear();
        this.destText.length = 0;
        this.lastDestAddress = undefined;
        byPort = undefined;
      }
      slot = this.destText.length;
      if (this.lib.setDest(this.handle, slot, address, port) !== 0) return -1;
      this.destText.push(address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`);
      if (!byPort) {
        byPort = new Map();
        this.dests.set(address, byPort);
      }
      byPort.set(port, slot);
    }
    this.lastDestAddress = address;
    this.lastDestPort = port;
    this.lastDestSlot = slot;
    return slot;
  }

  /**
   * Hands the queue to a send job. A job's errors come back through onEvent, or, for one completed
   * here, from the microtask: never from inside send().
   */
  private flushNow(fromTask: boolean, wait = false): void {
    if (fromTask) this.flushQueued = false;
    if (this.closed) return;
    if (this.state[S_QUEUED]! > 0) {
      const e = this.lib.flush(this.handle, wait);
      if (e !== 0 && this.pendingError === 0) {
        this.pendingError = e;
        this.pendingSlot = this.state[S_ERR_SLOT]!;
      }
    }
    if (fromTask && this.pendingError !== 0) {
      const e = this.pendingError;
      this.pendingError = 0;
      this.sendError(e, this.pendingSlot);
    }
  }

  /**
   * Only ECONNREFUSED is reported: on a connected socket it is the ICMP port unreachable that
   * dgram reports as a receive error (a send may consume it first). Other refusals are counted.
   */
  private sendError(errno: number, slot: number): void {
    if (errnoNames.get(errno) !== "ECONNREFUSED") return;
    this.errorHandler?.(errnoError("send", errno, slot >= 0 ? this.destText[slot] : ""));
  }

  private onEvent(count: number, errno: number, slot: number): void {
    if (slot === CLOSED_EVENT) {
      this.fdReleased?.();
      return;
    }
    if (slot === ERR_EVENT) {
      if (!this.closed) this.icmp.deliver(count);
      return;
    }
    if (slot !== RECV_EVENT) {
      this.sendError(errno, slot);
      return;
    }
    const b = this.state[S_RBUF]!;
    const meta = this.recvMetas[b]!;
    const buf = this.recvBufs[b]!;
    const words = this.fromWords;
    const from = this.from;
    for (let i = 0; i < count && !this.closed; i++) {
      const m = i * RM_STRIDE;
      if (
        !this.fromKnown ||
        meta[m + 3] !== words[0] ||
        meta[m + 4] !== words[1] ||
        meta[m + 5] !== words[2] ||
        meta[m + 6] !== words[3] ||
        meta[m + 7] !== words[4]
      ) {
        from.address = this.lib.sourceText(this.handle, i);
        for (let w = 0; w < 5; w++) words[w] = meta[m + 3 + w]!;
        this.fromKnown = true;
        from.port = -1;
      }
      if (from.port !== meta[m + 2]) {
        from.port = meta[m + 2]!;
        from.key = `${from.address}|${from.port}`;
      }
      const off = meta[m]!;
      this.messageHandler?.(buf.subarray(off, off + meta[m + 1]!), from, meta[m + 8]!);
    }
    if (errno !== 0 && !this.closed) this.errorHandler?.(errnoError("recvmsg", errno));
  }

  async connect(port: number, address: string): Promise<void> {
    if (this.closed) throw new Error("udp: socket is closed");
    const r = this.lib.connect(this.handle, address, port);
    if (r !== 0)
      throw errnoError("connect", -r, address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`);
  }

  address(): { address: string; port: number; family: string } {
    return this.lib.address(this.handle);
  }

  setTTL(ttl: number): void {
    if (!this.closed) this.lib.setTTL(this.handle, ttl);
  }

  /**
   * Queued bytes and what the kernel refused: a job merely running is no backlog (counting its
   * bytes dropped traffic the send thread was about to carry; a full queue waits for it instead).
   */
  congested(limitBytes: number): boolean {
    return this.state[S_BYTES]! + this.state[S_BLOCKED]! > Math.min(limitBytes, SEND_BYTES);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flushNow(false);
    this.closed = true;
    // The last datagrams still go out; the port is free again once close() resolves.
    if (this.lib.close(this.handle)) {
      await new Promise<void>((resolve) => {
        this.fdReleased = resolve;
      });
    }
    // Its last job has completed: the counters are final.
    openSockets.delete(this);
    this.foldCounters(closedCounts);
  }

  /** Adds this socket's counts to `into` (udpSocketTotals), folding what moved since the last read. */
  foldCounters(into: Float64Array): void {
    for (const i of COUNTERS) {
      const now = this.state[i]! >>> 0;
      this.counted[i]! += (now - this.lastRead[i]!) >>> 0;
      this.lastRead[i] = now;
      into[i]! += this.counted[i];
    }
  }
}
