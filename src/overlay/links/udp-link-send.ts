// The sending half of a udp:// link (UdpLink in udp-link.ts is the rest): records coalesced into
// datagrams in a reused slab, traffic frames over the datagram size split into fragments (and sent
// again when the peer asks), reliable segments from the reliable channel, acks, probes, and the
// sealing of each datagram as it leaves (udp-seal.ts keys via udp-rekey.ts). It also owns what
// both halves use: the options, the keys, the reliable channel's two ends, liveness's clock of what
// was sent, and the datagram size search.
import { LinkCore } from "./link-core.js";
import { type LinkTimeouts, MAX_FRAME } from "./stream.js";
import { FRAG_HEADER, FragStore, MAX_FRAGMENTS } from "./udp-frag.js";
import { Liveness, batchNow, livenessFor } from "./udp-liveness.js";
import { BASE_DATAGRAM, MAX_DATAGRAM, PmtuSearch, routeCeiling } from "./udp-pmtu.js";
import { DEFAULT_REKEY, LinkKeys, type RekeyOptions } from "./udp-rekey.js";
import { ACK_BLOCK, ReliableReceiver, ReliableSender, type Segment } from "./udp-reliable.js";
import { SEAL_BODY_AT, SEAL_OVERHEAD, SEAL_TAG } from "./udp-seal.js";
import type { FragmentRun } from "./udp-socket-types.js";
import type { UdpSocket } from "./udp-socket.js";
import {
  DATA_HEADER,
  PKT_DATA,
  PKT_DATA_ACK,
  PKT_MTU_PROBE,
  PKT_OBSERVE,
  REC_FRAGMENT,
  REC_RELIABLE,
  REC_RELIABLE_MORE,
  REC_UNRELIABLE,
  type UdpHooks,
} from "./udp-wire.js";

/** Headroom every datagram keeps: header, counter and tag, and an ack block. */
export const DG_OVERHEAD = DATA_HEADER + SEAL_OVERHEAD + ACK_BLOCK;
/** Reliable segments fit the base size, so a retransmission fits whatever size the link falls back to. */
const SEGMENT_BYTES = BASE_DATAGRAM - DG_OVERHEAD - 7;
const SLAB_BYTES = 512 * 1024;
/** A fragment datagram's bytes beyond its share of the frame: header, counter, record, tag. */
export const FRAG_DATAGRAM = SEAL_BODY_AT + 3 + FRAG_HEADER + SEAL_TAG;
const NO_FRAME = new Uint8Array(0);

export interface UdpLinkOptions {
  socket: UdpSocket;
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
  /** The largest datagram the size search may settle on (it starts at BASE_DATAGRAM). */
  datagramBytes: number;
  congestionBytes: number;
  hooks: UdpHooks | undefined;
  /** The handshake's keys for what this end sends and what it receives. */
  keys: { tx: Buffer; rx: Buffer };
  /** When the keys are renewed (defaults: DEFAULT_REKEY). */
  rekey?: Partial<RekeyOptions>;
  /** Listener: the ACCEPT that created the link, said again if the CONFIRM is repeated. */
  acceptPacket?: Buffer;
  /** The dialer's priority for this link (its CONFIRM says it): one link per key and priority. */
  dialPriority: number;
  /**
   * resetCommitment of the token a RESET must carry to be believed: the dialer's is the listener's
   * token from the ACCEPT, the listener's the commitment in the dialer's CONFIRM (none: refused).
   */
  resetCommitment?: Buffer;
  /** Called once when the link closes (listener: forget the address; dialer: close the socket). */
  release(): void;
}

function flushTick(link: UdpLinkSender): void {
  link.flush();
}

function ackTick(link: UdpLinkSender): void {
  link.sendPendingAck();
}

/** Everything a UdpLink sends; the subclass receives, delivers and closes. */
export abstract class UdpLinkSender extends LinkCore {
  datagramsOut = 0;
  /** Traffic frames sent as fragments. */
  fragmentedOut = 0;
  /** The datagram size in use (the size search raises it from BASE_DATAGRAM). */
  budget = BASE_DATAGRAM;
  /** Fragments sent again because the peer asked. */
  fragmentsRepaired = 0;
  readonly pmtu: PmtuSearch;
  /** The link's keys, renewed now and then (udp-rekey.ts: generation, rekey counters, start()). */
  readonly keys: LinkKeys;

  protected readonly o: UdpLinkOptions;
  protected readonly liveness: Liveness;
  protected readonly tx: ReliableSender;
  protected readonly rx: ReliableReceiver;
  // Send: datagrams are built in a slab. A socket that copies what it is given (the native one)
  // lets the link write over the slab again; node:dgram keeps views of them until they leave.
  private slab = Buffer.allocUnsafe(SLAB_BYTES);
  private dgStart = 0;
  private dgEnd = 0;
  private dgOpen = false;
  private dgRecords = 0;
  private flushQueued = false;
  private fragId = 0;
  /** sendRun's description of a frame's fragments, reused. */
  private readonly run: FragmentRun;
  private readonly fragStore = new FragStore();
  private ackPending = false;
  private ackQueued = false;

  get keyGeneration(): number {
    return this.keys.generation;
  }

  constructor(o: UdpLinkOptions, now: number) {
    super({
      remoteKey: o.remoteKey,
      remote: o.remote,
      outbound: o.outbound,
      priority: o.priority,
      openedAt: now,
    });
    this.o = o;
    this.run = {
      frame: NO_FRAME,
      count: 0,
      id: 0,
      cookie: o.remoteCookie,
      counterHi: 0,
      counterLo: 0,
      keySlot: -1,
    };
    this.keys = new LinkKeys(
      {
        outbound: o.outbound,
        dialerCookie: o.outbound ? o.localCookie : o.remoteCookie,
        listenerCookie: o.outbound ? o.remoteCookie : o.localCookie,
        sendRekey: (type, body) => this.sendRekey(type, body),
        kick: () => {
          if (!this.closed) this.sendBare(PKT_DATA_ACK);
        },
        srtt: () => this.tx.srtt,
        sealKeys: o.socket.sealing,
      },
      o.keys,
      { ...DEFAULT_REKEY, ...o.rekey },
    );
    this.tx = new ReliableSender((seg) => this.appendSegment(seg));
    this.rx = new ReliableReceiver((frame) => this.deliver(frame));
    this.liveness = new Liveness(livenessFor(o.timeouts), now);
    this.pmtu = new PmtuSearch({
      sendProbe: (size, nonce) => this.sendMtuProbe(size, nonce),
      setBudget: (size) => {
        this.flushDatagram();
        this.budget = size;
      },
      rtt: () => this.tx.srtt,
    });
    const max = Math.min(MAX_DATAGRAM, o.datagramBytes);
    if (max > BASE_DATAGRAM) {
      routeCeiling(o.address, o.port, max).then(
        (ceiling) => this.pmtu.start(ceiling),
        () => {},
      );
    }
  }

  /** A frame the reliable channel put back in order (or traffic that arrived). */
  protected abstract deliver(frame: Buffer): void;
  abstract close(reason: string, notifyPeer?: boolean): void;

  get congested(): boolean {
    return this.o.socket.congested(this.o.congestionBytes);
  }

  /** Reliable segments sent but not yet acknowledged, plus those waiting for window space. */
  get unacked(): number {
    return this.tx.unacked;
  }

  get retransmits(): number {
    return this.tx.retransmits;
  }

  /** A datagram of its own, `bodyBytes` of plaintext: type ‖ peer's cookie ‖ counter ‖ body ‖ tag. */
  protected shell(type: number, bodyBytes: number): Buffer {
    const out = Buffer.alloc(SEAL_BODY_AT + bodyBytes + SEAL_TAG);
    out[0] = type;
    this.o.remoteCookie.copy(out, 1);
    return out;
  }

  private sendRekey(type: number, body: Buffer): void {
    if (this.closed) return;
    const out = this.shell(type, body.length);
    body.copy(out, SEAL_BODY_AT);
    this.flushDatagram();
    this.transmit(out);
  }

  send(frame: Uint8Array): void {
    if (this.closed || frame.length === 0 || frame.length > MAX_FRAME) return;
    const type = frame[0];
    if (type === 9 || type === 10) {
      if (3 + frame.length <= this.budget - DG_OVERHEAD) {
        const p = this.reserve(3 + frame.length);
        this.slab[p] = REC_UNRELIABLE;
        this.slab.writeUInt16BE(frame.length, p + 1);
        this.slab.set(frame, p + 3);
      } else {
        this.sendFragments(frame);
      }
      return;
    }
    if (!this.tx.send(frame, SEGMENT_BYTES)) this.close("peer stopped acknowledging protocol frames");
  }

  /**
   * The traffic frame head ‖ tail (the data path's type-10 head and sealed packet) without joining
   * them in a Buffer of their own first: a small one goes into the open datagram part by part, a
   * large one is joined in the repair store, which copies it anyway. Protocol frames never come here
   * (the router joins only traffic), but are joined and sent whole should one.
   */
  sendJoined(head: Uint8Array, tail: Uint8Array): void {
    const len = head.length + tail.length;
    if (this.closed || head.length === 0 || len > MAX_FRAME) return;
    const type = head[0];
    if (type !== 9 && type !== 10) {
      this.send(Buffer.concat([head, tail]));
    } else if (3 + len <= this.budget - DG_OVERHEAD) {
      const p = this.reserve(3 + len);
      this.slab[p] = REC_UNRELIABLE;
      this.slab.writeUInt16BE(len, p + 1);
      this.slab.set(head, p + 3);
      this.slab.set(tail, p + 3 + head.length);
    } else {
      const count = this.fragmentCount(len);
      const id = this.nextFragId();
      this.sendKept(this.fragStore.keepJoined(id, head, tail, count), id, count);
    }
  }

  /** A traffic frame over the datagram size leaves as equal fragments, one per datagram. */
  private sendFragments(frame: Uint8Array): void {
    const count = this.fragmentCount(frame.length);
    const id = this.nextFragId();
    this.fragStore.keep(id, frame, count);
    this.sendKept(frame, id, count);
  }

  private fragmentCount(frameBytes: number): number {
    const room = this.budget - DG_OVERHEAD - 3 - FRAG_HEADER;
    // At BASE_DATAGRAM a 65,535-byte frame takes 56 fragments, well under the u8 count.
    return Math.min(MAX_FRAGMENTS, Math.ceil(frameBytes / room));
  }

  private nextFragId(): number {
    const id = this.fragId;
    this.fragId = (id + 1) >>> 0;
    this.fragmentedOut++;
    return id;
  }

  /** The frame's fragments, by the socket as one run when it can, else one record each. */
  private sendKept(frame: Uint8Array, id: number, count: number): void {
    if (this.sendRun(frame, id, count)) return;
    for (let i = 0; i < count; i++) this.appendFragment(frame, id, i, count);
  }

  /**
   * The fragments as one run the socket builds and seals (the native socket, under its key slot):
   * no per-fragment work or copy here. False when this side must build them (another socket, a
   * key the socket does not hold, loss injection, no room).
   */
  private sendRun(frame: Uint8Array, id: number, count: number): boolean {
    const socket = this.o.socket;
    if (!socket.sendFragments || this.o.hooks?.dropDatagram) return false;
    this.flushDatagram(); // what is open leaves first, with the lower counter
    const run = this.run;
    run.frame = frame;
    run.count = count;
    run.id = id;
    if (!this.keys.reserve(run)) return false;
    const ok = this.o.connected
      ? socket.sendFragments(run)
      : socket.sendFragments(run, this.o.port, this.o.address);
    run.frame = NO_FRAME; // not kept past the call
    // Not queued: those counters stay unused (the receiver's window takes the gap).
    if (!ok) return false;
    this.bytesOut += count * FRAG_DATAGRAM + frame.length;
    this.datagramsOut += count;
    this.liveness.sent(batchNow());
    return true;
  }

  private appendFragment(frame: Uint8Array, id: number, index: number, count: number): void {
    const size = Math.ceil(frame.length / count);
    const at = index * size;
    const end = Math.min(frame.length, at + size);
    const p = this.reserve(3 + FRAG_HEADER + end - at);
    const s = this.slab;
    s[p] = REC_FRAGMENT;
    s.writeUInt16BE(end - at, p + 1);
    s.writeUInt32BE(id, p + 3);
    s[p + 7] = index;
    s[p + 8] = count;
    s.writeUInt16BE(at, p + 9);
    s.set(frame.subarray(at, end), p + 3 + FRAG_HEADER);
  }

  /** The peer lacks these fragments: send those still kept again. */
  protected receiveNack(msg: Buffer, len: number): void {
    for (let p = SEAL_BODY_AT; p + 5 <= len && !this.closed; p += 5) {
      const id = msg.readUInt32BE(p);
      const frame = this.fragStore.frame(id);
      const count = this.fragStore.count(id);
      if (!frame || msg[p + 4]! >= count) continue;
      this.fragmentsRepaired++;
      this.appendFragment(frame, id, msg[p + 4]!, count);
    }
  }

  private appendSegment(seg: Segment): void {
    const p = this.reserve(7 + seg.seg.length);
    const s = this.slab;
    s[p] = seg.more ? REC_RELIABLE_MORE : REC_RELIABLE;
    s.writeUInt16BE(seg.seg.length, p + 1);
    s.writeUInt32BE(seg.seq, p + 3);
    s.set(seg.seg, p + 7);
  }

  /** Room for one record of `recLen` bytes in the open datagram (a new one when it would not fit). */
  private reserve(recLen: number): number {
    if (this.dgOpen && this.dgRecords > 0 && this.dgEnd - this.dgStart + recLen > this.budget - SEAL_TAG) {
      this.flushDatagram();
    }
    if (!this.dgOpen) this.openDatagram(PKT_DATA);
    const p = this.dgEnd;
    this.dgEnd = p + recLen;
    this.dgRecords++;
    if (!this.flushQueued) {
      this.flushQueued = true;
      process.nextTick(flushTick, this);
    }
    return p;
  }

  /** Starts a datagram; PKT_DATA becomes DATA+ACK when an ack is due, PKT_PING always carries one. */
  private openDatagram(type: number): void {
    if (this.slab.length - this.dgEnd < MAX_DATAGRAM) {
      if (!this.o.socket.copiesOnSend) this.slab = Buffer.allocUnsafe(SLAB_BYTES);
      this.dgEnd = 0;
    }
    this.dgStart = this.dgEnd;
    const s = this.slab;
    const p = this.dgStart;
    const withAck = this.ackPending || type !== PKT_DATA;
    s[p] = type === PKT_DATA && withAck ? PKT_DATA_ACK : type;
    this.o.remoteCookie.copy(s, p + 1);
    this.dgEnd = p + SEAL_BODY_AT;
    if (withAck) {
      this.rx.writeAck(s, this.dgEnd);
      this.dgEnd += ACK_BLOCK;
      this.ackPending = false;
    }
    this.dgOpen = true;
    this.dgRecords = 0;
  }

  /** Send everything queued this tick. */
  flush(): void {
    this.flushQueued = false;
    if (!this.closed) this.flushDatagram();
  }

  protected flushDatagram(): void {
    if (!this.dgOpen) return;
    this.dgOpen = false;
    this.dgEnd += SEAL_TAG;
    const out = this.slab.subarray(this.dgStart, this.dgEnd);
    this.dgStart = this.dgEnd;
    this.transmit(out);
  }

  /** Seals and sends `out` (type ‖ cookie ‖ counter space ‖ plaintext ‖ tag space). */
  protected transmit(out: Buffer): void {
    this.bytesOut += out.length;
    this.datagramsOut++;
    this.liveness.sent(batchNow());
    if (this.keys.exhausted) {
      this.close("the link's key is used up (2^48 datagrams): redial");
      return;
    }
    if (this.o.hooks?.dropDatagram?.(out)) return;
    // The native socket seals on its send thread (the slot names the key), dgram's here.
    const keySlot = this.keys.seal(out);
    if (this.o.connected) this.o.socket.send(out, undefined, undefined, keySlot);
    else this.o.socket.send(out, this.o.port, this.o.address, keySlot);
  }

  /** A datagram of its own carrying nothing but an ack block (type DATA+ACK or PING). */
  protected sendBare(type: number): void {
    this.flushDatagram();
    this.openDatagram(type);
    this.flushDatagram();
  }

  /** An ack that no outgoing datagram carried this turn of the event loop goes alone. */
  sendPendingAck(): void {
    this.ackQueued = false;
    if (!this.closed && this.ackPending) this.sendBare(PKT_DATA_ACK);
  }

  protected queueAck(): void {
    this.ackPending = true;
    if (!this.ackQueued) {
      this.ackQueued = true;
      setImmediate(ackTick, this);
    }
  }

  private sendMtuProbe(size: number, nonce: number): void {
    if (this.closed) return;
    const probe = this.shell(PKT_MTU_PROBE, size - SEAL_BODY_AT - SEAL_TAG);
    probe.writeUInt32BE(nonce, SEAL_BODY_AT);
    this.transmit(probe);
  }

  /**
   * A sealed OBSERVE for this link; the caller may send it from another socket (whose NAT mapping it
   * wants to learn) to the peer's listener, which answers over the link.
   */
  observeDatagram(nonce: number): Buffer | undefined {
    if (this.closed || this.keys.exhausted) return undefined;
    const out = this.shell(PKT_OBSERVE, 4);
    out.writeUInt32BE(nonce, SEAL_BODY_AT);
    this.keys.sealHere(out);
    return out;
  }

  /** Sends an OBSERVE over the link itself (its socket's mapping is the one to learn). */
  observe(nonce: number): void {
    const out = this.observeDatagram(nonce);
    if (!out) return;
    if (this.o.connected) this.o.socket.send(out);
    else this.o.socket.send(out, this.o.port, this.o.address);
  }
}
