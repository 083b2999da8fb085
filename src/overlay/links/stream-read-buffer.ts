// Where stream links read: the addon reads every plain socket, and Node decrypts every tls:// link's
// reads, into one buffer, since each read is parsed to the last byte and its flushes run
// (end-of-input.ts) before the callback returns (a frame split across reads is copied to rx).
import type { Socket } from "node:net";

const READ_BUFFER_BYTES = 128 * 1024;
let buffer: Buffer | undefined;

export function sharedReadBuffer(): Buffer {
  if (buffer === undefined) buffer = Buffer.allocUnsafeSlow(READ_BUFFER_BYTES);
  return buffer;
}

let readsByNode = 0;
/** Reads Node made into the shared read buffer (readIntoSharedBuffer) since start. */
export function sharedBufferReads(): number {
  return readsByNode;
}

/**
 * Has Node read `socket` into the shared buffer from now on, calling onRead(n) with n > 0 bytes at
 * its start, or returns false where this Node lacks the hooks. It is net.Socket's `onread` option,
 * which Node applies only to sockets it creates, set on a TLS socket made over ours: without it every
 * decrypted read of up to 16 KiB is a fresh Buffer whose memory is malloc'ed and freed only by a GC
 * (issue 11: ~27,000 a second at 3.5 Gbit/s; the receiving daemon's C heap stood at 35-59 MiB after
 * a tls:// load against 5-6 MiB idle). What Node read before stays in the stream.
 */
export function readIntoSharedBuffer(socket: Socket, onRead: (n: number) => void): boolean {
  const handle = (socket as unknown as { _handle?: { useUserBuffer?: (b: Uint8Array) => void } })._handle;
  if (typeof handle?.useUserBuffer !== "function") return false;
  const symbols = Object.getOwnPropertySymbols(socket);
  const kBuffer = symbols.find((s) => s.description === "kBuffer");
  const kBufferCb = symbols.find((s) => s.description === "kBufferCb");
  const slots = socket as unknown as Record<symbol, unknown>;
  if (kBuffer === undefined || kBufferCb === undefined || slots[kBuffer] !== null) return false;
  slots[kBuffer] = sharedReadBuffer();
  slots[kBufferCb] = (n: number): void => {
    readsByNode++;
    onRead(n);
  };
  handle.useUserBuffer(sharedReadBuffer());
  return true;
}
