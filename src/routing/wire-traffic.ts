// ironwood's traffic frames (type 9, spec 5.2.11; type 10, 5.2.12) and dummy frames (type 0,
// keepalive and link priority, spec 4.5, 4.6): the data path's codecs, split from wire.ts (the
// control frames), whose header states the conventions both follow.
import { FrameType, type PathTraffic, ProtocolError, type Traffic } from "./types.js";
import { readUvarint, uvarintSize, writeUvarint } from "./varint.js";
import {
  KEY,
  frame,
  need,
  putFixed,
  readTerminatedPath,
  terminatedSize,
  writeTerminated,
} from "./wire-bytes.js";

const TRAFFIC_FIXED = KEY + KEY + 1; // 65
const PRIORITY_MARK = 0x70; // ASCII "p"

// ---------------------------------------------------------------------------------------------
// Traffic (type 9, 5.2.11; type 10, 5.2.12): the data path. Views; a frame that is built or
// forwarded takes one allocation, a head written for a link to join to the payload none.

function writeTraffic(out: Buffer, o: number, t: Traffic): void {
  o = putFixed(out, o, t.source, KEY, "traffic source");
  o = putFixed(out, o, t.dest, KEY, "traffic dest");
  out[o++] = t.kind;
  t.payload.copy(out, o);
}

export function encodeDhtTraffic(t: Traffic): Buffer {
  const out = frame(FrameType.DhtTraffic, TRAFFIC_FIXED + t.payload.length);
  writeTraffic(out, 1, t);
  return out;
}

/** source, dest and payload are subarray views of body (no copy): copy them if body is reused. */
export function decodeDhtTraffic(body: Buffer): Traffic {
  need(body, 0, TRAFFIC_FIXED, "traffic");
  return {
    source: body.subarray(0, KEY),
    dest: body.subarray(KEY, KEY + KEY),
    kind: body[KEY + KEY],
    payload: body.subarray(TRAFFIC_FIXED),
  };
}

/** path is terminated: written as given, with a 0 appended unless it already ends in 0. */
export function encodePathTraffic(p: PathTraffic): Buffer {
  const pLen = terminatedSize(p.path);
  const out = frame(FrameType.PathTraffic, pLen + TRAFFIC_FIXED + p.traffic.payload.length);
  writeTerminated(out, 1, p.path);
  writeTraffic(out, 1 + pLen, p.traffic);
  return out;
}

/** path keeps its terminating 0; the traffic fields are views of body as in decodeDhtTraffic. */
export function decodePathTraffic(body: Buffer): PathTraffic {
  const [path, next] = readTerminatedPath(body, 0);
  if (path.length === 0 || path[path.length - 1] !== 0)
    throw new ProtocolError("path traffic: unterminated path");
  return { path, traffic: decodeDhtTraffic(body.subarray(next)) };
}

/**
 * The head of a type-10 frame, all of it but the payload (type, path from path[from] on, terminated,
 * source, dest, kind), written into out: a link joins it to the payload as it copies both into its
 * send buffer, so the data path builds no frame. Returns its length, or 0 when out is too short.
 */
export function writePathTrafficHead(out: Buffer, path: readonly number[], from: number, t: Traffic): number {
  let size = 1 + TRAFFIC_FIXED;
  for (let i = from; i < path.length; i++) size += uvarintSize(path[i]!);
  if (path.length <= from || path[path.length - 1] !== 0) size++;
  if (size > out.length) return 0;
  out[0] = FrameType.PathTraffic;
  let o = 1;
  for (let i = from; i < path.length; i++) o = writeUvarint(out, o, path[i]!);
  if (path.length <= from || path[path.length - 1] !== 0) out[o++] = 0;
  o = putFixed(out, o, t.source, KEY, "traffic source");
  o = putFixed(out, o, t.dest, KEY, "traffic dest");
  out[o] = t.kind;
  return size;
}

/**
 * The first port of a type-10 body and the offset just past it. As Go's next hop, which decodes the
 * whole path, it throws unless source, dest and kind follow the path.
 */
export function pathTrafficFirstPort(body: Buffer): [port: number, next: number] {
  const [port, next] = readUvarint(body, 0);
  need(body, port === 0 ? next : pathEnd(body, next), TRAFFIC_FIXED, "path traffic");
  return [port, next];
}

/**
 * Pop the first port of a type-10 body. For port ≠ 0, rest is a new type-10 frame with the remaining
 * path (one copy); for port 0 (the path ends here) rest is already the type-9 frame for DHT fallback.
 */
export function pathTrafficPopFirst(body: Buffer): { port: number; rest: Buffer } {
  const [port, next] = pathTrafficFirstPort(body);
  return { port, rest: reframe(port === 0 ? FrameType.DhtTraffic : FrameType.PathTraffic, body, next) };
}

/** The offset just past the 0 that terminates the path starting at offset o. */
function pathEnd(body: Buffer, o: number): number {
  for (;;) {
    const [port, next] = readUvarint(body, o);
    o = next;
    if (port === 0) return o;
  }
}

/** The type-9 body (source ‖ dest ‖ kind ‖ payload) inside a type-10 body: a view past the whole path. */
export function pathTrafficInner(body: Buffer): Buffer {
  const o = pathEnd(body, 0);
  need(body, o, TRAFFIC_FIXED, "path traffic");
  return body.subarray(o);
}

/** The type-9 frame inside a type-10 body (skips the whole terminated path; one copy). */
export function pathTrafficToDht(body: Buffer): Buffer {
  return reframe(FrameType.DhtTraffic, pathTrafficInner(body), 0);
}

/** A new frame: type ‖ body from offset from on (one copy), e.g. to forward what arrived as a view. */
export function reframe(type: number, body: Buffer, from: number): Buffer {
  const out = Buffer.allocUnsafe(1 + body.length - from);
  out[0] = type;
  body.copy(out, 1, from);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Dummy (type 0): keepalive and link priority (spec 4.5, 4.6)

/** Type byte only; the link adds the 00 01 length prefix. */
export const KEEPALIVE_FRAME: Buffer = Buffer.from([FrameType.Dummy]);

/** 00 70 <prio>: announces the local link priority (0..255). */
export function encodePriorityFrame(priority: number): Buffer {
  if (!Number.isInteger(priority) || priority < 0 || priority > 255)
    throw new RangeError(`priority ${priority} is not 0..255`);
  return Buffer.from([FrameType.Dummy, PRIORITY_MARK, priority]);
}

/** The priority in a dummy body "p",prio (2 or more bytes); undefined for keepalives and other bodies. */
export function decodePriority(body: Buffer): number | undefined {
  return body.length >= 2 && body[0] === PRIORITY_MARK ? body[1] : undefined;
}
