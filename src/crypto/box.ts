// NaCl box with precomputation (spec 6.1): shared = HSalsa20(X25519(theirs, mine), 0^16), then
// XSalsa20-Poly1305 secretbox in the tag ‖ ciphertext layout that is also the wire format.
// Two backends: sodium-native (fast, native) and tweetnacl (pure JS fallback). They must agree
// byte for byte; the tests check that.
import { createRequire } from "node:module";
import type Nacl from "tweetnacl";
import { loadSodium } from "./sodium.js";

// CommonJS packages load through require, not an ES import: importing CommonJS from an ES module
// runs Node's cjs-module-lexer over it, ~6 MiB of idle RSS for planetd's four (see bench/memory.sh).
const nacl = createRequire(import.meta.url)("tweetnacl") as typeof Nacl;

export const BOX_KEY_BYTES = 32;
export const BOX_NONCE_BYTES = 24;
export const BOX_OVERHEAD = 16;

export interface BoxKeyPair {
  publicKey: Buffer;
  secretKey: Buffer;
}

export interface BoxBackend {
  readonly name: "sodium-native" | "tweetnacl";
  /** A random X25519 key pair (crypto_box_keypair). */
  keyPair(): BoxKeyPair;
  /** box.before: HSalsa20(X25519(theirPublic, mySecret), 0^16). Never throws for 32-byte inputs. */
  before(theirPublic: Uint8Array, mySecret: Uint8Array): Buffer;
  /**
   * out.length must be message.length + 16; writes tag ‖ ciphertext. `message` may be exactly
   * out.subarray(16) (in-place sealing), which both backends support.
   */
  seal(out: Buffer, message: Uint8Array, nonce: Uint8Array, shared: Uint8Array): void;
  /** out.length must be boxed.length - 16 (boxed.length >= 16). False if the tag does not verify. */
  open(out: Buffer, boxed: Uint8Array, nonce: Uint8Array, shared: Uint8Array): boolean;
}

// "expand 32-byte k": the Salsa20 constant HSalsa20 takes as its fourth input.
const SIGMA = new Uint8Array([101, 120, 112, 97, 110, 100, 32, 51, 50, 45, 98, 121, 116, 101, 32, 107]);
const ZERO16 = new Uint8Array(16);

// tweetnacl ships lowlevel at run time but leaves it out of its typings.
const lowlevel = (
  nacl as unknown as {
    lowlevel: { crypto_core_hsalsa20(out: Uint8Array, inp: Uint8Array, k: Uint8Array, c: Uint8Array): void };
  }
).lowlevel;

function hsalsa20(out: Buffer, dh: Uint8Array): Buffer {
  lowlevel.crypto_core_hsalsa20(out, ZERO16, dh, SIGMA);
  return out;
}

function checkLengths(theirPublic: Uint8Array, mySecret: Uint8Array): void {
  if (theirPublic.length !== BOX_KEY_BYTES || mySecret.length !== BOX_KEY_BYTES) {
    throw new RangeError("box.before needs two 32-byte keys");
  }
}

export function createTweetnaclBackend(): BoxBackend {
  return {
    name: "tweetnacl",
    keyPair() {
      const kp = nacl.box.keyPair();
      return { publicKey: Buffer.from(kp.publicKey), secretKey: Buffer.from(kp.secretKey) };
    },
    before(theirPublic, mySecret) {
      checkLengths(theirPublic, mySecret);
      return Buffer.from(nacl.box.before(theirPublic, mySecret));
    },
    seal(out, message, nonce, shared) {
      // nacl.secretbox reads the whole message before returning, so aliasing out is safe.
      out.set(nacl.secretbox(message, nonce, shared));
    },
    open(out, boxed, nonce, shared) {
      if (boxed.length < BOX_OVERHEAD) return false;
      const plain = nacl.secretbox.open(boxed, nonce, shared);
      if (plain === null) return false;
      out.set(plain);
      return true;
    },
  };
}

interface SodiumBox {
  crypto_box_keypair(pk: Buffer, sk: Buffer): void;
  crypto_scalarmult(q: Buffer, n: Uint8Array, p: Uint8Array): void;
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_easy(m: Uint8Array, c: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
}

export function createSodiumBackend(sodium: SodiumBox): BoxBackend {
  const dh = Buffer.alloc(32);
  return {
    name: "sodium-native",
    keyPair() {
      const publicKey = Buffer.alloc(32);
      const secretKey = Buffer.alloc(32);
      sodium.crypto_box_keypair(publicKey, secretKey);
      return { publicKey, secretKey };
    },
    before(theirPublic, mySecret) {
      checkLengths(theirPublic, mySecret);
      try {
        sodium.crypto_scalarmult(dh, mySecret, theirPublic);
      } catch {
        // libsodium refuses low-order points (all-zero result); Go's box.Precompute does not
        // and carries on with the all-zero secret, so do the same to stay byte-compatible.
        dh.set(nacl.scalarMult(mySecret, theirPublic));
      }
      return hsalsa20(Buffer.alloc(32), dh);
    },
    seal(out, message, nonce, shared) {
      // libsodium moves an overlapping message itself, so in-place sealing is fine.
      sodium.crypto_secretbox_easy(out, message, nonce, shared);
    },
    open(out, boxed, nonce, shared) {
      if (boxed.length < BOX_OVERHEAD) return false;
      return sodium.crypto_secretbox_open_easy(out, boxed, nonce, shared);
    },
  };
}

let loaded: BoxBackend | undefined;

/** sodium-native when it loads, tweetnacl otherwise; `.name` says which. */
export function loadBox(): BoxBackend {
  if (loaded) return loaded;
  try {
    loaded = createSodiumBackend(loadSodium());
  } catch {
    loaded = createTweetnaclBackend();
  }
  return loaded;
}

/** 24-byte nonce for a counter: 16 zero bytes ‖ n as u64 big-endian (spec 6.1). */
export function nonceForCounter(out: Buffer, n: bigint): Buffer {
  out.fill(0, 0, 16);
  out.writeBigUInt64BE(n, 16);
  return out;
}
