// Sealed udp:// datagrams: the key agreement of the handshake and the AEAD on every link datagram.
//
// Handshake (udp.ts carries it; SIGMA-style, WireGuard's properties with ed25519 signatures in place
// of Noise's static DH): each side contributes a fresh X25519 key, each signs the transcript (both
// cookies, both ed25519 keys, the ephemeral keys it saw) with its ed25519 identity, and both derive
// one key per direction with HKDF-SHA256 over the X25519 result and the transcript. The listener's
// ephemeral key is derived from its secret and the dialer's ephemeral key, so it stays stateless
// until a CONFIRM from a proven address, and a repeated CONFIRM gets the same ACCEPT.
//
// Link datagrams: type ‖ receiver's cookie (8) ‖ counter u64 ‖ ciphertext ‖ tag (16), sealed with
// ChaCha20-Poly1305 (IETF) under the direction's key, nonce = 0^4 ‖ counter, the first 9 bytes as
// associated data. The receiver drops (and counts) anything that does not open, and anything whose
// counter it has seen or that is older than REPLAY_WINDOW datagrams behind the newest (RFC 6479).
import { createHash, createHmac, hkdfSync } from "node:crypto";
import { loadSodium } from "../../crypto/sodium.js";
import { type FragmentRun, OPENED_NONE, type SealKeys, openedCount } from "./udp-socket-types.js";

export const SEAL_COUNTER = 8;
export const SEAL_TAG = 16;
/** Header (type ‖ cookie) is 9 bytes; the counter follows, the plaintext after it. */
export const SEAL_BODY_AT = 9 + SEAL_COUNTER;
export const SEAL_OVERHEAD = SEAL_COUNTER + SEAL_TAG;
export const EPHEMERAL_BYTES = 32;
export const SIGNATURE_BYTES = 64;
export const REPLAY_WINDOW = 2048;
/** Counters stay exact JavaScript numbers; a link closes long before (2^48 datagrams). */
export const MAX_COUNTER = 2 ** 48;

const sodium = loadSodium();
const BASE_POINT = Buffer.alloc(32);
BASE_POINT[0] = 9;
const LABEL = Buffer.from("planetd udp 1", "ascii");

export interface Ephemeral {
  publicKey: Buffer;
  secretKey: Buffer;
}

export function randomEphemeral(): Ephemeral {
  const publicKey = Buffer.alloc(32);
  const secretKey = Buffer.alloc(32);
  sodium.crypto_box_keypair(publicKey, secretKey);
  return { publicKey, secretKey };
}

/** The listener's ephemeral key for one handshake, recomputable from its secret. */
export function derivedEphemeral(secret: Buffer, ...parts: Uint8Array[]): Ephemeral {
  const h = createHmac("sha256", secret).update("ephemeral");
  for (const p of parts) h.update(p);
  const secretKey = h.digest();
  const publicKey = Buffer.alloc(32);
  sodium.crypto_scalarmult(publicKey, secretKey, BASE_POINT);
  return { publicKey, secretKey };
}

/**
 * What each side signs: the label, a role, both cookies, both identities, the ephemeral keys (and,
 * as "rekey", the context of a rekey's key derivation: udp-rekey.ts).
 */
export function transcript(role: "confirm" | "accept" | "rekey", parts: Uint8Array[]): Buffer {
  return Buffer.concat([LABEL, Buffer.from(role, "ascii"), ...parts]);
}

/**
 * Keys for dialer→listener and listener→dialer (and a 16-byte pad the handshake hides the reset
 * token with), or undefined for a degenerate (low-order) share.
 */
export function sessionKeys(
  mine: Ephemeral,
  theirs: Uint8Array,
  context: Uint8Array,
): { d2l: Buffer; l2d: Buffer; pad: Buffer } | undefined {
  const shared = Buffer.alloc(32);
  try {
    sodium.crypto_scalarmult(shared, mine.secretKey, theirs);
  } catch {
    return undefined;
  }
  if (shared.every((b) => b === 0)) return undefined;
  const salt = createHash("sha256").update(context).digest();
  const okm = Buffer.from(hkdfSync("sha256", shared, salt, "planetd udp keys", 80));
  return { d2l: okm.subarray(0, 32), l2d: okm.subarray(32, 64), pad: okm.subarray(64, 80) };
}

/** The counter's top bit: which of the two latest keys sealed the datagram (udp-rekey.ts). */
const PHASE_BIT = 0x8000_0000;

/**
 * One direction's send key and counter. When the socket seals (the native one, on its send
 * thread: udp_send.c, the same AEAD byte for byte) the key is registered with it, and seal() only
 * writes the counter and hands back the key's slot; otherwise seal() seals here with sodium.
 */
export class Sealer {
  private readonly key: Buffer;
  private readonly phase: number;
  private counter = 0;
  private readonly socketKeys: SealKeys | undefined;
  /** The socket's slot for this key, -1 when this side seals. */
  private slot: number;
  // Reused per datagram: only the body is a view of the datagram.
  private readonly nonce = Buffer.alloc(12);
  private readonly ad = Buffer.alloc(9);
  private readonly tag = Buffer.alloc(SEAL_TAG);

  /** `phase` (0 or 1): the key phase bit every datagram sealed with this key carries. */
  constructor(key: Buffer, phase = 0, socketKeys?: SealKeys) {
    this.key = key;
    this.phase = phase === 0 ? 0 : PHASE_BIT;
    this.slot = socketKeys ? socketKeys.addKey(key) : -1;
    this.socketKeys = this.slot >= 0 ? socketKeys : undefined;
  }

  /**
   * Seals `d` (header 9 ‖ counter space 8 ‖ plaintext ‖ tag space 16): writes its counter and
   * returns the socket's key slot for the socket to seal it when it sends (to this key's socket
   * only), or seals it in place and returns -1.
   */
  seal(d: Buffer): number {
    if (this.slot < 0) {
      this.sealHere(d);
      return -1;
    }
    const n = this.counter++;
    d.writeUInt32BE((Math.floor(n / 0x1_0000_0000) | this.phase) >>> 0, 9);
    d.writeUInt32BE(n >>> 0, 13);
    return this.slot;
  }

  /**
   * Takes run.count consecutive counters for datagrams the socket builds and seals (sendFragments):
   * the first one's counter words (phase bit included) and the key slot go into `run`. False
   * (nothing taken) when this side seals, or the run would pass MAX_COUNTER.
   */
  reserve(run: FragmentRun): boolean {
    if (this.slot < 0 || this.counter + run.count > MAX_COUNTER) return false;
    const n = this.counter;
    this.counter += run.count;
    run.counterHi = (Math.floor(n / 0x1_0000_0000) | this.phase) >>> 0;
    run.counterLo = n >>> 0;
    run.keySlot = this.slot;
    return true;
  }

  /** Seals `d` in place here, whatever the socket offers (a datagram another socket sends). */
  sealHere(d: Buffer): void {
    const n = this.counter++;
    const hi = (Math.floor(n / 0x1_0000_0000) | this.phase) >>> 0;
    const lo = n >>> 0;
    d.writeUInt32BE(hi, 9);
    d.writeUInt32BE(lo, 13);
    this.nonce.writeUInt32BE(hi, 4);
    this.nonce.writeUInt32BE(lo, 8);
    d.copy(this.ad, 0, 0, 9);
    const body = d.subarray(SEAL_BODY_AT, d.length - SEAL_TAG);
    sodium.crypto_aead_chacha20poly1305_ietf_encrypt_detached(
      body,
      this.tag,
      body,
      this.ad,
      null,
      this.nonce,
      this.key,
    );
    this.tag.copy(d, d.length - SEAL_TAG);
  }

  get exhausted(): boolean {
    return this.counter >= MAX_COUNTER;
  }

  /** The key seals nothing more: the socket frees its slot once what it queued under it has left. */
  release(): void {
    if (this.slot >= 0) this.socketKeys?.dropKey(this.slot);
    this.slot = -1;
  }

  /** Datagrams sealed with this key. */
  get sent(): number {
    return this.counter;
  }

  /**
   * Tests only: continue counting from `n` (>= what was sealed), so a test reaches the rekey
   * threshold or the counter's limit without sealing 2^30 datagrams first. Never on the data path.
   */
  testOnlySkipTo(n: number): void {
    if (!Number.isSafeInteger(n) || n < this.counter) throw new Error("the counter only moves forward");
    this.counter = n;
  }
}

export const OPEN_OK = 0;
export const OPEN_FORGED = 1;
export const OPEN_REPLAYED = 2;

/**
 * One direction's receive key and replay window. When the socket opens (the native one, on its
 * receive thread: udp_recv.c, the same AEAD) the key is registered with it under the link's cookie
 * and the key's phase, and open() gets the slot that opened the datagram; the replay window and
 * every verdict stay here, as when it opens with sodium.
 */
export class Opener {
  private readonly key: Buffer;
  private readonly socketKeys: SealKeys | undefined;
  /** The socket's slot for this key, -1 when this side opens. */
  private slot: number;
  private readonly nonce = Buffer.alloc(12);
  private readonly ad = Buffer.alloc(9);
  private readonly tag = Buffer.alloc(SEAL_TAG);
  private readonly seen = new Uint32Array(REPLAY_WINDOW / 32);
  /** Highest counter accepted, −1 before the first. */
  private newest = -1;

  /** With `socketKeys`: the socket opens datagrams carrying `cookie` and `phase` (0 or 1). */
  constructor(key: Buffer, socketKeys?: SealKeys, cookie?: Uint8Array, phase = 0) {
    this.key = key;
    this.slot = socketKeys && cookie ? socketKeys.addOpenKey(cookie, phase, key) : -1;
    this.socketKeys = this.slot >= 0 ? socketKeys : undefined;
  }

  /**
   * Opens `d` in place (same layout as seal), unless the socket did (`opened`: its slot, or
   * OPENED_FAILED; OPENED_NONE or undefined: still sealed). Replays are refused before anything
   * else, as they are before any cryptography here.
   */
  open(d: Buffer, opened = OPENED_NONE): number {
    if (d.length < SEAL_BODY_AT + SEAL_TAG) return OPEN_FORGED;
    const hi = d.readUInt32BE(9);
    const lo = d.readUInt32BE(13);
    // The phase bit (the caller picked this key by it) is part of the nonce, not of the counter.
    const counterHi = hi & ~PHASE_BIT;
    if (counterHi >= 0x1_0000) return OPEN_FORGED;
    const n = counterHi * 0x1_0000_0000 + lo;
    // A frame the socket joined stands for `count` datagrams, counters n on: all must be new.
    const count = openedCount(opened);
    for (let k = 0; k < count; k++) if (!this.fresh(n + k)) return OPEN_REPLAYED;
    if (opened !== OPENED_NONE) {
      // Opened under another key (one this Opener replaced) or not at all: it is not ours.
      if ((opened & 0xff) !== this.slot || opened < 0) return OPEN_FORGED;
      for (let k = 0; k < count; k++) this.accept(n + k);
      return OPEN_OK;
    }
    this.nonce.writeUInt32BE(hi, 4);
    this.nonce.writeUInt32BE(lo, 8);
    d.copy(this.ad, 0, 0, 9);
    d.copy(this.tag, 0, d.length - SEAL_TAG);
    const body = d.subarray(SEAL_BODY_AT, d.length - SEAL_TAG);
    try {
      sodium.crypto_aead_chacha20poly1305_ietf_decrypt_detached(
        body,
        null,
        body,
        this.tag,
        this.ad,
        this.nonce,
        this.key,
      );
    } catch {
      return OPEN_FORGED;
    }
    this.accept(n);
    return OPEN_OK;
  }

  /** The key opens nothing more: the socket frees its slot once no receive job can be using it. */
  release(): void {
    if (this.slot >= 0) this.socketKeys?.dropOpenKey(this.slot);
    this.slot = -1;
  }

  private fresh(n: number): boolean {
    if (n > this.newest) return true;
    if (n + REPLAY_WINDOW <= this.newest) return false;
    const bit = n % REPLAY_WINDOW;
    return (this.seen[bit >>> 5]! & (1 << (bit & 31))) === 0;
  }

  private accept(n: number): void {
    if (n > this.newest) {
      // Clear the bits of the counters skipped over, a word at a time once a whole word is passed.
      const from = this.newest + 1;
      if (n - from >= REPLAY_WINDOW) this.seen.fill(0);
      else {
        for (let c = from; c < n; c++) {
          const bit = c % REPLAY_WINDOW;
          if ((bit & 31) === 0 && c + 32 <= n) {
            this.seen[bit >>> 5] = 0;
            c += 31;
          } else {
            this.seen[bit >>> 5] = this.seen[bit >>> 5]! & ~(1 << (bit & 31));
          }
        }
      }
      this.newest = n;
    }
    const bit = n % REPLAY_WINDOW;
    this.seen[bit >>> 5] = this.seen[bit >>> 5]! | (1 << (bit & 31));
  }
}
