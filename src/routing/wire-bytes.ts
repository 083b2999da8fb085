// The byte-level helpers of the ironwood frame codecs (wire.ts, wire-traffic.ts): field sizes,
// bounds checks that throw ProtocolError, copies out of a reused read buffer, and the two path forms
// of spec 2 (open: port uvarints to the end; terminated: up to and including a 0).
import { ProtocolError } from "./types.js";
import { readUvarint, uvarintSize, writeUvarint } from "./varint.js";

export const KEY = 32;
export const SIG = 64;
export const U64 = 8;

export function need(buf: Buffer, offset: number, n: number, what: string): void {
  if (offset + n > buf.length)
    throw new ProtocolError(`truncated ${what}: need ${n} bytes at ${offset}, have ${buf.length - offset}`);
}

export function copyOut(buf: Buffer, offset: number, n: number): Buffer {
  return Buffer.from(buf.subarray(offset, offset + n));
}

export function putFixed(out: Buffer, offset: number, bytes: Buffer, n: number, what: string): number {
  if (bytes.length !== n) throw new RangeError(`${what} must be ${n} bytes, got ${bytes.length}`);
  bytes.copy(out, offset);
  return offset + n;
}

export function pathSize(path: readonly number[]): number {
  let n = 0;
  for (const p of path) n += uvarintSize(p);
  return n;
}

export function writePath(out: Buffer, offset: number, path: readonly number[]): number {
  for (const p of path) offset = writeUvarint(out, offset, p);
  return offset;
}

/** Open path form (spec 2): the port uvarints, no terminator. */
export function encodePath(path: number[]): Buffer {
  const out = Buffer.allocUnsafe(pathSize(path));
  writePath(out, 0, path);
  return out;
}

/**
 * Open path running to the end of buf. As in ironwood, a 0 ends a path, so a 0 anywhere but last
 * leaves trailing bytes, which is an error.
 */
export function readOpenPath(buf: Buffer, offset: number, what: string): number[] {
  const path: number[] = [];
  while (offset < buf.length) {
    const [port, next] = readUvarint(buf, offset);
    if (port === 0 && next !== buf.length) throw new ProtocolError(`${what}: 0 inside an open path`);
    path.push(port);
    offset = next;
  }
  return path;
}

/** Terminated path: uvarints up to and including a 0, or to the end of buf (the 0 stays in the list). */
export function readTerminatedPath(buf: Buffer, offset: number): [path: number[], next: number] {
  const path: number[] = [];
  while (offset < buf.length) {
    const [port, next] = readUvarint(buf, offset);
    path.push(port);
    offset = next;
    if (port === 0) break;
  }
  return [path, offset];
}

/** Size of a terminated path as we write it: a 0 is appended unless the list already ends in 0. */
export function terminatedSize(path: readonly number[]): number {
  const terminated = path.length > 0 && path[path.length - 1] === 0;
  return pathSize(path) + (terminated ? 0 : 1);
}

export function writeTerminated(out: Buffer, offset: number, path: readonly number[]): number {
  offset = writePath(out, offset, path);
  if (path.length === 0 || path[path.length - 1] !== 0) out[offset++] = 0;
  return offset;
}

export function frame(type: number, bodySize: number): Buffer {
  const out = Buffer.allocUnsafe(1 + bodySize);
  out[0] = type;
  return out;
}
