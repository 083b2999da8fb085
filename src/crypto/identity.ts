// The node's one long-term identity: an ed25519 key pair in Go's 64-byte layout (seed ‖ public key).
// Everything that needs "who am I" takes an Identity; nothing else holds the private half.
import { createHash, createPublicKey, verify as cryptoVerify, randomBytes } from "node:crypto";
import { addressForKey, subnetForKey } from "./address.js";
import { loadSodium } from "./sodium.js";

const sodium = loadSodium();

export const KEY_BYTES = 32;
export const SIG_BYTES = 64;

export class Identity {
  /** 64 bytes: seed ‖ public key, exactly Go's ed25519.PrivateKey and the config's PrivateKey. */
  readonly secretKey: Buffer;
  readonly publicKey: Buffer;
  readonly seed: Buffer;
  /** X25519 private key: SHA-512(seed)[0:32], unclamped, as ironwood uses it (spec 6.1). */
  readonly curvePrivate: Buffer;
  /** X25519 public key: the Montgomery form of the ed25519 public key. */
  readonly curvePublic: Buffer;
  readonly address: Buffer;
  readonly subnet: Buffer;

  private constructor(seed: Buffer) {
    this.publicKey = Buffer.alloc(KEY_BYTES);
    this.secretKey = Buffer.alloc(2 * KEY_BYTES);
    sodium.crypto_sign_seed_keypair(this.publicKey, this.secretKey, seed);
    this.seed = Buffer.from(seed);
    this.curvePrivate = createHash("sha512").update(seed).digest().subarray(0, 32);
    this.curvePublic = curveFromEd(this.publicKey);
    this.address = addressForKey(this.publicKey);
    this.subnet = subnetForKey(this.publicKey);
  }

  static fromSeed(seed: Uint8Array): Identity {
    if (seed.length !== 32) throw new Error(`seed must be 32 bytes, got ${seed.length}`);
    return new Identity(Buffer.from(seed));
  }

  static generate(): Identity {
    return new Identity(randomBytes(32));
  }

  /**
   * Parse the config's PrivateKey (128 hex chars = seed ‖ public key). Go trusts the stored public
   * half; we recompute it and refuse a key whose halves disagree, since signatures would not verify.
   */
  static fromPrivateKeyHex(hex: string): Identity {
    if (!/^[0-9a-fA-F]*$/.test(hex)) throw new Error("is not hexadecimal");
    if (hex.length !== 128)
      throw new Error(`has ${hex.length} hex characters (expected 128: seed ‖ public key)`);
    const raw = Buffer.from(hex, "hex");
    const id = new Identity(raw.subarray(0, 32));
    if (!id.publicKey.equals(raw.subarray(32))) {
      throw new Error(`public half does not match its seed (seed gives ${id.publicKey.toString("hex")})`);
    }
    return id;
  }

  get privateKeyHex(): string {
    return this.secretKey.toString("hex");
  }

  sign(message: Uint8Array): Buffer {
    const sig = Buffer.alloc(SIG_BYTES);
    sodium.crypto_sign_detached(sig, message, this.secretKey);
    return sig;
  }
}

/**
 * Ed25519 verification with Go's acceptance rules. libsodium is the fast path, but it also refuses
 * small-order and non-canonical keys that Go's crypto/ed25519 accepts; refusing a signature a Go
 * node accepted would close a link to an honest peer that relays it. So a sodium "no" is checked
 * again with OpenSSL (node:crypto), which applies Go's rules (cofactorless, S < L, any key).
 */
export function verify(publicKey: Uint8Array, message: Uint8Array, signature: Uint8Array): boolean {
  if (publicKey.length !== KEY_BYTES || signature.length !== SIG_BYTES) return false;
  if (sodium.crypto_sign_verify_detached(signature, message, publicKey)) return true;
  try {
    const key = createPublicKey({
      key: Buffer.concat([ED25519_SPKI_PREFIX, publicKey]),
      format: "der",
      type: "spki",
    });
    return cryptoVerify(null, message, key, signature);
  } catch {
    return false; // not a point at all
  }
}

const ED25519_SPKI_PREFIX = Buffer.from("302a300506032b6570032100", "hex");

export function curveFromEd(publicKey: Uint8Array): Buffer {
  const out = Buffer.alloc(32);
  sodium.crypto_sign_ed25519_pk_to_curve25519(out, publicKey);
  return out;
}
