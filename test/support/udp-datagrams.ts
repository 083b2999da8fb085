import type { NativeUdpSocket } from "../../src/overlay/links/udp-native.js";
// Link datagrams for the native socket's seal and open tests (links-udp-native-*.test.ts).
import { SEAL_BODY_AT, SEAL_TAG } from "../../src/overlay/links/udp-seal.js";
import { type UdpSocket, openUdpSocket } from "../../src/overlay/links/udp-socket.js";

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

/** Collects copies of `count` datagrams; rejects after `ms` with how many came. */
export function collect(s: UdpSocket, count: number, ms = 10000): Promise<Buffer[]> {
  return collectWith(s, count, ms, (msg) => Buffer.from(msg));
}

/** Copies of `count` datagrams with the socket's open status (UdpMessageHandler's `opened`). */
export function collectOpened(
  s: UdpSocket,
  count: number,
  ms = 10000,
): Promise<Array<{ msg: Buffer; opened: number }>> {
  return collectWith(s, count, ms, (msg, opened) => ({ msg: Buffer.from(msg), opened: opened ?? -1 }));
}

function collectWith<T>(
  s: UdpSocket,
  count: number,
  ms: number,
  take: (msg: Buffer, opened?: number) => T,
): Promise<T[]> {
  const got: T[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${count} datagrams`)), ms);
    s.onMessage((msg, _from, opened) => {
      got.push(take(msg, opened));
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

const nativeOpen: UdpSocket[] = [];

/** A native socket on 127.0.0.1 (any port unless given) that closeNativeSockets() closes. */
export async function nativeSocket(port?: number): Promise<NativeUdpSocket> {
  const s = await openUdpSocket({ family: 4, address: "127.0.0.1", port, impl: "native" });
  nativeOpen.push(s);
  return s as NativeUdpSocket;
}

export async function closeNativeSockets(): Promise<void> {
  for (const s of nativeOpen.splice(0)) await s.close();
}
