// End-to-end sessions exactly as ironwood's `encrypted` layer in Yggdrasil 0.4.7 (spec 6):
// init/ack handshakes, a key ratchet throttled to once a minute, and the three decryption cases.
// Sans-I/O: time comes in as `now` (ms since the epoch); output goes through SessionOutput.
import { randomBytes } from "node:crypto";
import type { BoxBackend, BoxKeyPair } from "../crypto/box.js";
import { type Identity, curveFromEd } from "../crypto/identity.js";
import type { SessionAead } from "../crypto/session-aead.js";
import { TokenBucket } from "../util/token-bucket.js";
import {
  ANNOUNCE_BODY,
  ANNOUNCE_MS,
  type CipherName,
  PEER_ANNOUNCE_TTL_MS,
  announcesChacha,
  isAnnounce,
  openTraffic,
  recvAeadKey,
  sealTraffic,
  sendAeadKey,
} from "./sessions/aead.js";
import type { SessionOptions, SessionOutput, SessionSummary } from "./sessions/api.js";
import { ReplayVerdict } from "./sessions/replay.js";
import { type PendingBuffer, SESSION_TIMEOUT_MS, Session } from "./sessions/state.js";
import { type SessionStats, newSessionStats } from "./sessions/stats.js";
import { SessionTable, mapKey } from "./sessions/table.js";
import {
  SessionType,
  TRAFFIC_MAX_OVERHEAD,
  TRAFFIC_MIN_BYTES,
  type U64,
  incU64,
  nonceFor,
  openInit,
  putUvarint,
  readUvarint,
  sameKey,
  sealInit,
  toU64,
  uvarintBytes,
  uvarintResult,
} from "./sessions/wire.js";

export { SESSION_TIMEOUT_MS, type SessionStats };
export type { SessionOptions, SessionOutput, SessionSummary } from "./sessions/api.js";

/**
 * Sessions kept at most. A session costs about 2.5 KB of heap and 5 KB of RSS (keys, shared secrets,
 * replay window: 10,000 sessions made from inits, measured); 16,384 stay near 80 MB, and a public node
 * rarely talks to more than a few thousand keys a minute.
 */
export const MAX_SESSIONS = 16_384;
/**
 * A link may ask us to create this many sessions per second (burst twice that): see newSessionBudget.
 * Opening an init and answering it costs about 0.4-0.8 ms of CPU here, so one flooding link gets at
 * most a few percent of a core, and all links together (the global 250/s) a fifth.
 */
export const NEW_SESSIONS_PER_LINK = 50;
/** Answers (inits) to traffic that did not open, per session: one per this many ms. */
const ANSWER_INTERVAL_MS = 500;

/** The per-link budget for handshakes that create state; the driver keeps one per link. */
export function newSessionBudget(): TokenBucket {
  return new TokenBucket(NEW_SESSIONS_PER_LINK, 2 * NEW_SESSIONS_PER_LINK);
}

/** Largest application message (spec 5.9: 53129 - 79). */
export const SESSION_MTU = 53050;
const RATCHET_INTERVAL_MS = 60_000;
const KEY_BYTES = 32;
const TAG_BYTES = 16;
/** `prefix` value meaning none: send the message as given. */
const NO_PREFIX = -1;
/**
 * What send's inPlace needs free around the message: before it the prefix byte, the next key, the
 * box tag and the traffic header (TRAFFIC_MAX_OVERHEAD), after it the AEAD tag.
 */
export const SEAL_HEADROOM = TRAFFIC_MAX_OVERHEAD + 1;
export const SEAL_TAILROOM = TAG_BYTES;

function unixSeconds(now: number): bigint {
  return BigInt(Math.floor(now / 1000));
}

export class Sessions {
  readonly mtu = SESSION_MTU;
  private readonly table: SessionTable;
  private readonly fresh: () => BoxKeyPair;
  private readonly aead: SessionAead | undefined;
  private readonly nonce = Buffer.alloc(24);
  private readonly sendBuf = Buffer.alloc(TRAFFIC_MAX_OVERHEAD + SESSION_MTU);
  private readonly recvBuf = Buffer.alloc(TRAFFIC_MAX_OVERHEAD + SESSION_MTU);
  /** A view of the whole buffer the last inPlace message lay in (a TUN's read buffer: one for good). */
  private inPlaceBuf: Buffer = Buffer.alloc(0);
  // Output callbacks may call back into us (a reply sent from inside deliver, a session to
  // ourselves); nested calls then use fresh buffers instead of overwriting the outer one.
  private sendDepth = 0;
  private deliverDepth = 0;
  private readonly counters: SessionStats = newSessionStats();

  constructor(
    private readonly identity: Identity,
    private readonly out: SessionOutput,
    private readonly box: BoxBackend,
    options: SessionOptions = {},
  ) {
    this.fresh = options.keyPair ?? (() => box.keyPair());
    this.aead = options.aead;
    this.table = new SessionTable(
      options.maxSessions ?? MAX_SESSIONS,
      options.maxPendingBytes ?? 4 << 20,
      options.newSessionsPerSecond ?? 250,
      this.counters,
    );
  }

  /**
   * Encrypts `message` for `dest`, or buffers it (latest only) and sends an init. False if too large.
   * A `prefix` byte (0-255) is sent in front of `message` as part of it, so a caller adding a type
   * byte needs no copy of its own. inPlace: `message` has SEAL_HEADROOM free bytes before it and
   * SEAL_TAILROOM after it in its buffer, none of them (nor the message) wanted back, all unchanged
   * until the event loop turns (a TUN read: TunDevice.readRoom); it is sealed there, not copied,
   * and links may send it from there.
   */
  send(dest: Buffer, message: Uint8Array, now: number, prefix = NO_PREFIX, inPlace = false): boolean {
    if (message.length + (prefix === NO_PREFIX ? 0 : 1) > SESSION_MTU) {
      this.counters.oversizeDropped++;
      return false;
    }
    let session = this.table.lastSent;
    if (session === undefined || !sameKey(dest, session.key)) {
      const k = mapKey(dest);
      session = this.table.sessions.get(k);
      if (!session) {
        this.bufferAndInit(k, dest, message, now, prefix);
        return true;
      }
      this.table.lastSent = session;
    }
    this.sendOn(session, message, now, prefix, inPlace);
    return true;
  }

  /**
   * A kind-1 payload that the router delivered to us from `source`. `via` is the budget of the link
   * it came in on (newSessionBudget()); none for our own loopback traffic.
   */
  handle(source: Buffer, payload: Buffer, now: number, via?: TokenBucket): void {
    if (payload.length === 0) return;
    switch (payload[0]) {
      case SessionType.Traffic:
        this.handleTraffic(source, payload, now, via);
        return;
      case SessionType.TrafficAead:
        // Only a node that announced it gets this type; without the cipher we ignore it as Go does.
        if (this.aead !== undefined) this.handleTraffic(source, payload, now, via);
        return;
      case SessionType.Init:
      case SessionType.Ack: {
        // Opening a handshake costs two DHs and a signature check: from a key we hold no state for
        // (and did not ask), it must fit the budgets first, so a flood costs a map lookup each.
        const k = mapKey(source);
        const t = this.table;
        if (!t.sessions.has(k) && !t.buffers.has(k) && !t.mayCreate(source, now, via)) {
          this.counters.initsRateLimited++;
          return;
        }
        const init = openInit(payload, source, this.identity.curvePrivate, this.box);
        if (!init) {
          this.counters.handshakeFailures++;
          return;
        }
        if (payload[0] === SessionType.Init) {
          this.counters.initsReceived++;
          this.handleInit(source, init, now);
        } else {
          this.counters.acksReceived++;
          this.handleAck(source, init, now);
        }
        return;
      }
      default:
        return; // dummy and unknown types are ignored
    }
  }

  nextTimeout(): number | undefined {
    return this.table.nextTimeout();
  }

  /** Drops sessions and buffers idle for 60 s. */
  handleTimeout(now: number): void {
    this.table.sweep(now);
  }

  list(): SessionSummary[] {
    return [...this.table.sessions.values()].map((s) => ({
      key: Buffer.from(s.key),
      bytesIn: s.rx,
      bytesOut: s.tx,
      since: s.since,
      cipherOut: s.peerOpensAead ? "chacha20-poly1305" : "box",
      cipherIn: s.lastInAead ? "chacha20-poly1305" : "box",
    }));
  }

  has(key: Uint8Array): boolean {
    return this.table.sessions.has(mapKey(key));
  }

  stats(): SessionStats & { sessions: number; unproven: number; buffers: number; pendingBytes: number } {
    return {
      ...this.counters,
      sessions: this.table.sessions.size,
      unproven: this.table.unproven.size,
      buffers: this.table.buffers.size,
      pendingBytes: this.table.pendingBytes,
    };
  }

  private sendOn(s: Session, message: Uint8Array, now: number, prefix = NO_PREFIX, inPlace = false): void {
    if (this.aead !== undefined && now - s.announcedAt >= ANNOUNCE_MS) this.announce(s, now);
    if (!s.proven) this.table.prove(s);
    s.sendNonce = incU64(s.sendNonce);
    if (s.sendNonce === 0) {
      s.localRotate(this.fresh);
      s.fixShared(this.box, 0, 0);
    }
    if (s.peerOpensAead && now - s.peerAnnouncedAt >= PEER_ANNOUNCE_TTL_MS) s.peerOpensAead = false;
    const aead = s.peerOpensAead ? this.aead : undefined;
    const length = prefix === NO_PREFIX ? message.length : message.length + 1;
    // The packet: type ‖ header ‖ box: tag ‖ ciphertext / AEAD: ciphertext ‖ tag, at buf[start, end).
    let buf: Buffer;
    let start = 0;
    if (inPlace) {
      buf = this.wholeBufferOf(message);
      const header =
        1 + uvarintBytes(s.localKeySeq) + uvarintBytes(s.remoteKeySeq) + uvarintBytes(s.sendNonce);
      const messageAt = message.byteOffset - buf.byteOffset;
      start = messageAt + message.length - length - KEY_BYTES - (aead ? 0 : TAG_BYTES) - header;
    } else {
      buf = this.sendDepth === 0 ? this.sendBuf : Buffer.allocUnsafe(TRAFFIC_MAX_OVERHEAD + length);
    }
    buf[start] = aead ? SessionType.TrafficAead : SessionType.Traffic;
    let off = putUvarint(buf, start + 1, s.localKeySeq);
    off = putUvarint(buf, off, s.remoteKeySeq);
    off = putUvarint(buf, off, s.sendNonce);
    const plainAt = aead ? off : off + TAG_BYTES;
    let end = plainAt + KEY_BYTES + length;
    s.nextLocal.publicKey.copy(buf, plainAt);
    if (prefix !== NO_PREFIX) buf[plainAt + KEY_BYTES] = prefix;
    if (!inPlace) buf.set(message, end - message.length);
    const packet = buf.subarray(start, aead ? end + TAG_BYTES : end);
    if (aead) {
      const key = sendAeadKey(s, this.identity.publicKey);
      if (!sealTraffic(aead, key, s.sendNonce, packet, off - start, end - start)) {
        this.counters.aeadSealFailures++;
        return;
      }
      end += TAG_BYTES;
      this.counters.aeadSealed++;
    } else {
      this.box.seal(
        buf.subarray(off, end),
        buf.subarray(plainAt, end),
        nonceFor(this.nonce, s.sendNonce),
        s.sendShared,
      );
      this.counters.boxSealed++;
    }
    s.tx += length;
    s.expires = now + SESSION_TIMEOUT_MS;
    this.sendDepth++;
    try {
      this.out.sendTraffic(s.key, packet, now, inPlace);
    } finally {
      this.sendDepth--;
    }
  }

  /** A view of all of the buffer `message` lies in, kept while messages keep coming from it. */
  private wholeBufferOf(message: Uint8Array): Buffer {
    if (this.inPlaceBuf.buffer !== message.buffer) this.inPlaceBuf = Buffer.from(message.buffer);
    return this.inPlaceBuf;
  }

  /** Tells the remote we open TRAFFIC_AEAD (sessions/aead.ts), inside the session. */
  private announce(s: Session, now: number): void {
    s.announcedAt = now;
    this.counters.announcesSent++;
    this.sendOn(s, ANNOUNCE_BODY, now);
  }

  private bufferAndInit(k: string, dest: Buffer, message: Uint8Array, now: number, prefix: number): void {
    let b = this.table.buffers.get(k);
    if (!b) {
      b = {
        data: Buffer.alloc(0),
        current: this.fresh(),
        next: this.fresh(),
        initSeq: unixSeconds(now),
        expires: 0,
      };
    }
    let data: Buffer;
    if (prefix === NO_PREFIX) data = Buffer.from(message);
    else {
      data = Buffer.allocUnsafe(message.length + 1);
      data[0] = prefix;
      data.set(message, 1);
    }
    this.table.keepPending(k, b, data, now + SESSION_TIMEOUT_MS);
    // Each re-send is stamped with the current second: a receiver that already took an earlier one
    // and whose ack was lost treats an init with the same seq as old news (Yggdrasil 0.4.7 does),
    // and would never answer while this buffer is kept alive by further sends.
    const second = unixSeconds(now);
    if (second > b.initSeq) b.initSeq = second;
    this.sendHandshake(SessionType.Init, dest, b.current.publicKey, b.next.publicKey, 0n, b.initSeq, now);
  }

  private sendHandshake(
    type: 1 | 2,
    dest: Buffer,
    current: Buffer,
    next: Buffer,
    keySeq: bigint,
    seq: bigint,
    now: number,
    session?: Session,
  ): void {
    let curve = session?.curve;
    if (!curve) {
      try {
        curve = curveFromEd(dest);
      } catch {
        return; // not a valid ed25519 point: Go cannot send to it either
      }
      if (session) session.curve = curve;
    }
    const payload = sealInit(
      type,
      { current, next, keySeq, seq },
      this.identity,
      dest,
      this.box,
      this.fresh(),
      curve,
    );
    if (!payload) return;
    if (type === SessionType.Init) this.counters.initsSent++;
    else this.counters.acksSent++;
    this.sendDepth++;
    try {
      this.out.sendTraffic(dest, payload, now);
    } finally {
      this.sendDepth--;
    }
  }

  /**
   * An init in answer to traffic that did not open (keys out of sync, e.g. after a restart). Anyone
   * who knows the session's key can send such traffic, so the answers are throttled per session.
   */
  private answer(s: Session, now: number): void {
    if (now - s.lastInitSent < ANSWER_INTERVAL_MS) {
      this.counters.answersRateLimited++;
      return;
    }
    s.lastInitSent = now;
    this.sendSessionHandshake(SessionType.Init, s, now);
  }

  private sendSessionHandshake(type: 1 | 2, s: Session, now: number): void {
    // A remote that takes it forgets our announcement (it may be talking to a new instance of us).
    s.announcedAt = Number.NEGATIVE_INFINITY;
    this.sendHandshake(
      type,
      s.key,
      s.send.publicKey,
      s.nextLocal.publicKey,
      BigInt(s.localKeySeq),
      unixSeconds(now),
      now,
      s,
    );
  }

  /** Finds or creates the session for an init/ack; a new session adopts the keys our buffered init announced. */
  private sessionForInit(
    source: Buffer,
    init: { current: Buffer; next: Buffer; seq: bigint },
    now: number,
  ): [Session, PendingBuffer | undefined] | undefined {
    const k = mapKey(source);
    const t = this.table;
    let s = t.sessions.get(k);
    if (s) return [s, undefined];
    const b = t.buffers.get(k);
    if (!t.makeRoom(b !== undefined)) {
      this.counters.sessionsRefused++;
      return undefined;
    }
    s = new Session(Buffer.from(source), init, this.fresh, now);
    if (b) {
      t.removeBuffer(k, b);
      s.send = b.current;
      s.nextLocal = b.next;
    }
    s.fixShared(this.box, 0, 0);
    t.addSession(k, s, b !== undefined);
    this.counters.sessionsCreated++;
    return [s, b];
  }

  private handleUpdate(
    s: Session,
    init: { current: Buffer; next: Buffer; keySeq: bigint; seq: bigint },
    now: number,
  ): void {
    s.current = Buffer.from(init.current);
    s.next = Buffer.from(init.next);
    s.seq = init.seq;
    s.setRemoteKeySeq(toU64(init.keySeq));
    // Possibly a new instance of the remote: box until it announces the AEAD again, and hear ours.
    s.peerOpensAead = false;
    s.announcedAt = Number.NEGATIVE_INFINITY;
    s.localRotate(this.fresh);
    // sendNonce is deliberately not rolled back (as in Go)
    s.fixShared(this.box, 0, s.sendNonce);
    s.expires = now + SESSION_TIMEOUT_MS;
  }

  private handleInit(
    source: Buffer,
    init: { current: Buffer; next: Buffer; keySeq: bigint; seq: bigint },
    now: number,
  ): void {
    const found = this.sessionForInit(source, init, now);
    if (!found) return;
    const [s, b] = found;
    if (init.seq > s.seq) {
      this.handleUpdate(s, init, now);
      s.lastAckSent = now;
      this.sendSessionHandshake(SessionType.Ack, s, now);
    } else if (init.seq === s.seq && now - s.lastAckSent >= ANSWER_INTERVAL_MS) {
      // The init we already took, again: the remote re-sends it while it has no session, so our
      // ack was lost. Go ignores it and, under loss, the remote never gets a session while it keeps
      // sending (issue 9's stuck destination). The same keys again, throttled per session.
      s.lastAckSent = now;
      this.counters.acksResent++;
      this.sendSessionHandshake(SessionType.Ack, s, now);
    }
    if (b) this.sendOn(s, b.data, now);
  }

  private handleAck(
    source: Buffer,
    ack: { current: Buffer; next: Buffer; keySeq: bigint; seq: bigint },
    now: number,
  ): void {
    const existed = this.table.sessions.has(mapKey(source));
    const found = this.sessionForInit(source, ack, now);
    if (!found) return;
    const [s, b] = found;
    if (ack.seq > s.seq) {
      this.handleUpdate(s, ack, now);
      // A session made from an ack has keys the remote never saw in an init of ours: tell it.
      if (!existed) this.sendSessionHandshake(SessionType.Ack, s, now);
    }
    if (b) this.sendOn(s, b.data, now);
  }

  private handleTraffic(source: Buffer, payload: Buffer, now: number, via: TokenBucket | undefined): void {
    let s = this.table.lastHeard;
    if (s === undefined || !sameKey(source, s.key)) {
      s = this.table.sessions.get(mapKey(source));
      if (s) this.table.lastHeard = s;
    }
    if (!s) {
      // Possibly spoofed or replayed: answer with keys we forget, keep no state. If the remote
      // acks, a session is made from the ack with fresh keys, so these need no private halves:
      // random bytes cost nothing, where two key pairs per stray packet would.
      this.counters.noSession++;
      // Each answer costs a signature: strays spend the link's budget for new sessions.
      if (via !== undefined && !via.take(now)) {
        this.counters.answersRateLimited++;
        return;
      }
      // One second back: the remote adopts these throw-away keys and acks, our session made from its
      // ack answers with an ack stamped this second, and that must count as newer than this init
      // (same second = same seq = ignored, a wait of up to a second after a restart).
      const seq = unixSeconds(now) - 1n;
      this.sendHandshake(SessionType.Init, source, randomBytes(32), randomBytes(32), 0n, seq, now);
      return;
    }
    // Above the network MTU (spec 5.9) no sender seals, and the plaintext would not fit recvBuf: the
    // cipher call would throw into the link's read path (a frame may be 65535 bytes).
    if (payload.length < TRAFFIC_MIN_BYTES || payload.length > TRAFFIC_MAX_OVERHEAD + SESSION_MTU) {
      this.counters.malformed++;
      return;
    }
    let off = readUvarint(payload, 1);
    const remoteKeySeq = uvarintResult.value;
    if (off > 0) off = readUvarint(payload, off);
    const localKeySeq = uvarintResult.value;
    if (off > 0) off = readUvarint(payload, off);
    const n = uvarintResult.value;
    if (off < 0) {
      this.counters.malformed++;
      return;
    }

    const which = s.receiveCase(remoteKeySeq, localKeySeq);
    if (which === -1) {
      this.counters.keySeqMismatches++;
      this.answer(s, now);
      return;
    }
    const shared = s.sharedFor(which, this.box);
    const window = s.windowFor(which);
    // Checked before the box (cheap), recorded after it opened (a forgery must not move the window).
    if (window.check(n) !== ReplayVerdict.Fresh) {
      this.counters.replaysDropped++;
      return;
    }

    const sealedBytes = payload.length - off;
    if (sealedBytes < TAG_BYTES) {
      this.counters.decryptFailures++;
      this.answer(s, now);
      return;
    }
    // The AEAD opens where the ciphertext lies (the received frame is ours until we return); the
    // box into a buffer of our own.
    const isAead = payload[0] === SessionType.TrafficAead;
    const plain = isAead
      ? payload.subarray(off, payload.length - TAG_BYTES)
      : this.deliverDepth === 0
        ? this.recvBuf.subarray(0, sealedBytes - TAG_BYTES)
        : Buffer.allocUnsafe(sealedBytes - TAG_BYTES);
    const opened = isAead
      ? openTraffic(this.aead!, recvAeadKey(s, which, shared), n, payload, off)
      : this.box.open(plain, payload.subarray(off), nonceFor(this.nonce, n), shared);
    if (!opened) {
      // Keys out of sync (e.g. the remote restarted) or a forged packet: offer a fresh handshake.
      this.counters.decryptFailures++;
      this.answer(s, now);
      return;
    }
    if (isAead) this.counters.aeadOpened++;
    else this.counters.boxOpened++;
    s.lastInAead = isAead;
    window.accept(n);
    if (!s.proven) this.table.prove(s);
    if (plain.length < KEY_BYTES) {
      // Authentic but too short to carry the next key; Go would crash here, we drop it.
      this.counters.malformed++;
      return;
    }
    // The state changes happen before delivery: in Go delivery is asynchronous, so anything the
    // application sends in response already sees the updated keys.
    if (now - s.rotated > RATCHET_INTERVAL_MS) {
      if (which !== 0) {
        s.current = s.next;
        s.next = Buffer.from(plain.subarray(0, KEY_BYTES));
        s.setRemoteKeySeq(remoteKeySeq);
        s.localRotate(this.fresh);
        s.fixShared(this.box, n, 0);
        this.counters.ratchets++;
      }
      s.rotated = now;
    }
    const message = plain.subarray(KEY_BYTES);
    s.expires = now + SESSION_TIMEOUT_MS;
    if (isAnnounce(message)) {
      this.counters.announcesHeard++;
      if (this.aead !== undefined && announcesChacha(message)) {
        s.peerOpensAead = true;
        s.peerAnnouncedAt = now;
      }
    } else {
      s.rx += message.length;
      this.deliverDepth++;
      try {
        this.out.deliver(s.key, message, now);
      } finally {
        this.deliverDepth--;
      }
    }
    // After delivery, which may have used recvBuf: a node that only receives announces too.
    if (this.aead !== undefined && now - s.announcedAt >= ANNOUNCE_MS) this.announce(s, now);
  }
}
