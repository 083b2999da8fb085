// A udp:// link's keys and their periodic renewal (udp.ts's header has the wire format).
//
// Every datagram's counter field carries a key phase in its top bit (counters stay under 2^48, so
// the bit is free and, being part of the nonce, authenticated): the receiver picks the key by the
// bit, as QUIC does, and never tries two keys on one datagram. A rekey is an exchange sealed under
// the current keys, each side contributing a fresh X25519 key:
//   REKEY      initiator → responder: generation u32 ‖ initiator's fresh X25519 key
//   REKEY ACK  responder → initiator: generation u32 ‖ responder's fresh X25519 key
// Both derive the next keys as the handshake does (sessionKeys: X25519 then HKDF), over a context of
// both cookies, the generation, both fresh keys and a hash of the current keys. The responder
// installs the new receive key with its answer and keeps sending under the old one until the first
// datagram under the new key arrives; the initiator switches both on the answer and sends at once.
// The old receive key stays for graceMs after the peer is known to have switched, so nothing in
// flight is lost. A lost REKEY is sent again (bounded tries, then a later attempt); a lost answer
// is repeated when the REKEY is. If both ends start at once, the dialer's exchange wins.
// Triggered by time (afterMs, jittered down by up to 15 %) or by datagrams sent, whichever first.
import { createHash } from "node:crypto";
import {
  type Ephemeral,
  OPEN_FORGED,
  OPEN_OK,
  Opener,
  Sealer,
  randomEphemeral,
  sessionKeys,
  transcript,
} from "./udp-seal.js";
import type { FragmentRun, SealKeys } from "./udp-socket-types.js";
import { PKT_REKEY, PKT_REKEY_ACK } from "./udp-wire.js";

/** generation u32 ‖ X25519 public key. */
export const REKEY_BODY = 4 + 32;
export interface RekeyOptions {
  /** Renew the keys after this long (each end jitters its own timer down by up to 15 %). */
  afterMs: number;
  /** …or once this end sealed this many datagrams under the current key. */
  afterDatagrams: number;
  /** How long the previous receive key stays once the peer sends under the new one. */
  graceMs: number;
}
export const DEFAULT_REKEY: RekeyOptions = { afterMs: 120_000, afterDatagrams: 2 ** 30, graceMs: 5000 };
const MAX_TRIES = 8;
/** After an exchange that got no answer in MAX_TRIES sends. */
const RETRY_LATER_MS = 10_000;

const IDLE = 0;
const INITIATED = 1;
const ANSWERED = 2;

export interface RekeyHost {
  readonly outbound: boolean;
  readonly dialerCookie: Buffer;
  readonly listenerCookie: Buffer;
  /** Sends a sealed REKEY or REKEY ACK carrying `body` (REKEY_BODY bytes). */
  sendRekey(type: number, body: Buffer): void;
  /** Sends something under the new key at once (the responder switches when it arrives). */
  kick(): void;
  /** Smoothed RTT in ms (0 = unknown), for the resend interval. */
  srtt(): number;
  /** The link socket's key table when it seals on its own (udp-socket.ts). */
  readonly sealKeys?: SealKeys;
}

type Keys = { tx: Buffer; rx: Buffer };

function chainOf(outbound: boolean, k: Keys): Buffer {
  const [d2l, l2d] = outbound ? [k.tx, k.rx] : [k.rx, k.tx];
  return createHash("sha256").update(d2l).update(l2d).digest();
}

function startTick(keys: LinkKeys): void {
  keys.start();
}

export class LinkKeys {
  /** Key generation in use for sending (0: the handshake's). */
  generation = 0;
  /** Completed rekeys, REKEYs sent again, and exchanges given up after MAX_TRIES. */
  rekeys = 0;
  rekeyResends = 0;
  rekeysAbandoned = 0;
  private readonly host: RekeyHost;
  private readonly o: RekeyOptions;
  private sealer: Sealer;
  private readonly openers: Array<Opener | undefined> = [undefined, undefined];
  private chain: Buffer;
  private state = IDLE;
  /** Initiator: our fresh key for the exchange under way. */
  private eph: Ephemeral | undefined;
  /** Responder: the initiator's key we answered, our answer, and the keys it gives. */
  private answeredKey: Buffer | undefined;
  private answer: Buffer | undefined;
  private next: Keys | undefined;
  private tries = 0;
  /** Initiator, after switching: the peer still sends under the old key until it sees the new. */
  private awaitingPeer = false;
  private timer: NodeJS.Timeout | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  /** The datagram count starts one exchange per key; a failed one is retried by time. */
  private countArmed = true;
  private stopped = false;

  constructor(host: RekeyHost, keys: Keys, o: RekeyOptions) {
    this.host = host;
    this.o = o;
    this.sealer = new Sealer(keys.tx, 0, host.sealKeys);
    this.openers[0] = this.opener(keys.rx, 0);
    this.chain = chainOf(host.outbound, keys);
    this.arm(this.jittered());
  }

  get exhausted(): boolean {
    return this.sealer.exhausted;
  }

  /** Datagrams this end sealed under its current key (the count trigger compares it). */
  get sealed(): number {
    return this.sealer.sent;
  }

  /** Tests only (Sealer.testOnlySkipTo): the current key's counter continues from `n`. */
  testOnlySkipTo(n: number): void {
    this.sealer.testOnlySkipTo(n);
  }

  /**
   * Seals `d` under the current key (Sealer.seal: -1 when sealed in place, else the link socket's
   * key slot to send it with); starts a rekey once the datagram count is reached.
   */
  seal(d: Buffer): number {
    const slot = this.sealer.seal(d);
    this.counted();
    return slot;
  }

  /** Counters for run.count datagrams the link socket seals (Sealer.reserve); counted like seal(). */
  reserve(run: FragmentRun): boolean {
    if (!this.sealer.reserve(run)) return false;
    this.counted();
    return true;
  }

  /** Seals `d` in place, for a datagram another socket sends. */
  sealHere(d: Buffer): void {
    this.sealer.sealHere(d);
    this.counted();
  }

  private counted(): void {
    if (this.countArmed && this.sealer.sent >= this.o.afterDatagrams) {
      this.countArmed = false;
      setImmediate(startTick, this);
    }
  }

  /**
   * Opens `d` in place with the key its phase bit names (or takes the socket's verdict, `opened`:
   * Opener.open): OPEN_OK, OPEN_FORGED or OPEN_REPLAYED.
   */
  open(d: Buffer, opened?: number): number {
    if (d.length < 10) return OPEN_FORGED;
    const phase = d[9]! >>> 7;
    const opener = this.openers[phase];
    if (!opener) return OPEN_FORGED;
    const r = opener.open(d, opened);
    if (r !== OPEN_OK) return r;
    if (phase !== (this.generation & 1)) {
      // The other phase is the next key (responder, waiting) or the old one (in its grace time).
      if (this.state === ANSWERED) this.confirm();
    } else if (this.awaitingPeer) {
      this.awaitingPeer = false;
      this.armGrace();
    }
    return OPEN_OK;
  }

  /** An authentic REKEY or REKEY ACK: `d` opened, its body at `at`, `end` before the tag. */
  receive(type: number, d: Buffer, at: number, end: number): void {
    if (this.stopped || end - at !== REKEY_BODY) return;
    const gen = d.readUInt32BE(at);
    if (gen !== this.generation + 1) return; // stale (already switched) or not ours to take
    const theirs = d.subarray(at + 4, at + REKEY_BODY);
    if (type === PKT_REKEY) this.onRekey(gen, theirs);
    else if (type === PKT_REKEY_ACK) this.onAnswer(gen, theirs);
  }

  /** Starts an exchange now (the timers and the datagram count call it). */
  start(): void {
    if (this.stopped || this.state !== IDLE) return;
    if (this.awaitingPeer || this.graceTimer) {
      // The last switch is not settled yet: its old key is still in use.
      this.arm(this.o.graceMs);
      return;
    }
    this.state = INITIATED;
    this.eph = randomEphemeral();
    this.tries = 0;
    this.sendRekey();
  }

  stop(): void {
    this.stopped = true;
    this.sealer.release();
    for (const o of this.openers) o?.release();
    clearTimeout(this.timer);
    clearTimeout(this.graceTimer);
  }

  private sendRekey(): void {
    if (this.stopped || this.state !== INITIATED) return;
    if (this.tries >= MAX_TRIES) {
      this.rekeysAbandoned++;
      this.state = IDLE;
      this.eph = undefined;
      this.arm(RETRY_LATER_MS);
      return;
    }
    if (this.tries > 0) this.rekeyResends++;
    this.tries++;
    this.host.sendRekey(PKT_REKEY, this.body(this.generation + 1, this.eph!.publicKey));
    const srtt = this.host.srtt();
    this.arm(srtt > 0 ? Math.min(1000, Math.max(100, 3 * srtt)) : 500, () => this.sendRekey());
  }

  private onRekey(gen: number, theirs: Buffer): void {
    if (this.state === INITIATED) {
      if (this.host.outbound) return; // both started: the dialer's exchange wins, the peer answers it
      this.state = IDLE;
      this.eph = undefined;
    }
    if (this.state === ANSWERED && this.answeredKey!.equals(theirs)) {
      this.host.sendRekey(PKT_REKEY_ACK, this.answer!); // our answer was lost
      return;
    }
    const mine = randomEphemeral();
    const keys = this.derive(gen, theirs, mine.publicKey, mine, theirs);
    if (!keys) return;
    // The slot held the key before the current one: the initiator started only after its own
    // grace time, so nothing it sealed under that key is still on the way.
    clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    this.setOpener(gen & 1, keys.rx);
    this.next = keys;
    this.answeredKey = Buffer.from(theirs);
    this.answer = this.body(gen, mine.publicKey);
    this.state = ANSWERED;
    clearTimeout(this.timer);
    this.host.sendRekey(PKT_REKEY_ACK, this.answer);
  }

  private onAnswer(gen: number, theirs: Buffer): void {
    if (this.state !== INITIATED) return;
    const mine = this.eph!;
    const keys = this.derive(gen, mine.publicKey, theirs, mine, theirs);
    if (!keys) return;
    this.setOpener(gen & 1, keys.rx);
    this.switchTo(gen, keys);
    this.awaitingPeer = true;
    this.host.kick();
  }

  /** Responder: the initiator sent under the new key, so it has it: send under it too. */
  private confirm(): void {
    this.switchTo(this.generation + 1, this.next!);
    this.armGrace();
  }

  private switchTo(gen: number, keys: Keys): void {
    this.sealer.release();
    this.sealer = new Sealer(keys.tx, gen & 1, this.host.sealKeys);
    this.generation = gen;
    this.chain = chainOf(this.host.outbound, keys);
    this.state = IDLE;
    this.eph = undefined;
    this.next = undefined;
    this.answeredKey = undefined;
    this.answer = undefined;
    this.rekeys++;
    this.countArmed = true;
    this.arm(this.jittered());
  }

  /** Both ends send under the new key now: the old receive key goes after the grace time. */
  private armGrace(): void {
    clearTimeout(this.graceTimer);
    const slot = (this.generation + 1) & 1;
    const old = this.openers[slot];
    this.graceTimer = setTimeout(() => {
      this.graceTimer = undefined;
      if (this.openers[slot] === old) {
        old?.release();
        this.openers[slot] = undefined;
      }
    }, this.o.graceMs);
  }

  /** The receive key for datagrams of this phase; the socket opens them when it can. */
  private opener(rx: Buffer, phase: number): Opener {
    const h = this.host;
    return new Opener(rx, h.sealKeys, h.outbound ? h.dialerCookie : h.listenerCookie, phase);
  }

  /** Replaces the phase's key: the old one's socket slot goes first, so one key per cookie and phase. */
  private setOpener(phase: number, rx: Buffer): void {
    this.openers[phase]?.release();
    this.openers[phase] = this.opener(rx, phase);
  }

  private derive(gen: number, initKey: Buffer, respKey: Buffer, mine: Ephemeral, theirs: Buffer) {
    const g = Buffer.alloc(4);
    g.writeUInt32BE(gen);
    const h = this.host;
    const context = transcript("rekey", [h.dialerCookie, h.listenerCookie, g, initKey, respKey, this.chain]);
    const k = sessionKeys(mine, theirs, context);
    if (!k) return undefined;
    return h.outbound ? { tx: k.d2l, rx: k.l2d } : { tx: k.l2d, rx: k.d2l };
  }

  private body(gen: number, key: Buffer): Buffer {
    const b = Buffer.alloc(REKEY_BODY);
    b.writeUInt32BE(gen);
    key.copy(b, 4);
    return b;
  }

  private jittered(): number {
    return this.o.afterMs * (0.85 + 0.15 * Math.random());
  }

  private arm(ms: number, fn: () => void = () => this.start()): void {
    clearTimeout(this.timer);
    if (!this.stopped) this.timer = setTimeout(fn, ms);
  }
}
