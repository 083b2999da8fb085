// Link datagrams for the native socket's seal and open tests (links-udp-native-*.test.ts).
import { SEAL_BODY_AT, SEAL_TAG } from "../../src/overlay/links/udp-seal.js";

export const COOKIE = Buffer.from("cookie!!");

/** A datagram as udp-link.ts lays it out: type ‖ cookie ‖ counter space ‖ body ‖ tag space. */
export function shell(body: Buffer, cookie = COOKIE, type = 0x10): Buffer {
  const d = Buffer.alloc(SEAL_BODY_AT + body.length + SEAL_TAG);
  d[0] = type;
  cookie.copy(d, 1);
  body.copy(d, SEAL_BODY_AT);
  return d;
}

/** `size` bytes that depend on `i`, which the first 4 carry when there is room. */
export function body(i: number, size: number): Buffer {
  const b = Buffer.alloc(size);
  for (let j = 0; j < size; j++) b[j] = (i * 7 + j) & 0xff;
  if (size >= 4) b.writeUInt32BE(i, 0);
  return b;
}

/** A datagram's plaintext (once opened). */
export const plain = (d: Buffer): Buffer => d.subarray(SEAL_BODY_AT, d.length - SEAL_TAG);
