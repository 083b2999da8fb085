// One established UDP link: datagram framing into sealed datagrams (udp-seal.ts), fragments and
// their repair (udp-frag.ts), the reliable channel for protocol frames (udp-reliable.ts), liveness
// (udp-liveness.ts) and the datagram size search (udp-pmtu.ts). The handshake, sockets and
// demultiplexing live in udp.ts, whose header describes the wire format.
import { timingSafeEqual } from "node:crypto";
import { ipBytes, ipText } from "../../util/ip-bytes.js";
import { LinkCore } from "./link-core.js";
import type { Link, LinkEvents } from "./link.js";
import { type LinkTimeouts, MAX_FRAME } from "./stream.js";
import {
  FRAG_HEADER,
  FRAG_MALFORMED,
  FragStore,
  MAX_FRAGMENTS,
  Reassembler,
  nackDatagrams,
} from "./udp-frag.js";
import { resetCommitment } from "./udp-handshake.js";
import { ACT_DEAD, ACT_KEEPALIVE, ACT_PROBE, Liveness, batchNow, livenessFor } from "./udp-liveness.js";
import { BASE_DATAGRAM, MAX_DATAGRAM, PmtuSearch, routeCeiling } from "./udp-pmtu.js";
import { DEFAULT_REKEY, LinkKeys, type RekeyOptions } from "./udp-rekey.js";
import { ACK_BLOCK, ReliableReceiver, ReliableSender, type Segment } from "./udp-reliable.js";
import { OPEN_FORGED, OPEN_OK, SEAL_BODY_AT, SEAL_OVERHEAD, SEAL_TAG } from "./udp-seal.js";
import type { UdpSocket } from "./udp-socket.js";

import {
  DATA_HEADER,
  PKT_CLOSE,
  PKT_DATA,
  PKT_DATA_ACK,
  PKT_MTU_ACK,
  PKT_MTU_PROBE,
  PKT_NACK,
  PKT_OBSERVE,
  PKT_OBSERVED,
  PKT_PING,
  PKT_REKEY,
  PKT_REKEY_ACK,
  REC_FRAGMENT,
  REC_RELIABLE,
  REC_RELIABLE_MORE,
  REC_UNRELIABLE,
  RESET_BYTES,
  type UdpHooks,
} from "./udp-wire.js";

export { BASE_DATAGRAM, MAX_DATAGRAM } from "./udp-pmtu.js";
export * from "./udp-wire.js";

/** Headroom every datagram keeps: header, counter and tag, and an ack block. */
const DG_OVERHEAD = DATA_HEADER + SEAL_OVERHEAD + ACK_BLOCK;
/** Reliable segments fit the base size, so a retransmission fits whatever size the link falls back to. */
const SEGMENT_BYTES = BASE_DATAGRAM - DG_OVERHEAD - 7;
const SLAB_BYTES = 512 * 1024;
const MAX_PENDING_INPUT = 4096;

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

function flushTick(link: UdpLink): void {
  link.flush();
}

function ackTick(link: UdpLink): void {
  link.sendPendingAck();
}

export class UdpLink extends LinkCore implements Link {
  datagramsIn = 0;
  datagramsOut = 0;
  /** Traffic frames sent as fragments. */
  fragmentedOut = 0;
  /** The datagram size in use (the size search raises it from BASE_DATAGRAM). */
  budget = BASE_DATAGRAM;
  readonly reassembly = new Reassembler();
  /** Fragments sent again because the peer asked. */
  fragmentsRepaired = 0;
  /** Datagrams with this link's cookie that did not open (forged, corrupted, truncated). */
  forged = 0;
  /** Authentic datagrams seen before, or older than the replay window. */
  replayed = 0;
  /** RESETs naming this link without its reset token (forged, or from a peer that has none). */
  resetsRefused = 0;
  readonly pmtu: PmtuSearch;
  /** NAT traversal: an authentic answer to an OBSERVE this end sent (the source the peer saw). */
  onObserved: ((nonce: number, ip: string, port: number) => void) | undefined;
  /** Set for links opened by hole punching (getPeers shows it; idle ones are closed). */
  punched = false;

  private readonly o: UdpLinkOptions;
  private readonly cookieHi: number;
  private readonly cookieLo: number;
  private pendingInput: Buffer[] = [];
  // Send: datagrams are built in a slab. A socket that copies what it is given (the native one)
  // lets the link write over the slab again; node:dgram keeps views of them until they leave.
  private slab = Buffer.allocUnsafe(SLAB_BYTES);
  private dgStart = 0;
  private dgEnd = 0;
  private dgOpen = false;
  private dgRecords = 0;
  private flushQueued = false;
  private fragId = 0;
  private readonly fragStore = new FragStore();
  private nackTimer: NodeJS.Timeout | undefined;
  private readonly liveness: Liveness;
  private liveTimer: NodeJS.Timeout;
  /** The link's keys, renewed now and then (udp-rekey.ts: generation, rekey counters, start()). */
  readonly keys: LinkKeys;

  get keyGeneration(): number {
    return this.keys.generation;
  }
  private readonly tx: ReliableSender;
  private readonly rx: ReliableReceiver;
  private ackPending = false;
  private ackQueued = false;

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
    this.cookieHi = o.localCookie.readUInt32BE(0);
    this.cookieLo = o.localCookie.readUInt32BE(4);
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
    this.liveTimer = setTimeout(() => this.onLiveTimer(), this.liveness.wakeAt - now);
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
    this.announcePriority();
  }

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
  private shell(type: number, bodyBytes: number): Buffer {
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

  setHandler(events: LinkEvents): void {
    if (!this.attachHandler(events)) return;
    const pending = this.pendingInput;
    this.pendingInput = [];
    for (const frame of pending) {
      if (this.closed) break;
      this.deliver(frame);
    }
  }

  /** True when a link datagram (data, probe or close) is addressed to this link (its cookie). */
  matches(msg: Buffer): boolean {
    return msg.readUInt32BE(1) === this.cookieHi && msg.readUInt32BE(5) === this.cookieLo;
  }

  /** The priority the dialer gave this link in its CONFIRM. */
  get dialPriority(): number {
    return this.o.dialPriority;
  }

  /**
   * A RESET naming the peer's cookie (the peer no longer knows this link): the link closes at once
   * when it carries the peer's reset token, which only the peer can compute (from its node key: the
   * token survives its restart); anything else is counted and ignored.
   */
  receiveReset(msg: Buffer): void {
    if (
      this.closed ||
      msg.length < DATA_HEADER ||
      !this.o.remoteCookie.equals(msg.subarray(1, DATA_HEADER))
    ) {
      return;
    }
    const expected = this.o.resetCommitment;
    if (
      expected &&
      msg.length === RESET_BYTES &&
      timingSafeEqual(expected, resetCommitment(msg.subarray(DATA_HEADER)))
    ) {
      this.close("reset by peer (it no longer knows this link)", false);
    } else this.resetsRefused++;
  }

  /** The ACCEPT to say again for a repeated CONFIRM (listener links). */
  get acceptPacket(): Buffer | undefined {
    return this.o.acceptPacket;
  }

  /** True when `cookie` is this link's own cookie (a repeated handshake for this very link). */
  hasLocalCookie(cookie: Buffer): boolean {
    return cookie.readUInt32BE(0) === this.cookieHi && cookie.readUInt32BE(4) === this.cookieLo;
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

  /** A traffic frame over the datagram size leaves as equal fragments, one per datagram. */
  private sendFragments(frame: Uint8Array): void {
    const room = this.budget - DG_OVERHEAD - 3 - FRAG_HEADER;
    // At BASE_DATAGRAM a 65,535-byte frame takes 56 fragments, well under the u8 count.
    const count = Math.min(MAX_FRAGMENTS, Math.ceil(frame.length / room));
    const id = this.fragId;
    this.fragId = (id + 1) >>> 0;
    this.fragmentedOut++;
    this.fragStore.keep(id, frame, count);
    for (let i = 0; i < count; i++) this.appendFragment(frame, id, i, count);
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
  private receiveNack(msg: Buffer, len: number): void {
    for (let p = SEAL_BODY_AT; p + 5 <= len && !this.closed; p += 5) {
      const id = msg.readUInt32BE(p);
      const frame = this.fragStore.frame(id);
      const count = this.fragStore.count(id);
      if (!frame || msg[p + 4]! >= count) continue;
      this.fragmentsRepaired++;
      this.appendFragment(frame, id, msg[p + 4]!, count);
    }
  }

  /** Asks the peer for the fragments of frames that stopped making progress. */
  private onNackTimer(): void {
    this.nackTimer = undefined;
    if (this.closed) return;
    const nacks: Buffer[] = [];
    const envelope = { type: PKT_NACK, cookie: this.o.remoteCookie, head: SEAL_BODY_AT, tail: SEAL_TAG };
    const left = nackDatagrams(this.reassembly, Date.now(), this.nackWait(), envelope, nacks);
    for (const d of nacks) this.transmit(d);
    if (left) this.nackTimer = setTimeout(() => this.onNackTimer(), this.nackWait());
  }

  /** How long a frame may make no progress before its missing fragments are asked for. */
  private nackWait(): number {
    return this.tx.srtt > 0 ? Math.min(200, Math.max(5, 2 * this.tx.srtt + 4 * this.tx.rttvar)) : 30;
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

  private flushDatagram(): void {
    if (!this.dgOpen) return;
    this.dgOpen = false;
    this.dgEnd += SEAL_TAG;
    const out = this.slab.subarray(this.dgStart, this.dgEnd);
    this.dgStart = this.dgEnd;
    this.transmit(out);
  }

  /** Seals and sends `out` (type ‖ cookie ‖ counter space ‖ plaintext ‖ tag space). */
  private transmit(out: Buffer): void {
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
  private sendBare(type: number): void {
    this.flushDatagram();
    this.openDatagram(type);
    this.flushDatagram();
  }

  /** An ack that no outgoing datagram carried this turn of the event loop goes alone. */
  sendPendingAck(): void {
    this.ackQueued = false;
    if (!this.closed && this.ackPending) this.sendBare(PKT_DATA_ACK);
  }

  private queueAck(): void {
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
   * False (and counted) unless `msg` is authentic and new; opens it in place unless the socket did
   * (`opened`: UdpMessageHandler's).
   */
  private open(msg: Buffer, opened?: number): boolean {
    const r = this.keys.open(msg, opened);
    if (r === OPEN_OK) return true;
    if (r === OPEN_FORGED) this.forged++;
    else this.replayed++;
    return false;
  }

  /** A close datagram whose cookie matched: the link ends if it is authentic. */
  receiveClose(msg: Buffer, opened?: number): void {
    if (!this.closed && this.open(msg, opened)) this.close("closed by peer", false);
  }

  /**
   * A link datagram whose cookie matched; true when it was authentic. One that does not open is
   * dropped and counted (anyone on the path knows the cookie); malformed content in an authentic
   * one closes the link.
   */
  receive(msg: Buffer, fromIp?: string, fromPort?: number, opened?: number): boolean {
    if (this.closed || !this.open(msg, opened)) return false;
    if (msg[0] === PKT_OBSERVE) this.answerObserve(msg, fromIp ?? this.o.address, fromPort ?? this.o.port);
    else this.process(msg);
    return true;
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

  private answerObserve(msg: Buffer, ip: string, port: number): void {
    if (msg.length - SEAL_TAG < SEAL_BODY_AT + 4) return;
    const raw = ipBytes(ip);
    if (!raw) return;
    const out = this.shell(PKT_OBSERVED, 6 + raw.length);
    msg.copy(out, SEAL_BODY_AT, SEAL_BODY_AT, SEAL_BODY_AT + 4);
    out.writeUInt16BE(port, SEAL_BODY_AT + 4);
    raw.copy(out, SEAL_BODY_AT + 6);
    this.flushDatagram();
    this.transmit(out);
  }

  private receiveObserved(msg: Buffer, len: number): void {
    const n = len - SEAL_BODY_AT - 6;
    if (n !== 4 && n !== 16) return;
    const raw = msg.subarray(SEAL_BODY_AT + 6, len);
    const ip = ipText(raw);
    this.onObserved?.(msg.readUInt32BE(SEAL_BODY_AT), ip, msg.readUInt16BE(SEAL_BODY_AT + 4));
  }

  /** Where this link sends (a listener's link moves when its peer's address changes). */
  get peerAddress(): string {
    return this.o.address;
  }

  get peerPort(): number {
    return this.o.port;
  }

  /** The peer now speaks from here (an authentic datagram arrived from it). */
  moveTo(address: string, port: number): void {
    this.o.address = address;
    this.o.port = port;
  }

  private process(msg: Buffer): void {
    const len = msg.length - SEAL_TAG;
    this.bytesIn += msg.length;
    this.datagramsIn++;
    this.liveness.received(batchNow());
    const type = msg[0];
    let pos = SEAL_BODY_AT;
    if (type === PKT_MTU_PROBE || type === PKT_MTU_ACK) {
      this.receiveMtu(msg, len);
      return;
    }
    if (type === PKT_NACK) {
      this.receiveNack(msg, len);
      return;
    }
    if (type === PKT_OBSERVED) {
      this.receiveObserved(msg, len);
      return;
    }
    if (type === PKT_REKEY || type === PKT_REKEY_ACK) {
      this.keys.receive(type, msg, SEAL_BODY_AT, len);
      return;
    }
    if (type === PKT_DATA_ACK || type === PKT_PING) {
      if (len < DATA_HEADER + ACK_BLOCK) {
        this.close("malformed datagram (short ack)");
        return;
      }
      const bad = this.tx.onAck(msg.readUInt32BE(pos), msg.readUInt32BE(pos + 4), msg.readUInt32BE(pos + 8));
      if (bad) {
        this.close(bad);
        return;
      }
      pos += ACK_BLOCK;
      if (type === PKT_PING) this.queueAck();
    }
    while (pos < len && !this.closed) {
      if (len - pos < 3) {
        this.close("malformed datagram (truncated record)");
        return;
      }
      const kind = msg[pos]!;
      const flen = msg.readUInt16BE(pos + 1);
      pos += 3;
      const head = kind === REC_UNRELIABLE ? 0 : kind === REC_FRAGMENT ? FRAG_HEADER : 4;
      if (kind > REC_RELIABLE_MORE) {
        this.close(`malformed datagram (record kind ${kind})`);
        return;
      }
      if (flen === 0 || len - pos < flen + head) {
        this.close("malformed datagram (bad frame length)");
        return;
      }
      const body = msg.subarray(pos + head, pos + head + flen);
      if (kind === REC_UNRELIABLE) this.receiveTraffic(body);
      else if (kind === REC_FRAGMENT) this.receiveFragment(msg, pos, body);
      else {
        this.queueAck();
        const bad = this.rx.receive(msg.readUInt32BE(pos), body, kind === REC_RELIABLE_MORE);
        if (bad) this.close(bad);
      }
      pos += head + flen;
    }
  }

  private receiveTraffic(frame: Buffer): void {
    const type = frame[0];
    if (type !== 9 && type !== 10) this.close(`protocol frame type ${type} sent unreliably`);
    else this.deliver(frame);
  }

  private receiveFragment(msg: Buffer, at: number, body: Buffer): void {
    const r = this.reassembly;
    const id = msg.readUInt32BE(at);
    const got = r.add(id, msg[at + 4]!, msg[at + 5]!, msg.readUInt16BE(at + 6), body, batchNow());
    if (got === FRAG_MALFORMED) this.close("malformed datagram (bad fragment header)");
    else if (r.frame.length > 0) this.receiveTraffic(r.frame);
    if (!this.nackTimer && !this.closed && r.pending > 0) {
      this.nackTimer = setTimeout(() => this.onNackTimer(), this.nackWait());
    }
  }

  private receiveMtu(msg: Buffer, len: number): void {
    if (len < SEAL_BODY_AT + 4) return;
    const nonce = msg.readUInt32BE(SEAL_BODY_AT);
    if (msg[0] === PKT_MTU_ACK) {
      if (len >= SEAL_BODY_AT + 8) this.pmtu.onAck(nonce, msg.readUInt32BE(SEAL_BODY_AT + 4));
      return;
    }
    const ack = this.shell(PKT_MTU_ACK, 8);
    ack.writeUInt32BE(nonce, SEAL_BODY_AT);
    ack.writeUInt32BE(msg.length, SEAL_BODY_AT + 4);
    this.flushDatagram();
    this.transmit(ack);
  }

  private deliver(frame: Buffer): void {
    if (this.closed) return;
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

  private onLiveTimer(): void {
    if (this.closed) return;
    const now = Date.now();
    const act = this.liveness.check(now, this.tx.srtt, this.tx.rttvar);
    if (act === ACT_DEAD) {
      const silence = Math.round(this.liveness.deadline(this.tx.srtt, this.tx.rttvar));
      this.close(`no datagram received for ${silence} ms`);
      return;
    }
    // Both carry an ack block, so they also repair a lost ack.
    if (act === ACT_PROBE) this.sendBare(PKT_PING);
    else if (act === ACT_KEEPALIVE) this.sendBare(PKT_DATA_ACK);
    this.liveTimer = setTimeout(() => this.onLiveTimer(), this.liveness.wakeAt - now);
  }

  /** Closes the link; unless the peer closed it, tells the peer with a close datagram. */
  close(reason: string, notifyPeer = true): void {
    if (!this.markClosed(reason)) return;
    clearTimeout(this.liveTimer);
    this.keys.stop();
    this.tx.stop();
    clearTimeout(this.nackTimer);
    this.pmtu.stop();
    if (notifyPeer) {
      const bye = this.shell(PKT_CLOSE, 0);
      try {
        this.transmit(bye);
      } catch {
        // The socket is already closed.
      }
    }
    this.o.release();
    this.announceClosed(reason);
  }
}
