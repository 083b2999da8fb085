// Byte layouts of the encrypted layer (spec 6.2-6.4): the 193-byte init/ack and the uvarints of
// the traffic header. Pure functions; the session state machine is in ../sessions.ts.
import { type BoxBackend, type BoxKeyPair, nonceForCounter } from "../../crypto/box.js";
import { type Identity, curveFromEd, verify } from "../../crypto/identity.js";

/** TrafficAead is planetd's own (sessions/aead.ts): only towards a remote that announced it. */
export const SessionType = { Dummy: 0, Init: 1, Ack: 2, Traffic: 3, TrafficAead: 0x70 } as const;

export const INIT_BYTES = 193;
/** type + three one-byte uvarints + tag + next key: the smallest traffic message (spec 6.2). */
export const TRAFFIC_MIN_BYTES = 1 + 3 + 16 + 32;
/** Worst-case traffic overhead: type + three ten-byte uvarints + tag + next key. */
export const TRAFFIC_MAX_OVERHEAD = 1 + 30 + 16 + 32;

const ZERO_NONCE = new Uint8Array(24);
const U64_MASK = (1n << 64n) - 1n;

export interface SessionInit {
  current: Buffer;
  next: Buffer;
  keySeq: bigint;
  seq: bigint;
}

/**
 * A u64 on the per-packet path: a number up to 2^53 - 1, a bigint above (always so: equal values
 * are ===). Counters start small and grow by one per packet, so they stay numbers in practice
 * and bigint arithmetic is left for values a peer sends or a wrap no one will live to see.
 */
export type U64 = number | bigint;

const SAFE_BIG = BigInt(Number.MAX_SAFE_INTEGER);

export function toU64(v: bigint): U64 {
  return v <= SAFE_BIG ? Number(v) : v;
}

/** v + 1 mod 2^64 */
export function incU64(v: U64): U64 {
  if (typeof v === "number") return v < Number.MAX_SAFE_INTEGER ? v + 1 : BigInt(v) + 1n;
  return v === U64_MASK ? 0 : v + 1n;
}

/** v - 1 mod 2^64 */
export function decU64(v: U64): U64 {
  if (typeof v === "number") return v > 0 ? v - 1 : U64_MASK;
  return toU64(v - 1n);
}

/**
 * Writes v as Go's PutUvarint at off; returns the offset after it.
 *
 * The loops below run every operation for a one-byte value too (a counter's first 127 packets), so
 * V8 has type feedback for all of them before the first two-byte one: a loop body first entered at
 * counter 128 (or 16,384) deoptimized putUvarint, uvarintBytes, readUvarint and the session code
 * they are inlined in, mid-traffic (--trace-deopt on an idle daemon, issue 11).
 */
export function putUvarint(buf: Buffer, off: number, v: U64): number {
  if (typeof v === "number") {
    let n = v;
    while (n >= 0x80000000) {
      buf[off++] = (n % 0x80) | 0x80;
      n = Math.floor(n / 0x80);
    }
    for (;;) {
      const low = n & 0x7f;
      n >>>= 7;
      buf[off++] = low | (n === 0 ? 0 : 0x80);
      if (n === 0) return off;
    }
  }
  while (v >= 0x80n) {
    buf[off++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  buf[off++] = Number(v);
  return off;
}

/** How many bytes putUvarint writes for v. */
export function uvarintBytes(v: U64): number {
  // Seven bits a byte: 1 + floor((bit length - 1) / 7) below 2^31 (0 takes one byte).
  if (typeof v === "number" && v < 0x80000000) return (((31 - Math.clz32(v)) / 7) | 0) + 1;
  if (typeof v === "number") {
    let n = 1;
    for (let x = v; x >= 0x80; x = Math.floor(x / 0x80)) n++;
    return n;
  }
  let n = 1;
  for (let x = v; x >= 0x80n; x >>= 7n) n++;
  return n;
}

/** The value of the last successful readUvarint (kept here so parsing allocates no result objects). */
export const uvarintResult: { value: U64 } = { value: 0 };

/**
 * Reads a uvarint like Go's binary.Uvarint: returns the offset after it, or -1 if the buffer ends
 * first or the value overflows 64 bits.
 */
export function readUvarint(buf: Uint8Array, off: number): number {
  // Seven bytes carry 49 bits: exact as a number. Longer encodings finish in bigint. The byte's
  // weight is carried along: 2 ** (7 * i) costs a Math.pow call per byte in optimized code.
  // Every operation runs for a one-byte value too (see putUvarint).
  let small = 0;
  let weight = 1;
  for (let i = 0; ; ) {
    if (off + i >= buf.length) return -1;
    const b = buf[off + i];
    small += (b & 0x7f) * weight;
    weight *= 0x80;
    i++;
    const last = i === 7;
    if (b < 0x80) {
      uvarintResult.value = small;
      return off + i;
    }
    if (last) break;
  }
  let v = BigInt(small);
  for (let i = 7; i < 10; i++) {
    if (off + i >= buf.length) return -1;
    const b = buf[off + i];
    if (i === 9 && b > 1) return -1;
    v |= BigInt(b & 0x7f) << BigInt(7 * i);
    if (b < 0x80) {
      uvarintResult.value = toU64(v);
      return off + i + 1;
    }
  }
  return -1;
}

/** Byte equality of two keys; for 32 bytes a JS loop beats both a native call and a map key string. */
export function sameKey(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** The 24-byte box nonce for counter n: 16 zero bytes (never written) then n as u64 big-endian. */
export function nonceFor(nonce: Buffer, n: U64): Buffer {
  if (typeof n === "bigint") return nonceForCounter(nonce, n);
  nonce.writeUInt32BE(Math.floor(n / 0x100000000), 16);
  nonce.writeUInt32BE(n >>> 0, 20);
  return nonce;
}

export function u64(v: bigint): bigint {
  return v & U64_MASK;
}

/**
 * Builds a 193-byte init (type 1) or ack (type 2) for `recipient` (spec 6.3), with a fresh
 * ephemeral key unless one is given (tests pass one to get fixed bytes). Returns undefined if the
 * recipient's ed25519 key has no X25519 form, as Go does not send then either.
 */
export function sealInit(
  type: 1 | 2,
  init: SessionInit,
  identity: Identity,
  recipient: Uint8Array,
  box: BoxBackend,
  ephemeral: BoxKeyPair = box.keyPair(),
  recipientCurve?: Buffer,
): Buffer | undefined {
  let curve = recipientCurve;
  if (!curve) {
    try {
      curve = curveFromEd(recipient);
    } catch {
      return undefined;
    }
  }
  const out = Buffer.alloc(INIT_BYTES);
  out[0] = type;
  ephemeral.publicKey.copy(out, 1);
  // The signed message E ‖ current ‖ next ‖ keySeq ‖ seq sits in the plaintext right after the
  // signature, except E, which is sent in the clear before the box.
  const plain = Buffer.alloc(144);
  init.current.copy(plain, 64);
  init.next.copy(plain, 96);
  plain.writeBigUInt64BE(u64(init.keySeq), 128);
  plain.writeBigUInt64BE(u64(init.seq), 136);
  const signed = Buffer.concat([ephemeral.publicKey, plain.subarray(64)]);
  identity.sign(signed).copy(plain, 0);
  box.seal(out.subarray(33), plain, ZERO_NONCE, box.before(curve, ephemeral.secretKey));
  return out;
}

/**
 * Opens and checks an init/ack payload from `source` (spec 6.3). Undefined on any failure: wrong
 * length, bad box, bad signature.
 */
export function openInit(
  payload: Uint8Array,
  source: Uint8Array,
  curvePrivate: Uint8Array,
  box: BoxBackend,
): SessionInit | undefined {
  if (payload.length !== INIT_BYTES) return undefined;
  const ephemeral = payload.subarray(1, 33);
  const plain = Buffer.alloc(144);
  if (!box.open(plain, payload.subarray(33), ZERO_NONCE, box.before(ephemeral, curvePrivate))) {
    return undefined;
  }
  const signed = Buffer.concat([ephemeral, plain.subarray(64)]);
  if (!verify(source, signed, plain.subarray(0, 64))) return undefined;
  return {
    current: plain.subarray(64, 96),
    next: plain.subarray(96, 128),
    keySeq: plain.readBigUInt64BE(128),
    seq: plain.readBigUInt64BE(136),
  };
}
