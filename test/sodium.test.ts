import {
  createCipheriv,
  createHash,
  createPrivateKey,
  createPublicKey,
  randomBytes,
  sign,
  verify,
} from "node:crypto";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import nacl from "tweetnacl";
import { describe, expect, it } from "vitest";
import { loadSodium, sodiumSource } from "../src/crypto/sodium.js";

const sodium = loadSodium();
const PKCS8_ED25519 = Buffer.from("302e020100300506032b657004220420", "hex");
const SPKI_ED25519 = Buffer.from("302a300506032b6570032100", "hex");

function keyPair(): { pk: Buffer; sk: Buffer; seed: Buffer } {
  const seed = randomBytes(32);
  const pk = Buffer.alloc(32);
  const sk = Buffer.alloc(64);
  sodium.crypto_sign_seed_keypair(pk, sk, seed);
  return { pk, sk, seed };
}

describe("libsodium through sodium-native's binding (src/crypto/sodium.ts)", () => {
  it("loads this platform's prebuild itself when the package ships one", () => {
    const pkg = dirname(createRequire(import.meta.url).resolve("sodium-native"));
    const prebuild = join(pkg, "prebuilds", `${process.platform}-${process.arch}`, "sodium-native.node");
    expect(sodiumSource).toBe(existsSync(prebuild) ? "prebuild" : "package");
  });

  it("signs as OpenSSL's ed25519 does and verifies what OpenSSL signed", () => {
    const { pk, sk, seed } = keyPair();
    const privateKey = createPrivateKey({
      key: Buffer.concat([PKCS8_ED25519, seed]),
      format: "der",
      type: "pkcs8",
    });
    const publicKey = createPublicKey({
      key: Buffer.concat([SPKI_ED25519, pk]),
      format: "der",
      type: "spki",
    });
    const message = randomBytes(100);
    const sig = Buffer.alloc(64);
    sodium.crypto_sign_detached(sig, message, sk);
    expect(sig.equals(sign(null, message, privateKey))).toBe(true);
    expect(verify(null, message, publicKey, sig)).toBe(true);
    // Offsets into a shared buffer: the binding gets (buffer, offset, length) for each argument.
    const pool = Buffer.concat([randomBytes(7), sig, message, pk]);
    const at = (from: number, length: number) => pool.subarray(from, from + length);
    expect(sodium.crypto_sign_verify_detached(at(7, 64), at(71, 100), at(171, 32))).toBe(true);
    message[0]! ^= 1;
    expect(sodium.crypto_sign_verify_detached(sig, message, pk)).toBe(false);
  });

  it("seals and opens NaCl secretboxes byte for byte as tweetnacl does", () => {
    const key = randomBytes(32);
    const nonce = randomBytes(24);
    const message = randomBytes(300);
    const boxed = Buffer.alloc(316);
    sodium.crypto_secretbox_easy(boxed, message, nonce, key);
    expect(boxed.equals(Buffer.from(nacl.secretbox(message, nonce, key)))).toBe(true);
    const opened = Buffer.alloc(300);
    expect(sodium.crypto_secretbox_open_easy(opened, boxed, nonce, key)).toBe(true);
    expect(opened.equals(message)).toBe(true);
    boxed[20]! ^= 1;
    expect(sodium.crypto_secretbox_open_easy(opened, boxed, nonce, key)).toBe(false);
  });

  it("seals ChaCha20-Poly1305 as OpenSSL does and refuses a changed tag or header", () => {
    const key = randomBytes(32);
    const nonce = randomBytes(12);
    const header = randomBytes(9);
    const message = randomBytes(1400);
    const sealed = Buffer.alloc(1400);
    const tag = Buffer.alloc(16);
    sodium.crypto_aead_chacha20poly1305_ietf_encrypt_detached(sealed, tag, message, header, null, nonce, key);
    const cipher = createCipheriv("chacha20-poly1305", key, nonce, { authTagLength: 16 });
    cipher.setAAD(header, { plaintextLength: message.length });
    expect(sealed.equals(Buffer.concat([cipher.update(message), cipher.final()]))).toBe(true);
    expect(tag.equals(cipher.getAuthTag())).toBe(true);
    const opened = Buffer.alloc(1400);
    sodium.crypto_aead_chacha20poly1305_ietf_decrypt_detached(opened, null, sealed, tag, header, nonce, key);
    expect(opened.equals(message)).toBe(true);
    header[0]! ^= 1;
    expect(() =>
      sodium.crypto_aead_chacha20poly1305_ietf_decrypt_detached(
        opened,
        null,
        sealed,
        tag,
        header,
        nonce,
        key,
      ),
    ).toThrow(/could not verify/);
  });

  it("agrees X25519 keys both ways and refuses a low-order point", () => {
    const a = { pk: Buffer.alloc(32), sk: Buffer.alloc(32) };
    const b = { pk: Buffer.alloc(32), sk: Buffer.alloc(32) };
    sodium.crypto_box_keypair(a.pk, a.sk);
    sodium.crypto_box_keypair(b.pk, b.sk);
    const ab = Buffer.alloc(32);
    const ba = Buffer.alloc(32);
    sodium.crypto_scalarmult(ab, a.sk, b.pk);
    sodium.crypto_scalarmult(ba, b.sk, a.pk);
    expect(ab.equals(ba)).toBe(true);
    expect(ab.equals(Buffer.from(nacl.scalarMult(a.sk, b.pk)))).toBe(true);
    expect(() => sodium.crypto_scalarmult(ab, a.sk, Buffer.alloc(32))).toThrow(/crypto_scalarmult failed/);
  });

  it("converts an ed25519 public key to the X25519 key tweetnacl derives from the same seed", () => {
    const { pk, seed } = keyPair();
    const curve = Buffer.alloc(32);
    sodium.crypto_sign_ed25519_pk_to_curve25519(curve, pk);
    const scalar = createHash("sha512").update(seed).digest().subarray(0, 32);
    expect(curve.equals(Buffer.from(nacl.scalarMult.base(scalar)))).toBe(true);
  });

  it("throws on a wrong length where the binding would abort or read past the buffer", () => {
    const { pk, sk } = keyPair();
    expect(() => sodium.crypto_sign_detached(Buffer.alloc(63), Buffer.alloc(1), sk)).toThrow(RangeError);
    expect(() =>
      sodium.crypto_sign_verify_detached(Buffer.alloc(64), Buffer.alloc(1), pk.subarray(1)),
    ).toThrow(RangeError);
    expect(() =>
      sodium.crypto_secretbox_open_easy(
        Buffer.alloc(0),
        Buffer.alloc(15),
        Buffer.alloc(24),
        Buffer.alloc(32),
      ),
    ).toThrow(RangeError);
    expect(() =>
      sodium.crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        Buffer.alloc(10),
        Buffer.alloc(16),
        Buffer.alloc(11),
        null,
        null,
        Buffer.alloc(12),
        Buffer.alloc(32),
      ),
    ).toThrow(RangeError);
  });
});
