// One established UDP link: what it receives (sealed datagrams opened, records parsed, fragments
// reassembled and asked for again, the reliable channel's ordered frames, size probes answered,
// NAT traversal's OBSERVEs), liveness, RESET and close. What it sends, and the keys, the reliable
// channel and the size search both halves use, are in udp-link-send.ts (UdpLinkSender). The
// handshake, sockets and demultiplexing live in udp.ts, whose header describes the wire format.
import { timingSafeEqual } from "node:crypto";
import { ipBytes, ipText } from "../../util/ip-bytes.js";
import type { Link, LinkEvents } from "./link.js";
import { FRAG_HEADER, FRAG_MALFORMED, Reassembler, nackDatagrams } from "./udp-frag.js";
import { resetCommitment } from "./udp-handshake.js";
import { errnoName, udpIcmpHints } from "./udp-icmp-hints.js";
import { FRAG_DATAGRAM, type UdpLinkOptions, UdpLinkSender } from "./udp-link-send.js";
import { ACT_DEAD, ACT_DEAD_HINTED, ACT_KEEPALIVE, ACT_PROBE, batchNow } from "./udp-liveness.js";
import { udpRefusals } from "./udp-refusals.js";
import { ACK_BLOCK } from "./udp-reliable.js";
import { OPEN_FORGED, OPEN_OK, SEAL_BODY_AT, SEAL_TAG } from "./udp-seal.js";
import { openedCount } from "./udp-socket-types.js";
import {
  DATA_HEADER,
  PKT_CLOSE,
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
  REC_RELIABLE_MORE,
  REC_UNRELIABLE,
  RESET_BYTES,
} from "./udp-wire.js";

export { BASE_DATAGRAM, MAX_DATAGRAM } from "./udp-pmtu.js";
export * from "./udp-wire.js";
export type { UdpLinkOptions } from "./udp-link-send.js";

const MAX_PENDING_INPUT = 4096;

export class UdpLink extends UdpLinkSender implements Link {
  datagramsIn = 0;
  readonly reassembly = new Reassembler();
  /** Traffic frames the socket reassembled itself (a read held all their fragments, in order). */
  framesJoined = 0;
  /** Datagrams with this link's cookie that did not open (forged, corrupted, truncated). */
  forged = 0;
  /** Authentic datagrams seen before, or older than the replay window. */
  replayed = 0;
  /** RESETs naming this link without its reset token (forged, or from a peer that has none). */
  resetsRefused = 0;
  /** NAT traversal: an authentic answer to an OBSERVE this end sent (the source the peer saw). */
  onObserved: ((nonce: number, ip: string, port: number) => void) | undefined;
  /** Set for links opened by hole punching (getPeers shows it; idle ones are closed). */
  punched = false;
  /** ICMP errors that named the peer's address (unreachable()), and the errno of the last. */
  icmpHints = 0;
  private icmpErrno = 0;

  private readonly cookieHi: number;
  private readonly cookieLo: number;
  private pendingInput: Buffer[] = [];
  private nackTimer: NodeJS.Timeout | undefined;
  private liveTimer: NodeJS.Timeout;

  constructor(o: UdpLinkOptions) {
    const now = Date.now();
    super(o, now);
    this.cookieHi = o.localCookie.readUInt32BE(0);
    this.cookieLo = o.localCookie.readUInt32BE(4);
    this.liveTimer = setTimeout(() => this.onLiveTimer(), this.liveness.wakeAt - now);
    this.announcePriority();
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
    if (this.closed) return;
    if (msg.length < DATA_HEADER || !this.o.remoteCookie.equals(msg.subarray(1, DATA_HEADER))) {
      udpRefusals.strayDatagrams.cookie++;
      return;
    }
    const expected = this.o.resetCommitment;
    if (
      expected &&
      msg.length === RESET_BYTES &&
      timingSafeEqual(expected, resetCommitment(msg.subarray(DATA_HEADER)))
    ) {
      this.close("reset by peer (it no longer knows this link)", false);
    } else {
      this.resetsRefused++;
      udpRefusals.resetsRefused.receive++;
    }
  }

  /**
   * An ICMP error named the peer's address (the socket's error queue: udp-icmp-hints.ts). Anyone
   * on the path can forge one, so it only hints: the link probes now and gives the peer a short
   * deadline (Liveness.hint), which any authentic datagram ends.
   */
  unreachable(errno: number): void {
    if (this.closed) return;
    this.icmpHints++;
    this.icmpErrno = errno;
    const now = Date.now();
    if (!this.liveness.hint(now, this.tx.srtt, this.tx.rttvar)) return; // counted there
    udpIcmpHints.probed++;
    this.sendBare(PKT_PING);
    clearTimeout(this.liveTimer);
    this.liveTimer = setTimeout(() => this.onLiveTimer(), this.liveness.wakeAt - now);
  }

  /** The ACCEPT to say again for a repeated CONFIRM (listener links). */
  get acceptPacket(): Buffer | undefined {
    return this.o.acceptPacket;
  }

  /** True when `cookie` is this link's own cookie (a repeated handshake for this very link). */
  hasLocalCookie(cookie: Buffer): boolean {
    return cookie.readUInt32BE(0) === this.cookieHi && cookie.readUInt32BE(4) === this.cookieLo;
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

  /**
   * False (and counted) unless `msg` is authentic and new; opens it in place unless the socket did
   * (`opened`: UdpMessageHandler's).
   */
  private open(msg: Buffer, opened?: number): boolean {
    const r = this.keys.open(msg, opened);
    if (r === OPEN_OK) return true;
    if (r === OPEN_FORGED) {
      this.forged++;
      udpRefusals.datagramsRefused.forged++;
    } else {
      this.replayed++;
      udpRefusals.datagramsRefused.replayed++;
    }
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
    const joined = openedCount(opened);
    if (joined > 1) this.receiveJoined(msg, joined);
    else if (msg[0] === PKT_OBSERVE)
      this.answerObserve(msg, fromIp ?? this.o.address, fromPort ?? this.o.port);
    else this.process(msg);
    return true;
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

  /** A traffic frame the socket joined from `count` fragment datagrams (authentic and new). */
  private receiveJoined(msg: Buffer, count: number): void {
    const frame = msg.subarray(SEAL_BODY_AT, msg.length - SEAL_TAG);
    this.bytesIn += frame.length + count * FRAG_DATAGRAM;
    this.datagramsIn += count;
    this.liveness.received(batchNow());
    this.framesJoined++;
    this.receiveTraffic(frame);
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

  protected deliver(frame: Buffer): void {
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
    if (act === ACT_DEAD_HINTED) {
      const wait = Math.round(this.liveness.hintWindow(this.tx.srtt, this.tx.rttvar));
      udpIcmpHints.closed++;
      this.close(`no datagram received for ${wait} ms after an ICMP error (${errnoName(this.icmpErrno)})`);
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
