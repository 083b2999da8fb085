// ironwood frame codecs (spec 2, 4.4, 5.1, 5.2): pure functions, byte-exact with ironwood ec61cea.
// Encoders return a whole frame (type byte ‖ body), sized exactly and written in one allocation.
// Decoders take the body (no type byte) and throw ProtocolError on any malformation. Control-frame
// decoders copy keys and signatures (the link may reuse its read buffer); traffic decoders return views.
import { verify } from "../crypto/identity.js";
import {
  type BootstrapAck,
  type DhtSetup,
  type DhtTeardown,
  FrameType,
  type PathLookup,
  type PathNotify,
  type PathResponse,
  type PathTraffic,
  ProtocolError,
  type SetupToken,
  type Traffic,
  type TreeHop,
  type TreeInfo,
  type TreeLabel,
} from "./types.js";
import { readUvarint, uvarintSize, writeUvarint } from "./varint.js";

export {
  readUvarint,
  readUvarintBig,
  uvarintSize,
  uvarintSizeBig,
  writeUvarint,
  writeUvarintBig,
} from "./varint.js";

/** Anything that can sign as one ed25519 key; Identity satisfies it. */
export interface Signer {
  readonly publicKey: Buffer;
  sign(message: Uint8Array): Buffer;
}

const KEY = 32;
const SIG = 64;
const U64 = 8;
const LABEL_FIXED = SIG + KEY + KEY + U64; // 136
const TOKEN_FIXED = SIG + KEY; // 96
const TRAFFIC_FIXED = KEY + KEY + 1; // 65
const TEARDOWN_BYTES = U64 + KEY + KEY + U64; // 80
const PRIORITY_MARK = 0x70; // ASCII "p"

// ---------------------------------------------------------------------------------------------
// Small helpers

function need(buf: Buffer, offset: number, n: number, what: string): void {
  if (offset + n > buf.length)
    throw new ProtocolError(`truncated ${what}: need ${n} bytes at ${offset}, have ${buf.length - offset}`);
}

function copyOut(buf: Buffer, offset: number, n: number): Buffer {
  return Buffer.from(buf.subarray(offset, offset + n));
}

function putFixed(out: Buffer, offset: number, bytes: Buffer, n: number, what: string): number {
  if (bytes.length !== n) throw new RangeError(`${what} must be ${n} bytes, got ${bytes.length}`);
  bytes.copy(out, offset);
  return offset + n;
}

function pathSize(path: readonly number[]): number {
  let n = 0;
  for (const p of path) n += uvarintSize(p);
  return n;
}

function writePath(out: Buffer, offset: number, path: readonly number[]): number {
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
function readOpenPath(buf: Buffer, offset: number, what: string): number[] {
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
function readTerminatedPath(buf: Buffer, offset: number): [path: number[], next: number] {
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
function terminatedSize(path: readonly number[]): number {
  const terminated = path.length > 0 && path[path.length - 1] === 0;
  return pathSize(path) + (terminated ? 0 : 1);
}

function writeTerminated(out: Buffer, offset: number, path: readonly number[]): number {
  offset = writePath(out, offset, path);
  if (path.length === 0 || path[path.length - 1] !== 0) out[offset++] = 0;
  return offset;
}

function frame(type: number, bodySize: number): Buffer {
  const out = Buffer.allocUnsafe(1 + bodySize);
  out[0] = type;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Tree (type 1, spec 5.2.1)

function treeSize(info: TreeInfo): number {
  let n = KEY + U64;
  for (const hop of info.hops) n += KEY + uvarintSize(hop.port) + SIG;
  return n;
}

export function encodeTree(info: TreeInfo): Buffer {
  const out = frame(FrameType.Tree, treeSize(info));
  let o = putFixed(out, 1, info.root, KEY, "tree root");
  o = out.writeBigUInt64BE(info.seq, o);
  for (const hop of info.hops) {
    o = putFixed(out, o, hop.next, KEY, "tree hop key");
    o = writeUvarint(out, o, hop.port);
    o = putFixed(out, o, hop.sig, SIG, "tree hop signature");
  }
  return out;
}

export function decodeTree(body: Buffer): TreeInfo {
  need(body, 0, KEY + U64, "tree");
  const root = copyOut(body, 0, KEY);
  const seq = body.readBigUInt64BE(KEY);
  const hops: TreeHop[] = [];
  let o = KEY + U64;
  while (o < body.length) {
    need(body, o, KEY, "tree hop");
    const next = copyOut(body, o, KEY);
    const [port, afterPort] = readUvarint(body, o + KEY);
    need(body, afterPort, SIG, "tree hop signature");
    hops.push({ next, port, sig: copyOut(body, afterPort, SIG) });
    o = afterPort + SIG;
  }
  if (hops.length === 0) throw new ProtocolError("tree announcement has no hops");
  return { root, seq, hops };
}

/** The hop preimages are prefixes of one string: root ‖ seq ‖ (next ‖ uv(port))*. */
function treePreimage(info: TreeInfo, hops: readonly { next: Buffer; port: number }[]): [Buffer, number[]] {
  let size = KEY + U64;
  for (const hop of hops) size += KEY + uvarintSize(hop.port);
  const out = Buffer.allocUnsafe(size);
  let o = putFixed(out, 0, info.root, KEY, "tree root");
  o = out.writeBigUInt64BE(info.seq, o);
  const ends: number[] = [];
  for (const hop of hops) {
    o = putFixed(out, o, hop.next, KEY, "tree hop key");
    o = writeUvarint(out, o, hop.port);
    ends.push(o);
  }
  return [out, ends];
}

/** A copy of info with one more hop {next, port}, signed by signer (the current last key, or the root). */
export function appendTreeHop(signer: Signer, info: TreeInfo, next: Buffer, port: number): TreeInfo {
  const expected = info.hops.length === 0 ? info.root : info.hops[info.hops.length - 1].next;
  if (!signer.publicKey.equals(expected))
    throw new Error("appendTreeHop: signer is not the key the hop list ends at");
  const hops = [...info.hops, { next, port, sig: Buffer.alloc(0) }];
  const [preimage] = treePreimage(info, hops);
  hops[hops.length - 1] = { next, port, sig: signer.sign(preimage) };
  return { root: info.root, seq: info.seq, hops };
}

/** True iff there is at least one hop and every hop's signature verifies (spec 5.2.1). */
export function verifyTree(info: TreeInfo): boolean {
  if (info.hops.length === 0) return false;
  return guard(() => {
    const [preimage, ends] = treePreimage(info, info.hops);
    let key = info.root;
    for (let i = 0; i < info.hops.length; i++) {
      const hop = info.hops[i];
      if (!verify(key, preimage.subarray(0, ends[i]), hop.sig)) return false;
      key = hop.next;
    }
    return true;
  });
}

function guard(check: () => boolean): boolean {
  try {
    return check();
  } catch {
    return false; // a malformed in-memory value (wrong key length, bad port) simply does not verify
  }
}

// ---------------------------------------------------------------------------------------------
// Label (spec 5.2.2), bootstrap (type 2, spec 5.2.3)

function labelSize(label: TreeLabel): number {
  return LABEL_FIXED + pathSize(label.path);
}

function writeLabel(out: Buffer, o: number, label: TreeLabel): number {
  o = putFixed(out, o, label.sig, SIG, "label signature");
  o = putFixed(out, o, label.key, KEY, "label key");
  o = putFixed(out, o, label.root, KEY, "label root");
  o = out.writeBigUInt64BE(label.seq, o);
  return writePath(out, o, label.path);
}

/** Label bytes only (no type byte). */
export function encodeLabel(label: TreeLabel): Buffer {
  const out = Buffer.allocUnsafe(labelSize(label));
  writeLabel(out, 0, label);
  return out;
}

/** A label must fill buf exactly (the open path runs to its end). */
export function decodeLabel(buf: Buffer): TreeLabel {
  need(buf, 0, LABEL_FIXED, "label");
  return {
    sig: copyOut(buf, 0, SIG),
    key: copyOut(buf, SIG, KEY),
    root: copyOut(buf, SIG + KEY, KEY),
    seq: buf.readBigUInt64BE(SIG + KEY + KEY),
    path: readOpenPath(buf, LABEL_FIXED, "label"),
  };
}

function labelPreimage(root: Buffer, seq: bigint, path: readonly number[]): Buffer {
  const out = Buffer.allocUnsafe(KEY + U64 + pathSize(path));
  let o = putFixed(out, 0, root, KEY, "label root");
  o = out.writeBigUInt64BE(seq, o);
  writePath(out, o, path);
  return out;
}

/** The signer's label: its key, the root and seq it follows, and its coordinates. */
export function makeLabel(signer: Signer, root: Buffer, seq: bigint, path: number[]): TreeLabel {
  const sig = signer.sign(labelPreimage(root, seq, path));
  return { sig, key: signer.publicKey, root, seq, path: [...path] };
}

export function verifyLabel(label: TreeLabel): boolean {
  return guard(() => verify(label.key, labelPreimage(label.root, label.seq, label.path), label.sig));
}

export function encodeBootstrap(label: TreeLabel): Buffer {
  const out = frame(FrameType.DhtBootstrap, labelSize(label));
  writeLabel(out, 1, label);
  return out;
}

export function decodeBootstrap(body: Buffer): TreeLabel {
  return decodeLabel(body);
}

// ---------------------------------------------------------------------------------------------
// Setup token (spec 5.2.4), bootstrap ack (type 3, 5.2.5), setup (type 4, 5.2.6)

function tokenSize(t: SetupToken): number {
  return TOKEN_FIXED + labelSize(t.dest);
}

function writeToken(out: Buffer, o: number, t: SetupToken): number {
  o = putFixed(out, o, t.sig, SIG, "token signature");
  o = putFixed(out, o, t.source, KEY, "token source");
  return writeLabel(out, o, t.dest);
}

/** Token bytes only (no type byte). */
export function encodeToken(t: SetupToken): Buffer {
  const out = Buffer.allocUnsafe(tokenSize(t));
  writeToken(out, 0, t);
  return out;
}

/** A token fills buf exactly (its label ends it). */
export function decodeToken(buf: Buffer): SetupToken {
  need(buf, 0, TOKEN_FIXED, "setup token");
  return {
    sig: copyOut(buf, 0, SIG),
    source: copyOut(buf, SIG, KEY),
    dest: decodeLabel(buf.subarray(TOKEN_FIXED)),
  };
}

function tokenPreimage(source: Buffer, dest: TreeLabel): Buffer {
  const out = Buffer.allocUnsafe(KEY + labelSize(dest));
  writeLabel(out, putFixed(out, 0, source, KEY, "token source"), dest);
  return out;
}

/** dest's permission for source to open a DHT path to it; signer must be dest.key. */
export function makeToken(signer: Signer, source: Buffer, dest: TreeLabel): SetupToken {
  if (!signer.publicKey.equals(dest.key)) throw new Error("makeToken: signer is not the label's key");
  return { sig: signer.sign(tokenPreimage(source, dest)), source, dest };
}

/** Token signature by dest.key AND the embedded label's own signature. */
export function verifyToken(t: SetupToken): boolean {
  return guard(() => verify(t.dest.key, tokenPreimage(t.source, t.dest), t.sig) && verifyLabel(t.dest));
}

export function encodeBootstrapAck(a: BootstrapAck): Buffer {
  const bootLen = labelSize(a.bootstrap);
  const out = frame(FrameType.DhtBootstrapAck, uvarintSize(bootLen) + bootLen + tokenSize(a.token));
  let o = writeUvarint(out, 1, bootLen);
  o = writeLabel(out, o, a.bootstrap);
  writeToken(out, o, a.token);
  return out;
}

export function decodeBootstrapAck(body: Buffer): BootstrapAck {
  const [bootLen, begin] = readUvarint(body, 0);
  need(body, begin, bootLen, "bootstrap inside ack");
  const end = begin + bootLen;
  return { bootstrap: decodeLabel(body.subarray(begin, end)), token: decodeToken(body.subarray(end)) };
}

export function encodeSetup(s: DhtSetup): Buffer {
  const out = frame(FrameType.DhtSetup, SIG + U64 + tokenSize(s.token));
  let o = putFixed(out, 1, s.sig, SIG, "setup signature");
  o = out.writeBigUInt64BE(s.seq, o);
  writeToken(out, o, s.token);
  return out;
}

export function decodeSetup(body: Buffer): DhtSetup {
  need(body, 0, SIG + U64, "setup");
  return {
    sig: copyOut(body, 0, SIG),
    seq: body.readBigUInt64BE(SIG),
    token: decodeToken(body.subarray(SIG + U64)),
  };
}

function setupPreimage(seq: bigint, token: SetupToken): Buffer {
  const out = Buffer.allocUnsafe(U64 + tokenSize(token));
  writeToken(out, out.writeBigUInt64BE(seq, 0), token);
  return out;
}

/** A setup for token, signed by token.source (the signer). */
export function makeSetup(signer: Signer, seq: bigint, token: SetupToken): DhtSetup {
  if (!signer.publicKey.equals(token.source)) throw new Error("makeSetup: signer is not the token's source");
  return { sig: signer.sign(setupPreimage(seq, token)), seq, token };
}

/** Token valid AND setup signature by token.source. */
export function verifySetup(s: DhtSetup): boolean {
  return guard(() => verifyToken(s.token) && verify(s.token.source, setupPreimage(s.seq, s.token), s.sig));
}

// ---------------------------------------------------------------------------------------------
// Teardown (type 5, spec 5.2.7): exactly 80 bytes, unsigned

export function encodeTeardown(t: DhtTeardown): Buffer {
  const out = frame(FrameType.DhtTeardown, TEARDOWN_BYTES);
  let o = out.writeBigUInt64BE(t.seq, 1);
  o = putFixed(out, o, t.key, KEY, "teardown key");
  o = putFixed(out, o, t.root, KEY, "teardown root");
  out.writeBigUInt64BE(t.rootSeq, o);
  return out;
}

export function decodeTeardown(body: Buffer): DhtTeardown {
  if (body.length !== TEARDOWN_BYTES)
    throw new ProtocolError(`teardown must be ${TEARDOWN_BYTES} bytes, got ${body.length}`);
  return {
    seq: body.readBigUInt64BE(0),
    key: copyOut(body, U64, KEY),
    root: copyOut(body, U64 + KEY, KEY),
    rootSeq: body.readBigUInt64BE(U64 + KEY + KEY),
  };
}

// ---------------------------------------------------------------------------------------------
// Pathfinder: notify (type 6, 5.2.8), lookup (type 7, 5.2.9), response (type 8, 5.2.10)

function notifySize(n: PathNotify): number {
  return SIG + KEY + labelSize(n.label);
}

function writeNotify(out: Buffer, o: number, n: PathNotify): number {
  o = putFixed(out, o, n.sig, SIG, "notify signature");
  o = putFixed(out, o, n.dest, KEY, "notify dest");
  return writeLabel(out, o, n.label);
}

export function encodeNotify(n: PathNotify): Buffer {
  const out = frame(FrameType.PathNotify, notifySize(n));
  writeNotify(out, 1, n);
  return out;
}

export function decodeNotify(body: Buffer): PathNotify {
  need(body, 0, SIG + KEY, "notify");
  return {
    sig: copyOut(body, 0, SIG),
    dest: copyOut(body, SIG, KEY),
    label: decodeLabel(body.subarray(SIG + KEY)),
  };
}

function notifyPreimage(dest: Buffer, label: TreeLabel): Buffer {
  const out = Buffer.allocUnsafe(KEY + labelSize(label));
  writeLabel(out, putFixed(out, 0, dest, KEY, "notify dest"), label);
  return out;
}

/** A notify telling dest about label; signer must be label.key. */
export function makeNotify(signer: Signer, dest: Buffer, label: TreeLabel): PathNotify {
  if (!signer.publicKey.equals(label.key)) throw new Error("makeNotify: signer is not the label's key");
  return { sig: signer.sign(notifyPreimage(dest, label)), dest, label };
}

/** Label signature AND notify signature by label.key. */
export function verifyNotify(n: PathNotify): boolean {
  return guard(() => verifyLabel(n.label) && verify(n.label.key, notifyPreimage(n.dest, n.label), n.sig));
}

function checkRpath(rpath: readonly number[]): void {
  if (rpath.length > 0 && rpath[rpath.length - 1] === 0) throw new ProtocolError("rpath ends with 0");
}

export function encodeLookup(l: PathLookup): Buffer {
  const nLen = notifySize(l.notify);
  const out = frame(FrameType.PathLookup, uvarintSize(nLen) + nLen + pathSize(l.rpath));
  let o = writeUvarint(out, 1, nLen);
  o = writeNotify(out, o, l.notify);
  writePath(out, o, l.rpath);
  return out;
}

export function decodeLookup(body: Buffer): PathLookup {
  const [nLen, begin] = readUvarint(body, 0);
  need(body, begin, nLen, "notify inside lookup");
  const end = begin + nLen;
  const notify = decodeNotify(body.subarray(begin, end));
  const rpath = readOpenPath(body, end, "lookup rpath");
  checkRpath(rpath);
  return { notify, rpath };
}

/** path is terminated: written as given, with a 0 appended unless it already ends in 0. */
export function encodeResponse(r: PathResponse): Buffer {
  const out = frame(FrameType.PathResponse, KEY + terminatedSize(r.path) + pathSize(r.rpath));
  let o = putFixed(out, 1, r.from, KEY, "response from");
  o = writeTerminated(out, o, r.path);
  writePath(out, o, r.rpath);
  return out;
}

/** path keeps its terminating 0; like ironwood, a path that runs to the end unterminated is accepted. */
export function decodeResponse(body: Buffer): PathResponse {
  need(body, 0, KEY, "response");
  const from = copyOut(body, 0, KEY);
  const [path, next] = readTerminatedPath(body, KEY);
  const rpath = readOpenPath(body, next, "response rpath");
  checkRpath(rpath);
  return { from, path, rpath };
}

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
