import { describe, expect, it } from "vitest";
import { createTweetnaclBackend, loadBox } from "../src/crypto/box.js";
import { Identity } from "../src/crypto/identity.js";
import {
  INIT_BYTES,
  decU64,
  incU64,
  openInit,
  putUvarint,
  readUvarint,
  sealInit,
  toU64,
  uvarintBytes,
  uvarintResult,
} from "../src/overlay/sessions/wire.js";

const hex = (s: string) => Buffer.from(s.replace(/\s+/g, ""), "hex");
const A = Identity.fromSeed(Buffer.alloc(32));
const B = Identity.fromSeed(Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1)));

// Spec 13.4, captured between two Debian 0.4.7 nodes.
const INIT_B_TO_A = hex(
  `01 f8d303d4d9783c0d2cce419a04ba91c57897dc16b9b913d16a1986e3e20aad4f
   2a54904430b2d6f323b4974ff9bbb00386010e91435dde696ea1cf0c537e95b69b5fd69ae3af720bdb7e045936daba3c371e3fd6c935fed349f0dd8e5b0ca98f696e75b28659b47d6f1e21260d6e241201d073aff7512dc8be124d326a5b2a10ed3e8eedd9396503b631f9817f9452e7fe44d30a6d9a1ce7dd091ae888c4c0eda251409e574c735aed7028916fe1c8ac604e75eb356c7fe4e9b3aa874156da7e`,
);
const ACK_E = hex("4e41f9421ce748cd376b38c44ea57b491f43dd722730c582b33f2837da85f41a");
const ACK_BOXED = hex(
  "b7ea2fff737a08ec56ec9a9fc22ad5245a4e6b8381669262c9fac909703dabc50dfd835a243dd726b5a0d110835e245d6893c17928fe0f8b6b9b33a2c9bf6263015585733f0df289c1b829ef489ff31204d2c9c1643edc4bf4de952761ea3719a977714c391a648e9c6eeff8c7f6b6d41574c1d3324c826423626ccc03fa1ac598c0db7b2653f0743a0543000b8e49ecffa713165612304d279e50226a9b4da4",
);
const ACK_A_TO_B = Buffer.concat([Buffer.from([2]), ACK_E, ACK_BOXED]);

for (const box of [loadBox(), createTweetnaclBackend()]) {
  describe(`spec 13.4 init/ack vectors (${box.name})`, () => {
    it("the captured init B→A opens with A's X25519 key and B's signature verifies", () => {
      expect(INIT_B_TO_A.length).toBe(INIT_BYTES);
      expect(box.before(INIT_B_TO_A.subarray(1, 33), A.curvePrivate).toString("hex")).toBe(
        "475eb5214951aeda68e2446997650fb7450b4e1e3ae5329cf3fdadeeea5230b7",
      );
      const init = openInit(INIT_B_TO_A, B.publicKey, A.curvePrivate, box);
      expect(init).toBeDefined();
      expect(init?.current.toString("hex")).toBe(
        "7d024412b837a8464cfbe8bcec24d4bbd4f09cc377c8f081c2d7f44e9f992a1b",
      );
      expect(init?.next.toString("hex")).toBe(
        "c63c411532cf83941a762e97248046ee5b82d30690d92dd87d34b5d2b83c2457",
      );
      expect(init?.keySeq).toBe(0n);
      expect(init?.seq).toBe(1795528531n);
    });

    it("the captured ack A→B opens with B's X25519 key and A's signature verifies", () => {
      expect(ACK_A_TO_B.length).toBe(INIT_BYTES);
      expect(box.before(ACK_E, B.curvePrivate).toString("hex")).toBe(
        "cdf3a102bd939b0dd1ac6f5cfc57cc2b56f2f2013fc3a4c87389352dd5cb3f6e",
      );
      const ack = openInit(ACK_A_TO_B, A.publicKey, B.curvePrivate, box);
      expect(ack?.current.toString("hex")).toBe(
        "1a5597236f7bc6537e6ca8d2700a71b3b3b3210ae9f57d10ec5c999a60b7785b",
      );
      expect(ack?.next.toString("hex")).toBe(
        "6f7e1b5cdd099381bc4554b55069a73fb42acbaa02ffaba1796734a713162e75",
      );
      expect(ack?.keySeq).toBe(1n);
      expect(ack?.seq).toBe(0x6b059753n);
    });

    it("rejects the vectors with the wrong claimed sender, wrong recipient key, a flipped bit or a wrong length", () => {
      expect(openInit(INIT_B_TO_A, A.publicKey, A.curvePrivate, box)).toBeUndefined();
      expect(openInit(INIT_B_TO_A, B.publicKey, B.curvePrivate, box)).toBeUndefined();
      for (const i of [1, 40, 192]) {
        const bad = Buffer.from(INIT_B_TO_A);
        bad[i] ^= 0x40;
        expect(openInit(bad, B.publicKey, A.curvePrivate, box)).toBeUndefined();
      }
      expect(openInit(INIT_B_TO_A.subarray(0, 192), B.publicKey, A.curvePrivate, box)).toBeUndefined();
      expect(
        openInit(Buffer.concat([INIT_B_TO_A, Buffer.alloc(1)]), B.publicKey, A.curvePrivate, box),
      ).toBeUndefined();
    });

    it("sealInit builds a 193-byte message the other side opens; fixed ephemeral gives fixed bytes", () => {
      const eph = box.keyPair();
      const init = { current: Buffer.alloc(32, 1), next: Buffer.alloc(32, 2), keySeq: 5n, seq: 1795528531n };
      const sealed = sealInit(2, init, A, B.publicKey, box, eph);
      expect(sealed?.length).toBe(INIT_BYTES);
      expect(sealed?.[0]).toBe(2);
      expect(sealed?.subarray(1, 33).equals(eph.publicKey)).toBe(true);
      expect(sealInit(2, init, A, B.publicKey, box, eph)?.equals(sealed as Buffer)).toBe(true);
      const opened = openInit(sealed as Buffer, A.publicKey, B.curvePrivate, box);
      expect(opened).toEqual(init);
    });
  });
}

describe("uvarint", () => {
  const cases: Array<[bigint, string]> = [
    [0n, "00"],
    [1n, "01"],
    [127n, "7f"],
    [128n, "8001"],
    [300n, "ac02"],
    [0x3fffn, "ff7f"],
    [0x4000n, "808001"],
    [0xfffffffn, "ffffff7f"],
    [0x10000000n, "8080808001"],
    [0x7fffffffn, "ffffffff07"],
    [0x80000000n, "8080808008"],
    [(1n << 49n) - 1n, "ffffffffffff7f"],
    [1n << 49n, "8080808080808001"],
    [(1n << 53n) - 1n, "ffffffffffffff0f"],
    [1n << 53n, "8080808080808010"],
    [(1n << 56n) - 1n, "ffffffffffffff7f"],
    [(1n << 64n) - 1n, "ffffffffffffffffff01"],
  ];
  it("encodes and decodes like Go's PutUvarint/Uvarint, as a number up to 2^53 - 1 and a bigint above", () => {
    for (const [v, h] of cases) {
      const safe = v <= BigInt(Number.MAX_SAFE_INTEGER);
      for (const input of safe ? [v, Number(v)] : [v]) {
        const buf = Buffer.alloc(12, 0xee);
        const end = putUvarint(buf, 1, input);
        expect(buf.subarray(1, end).toString("hex")).toBe(h);
        expect(uvarintBytes(input)).toBe(h.length / 2);
        expect(readUvarint(buf, 1)).toBe(end);
        expect(uvarintResult.value).toBe(safe ? Number(v) : v);
      }
    }
    // Go accepts non-minimal encodings; so do we, with the same value.
    expect(readUvarint(hex("8000"), 0)).toBe(2);
    expect(uvarintResult.value).toBe(0);
  });
  it("counts mod 2^64, switching between number and bigint at 2^53", () => {
    const max = (1n << 64n) - 1n;
    expect(incU64(0)).toBe(1);
    expect(incU64(Number.MAX_SAFE_INTEGER - 1)).toBe(Number.MAX_SAFE_INTEGER);
    expect(incU64(Number.MAX_SAFE_INTEGER)).toBe(1n << 53n);
    expect(incU64(1n << 53n)).toBe((1n << 53n) + 1n);
    expect(incU64(max)).toBe(0);
    expect(decU64(1)).toBe(0);
    expect(decU64(0)).toBe(max);
    expect(decU64(1n << 53n)).toBe(Number.MAX_SAFE_INTEGER);
    expect(decU64(max)).toBe(max - 1n);
    expect(toU64(5n)).toBe(5);
    expect(toU64(1n << 53n)).toBe(1n << 53n);
  });
  it("fails on truncation and on 64-bit overflow", () => {
    expect(readUvarint(hex("80"), 0)).toBe(-1);
    expect(readUvarint(hex("ffffffffff"), 0)).toBe(-1);
    expect(readUvarint(hex("ffffffffffffffffff02"), 0)).toBe(-1);
    expect(readUvarint(hex("ffffffffffffffffffff01"), 0)).toBe(-1);
    expect(readUvarint(hex(""), 0)).toBe(-1);
  });
});
