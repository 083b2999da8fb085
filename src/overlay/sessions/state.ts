// Per-remote session state of the encrypted layer (spec 6.5) and the two key operations on it.
import type { BoxBackend, BoxKeyPair } from "../../crypto/box.js";
import { u64 } from "./wire.js";

export const SESSION_TIMEOUT_MS = 60_000;
export const U64_MAX = (1n << 64n) - 1n;

export class Session {
  readonly key: Buffer;
  curve: Buffer | undefined;
  /** highest accepted init/ack seq */
  seq: bigint;
  remoteKeySeq = 0n;
  /** remoteKeySeq + 1 mod 2^64, kept so the receive path only compares */
  remoteKeySeqNext = 1n;
  current: Buffer;
  next: Buffer;
  localKeySeq = 0n;
  /** localKeySeq - 1 mod 2^64: the header value that means "to our recv key" */
  localKeySeqPrev = U64_MAX;
  recv: BoxKeyPair;
  send: BoxKeyPair;
  nextLocal: BoxKeyPair;
  recvShared!: Buffer;
  sendShared!: Buffer;
  // A Go peer keeps sending under our "next" view for up to a minute after a throttled ratchet;
  // caching these saves a DH per packet. Cleared whenever any key changes (fixShared).
  nextSendShared: Buffer | undefined;
  nextRecvShared: Buffer | undefined;
  recvNonce = 0n;
  sendNonce = 0n;
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

  setRemoteKeySeq(v: bigint): void {
    this.remoteKeySeq = v;
    this.remoteKeySeqNext = u64(v + 1n);
  }

  localRotate(fresh: () => BoxKeyPair): void {
    this.recv = this.send;
    this.send = this.nextLocal;
    this.nextLocal = fresh();
    this.localKeySeq = u64(this.localKeySeq + 1n);
    this.localKeySeqPrev = u64(this.localKeySeq - 1n);
  }

  fixShared(box: BoxBackend, recvNonce: bigint, sendNonce: bigint): void {
    this.recvShared = box.before(this.current, this.recv.secretKey);
    this.sendShared = box.before(this.current, this.send.secretKey);
    this.nextSendShared = undefined;
    this.nextRecvShared = undefined;
    this.recvNonce = recvNonce;
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
