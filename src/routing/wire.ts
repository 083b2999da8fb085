// ironwood frame codecs (spec 2, 4.4, 5.1, 5.2): pure functions, byte-exact with ironwood ec61cea.
// This file has the control frames (types 1-8); wire-traffic.ts the traffic and dummy frames (it is
// re-exported here, so importers use this one module) and wire-bytes.ts the helpers both use.
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
  ProtocolError,
  type SetupToken,
  type TreeHop,
  type TreeInfo,
  type TreeLabel,
} from "./types.js";
import { readUvarint, uvarintSize, writeUvarint } from "./varint.js";
import {
  KEY,
  SIG,
  U64,
  copyOut,
  frame,
  need,
  pathSize,
  putFixed,
  readOpenPath,
  readTerminatedPath,
  terminatedSize,
  writePath,
  writeTerminated,
} from "./wire-bytes.js";

export {
  readUvarint,
  readUvarintBig,
  uvarintSize,
  uvarintSizeBig,
  writeUvarint,
  writeUvarintBig,
} from "./varint.js";
export { encodePath } from "./wire-bytes.js";
export * from "./wire-traffic.js";

/** Anything that can sign as one ed25519 key; Identity satisfies it. */
export interface Signer {
  readonly publicKey: Buffer;
  sign(message: Uint8Array): Buffer;
}

const LABEL_FIXED = SIG + KEY + KEY + U64; // 136
const TOKEN_FIXED = SIG + KEY; // 96
const TEARDOWN_BYTES = U64 + KEY + KEY + U64; // 80

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
