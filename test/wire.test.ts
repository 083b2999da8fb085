// Frame codecs against the captured vectors of spec 13.1/13.3, random round trips, malformed input.
import { describe, expect, test } from "vitest";
import { partialKeyFor } from "../src/crypto/address.js";
import { Identity } from "../src/crypto/identity.js";
import { FrameType, ProtocolError, type TreeLabel } from "../src/routing/types.js";
import * as w from "../src/routing/wire.js";

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ""), "hex");
const A = Identity.fromSeed(Buffer.alloc(32));
const B = Identity.fromSeed(Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1)));
const SEQ = 0x6b059744n;

/** Strip the u16 length prefix (checking it) and the type byte; returns the body. */
function body(frameWithLength: Buffer, type: number): Buffer {
  expect(frameWithLength.readUInt16BE(0)).toBe(frameWithLength.length - 2);
  expect(frameWithLength[2]).toBe(type);
  return frameWithLength.subarray(3);
}
const framed = (f: Buffer): Buffer => {
  const len = Buffer.alloc(2);
  len.writeUInt16BE(f.length);
  return Buffer.concat([len, f]);
};

// Spec 13.3, full frames as captured (length prefix included).
const V1 = hex(`008a013b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29 0000000000000000
  79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664 01
  7fc806ccffa08cf9244d29a6ed65b894d9a1fff7bed71f3f8f93cd84cdce9b8865b7bdc3e6ad4b48ea6f0dae1d1f81d33dd573fd4e7c6f278d024cae4d503a00`);
const V2 = hex(
  "008a0179b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad04966400000000000000003b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da2901321161d327ea7949b3e70654119ddc7d279172a20ea8c4a900513275d57d854bccd5b15eb59f3a218bcd6aed7dea98eef0925fe218e4f669bc061fb103057f0e",
);
const V3 = hex(
  "008a013b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29000000006b05974479b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad04966401282722553f0221cc5f5cd5d206b44d13bce1c6ad7de8607bada2bbfa6397d55aa612ee688d3ada19f616f6be3ec65d788c7a40a548b3ca9779b311a70a58e10d",
);
const V4 = hex(
  "00eb013b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29000000006b05974479b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad04966401282722553f0221cc5f5cd5d206b44d13bce1c6ad7de8607bada2bbfa6397d55aa612ee688d3ada19f616f6be3ec65d788c7a40a548b3ca9779b311a70a58e10d3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da2901735f154a1ab3a7d8bfb3de602e6c1168ce05740e787484ec17dbcee4d09842c5321af6150c9d700036ce3b2d4d8bc72228cec8eb87c816656faa87ecf9521f09",
);
const V5 = hex(
  "008a02ae9fac9a739bb22d09e06f51e20fe6cb4cd731e8772d67046937a56e996a241913ac1265a43b064574d78858dd54b75a6d2003674c7f2e5b9045adb5556c000679b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad0496643b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29000000000000000001",
);
const V6 = hex(
  "0174038901ae9fac9a739bb22d09e06f51e20fe6cb4cd731e8772d67046937a56e996a241913ac1265a43b064574d78858dd54b75a6d2003674c7f2e5b9045adb5556c000679b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad0496643b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da2900000000000000000199fc1e731394b9defc7118da07d04b3a345e9efe7223bf9f92d121969d6a9924fa89993404d4eeca323a38e8f28b3ecfd280a227bb7706f4e27923811f945d0479b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664b7a7d7eb68e59df78e50fd62bf33c202ece1fb566c9c675969d8a9f54668574b90757ba8351db14961e8d452d09178b68f1a2bf021fab6771ecf3b381c92cf0c3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da293b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29000000006b059744",
);
const TOKEN = V6.subarray(2 + 1 + 2 + 137); // the ack's token: 232 bytes (the spec's "233" counts one too many)
const V7 = Buffer.concat([
  hex(
    "013104cad4eb67a11f494ad99d9b6b76d9b0dc750d3523bde59a20caeff56f240f2fa0d04e5d49627da8c6c4a17ca72789b6b9242844e7f0a45bbf3d44a28df65d460f18eaffac7697ffb7",
  ),
  TOKEN,
]);
const V8 = hex(
  "00830979b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad0496643b6a27bcceb6a42d62a3a8d02a6f1fffffffffffffffffffffffffffffffffff0201e072c72e096b67eb4bfb6e9aeb39c98303eee43eba3a4ac5fa50a921ab783fa2fdb66467b4d504603b7f3425cc8f8e71350ffea2be9e4a1a13499b29f4ac7c06",
);
const V9 = hex(
  "0083093b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da2979b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad0496640202fa7eb602f16115edd21d31154a3d60ce2d58b73e8fd666534a09c3c62352749cfd07dd47951bdc826696d30549443b62287df4784facebe5b5de7ead1938820e",
);
const A_LABEL = TOKEN.subarray(96); // A's label {A, root A, seq SEQ, []}: 136 bytes
const V10 = Buffer.concat([
  hex(
    "00e90699fc1e731394b9defc7118da07d04b3a345e9efe7223bf9f92d121969d6a9924fa89993404d4eeca323a38e8f28b3ecfd280a227bb7706f4e27923811f945d04",
  ),
  B.publicKey,
  A_LABEL,
]);
const V11 = Buffer.concat([hex("00eb07e801"), V10.subarray(3)]);
const V12 = Buffer.concat([hex("002208"), A.publicKey, hex("00")]);

describe("spec 13.1 link frames", () => {
  test("keepalive and priority", () => {
    expect(framed(w.KEEPALIVE_FRAME).toString("hex")).toBe("000100");
    expect(framed(w.encodePriorityFrame(3)).toString("hex")).toBe("0003007003");
    expect(w.decodePriority(hex("7003"))).toBe(3);
    expect(w.decodePriority(hex("700305"))).toBe(3);
    expect(w.decodePriority(hex(""))).toBeUndefined();
    expect(w.decodePriority(hex("70"))).toBeUndefined();
    expect(w.decodePriority(hex("7103"))).toBeUndefined();
    expect(() => w.encodePriorityFrame(256)).toThrow(RangeError);
  });
});

describe("spec 13.3 routing frames", () => {
  test("the keys are the spec's A and B", () => {
    expect(A.publicKey.toString("hex")).toBe(
      "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
    );
    expect(B.publicKey.toString("hex")).toBe(
      "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664",
    );
  });

  test("1-3: one-hop tree hellos decode, verify, re-encode, and are reproduced", () => {
    const cases: [Buffer, Identity, Identity, bigint][] = [
      [V1, A, B, 0n],
      [V2, B, A, 0n],
      [V3, A, B, SEQ],
    ];
    for (const [frame, root, next, seq] of cases) {
      const info = w.decodeTree(body(frame, FrameType.Tree));
      expect(info.root.equals(root.publicKey)).toBe(true);
      expect(info.seq).toBe(seq);
      expect(info.hops).toHaveLength(1);
      expect(info.hops[0].next.equals(next.publicKey)).toBe(true);
      expect(info.hops[0].port).toBe(1);
      expect(w.verifyTree(info)).toBe(true);
      expect(framed(w.encodeTree(info)).equals(frame)).toBe(true);
      const made = w.appendTreeHop(root, { root: root.publicKey, seq, hops: [] }, next.publicKey, 1);
      expect(framed(w.encodeTree(made)).equals(frame)).toBe(true);
    }
  });

  test("4: two-hop tree (second hop signed by B) is reproduced", () => {
    const info = w.decodeTree(body(V4, FrameType.Tree));
    expect(info.hops.map((h) => [h.next.toString("hex").slice(0, 8), h.port])).toEqual([
      ["79b5562e", 1],
      ["3b6a27bc", 1],
    ]);
    expect(w.verifyTree(info)).toBe(true);
    expect(framed(w.encodeTree(info)).equals(V4)).toBe(true);
    const one = w.appendTreeHop(A, { root: A.publicKey, seq: SEQ, hops: [] }, B.publicKey, 1);
    const two = w.appendTreeHop(B, one, A.publicKey, 1);
    expect(framed(w.encodeTree(two)).equals(V4)).toBe(true);
    expect(() => w.appendTreeHop(A, one, B.publicKey, 2)).toThrow(/signer/);
  });

  test("5: bootstrap label from B", () => {
    const label = w.decodeBootstrap(body(V5, FrameType.DhtBootstrap));
    expect(label.key.equals(B.publicKey)).toBe(true);
    expect(label.root.equals(A.publicKey)).toBe(true);
    expect(label.seq).toBe(0n);
    expect(label.path).toEqual([1]);
    expect(w.verifyLabel(label)).toBe(true);
    expect(framed(w.encodeBootstrap(label)).equals(V5)).toBe(true);
    expect(framed(w.encodeBootstrap(w.makeLabel(B, A.publicKey, 0n, [1]))).equals(V5)).toBe(true);
  });

  test("6: bootstrap ack with A's token", () => {
    const ack = w.decodeBootstrapAck(body(V6, FrameType.DhtBootstrapAck));
    expect(w.encodeLabel(ack.bootstrap).equals(V5.subarray(3))).toBe(true);
    expect(ack.token.source.equals(B.publicKey)).toBe(true);
    expect(ack.token.dest.key.equals(A.publicKey)).toBe(true);
    expect(ack.token.dest.seq).toBe(SEQ);
    expect(ack.token.dest.path).toEqual([]);
    expect(TOKEN.length).toBe(232);
    expect(w.verifyLabel(ack.bootstrap)).toBe(true);
    expect(w.verifyToken(ack.token)).toBe(true);
    expect(framed(w.encodeBootstrapAck(ack)).equals(V6)).toBe(true);
    const token = w.makeToken(A, B.publicKey, w.makeLabel(A, A.publicKey, SEQ, []));
    expect(w.encodeToken(token).equals(TOKEN)).toBe(true);
    const made = w.encodeBootstrapAck({ bootstrap: w.makeLabel(B, A.publicKey, 0n, [1]), token });
    expect(framed(made).equals(V6)).toBe(true);
  });

  test("7: DHT setup from B", () => {
    const setup = w.decodeSetup(body(V7, FrameType.DhtSetup));
    expect(setup.seq).toBe(1795528517649694647n);
    expect(w.encodeToken(setup.token).equals(TOKEN)).toBe(true);
    expect(w.verifySetup(setup)).toBe(true);
    expect(framed(w.encodeSetup(setup)).equals(V7)).toBe(true);
    const made = w.makeSetup(B, 1795528517649694647n, w.decodeToken(TOKEN));
    expect(framed(w.encodeSetup(made)).equals(V7)).toBe(true);
    expect(() => w.makeSetup(A, 1n, w.decodeToken(TOKEN))).toThrow(/signer/);
  });

  test("8-9: key lookup and key response (OOB DHT traffic)", () => {
    const lookup = w.decodeDhtTraffic(body(V8, FrameType.DhtTraffic));
    const partial = partialKeyFor(A.address);
    expect(lookup.source.equals(B.publicKey)).toBe(true);
    expect(lookup.dest.equals(partial)).toBe(true);
    expect(lookup.kind).toBe(2);
    expect(lookup.payload.equals(Buffer.concat([hex("01"), B.sign(partial)]))).toBe(true);
    expect(framed(w.encodeDhtTraffic(lookup)).equals(V8)).toBe(true);

    const response = w.decodeDhtTraffic(body(V9, FrameType.DhtTraffic));
    expect(response.source.equals(A.publicKey)).toBe(true);
    expect(response.dest.equals(B.publicKey)).toBe(true);
    expect(response.kind).toBe(2);
    const made = {
      source: A.publicKey,
      dest: B.publicKey,
      kind: 2,
      payload: Buffer.concat([hex("02"), A.sign(B.publicKey)]),
    };
    expect(framed(w.encodeDhtTraffic(made)).equals(V9)).toBe(true);
  });

  test("10: path notify A→B, signature equal to the token's", () => {
    const notify = w.decodeNotify(body(V10, FrameType.PathNotify));
    expect(notify.dest.equals(B.publicKey)).toBe(true);
    expect(notify.label.key.equals(A.publicKey)).toBe(true);
    expect(w.verifyNotify(notify)).toBe(true);
    expect(framed(w.encodeNotify(notify)).equals(V10)).toBe(true);
    const made = w.makeNotify(A, B.publicKey, w.makeLabel(A, A.publicKey, SEQ, []));
    expect(framed(w.encodeNotify(made)).equals(V10)).toBe(true);
    expect(made.sig.equals(TOKEN.subarray(0, 64))).toBe(true);
  });

  test("11: path lookup with empty rpath", () => {
    const lookup = w.decodeLookup(body(V11, FrameType.PathLookup));
    expect(lookup.rpath).toEqual([]);
    expect(w.verifyNotify(lookup.notify)).toBe(true);
    expect(framed(w.encodeLookup(lookup)).equals(V11)).toBe(true);
    const withRpath = w.encodeLookup({ notify: lookup.notify, rpath: [2, 1] });
    expect(withRpath.subarray(-2).toString("hex")).toBe("0201");
    expect(w.decodeLookup(withRpath.subarray(1)).rpath).toEqual([2, 1]);
  });

  test("12: path response from A with path [0]", () => {
    const r = w.decodeResponse(body(V12, FrameType.PathResponse));
    expect(r.from.equals(A.publicKey)).toBe(true);
    expect(r.path).toEqual([0]);
    expect(r.rpath).toEqual([]);
    expect(framed(w.encodeResponse(r)).equals(V12)).toBe(true);
    expect(framed(w.encodeResponse({ from: A.publicKey, path: [], rpath: [] })).equals(V12)).toBe(true);
    // The worked example of spec 5.6: path [2,0], rpath [] then path [0], rpath [1].
    expect(
      w
        .encodeResponse({ from: A.publicKey, path: [2, 0], rpath: [] })
        .subarray(33)
        .toString("hex"),
    ).toBe("0200");
    expect(
      w
        .encodeResponse({ from: A.publicKey, path: [0], rpath: [1] })
        .subarray(33)
        .toString("hex"),
    ).toBe("0001");
  });

  test("13: path traffic header B→A", () => {
    const payload = Buffer.alloc(193, 0xaa);
    payload[0] = 2;
    const f = framed(
      w.encodePathTraffic({
        path: [0],
        traffic: { source: B.publicKey, dest: A.publicKey, kind: 1, payload },
      }),
    );
    const expectedHead = Buffer.concat([hex("01040a00"), B.publicKey, A.publicKey, hex("0102")]);
    expect(f.subarray(0, expectedHead.length).equals(expectedHead)).toBe(true);
    const p = w.decodePathTraffic(body(f, FrameType.PathTraffic));
    expect(p.path).toEqual([0]);
    expect(p.traffic.kind).toBe(1);
    expect(p.traffic.payload.equals(payload)).toBe(true);
  });
});

// ------------------------------------------------------------------------------------------------
// Random content

let rngState = 0x9e3779b9;
function rand(n: number): number {
  rngState ^= rngState << 13;
  rngState ^= rngState >>> 17;
  rngState ^= rngState << 5;
  return (rngState >>> 0) % n;
}
const randBytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rand(256)));
const randPort = (): number => [1, 2, 127, 128, 300, 16384, 2 ** 31, 2 ** 53 - 2][rand(8)] + rand(2);
const randPath = (max: number): number[] => Array.from({ length: rand(max + 1) }, randPort);
const randU64 = (): bigint => BigInt.asUintN(64, BigInt(`0x${randBytes(8).toString("hex")}`));
const randLabel = (): TreeLabel => ({
  sig: randBytes(64),
  key: randBytes(32),
  root: randBytes(32),
  seq: randU64(),
  path: randPath(6),
});
const randTraffic = () => ({
  source: randBytes(32),
  dest: randBytes(32),
  kind: rand(3),
  payload: randBytes(rand(300)),
});
const randNotify = () => ({ sig: randBytes(64), dest: randBytes(32), label: randLabel() });
const randToken = () => ({ sig: randBytes(64), source: randBytes(32), dest: randLabel() });

/** One random valid frame per type (1..10), with its decoder. */
function randomFrames(): {
  type: number;
  frame: Buffer;
  decode: (b: Buffer) => unknown;
  encode: (v: never) => Buffer;
}[] {
  const hops = Array.from({ length: 1 + rand(4) }, () => ({
    next: randBytes(32),
    port: randPort(),
    sig: randBytes(64),
  }));
  const tree = { root: randBytes(32), seq: randU64(), hops };
  const bootstrap = randLabel();
  const ack = { bootstrap: randLabel(), token: randToken() };
  const setup = { sig: randBytes(64), seq: randU64(), token: randToken() };
  const teardown = { seq: randU64(), key: randBytes(32), root: randBytes(32), rootSeq: randU64() };
  const notify = randNotify();
  const lookup = { notify: randNotify(), rpath: randPath(5) };
  const response = { from: randBytes(32), path: [...randPath(5), 0], rpath: randPath(5) };
  const dht = randTraffic();
  const pathTraffic = { path: [...randPath(5), 0], traffic: randTraffic() };
  return [
    { type: 1, frame: w.encodeTree(tree), decode: w.decodeTree, encode: w.encodeTree },
    { type: 2, frame: w.encodeBootstrap(bootstrap), decode: w.decodeBootstrap, encode: w.encodeBootstrap },
    { type: 3, frame: w.encodeBootstrapAck(ack), decode: w.decodeBootstrapAck, encode: w.encodeBootstrapAck },
    { type: 4, frame: w.encodeSetup(setup), decode: w.decodeSetup, encode: w.encodeSetup },
    { type: 5, frame: w.encodeTeardown(teardown), decode: w.decodeTeardown, encode: w.encodeTeardown },
    { type: 6, frame: w.encodeNotify(notify), decode: w.decodeNotify, encode: w.encodeNotify },
    { type: 7, frame: w.encodeLookup(lookup), decode: w.decodeLookup, encode: w.encodeLookup },
    { type: 8, frame: w.encodeResponse(response), decode: w.decodeResponse, encode: w.encodeResponse },
    { type: 9, frame: w.encodeDhtTraffic(dht), decode: w.decodeDhtTraffic, encode: w.encodeDhtTraffic },
    {
      type: 10,
      frame: w.encodePathTraffic(pathTraffic),
      decode: w.decodePathTraffic,
      encode: w.encodePathTraffic,
    },
  ];
}

describe("random round trips", () => {
  test("all 11 frame types decode to the same fields and re-encode byte-identical", () => {
    for (let round = 0; round < 50; round++) {
      for (const { type, frame, decode, encode } of randomFrames()) {
        expect(frame[0]).toBe(type);
        const decoded = decode(frame.subarray(1));
        const again = encode(decoded as never);
        expect(again.equals(frame)).toBe(true);
        expect(decode(again.subarray(1))).toEqual(decoded);
      }
      const prio = rand(256);
      const pf = w.encodePriorityFrame(prio);
      expect(pf[0]).toBe(FrameType.Dummy);
      expect(w.decodePriority(pf.subarray(1))).toBe(prio);
      expect(w.decodePriority(w.KEEPALIVE_FRAME.subarray(1))).toBeUndefined();
    }
  });

  test("decoded fields equal the encoded ones (tree, ack, path traffic)", () => {
    const label = randLabel();
    expect(w.decodeLabel(w.encodeLabel(label))).toEqual(label);
    const token = randToken();
    expect(w.decodeToken(w.encodeToken(token))).toEqual(token);
    const t = { path: [5, 300, 0], traffic: randTraffic() };
    expect(w.decodePathTraffic(w.encodePathTraffic(t).subarray(1))).toEqual(t);
  });

  test("signed objects made with random identities verify; any change breaks them", () => {
    const ids = Array.from({ length: 4 }, () => Identity.generate());
    let info = { root: ids[0].publicKey, seq: 7n, hops: [] as { next: Buffer; port: number; sig: Buffer }[] };
    for (let i = 1; i < ids.length; i++) info = w.appendTreeHop(ids[i - 1], info, ids[i].publicKey, 128 + i);
    expect(w.verifyTree(info)).toBe(true);
    expect(w.verifyTree(w.decodeTree(w.encodeTree(info).subarray(1)))).toBe(true);
    expect(w.verifyTree({ ...info, seq: 8n })).toBe(false);
    expect(w.verifyTree({ ...info, hops: [info.hops[0], { ...info.hops[1], port: 1 }, info.hops[2]] })).toBe(
      false,
    );

    const label = w.makeLabel(ids[3], ids[0].publicKey, 7n, [129, 130, 131]);
    const token = w.makeToken(ids[3], ids[1].publicKey, label);
    const setup = w.makeSetup(ids[1], 99n, token);
    const notify = w.makeNotify(ids[3], ids[2].publicKey, label);
    expect([
      w.verifyLabel(label),
      w.verifyToken(token),
      w.verifySetup(setup),
      w.verifyNotify(notify),
    ]).toEqual([true, true, true, true]);
    expect(w.verifyLabel({ ...label, path: [129, 130] })).toBe(false);
    expect(w.verifyToken({ ...token, source: ids[2].publicKey })).toBe(false);
    expect(w.verifyToken({ ...token, dest: { ...label, seq: 8n } })).toBe(false); // token sig covers the label
    expect(w.verifySetup({ ...setup, seq: 100n })).toBe(false);
    expect(w.verifyNotify({ ...notify, dest: ids[1].publicKey })).toBe(false);
    expect(() => w.makeToken(ids[0], ids[1].publicKey, label)).toThrow(/signer/);
    expect(() => w.makeNotify(ids[0], ids[1].publicKey, label)).toThrow(/signer/);
    // Malformed in-memory values do not verify rather than throw.
    expect(w.verifyLabel({ ...label, key: Buffer.alloc(31) })).toBe(false);
    expect(w.verifyTree({ ...info, root: Buffer.alloc(5) })).toBe(false);
  });
});

// ------------------------------------------------------------------------------------------------
// uvarint

describe("uvarint", () => {
  const known: [number, string][] = [
    [0, "00"],
    [1, "01"],
    [127, "7f"],
    [128, "8001"],
    [137, "8901"],
    [232, "e801"],
    [300, "ac02"],
    [2 ** 32, "8080808010"],
    [2 ** 53 - 1, "ffffffffffffff0f"],
  ];
  test("known encodings (Go PutUvarint) both ways", () => {
    for (const [v, h] of known) {
      const buf = Buffer.alloc(12);
      const end = w.writeUvarint(buf, 1, v);
      expect(buf.subarray(1, end).toString("hex")).toBe(h);
      expect(w.uvarintSize(v)).toBe(h.length / 2);
      expect(w.readUvarint(hex(`aa${h}bb`), 1)).toEqual([v, 1 + h.length / 2]);
      expect(w.readUvarintBig(hex(h), 0)).toEqual([BigInt(v), h.length / 2]);
    }
    expect(w.encodePath([1, 300, 0]).toString("hex")).toBe("01ac0200");
  });

  test("bigint form covers all of u64", () => {
    const max = (1n << 64n) - 1n;
    const buf = Buffer.alloc(10);
    expect(w.writeUvarintBig(buf, 0, max)).toBe(10);
    expect(buf.toString("hex")).toBe("ffffffffffffffffff01");
    expect(w.readUvarintBig(buf, 0)).toEqual([max, 10]);
    for (let i = 0; i < 200; i++) {
      const v = randU64() >> BigInt(rand(64));
      const out = Buffer.alloc(10);
      const end = w.writeUvarintBig(out, 0, v);
      expect(end).toBe(w.uvarintSizeBig(v));
      expect(w.readUvarintBig(out, 0)).toEqual([v, end]);
    }
    expect(() => w.writeUvarintBig(buf, 0, max + 1n)).toThrow(RangeError);
  });

  test("refuses truncation, overflow, over-long and non-minimal encodings", () => {
    expect(() => w.readUvarint(hex(""), 0)).toThrow(ProtocolError);
    expect(() => w.readUvarint(hex("8080"), 0)).toThrow(ProtocolError);
    expect(() => w.readUvarintBig(hex("ff"), 0)).toThrow(ProtocolError);
    expect(() => w.readUvarintBig(hex("ffffffffffffffffff02"), 0)).toThrow(/overflows 64/); // 10th byte > 1
    expect(() => w.readUvarintBig(hex("ffffffffffffffffff8001"), 0)).toThrow(ProtocolError); // 11 bytes
    expect(() => w.readUvarint(hex("ffffffffffffffffffffff01"), 0)).toThrow(ProtocolError);
    expect(() => w.readUvarint(hex("8080808080808010"), 0)).toThrow(/2\^53/); // exactly 2^53
    expect(() => w.readUvarint(hex("ffffffffffffff7f"), 0)).toThrow(/2\^53/);
    expect(() => w.readUvarint(hex("8000"), 0)).toThrow(/non-minimal/);
    expect(() => w.readUvarint(hex("818000"), 0)).toThrow(/non-minimal/);
    expect(() => w.readUvarintBig(hex("8100"), 0)).toThrow(/non-minimal/);
    expect(() => w.writeUvarint(Buffer.alloc(10), 0, -1)).toThrow(RangeError);
    expect(() => w.writeUvarint(Buffer.alloc(10), 0, 2 ** 53)).toThrow(RangeError);
    expect(() => w.writeUvarint(Buffer.alloc(10), 0, 1.5)).toThrow(RangeError);
  });
});

// ------------------------------------------------------------------------------------------------
// Malformed input

const allVectors: [Buffer, number, (b: Buffer) => unknown, (v: never) => Buffer][] = [
  [V1, 1, w.decodeTree, w.encodeTree],
  [V4, 1, w.decodeTree, w.encodeTree],
  [V5, 2, w.decodeBootstrap, w.encodeBootstrap],
  [V6, 3, w.decodeBootstrapAck, w.encodeBootstrapAck],
  [V7, 4, w.decodeSetup, w.encodeSetup],
  [V8, 9, w.decodeDhtTraffic, w.encodeDhtTraffic],
  [V10, 6, w.decodeNotify, w.encodeNotify],
  [V11, 7, w.decodeLookup, w.encodeLookup],
  [V12, 8, w.decodeResponse, w.encodeResponse],
];

describe("malformed input", () => {
  test("every truncation either throws ProtocolError or is itself a canonical shorter frame", () => {
    for (const [frame, type, decode, encode] of allVectors) {
      const full = body(frame, type);
      for (let len = 0; len < full.length; len++) {
        const cut = full.subarray(0, len);
        let decoded: unknown;
        try {
          decoded = decode(cut);
        } catch (err) {
          expect(err).toBeInstanceOf(ProtocolError);
          continue;
        }
        // The one non-canonical form ironwood accepts: a response path running unterminated to the end.
        const unterminated = type === 8 && (decoded as { path: number[] }).path.at(-1) !== 0;
        const expected = unterminated ? Buffer.concat([cut, Buffer.from([0])]) : cut;
        expect(
          encode(decoded as never)
            .subarray(1)
            .equals(expected),
        ).toBe(true);
      }
    }
  });

  test("truncations inside fixed parts throw", () => {
    const cases: [Buffer, (b: Buffer) => unknown, number][] = [
      [V1, w.decodeTree, 40 + 10],
      [V1, w.decodeTree, 40 + 32 + 1 + 63],
      [V5, w.decodeBootstrap, 135],
      [V6, w.decodeBootstrapAck, 1],
      [V6, w.decodeBootstrapAck, 2 + 100],
      [V6, w.decodeBootstrapAck, 2 + 137 + 95],
      [V6, w.decodeBootstrapAck, 2 + 137 + 96 + 135],
      [V7, w.decodeSetup, 71],
      [V10, w.decodeNotify, 64 + 32 + 135],
      [V11, w.decodeLookup, 200],
      [V12, w.decodeResponse, 31],
      [V8, w.decodeDhtTraffic, 64],
    ];
    for (const [frame, decode, len] of cases) {
      expect(() => decode(frame.subarray(3, 3 + len))).toThrow(ProtocolError);
    }
    const teardown = w.encodeTeardown({ seq: 1n, key: A.publicKey, root: B.publicKey, rootSeq: 2n });
    expect(teardown.length).toBe(81);
    expect(() => w.decodeTeardown(teardown.subarray(1, 80))).toThrow(ProtocolError);
    expect(() => w.decodeTeardown(Buffer.concat([teardown.subarray(1), hex("00")]))).toThrow(ProtocolError);
    expect(() => w.decodePathTraffic(hex("0102"))).toThrow(ProtocolError);
    expect(() => w.decodePathTraffic(Buffer.concat([hex("00"), Buffer.alloc(64)]))).toThrow(ProtocolError);
  });

  test("trailing bytes after a label, and inside the ack's length-delimited bootstrap", () => {
    const label = V5.subarray(3);
    expect(() => w.decodeLabel(Buffer.concat([label, hex("0005")]))).toThrow(/0 inside an open path/);
    expect(() => w.decodeLabel(Buffer.concat([label, hex("80")]))).toThrow(/truncated uvarint/);
    expect(w.decodeLabel(Buffer.concat([label, hex("05")])).path).toEqual([1, 5]); // an open path simply grows
    const ackBody = Buffer.from(V6.subarray(3));
    ackBody[0] = 0x8a; // bootstrap length 138: the label takes the token's first byte, a dangling uvarint
    expect(() => w.decodeBootstrapAck(ackBody)).toThrow(ProtocolError);
    const tokenWithTail = Buffer.concat([TOKEN, hex("0007")]);
    expect(() => w.decodeToken(tokenWithTail)).toThrow(ProtocolError);
    expect(() => w.decodeSetup(Buffer.concat([V7.subarray(3), hex("0007")]))).toThrow(ProtocolError);
  });

  test("rpath ending in 0 is refused in lookups and responses", () => {
    expect(() => w.decodeLookup(Buffer.concat([V11.subarray(3), hex("00")]))).toThrow(/rpath ends with 0/);
    expect(() => w.decodeLookup(Buffer.concat([V11.subarray(3), hex("0200")]))).toThrow(/rpath ends with 0/);
    expect(() => w.decodeResponse(Buffer.concat([A.publicKey, hex("000300")]))).toThrow(/rpath ends with 0/);
    expect(() => w.decodeResponse(Buffer.concat([A.publicKey, hex("0003000101")]))).toThrow(ProtocolError);
    expect(() =>
      w.encodeLookup({ notify: w.decodeNotify(V10.subarray(3)), rpath: [1, 0] }).subarray(1),
    ).not.toThrow();
  });

  test("ports beyond 2^53 and overflowing uvarints in frames", () => {
    const hop = Buffer.concat([
      A.publicKey,
      Buffer.alloc(8),
      B.publicKey,
      hex("8080808080808010"),
      Buffer.alloc(64),
    ]);
    expect(() => w.decodeTree(hop)).toThrow(/2\^53/);
    const overflow = Buffer.concat([A.publicKey, hex("ffffffffffffffffff02")]);
    expect(() => w.decodeResponse(overflow)).toThrow(ProtocolError);
    expect(() => w.decodeLookup(hex("ffffffffffffffffffffff01"))).toThrow(ProtocolError);
    expect(() => w.decodeLabel(Buffer.concat([V5.subarray(3), hex("8000")]))).toThrow(/non-minimal/);
  });

  test("zero-hop tree", () => {
    expect(() => w.decodeTree(Buffer.concat([A.publicKey, Buffer.alloc(8)]))).toThrow(/no hops/);
    expect(w.verifyTree({ root: A.publicKey, seq: 0n, hops: [] })).toBe(false);
  });

  test("a flipped signature bit fails verification in every signed vector", () => {
    const flip = (b: Buffer, bit: number): Buffer => {
      const c = Buffer.from(b);
      c[bit >> 3] ^= 1 << (bit & 7);
      return c;
    };
    for (let bit = 0; bit < 512; bit += 37) {
      const tree = w.decodeTree(V4.subarray(3));
      expect(
        w.verifyTree({
          ...tree,
          hops: [{ ...tree.hops[0], sig: flip(tree.hops[0].sig, bit) }, tree.hops[1]],
        }),
      ).toBe(false);
      expect(
        w.verifyTree({
          ...tree,
          hops: [tree.hops[0], { ...tree.hops[1], sig: flip(tree.hops[1].sig, bit) }],
        }),
      ).toBe(false);
      const label = w.decodeBootstrap(V5.subarray(3));
      expect(w.verifyLabel({ ...label, sig: flip(label.sig, bit) })).toBe(false);
      const token = w.decodeToken(TOKEN);
      expect(w.verifyToken({ ...token, sig: flip(token.sig, bit) })).toBe(false);
      expect(w.verifyToken({ ...token, dest: { ...token.dest, sig: flip(token.dest.sig, bit) } })).toBe(
        false,
      );
      const setup = w.decodeSetup(V7.subarray(3));
      expect(w.verifySetup({ ...setup, sig: flip(setup.sig, bit) })).toBe(false);
      const notify = w.decodeNotify(V10.subarray(3));
      expect(w.verifyNotify({ ...notify, sig: flip(notify.sig, bit) })).toBe(false);
      expect(
        w.verifyNotify({ ...notify, label: { ...notify.label, sig: flip(notify.label.sig, bit) } }),
      ).toBe(false);
    }
  });

  test("2,000 random mutations never throw anything but ProtocolError; accepted ones are canonical", () => {
    const decoders: Record<number, (b: Buffer) => unknown> = {
      1: w.decodeTree,
      2: w.decodeBootstrap,
      3: w.decodeBootstrapAck,
      4: w.decodeSetup,
      5: w.decodeTeardown,
      6: w.decodeNotify,
      7: w.decodeLookup,
      8: w.decodeResponse,
      9: w.decodeDhtTraffic,
      10: w.decodePathTraffic,
    };
    const pool = [...randomFrames(), ...randomFrames()];
    let accepted = 0;
    let rejected = 0;
    for (let i = 0; i < 2000; i++) {
      const { type, frame, encode } = pool[rand(pool.length)];
      const b = Buffer.from(frame.subarray(1));
      let m: Buffer;
      switch (rand(4)) {
        case 0: // flip a few bytes
          m = b;
          for (let k = 0; k <= rand(3); k++) m[rand(m.length)] = rand(256);
          break;
        case 1: // truncate
          m = b.subarray(0, rand(b.length));
          break;
        case 2: // append
          m = Buffer.concat([b, randBytes(1 + rand(4))]);
          break;
        default:
          {
            // insert or delete a byte in the middle
            const at = rand(b.length);
            m =
              rand(2) === 0
                ? Buffer.concat([b.subarray(0, at), randBytes(1), b.subarray(at)])
                : Buffer.concat([b.subarray(0, at), b.subarray(at + 1)]);
          }
          break;
      }
      try {
        const decoded = decoders[type](m);
        accepted++;
        const again = encode(decoded as never).subarray(1);
        const resp = decoded as { path?: number[] };
        const unterminatedResponse = type === 8 && resp.path !== undefined && resp.path.at(-1) !== 0;
        expect(again.equals(unterminatedResponse ? Buffer.concat([m, hex("00")]) : m)).toBe(true);
      } catch (err) {
        if (!(err instanceof ProtocolError)) throw err;
        rejected++;
      }
      if (type === 10) {
        for (const f of [w.pathTrafficPopFirst, w.pathTrafficToDht]) {
          try {
            f(m);
          } catch (err) {
            if (!(err instanceof ProtocolError)) throw err;
          }
        }
      }
    }
    expect(accepted).toBeGreaterThan(50);
    expect(rejected).toBeGreaterThan(50);
  });
});

// ------------------------------------------------------------------------------------------------
// Data-path helpers

describe("path traffic helpers", () => {
  const traffic = { source: B.publicKey, dest: A.publicKey, kind: 1, payload: Buffer.from("hello") };

  test("the sender's first pop of route [1,2,0] leaves path 02 00 (spec 5.5)", () => {
    const f = w.encodePathTraffic({ path: [1, 2, 0], traffic });
    const { port, rest } = w.pathTrafficPopFirst(f.subarray(1));
    expect(port).toBe(1);
    expect(rest[0]).toBe(FrameType.PathTraffic);
    expect(rest.subarray(1, 3).toString("hex")).toBe("0200");
    expect(rest.equals(w.encodePathTraffic({ path: [2, 0], traffic }))).toBe(true);
    const second = w.pathTrafficPopFirst(rest.subarray(1));
    expect(second.port).toBe(2);
    expect(second.rest.equals(w.encodePathTraffic({ path: [0], traffic }))).toBe(true);
    const last = w.pathTrafficPopFirst(second.rest.subarray(1));
    expect(last.port).toBe(0);
    expect(last.rest.equals(w.encodeDhtTraffic(traffic))).toBe(true);
  });

  test("multi-byte ports pop correctly and the result is a fresh buffer", () => {
    const f = w.encodePathTraffic({ path: [300, 16384, 0], traffic });
    const { port, rest } = w.pathTrafficPopFirst(f.subarray(1));
    expect(port).toBe(300);
    expect(rest.equals(w.encodePathTraffic({ path: [16384, 0], traffic }))).toBe(true);
    f.fill(0);
    expect(w.decodePathTraffic(rest.subarray(1)).path).toEqual([16384, 0]);
  });

  test("a head written for sendJoined, followed by the payload, is the encoded frame", () => {
    const out = Buffer.alloc(256, 0xee);
    for (const [path, from] of [
      [[1, 2, 0], 1],
      [[300, 16384, 0], 0],
      [[5, 7], 1],
      [[9], 1],
      [[4, 0], 1],
    ] as Array<[number[], number]>) {
      const n = w.writePathTrafficHead(out, path, from, traffic);
      const joined = Buffer.concat([out.subarray(0, n), traffic.payload]);
      expect(joined.equals(w.encodePathTraffic({ path: path.slice(from), traffic }))).toBe(true);
    }
    const short = Buffer.alloc(1 + 3 + 64);
    expect(w.writePathTrafficHead(short, [300, 16384, 0], 0, traffic)).toBe(0);
    expect(w.writePathTrafficHead(short, [1, 0], 1, traffic)).toBe(short.length - 1);
  });

  test("the first port and the inner type-9 body are read without a copy", () => {
    const f = w.encodePathTraffic({ path: [300, 2, 0], traffic });
    const body = f.subarray(1);
    expect(w.pathTrafficFirstPort(body)).toEqual([300, 2]);
    const inner = w.pathTrafficInner(body);
    expect(inner.buffer).toBe(f.buffer);
    expect(inner.byteOffset).toBe(f.byteOffset + 1 + 4);
    expect(w.reframe(9, inner, 0).equals(w.encodeDhtTraffic(traffic))).toBe(true);
    const last = w.encodePathTraffic({ path: [0], traffic }).subarray(1);
    expect(w.pathTrafficFirstPort(last)).toEqual([0, 1]);
    expect(() => w.pathTrafficFirstPort(hex("0500"))).toThrow(ProtocolError);
    expect(() => w.pathTrafficFirstPort(last.subarray(0, 60))).toThrow(ProtocolError);
  });

  test("fallback to DHT skips the whole path", () => {
    const f = w.encodePathTraffic({ path: [7, 300, 0], traffic });
    expect(w.pathTrafficToDht(f.subarray(1)).equals(w.encodeDhtTraffic(traffic))).toBe(true);
    expect(() => w.pathTrafficToDht(hex("0701"))).toThrow(ProtocolError);
    expect(() => w.pathTrafficPopFirst(hex("07"))).toThrow(ProtocolError);
    expect(() => w.pathTrafficPopFirst(hex(""))).toThrow(ProtocolError);
  });

  test("a hop is popped only if the rest still holds the 0 terminator and 65 bytes after it", () => {
    // Go's next hop closes the link on such a frame, so we must refuse it instead of forwarding it.
    const full = w.encodePathTraffic({ path: [1, 2, 0], traffic }).subarray(1); // 01 02 00 + 70
    const noTerminator = Buffer.concat([hex("01"), Buffer.alloc(80, 5)]);
    expect(() => w.pathTrafficPopFirst(noTerminator)).toThrow(ProtocolError);
    const shortAfter = Buffer.concat([hex("01"), Buffer.alloc(70, 2), hex("00"), Buffer.alloc(64, 9)]);
    expect(() => w.pathTrafficPopFirst(shortAfter)).toThrow(ProtocolError);
    const exact = Buffer.concat([hex("01"), Buffer.alloc(70, 2), hex("00"), Buffer.alloc(65, 9)]);
    expect(w.pathTrafficPopFirst(exact).port).toBe(1);
    expect(() => w.pathTrafficPopFirst(full.subarray(0, 3 + 64))).toThrow(ProtocolError);
    expect(w.pathTrafficPopFirst(full.subarray(0, 3 + 65)).port).toBe(1);
  });

  test("decodeDhtTraffic returns views of the body, not copies", () => {
    const f = w.encodeDhtTraffic(traffic);
    const t = w.decodeDhtTraffic(f.subarray(1));
    expect(t.payload.buffer).toBe(f.buffer);
    f[f.length - 1] = 0x21;
    expect(t.payload.toString()).toBe("hell!");
    expect(w.decodeDhtTraffic(Buffer.concat([A.publicKey, B.publicKey, hex("02")])).payload.length).toBe(0);
  });
});
