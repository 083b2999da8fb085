// Hole punching (NAT traversal): the dialer half of the udp:// handshake run from a listener's own
// socket, so the datagrams leave through the NAT mapping that the node announced as its candidate.
// The INIT is the punch: it is resent every `intervalMs` until the deadline, and each one it sends
// also opens this side's NAT for the peer's answers. The other side (udp.ts's listener) answers
// statelessly as to any dialer, once its own punches (PUNCH_BYTES datagrams, which every udp://
// receiver ignores as too short) opened its NAT towards us.
import { randomBytes } from "node:crypto";
import { encodeMetadata } from "./stream.js";
import { answersDial, provenAccept } from "./udp-dial-answers.js";
import { type Signer, challengeKey, confirmPacket, handshakePacket } from "./udp-handshake.js";
import { udpRefusals } from "./udp-refusals.js";
import { randomEphemeral } from "./udp-seal.js";
import { PKT_ACCEPT, PKT_CHALLENGE, PKT_INIT } from "./udp-wire.js";

/** A punch that only opens a mapping: shorter than any udp:// datagram, so receivers drop it. */
export const PUNCH_BYTES = Buffer.from([0]);

export interface PunchDialOptions {
  localKey: Buffer;
  sign: Signer;
  /** The key the signalling said is there: anything else is refused. */
  expectKey: Buffer;
  /**
   * The commitment to this end's reset token for a dialer cookie (the listener socket's secret, so
   * a restarted node back on that socket can prove a RESET to the peer, which answered the punch).
   */
  resetCommitment(dialerCookie: Buffer): Buffer;
  /** The socket's life tag: the dialer cookie's first two bytes (udp-listener.ts lifeTag). */
  cookieTag: Buffer;
  intervalMs: number;
  timeoutMs: number;
  send(packet: Buffer): void;
  /** The handshake proved the key: build the link (the listener registers it under its cookie). */
  up(
    keys: { d2l: Buffer; l2d: Buffer; resetToken: Buffer },
    dialerCookie: Buffer,
    listenerCookie: Buffer,
  ): void;
  fail(reason: string): void;
}

export class PunchDial {
  readonly dialerCookie: Buffer;
  private readonly o: PunchDialOptions;
  private readonly eph = randomEphemeral();
  private readonly init: Buffer;
  private confirm: Buffer | undefined;
  private listenerCookie: Buffer | undefined;
  private readonly retry: NodeJS.Timeout;
  private readonly deadline: NodeJS.Timeout;
  private settled = false;
  /** True once the peer answered: the hole is open both ways. */
  answered = false;

  constructor(o: PunchDialOptions) {
    this.o = o;
    this.dialerCookie = randomBytes(8);
    o.cookieTag.copy(this.dialerCookie, 0);
    const meta = encodeMetadata(o.localKey);
    this.init = handshakePacket(PKT_INIT, this.dialerCookie, Buffer.alloc(8), meta, this.eph.publicKey);
    this.retry = setInterval(() => this.hello(), o.intervalMs);
    this.deadline = setTimeout(() => this.cancel("no answer to the punches"), o.timeoutMs);
    this.hello();
  }

  private hello(): void {
    if (!this.settled) this.o.send(this.confirm ?? this.init);
  }

  cancel(reason: string): void {
    if (this.settled) return;
    this.settled = true;
    clearInterval(this.retry);
    clearTimeout(this.deadline);
    this.o.fail(reason);
  }

  /** A handshake datagram from the address this dial punches towards. */
  onMessage(msg: Buffer): void {
    if (this.settled || !answersDial(msg, this.dialerCookie, this.listenerCookie !== undefined)) return;
    const type = msg[0];
    if (type === PKT_CHALLENGE) {
      if (this.listenerCookie) return; // the answer to a repeated INIT
      const key = challengeKey(msg);
      if (!key?.equals(this.o.expectKey)) {
        // Not the node the signalling named: keep punching.
        udpRefusals.dialAnswersRefused[key ? "not_allowed" : "malformed"]++;
        return;
      }
      this.answered = true;
      this.listenerCookie = Buffer.from(msg.subarray(9, 17));
      const meta = encodeMetadata(this.o.localKey);
      this.confirm = confirmPacket(
        this.dialerCookie,
        this.listenerCookie,
        meta,
        this.o.localKey,
        key,
        this.eph,
        this.o.sign,
        0,
        this.o.resetCommitment(this.dialerCookie),
      );
      this.hello();
    } else if (type === PKT_ACCEPT) {
      const keys = provenAccept(msg, this.listenerCookie!, this.o.expectKey, this.o.localKey, this.eph);
      if (!keys) return; // forged or corrupted: keep waiting for the real one
      this.settled = true;
      clearInterval(this.retry);
      clearTimeout(this.deadline);
      this.o.up(keys, this.dialerCookie, this.listenerCookie!);
    } else {
      this.cancel("refused by the peer");
    }
  }
}
