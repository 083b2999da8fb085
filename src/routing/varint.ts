// Go's encoding/binary uvarint (spec 2): 7 bits per byte, least significant group first, high bit =
// "more follows", at most 10 bytes for a u64. Decoders are stricter than Go in one way: a non-minimal
// encoding (a final group of 0 after other groups) is refused, so decode-then-encode is byte-identical
// and the signed preimages we rebuild always equal the bytes a peer sent. Go never emits those.
import { ProtocolError } from "./types.js";

const TWO_POW_7 = 0x80;
const MAX_U64 = (1n << 64n) - 1n;

/** Bytes needed to encode v (a non-negative safe integer). */
export function uvarintSize(v: number): number {
  let size = 1;
  while (v >= TWO_POW_7) {
    v = Math.floor(v / TWO_POW_7);
    size++;
  }
  return size;
}

/** Write v at offset; returns the offset after it. v must be a non-negative safe integer. */
export function writeUvarint(buf: Buffer, offset: number, v: number): number {
  if (!Number.isSafeInteger(v) || v < 0)
    throw new RangeError(`uvarint value ${v} is not a safe non-negative integer`);
  while (v >= TWO_POW_7) {
    buf[offset++] = (v % TWO_POW_7) | 0x80;
    v = Math.floor(v / TWO_POW_7);
  }
  buf[offset++] = v;
  return offset;
}

/** Read a uvarint as a number; values above Number.MAX_SAFE_INTEGER (2^53-1) are a ProtocolError. */
export function readUvarint(buf: Buffer, offset: number): [value: number, next: number] {
  // Fast path: one byte (ports, small lengths).
  const first = buf[offset];
  if (first === undefined) throw new ProtocolError("truncated uvarint");
  if (first < 0x80) return [first, offset + 1];
  let value = first & 0x7f;
  let scale = TWO_POW_7;
  for (let i = 1; ; i++) {
    const b = buf[offset + i];
    if (b === undefined) throw new ProtocolError("truncated uvarint");
    const group = b & 0x7f;
    // Byte 8 (i = 7) carries bits 49..55: more than 4 bits of it, or a 9th byte, leaves 2^53.
    if (i > 7 || (i === 7 && (group > 15 || b >= 0x80))) {
      throw new ProtocolError("uvarint exceeds 2^53-1 (not a valid port or length)");
    }
    value += group * scale;
    if (b < 0x80) {
      if (group === 0) throw new ProtocolError("non-minimal uvarint encoding");
      return [value, offset + i + 1];
    }
    scale *= TWO_POW_7;
  }
}

/** Read a full u64 uvarint as a bigint (overflow past 64 bits or 10 bytes is a ProtocolError). */
export function readUvarintBig(buf: Buffer, offset: number): [value: bigint, next: number] {
  let value = 0n;
  for (let i = 0; i < 10; i++) {
    const b = buf[offset + i];
    if (b === undefined) throw new ProtocolError("truncated uvarint");
    if (i === 9 && b > 1) throw new ProtocolError("uvarint overflows 64 bits");
    value |= BigInt(b & 0x7f) << BigInt(7 * i);
    if (b < 0x80) {
      if (b === 0 && i > 0) throw new ProtocolError("non-minimal uvarint encoding");
      return [value, offset + i + 1];
    }
  }
  throw new ProtocolError("uvarint longer than 10 bytes");
}

/** Bytes needed to encode the u64 v. */
export function uvarintSizeBig(v: bigint): number {
  let size = 1;
  while (v >= 0x80n) {
    v >>= 7n;
    size++;
  }
  return size;
}

/** Write the u64 v at offset; returns the offset after it. */
export function writeUvarintBig(buf: Buffer, offset: number, v: bigint): number {
  if (v < 0n || v > MAX_U64) throw new RangeError(`uvarint value ${v} is not a u64`);
  while (v >= 0x80n) {
    buf[offset++] = Number(v & 0x7fn) | 0x80;
    v >>= 7n;
  }
  buf[offset++] = Number(v);
  return offset;
}
