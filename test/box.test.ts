import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";
import {
  type BoxBackend,
  createSodiumBackend,
  createTweetnaclBackend,
  loadBox,
  nonceForCounter,
} from "../src/crypto/box.js";
import { Identity } from "../src/crypto/identity.js";

const hex = (s: string) => Buffer.from(s, "hex");
const A = Identity.fromSeed(Buffer.alloc(32));
const B = Identity.fromSeed(Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1)));

const sodium = loadBox();
const tweet = createTweetnaclBackend();
const backends: BoxBackend[] = [sodium, tweet];

describe("box backends", () => {
  it("loads sodium-native here", () => {
    expect(sodium.name).toBe("sodium-native");
    expect(tweet.name).toBe("tweetnacl");
  });

  it("X25519 keys from the ed25519 identity match spec 13.2", () => {
    expect(A.curvePrivate.toString("hex")).toBe(
      "5046adc1dba838867b2bbbfdd0c3423e58b57970b5267a90f57960924a87f196",
    );
    expect(A.curvePublic.toString("hex")).toBe(
      "5bf55c73b82ebe22be80f3430667af570fae2556a6415e6b30d4065300aa947d",
    );
    expect(B.curvePrivate.toString("hex")).toBe(
      "77788f1a0cea001a2631dae5d05dbd062008d5b30f50b9e29beb2a7822289004",
    );
    expect(B.curvePublic.toString("hex")).toBe(
      "4a3807d064d077181cc070989e76891d20dca5559548dc2c77c1a50273882b38",
    );
  });

  for (const box of backends) {
    describe(box.name, () => {
      const shared = "b8fb3d6b1c339ffdbc8b8d6ec697d96b568d3811956e595ab9138792457bae1d";

      it("box.before matches spec 13.2 from both sides", () => {
        expect(box.before(A.curvePublic, B.curvePrivate).toString("hex")).toBe(shared);
        expect(box.before(B.curvePublic, A.curvePrivate).toString("hex")).toBe(shared);
      });

      it("secretbox('hello', nonce(1)) matches spec 13.2, also sealed in place", () => {
        const nonce = nonceForCounter(Buffer.alloc(24), 1n);
        expect(nonce.toString("hex")).toBe("000000000000000000000000000000000000000000000001");
        const out = Buffer.alloc(21);
        box.seal(out, Buffer.from("hello"), nonce, hex(shared));
        expect(out.toString("hex")).toBe("a0f8c3839da63222e2fb0ad7358dba50a9a7914768");
        const inPlace = Buffer.alloc(21);
        inPlace.write("hello", 16);
        box.seal(inPlace, inPlace.subarray(16), nonce, hex(shared));
        expect(inPlace.equals(out)).toBe(true);
        const plain = Buffer.alloc(5);
        expect(box.open(plain, out, nonce, hex(shared))).toBe(true);
        expect(plain.toString()).toBe("hello");
      });

      it("rejects a flipped bit, a wrong nonce and a short box", () => {
        const nonce = nonceForCounter(Buffer.alloc(24), 7n);
        const key = randomBytes(32);
        const sealed = Buffer.alloc(116);
        box.seal(sealed, randomBytes(100), nonce, key);
        const plain = Buffer.alloc(100);
        for (const i of [0, 15, 16, 115]) {
          const bad = Buffer.from(sealed);
          bad[i] ^= 1;
          expect(box.open(plain, bad, nonce, key)).toBe(false);
        }
        expect(box.open(plain, sealed, nonceForCounter(Buffer.alloc(24), 8n), key)).toBe(false);
        expect(box.open(Buffer.alloc(0), sealed.subarray(0, 10), nonce, key)).toBe(false);
        expect(box.open(plain, sealed, nonce, key)).toBe(true);
      });

      it("key pairs are random and consistent with before()", () => {
        const x = box.keyPair();
        const y = box.keyPair();
        expect(x.publicKey.length).toBe(32);
        expect(x.secretKey.equals(y.secretKey)).toBe(false);
        expect(box.before(x.publicKey, y.secretKey).equals(box.before(y.publicKey, x.secretKey))).toBe(true);
      });

      it("does not throw on a low-order public key (Go carries on with a zero secret)", () => {
        expect(box.before(Buffer.alloc(32), B.curvePrivate).length).toBe(32);
      });
    });
  }

  it("sodium and tweetnacl produce identical bytes", () => {
    for (let i = 0; i < 20; i++) {
      const kp = i % 2 ? sodium.keyPair() : tweet.keyPair();
      const other = i % 2 ? tweet.keyPair() : sodium.keyPair();
      const k1 = sodium.before(kp.publicKey, other.secretKey);
      const k2 = tweet.before(kp.publicKey, other.secretKey);
      expect(k1.equals(k2)).toBe(true);
      const msg = randomBytes(i * 97);
      const nonce = nonceForCounter(Buffer.alloc(24), BigInt(i) * 0x1234567890abn);
      const s1 = Buffer.alloc(msg.length + 16);
      const s2 = Buffer.alloc(msg.length + 16);
      sodium.seal(s1, msg, nonce, k1);
      tweet.seal(s2, msg, nonce, k2);
      expect(s1.equals(s2)).toBe(true);
      const p1 = Buffer.alloc(msg.length);
      const p2 = Buffer.alloc(msg.length);
      expect(tweet.open(p1, s1, nonce, k1)).toBe(true);
      expect(sodium.open(p2, s2, nonce, k1)).toBe(true);
      expect(p1.equals(msg) && p2.equals(msg)).toBe(true);
    }
    expect(
      sodium.before(Buffer.alloc(32), A.curvePrivate).equals(tweet.before(Buffer.alloc(32), A.curvePrivate)),
    ).toBe(true);
  });

  it("createSodiumBackend works from an explicit module", () => {
    const box = createSodiumBackend(createRequire(import.meta.url)("sodium-native"));
    expect(
      box.before(A.curvePublic, B.curvePrivate).equals(sodium.before(A.curvePublic, B.curvePrivate)),
    ).toBe(true);
  });

  it("nonceForCounter writes 16 zero bytes then u64 BE, over a dirty buffer", () => {
    const out = Buffer.alloc(24, 0xff);
    expect(nonceForCounter(out, 0xffffffffffffffffn).toString("hex")).toBe(
      `${"00".repeat(16)}${"ff".repeat(8)}`,
    );
    expect(nonceForCounter(out, 0x0102n).toString("hex")).toBe(`${"00".repeat(22)}0102`);
  });
});
