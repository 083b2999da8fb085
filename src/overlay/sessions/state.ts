// Per-remote session state of the encrypted layer (spec 6.5) and the two key operations on it.
import type { BoxBackend, BoxKeyPair } from "../../crypto/box.js";
import { ReplayWindow } from "./replay.js";
import { type U64, decU64, incU64, u64 } from "./wire.js";

export const SESSION_TIMEOUT_MS = 60_000;
export const U64_MAX = (1n << 64n) - 1n;

function newWindow(): ReplayWindow {
  const w = new ReplayWindow();
  w.reset(0);
  return w;
}

export class Session {
  readonly key: Buffer;
  curve: Buffer | undefined;
  /** highest accepted init/ack seq */
  seq: bigint;
  remoteKeySeq: U64 = 0;
  /** remoteKeySeq + 1 mod 2^64, kept so the receive path only compares */
  remoteKeySeqNext: U64 = 1;
  current: Buffer;
  next: Buffer;
  localKeySeq: U64 = 0;
  /** localKeySeq - 1 mod 2^64: the header value that means "to our recv key" */
  localKeySeqPrev: U64 = U64_MAX;
  recv: BoxKeyPair;
  send: BoxKeyPair;
  nextLocal: BoxKeyPair;
  recvShared!: Buffer;
  sendShared!: Buffer;
  // A Go peer keeps sending under our "next" view for up to a minute after a throttled ratchet;
  // caching these saves a DH per packet. Cleared whenever any key changes (fixShared).
  nextSendShared: Buffer | undefined;
  nextRecvShared: Buffer | undefined;
  // ChaCha20-Poly1305 keys derived from the four shared keys above (sessions/aead.ts), made on first
  // use and cleared with them.
  sendAeadKey: Buffer | undefined;
  recvAeadKey: Buffer | undefined;
  nextSendAeadKey: Buffer | undefined;
  nextRecvAeadKey: Buffer | undefined;
  /** The remote announced it opens TRAFFIC_AEAD on this instance of the session: we seal with it. */
  peerOpensAead = false;
  /** When we last heard that announcement (it lapses after PEER_ANNOUNCE_TTL_MS: sessions/aead.ts). */
  peerAnnouncedAt = Number.NEGATIVE_INFINITY;
  /** When we last announced our cipher on it (-Infinity: at the next message). */
  announcedAt = Number.NEGATIVE_INFINITY;
  /** The last traffic we opened was TRAFFIC_AEAD (getSessions). */
  lastInAead = false;
  recvNonce: U64 = 0;
  sendNonce: U64 = 0;
  /** Counters opened under recvShared; reset with the keys. */
  readonly recvWindow = new ReplayWindow();
  /** The same for the two "next" cases, made on first use (a ratchet in flight). */
  nextSendWindow: ReplayWindow | undefined;
  nextRecvWindow: ReplayWindow | undefined;
  /**
   * Authenticated traffic went through it, or our side sent on it: the state a flood of fresh
   * inits must never displace (spec-conformant strangers only ever get unproven sessions).
   */
  proven = false;
  /** When we last answered this session with an init (decrypt failures answer at most this often). */
  lastInitSent = Number.NEGATIVE_INFINITY;
  /** When we last acked an init (a repeated init is acked again at most this often). */
  lastAckSent = Number.NEGATIVE_INFINITY;
  rotated = Number.NEGATIVE_INFINITY;
  readonly since: number;
  rx = 0;
  tx = 0;
  expires: number;

  constructor(
    key: Buffer,
    init: { current: Buffer; next: Buffer; seq: bigint },
    fresh: () => BoxKeyPair,
    now: number,
  ) {
    this.key = key;
    this.seq = u64(init.seq - 1n);
    this.current = Buffer.from(init.current);
    this.next = Buffer.from(init.next);
    this.recv = fresh();
    this.send = fresh();
    this.nextLocal = fresh();
    this.since = now;
    this.expires = now + SESSION_TIMEOUT_MS;
  }

  /**
   * The receive case (spec 6.6) of traffic whose header carries these key seqs: 0 current keys,
   * 1 the remote ratcheted (to our send key), 2 it ratcheted early (to our recv key), -1 none.
   */
  receiveCase(remoteKeySeq: U64, localKeySeq: U64): -1 | 0 | 1 | 2 {
    if (remoteKeySeq === this.remoteKeySeq && localKeySeq === this.localKeySeqPrev) return 0;
    if (remoteKeySeq === this.remoteKeySeqNext && localKeySeq === this.localKeySeq) return 1;
    if (remoteKeySeq === this.remoteKeySeqNext && localKeySeq === this.localKeySeqPrev) return 2;
    return -1;
  }

  /** The shared box key of a receive case; the two "next" ones are computed on first use. */
  sharedFor(which: 0 | 1 | 2, box: BoxBackend): Buffer {
    if (which === 0) return this.recvShared;
    if (which === 1) {
      this.nextSendShared ??= box.before(this.next, this.send.secretKey);
      return this.nextSendShared;
    }
    this.nextRecvShared ??= box.before(this.next, this.recv.secretKey);
    return this.nextRecvShared;
  }

  /** The replay window of a receive case; the two "next" ones are made on first use. */
  windowFor(which: 0 | 1 | 2): ReplayWindow {
    if (which === 0) return this.recvWindow;
    if (which === 1) {
      this.nextSendWindow ??= newWindow();
      return this.nextSendWindow;
    }
    this.nextRecvWindow ??= newWindow();
    return this.nextRecvWindow;
  }

  setRemoteKeySeq(v: U64): void {
    this.remoteKeySeq = v;
    this.remoteKeySeqNext = incU64(v);
  }

  localRotate(fresh: () => BoxKeyPair): void {
    this.recv = this.send;
    this.send = this.nextLocal;
    this.nextLocal = fresh();
    this.localKeySeq = incU64(this.localKeySeq);
    this.localKeySeqPrev = decU64(this.localKeySeq);
  }

  fixShared(box: BoxBackend, recvNonce: U64, sendNonce: U64): void {
    this.recvShared = box.before(this.current, this.recv.secretKey);
    this.sendShared = box.before(this.current, this.send.secretKey);
    this.nextSendShared = undefined;
    this.nextRecvShared = undefined;
    this.sendAeadKey = undefined;
    this.recvAeadKey = undefined;
    this.nextSendAeadKey = undefined;
    this.nextRecvAeadKey = undefined;
    this.nextSendWindow = undefined;
    this.nextRecvWindow = undefined;
    this.recvNonce = recvNonce;
    this.recvWindow.reset(recvNonce);
    this.sendNonce = sendNonce;
  }
}

export interface PendingBuffer {
  data: Buffer;
  current: BoxKeyPair;
  next: BoxKeyPair;
  /** the init, built once per buffer and re-sent on every write (fresh ephemeral each time) */
  initSeq: bigint;
  expires: number;
}
