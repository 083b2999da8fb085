// libsodium through sodium-native's compiled binding, without the package's JavaScript. Its index.js
// (108 kB of source, ~300 argument-checking wrappers) loads through require-addon's resolver
// (bare-module-resolve, bare-semver, which-runtime) and node:assert, all kept by an idle daemon that
// calls ten functions: an idle tcp:// pair held 0.4 MiB less without them (see the commit). Each of
// the ten is here with the wrapper's length checks, since the binding aborts the process on a wrong
// length (a C assert) or reads past the buffer; a bad length throws instead.
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";

/** The binding's own calling convention (sodium-native 5's binding.cc). */
interface SodiumBinding {
  crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): number;
  crypto_sign_verify_detached(
    sig: ArrayBufferLike,
    sigOffset: number,
    sigLength: number,
    m: ArrayBufferLike,
    mOffset: number,
    mLength: number,
    pk: ArrayBufferLike,
    pkOffset: number,
    pkLength: number,
  ): boolean;
  crypto_sign_seed_keypair(pk: Uint8Array, sk: Uint8Array, seed: Uint8Array): number;
  crypto_sign_ed25519_pk_to_curve25519(x25519pk: Uint8Array, ed25519pk: Uint8Array): number;
  crypto_box_keypair(pk: Uint8Array, sk: Uint8Array): number;
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): number;
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): number;
  crypto_secretbox_open_easy(m: Uint8Array, c: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(
    c: Uint8Array,
    mac: Uint8Array,
    m: Uint8Array,
    ad: Uint8Array | undefined,
    npub: Uint8Array,
    k: Uint8Array,
  ): number;
  crypto_aead_chacha20poly1305_ietf_decrypt_detached(
    m: Uint8Array,
    c: Uint8Array,
    mac: Uint8Array,
    ad: Uint8Array | undefined,
    npub: Uint8Array,
    k: Uint8Array,
  ): number;
}

/** What planetd calls, with sodium-native's signatures (the package's index.js, same names). */
export interface Sodium {
  crypto_sign_detached(sig: Uint8Array, m: Uint8Array, sk: Uint8Array): void;
  crypto_sign_verify_detached(sig: Uint8Array, m: Uint8Array, pk: Uint8Array): boolean;
  crypto_sign_seed_keypair(pk: Uint8Array, sk: Uint8Array, seed: Uint8Array): void;
  crypto_sign_ed25519_pk_to_curve25519(x25519pk: Uint8Array, ed25519pk: Uint8Array): void;
  crypto_box_keypair(pk: Uint8Array, sk: Uint8Array): void;
  /** Throws for a low-order point (libsodium refuses an all-zero result). */
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
  crypto_secretbox_easy(c: Uint8Array, m: Uint8Array, n: Uint8Array, k: Uint8Array): void;
  crypto_secretbox_open_easy(m: Uint8Array, c: Uint8Array, n: Uint8Array, k: Uint8Array): boolean;
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(
    c: Uint8Array,
    mac: Uint8Array,
    m: Uint8Array,
    ad: Uint8Array | null,
    nsec: null,
    npub: Uint8Array,
    k: Uint8Array,
  ): void;
  /** Throws when the tag does not verify. */
  crypto_aead_chacha20poly1305_ietf_decrypt_detached(
    m: Uint8Array,
    nsec: null,
    c: Uint8Array,
    mac: Uint8Array,
    ad: Uint8Array | null,
    npub: Uint8Array,
    k: Uint8Array,
  ): void;
}

const SIGN_PUBLIC = 32;
const SIGN_SECRET = 64;
const SIGN_SEED = 32;
const SIGNATURE = 64;
const CURVE_KEY = 32;
const SECRETBOX_MAC = 16;
const SECRETBOX_NONCE = 24;
const AEAD_TAG = 16;
const AEAD_NONCE = 12;

function need(ok: boolean, what: string): void {
  if (!ok) throw new RangeError(`sodium: ${what}`);
}

function ok(status: number, call: string): void {
  if (status !== 0) throw new Error(`sodium: ${call} failed (status ${status})`);
}

function needAeadLengths(
  out: Uint8Array,
  text: Uint8Array,
  mac: Uint8Array,
  npub: Uint8Array,
  k: Uint8Array,
  what: string,
): void {
  if (
    out.byteLength !== text.byteLength ||
    mac.byteLength !== AEAD_TAG ||
    npub.byteLength !== AEAD_NONCE ||
    k.byteLength !== CURVE_KEY
  )
    throw new RangeError(`sodium: aead ${what}: output = input, mac 16, nonce 12, key 32 bytes`);
}

/** The package's functions over the bare binding. */
export function wrapBinding(b: SodiumBinding): Sodium {
  return {
    crypto_sign_detached(sig, m, sk) {
      need(sig.byteLength === SIGNATURE && sk.byteLength === SIGN_SECRET, "sign: sig 64, sk 64 bytes");
      ok(b.crypto_sign_detached(sig, m, sk), "crypto_sign_detached");
    },
    crypto_sign_verify_detached(sig, m, pk) {
      need(sig.byteLength >= SIGNATURE && pk.byteLength === SIGN_PUBLIC, "verify: sig 64+, pk 32 bytes");
      return b.crypto_sign_verify_detached(
        sig.buffer,
        sig.byteOffset,
        sig.byteLength,
        m.buffer,
        m.byteOffset,
        m.byteLength,
        pk.buffer,
        pk.byteOffset,
        pk.byteLength,
      );
    },
    crypto_sign_seed_keypair(pk, sk, seed) {
      need(
        pk.byteLength === SIGN_PUBLIC && sk.byteLength === SIGN_SECRET && seed.byteLength === SIGN_SEED,
        "seed keypair: pk 32, sk 64, seed 32 bytes",
      );
      ok(b.crypto_sign_seed_keypair(pk, sk, seed), "crypto_sign_seed_keypair");
    },
    crypto_sign_ed25519_pk_to_curve25519(x25519pk, ed25519pk) {
      need(
        x25519pk.byteLength === CURVE_KEY && ed25519pk.byteLength === SIGN_PUBLIC,
        "pk to curve: 32, 32 bytes",
      );
      ok(b.crypto_sign_ed25519_pk_to_curve25519(x25519pk, ed25519pk), "crypto_sign_ed25519_pk_to_curve25519");
    },
    crypto_box_keypair(pk, sk) {
      need(pk.byteLength === CURVE_KEY && sk.byteLength === CURVE_KEY, "box keypair: pk 32, sk 32 bytes");
      ok(b.crypto_box_keypair(pk, sk), "crypto_box_keypair");
    },
    crypto_scalarmult(q, n, p) {
      need(
        q.byteLength === CURVE_KEY && n.byteLength === CURVE_KEY && p.byteLength === CURVE_KEY,
        "scalarmult: 32 bytes each",
      );
      ok(b.crypto_scalarmult(q, n, p), "crypto_scalarmult");
    },
    crypto_secretbox_easy(c, m, n, k) {
      need(
        c.byteLength === m.byteLength + SECRETBOX_MAC &&
          n.byteLength === SECRETBOX_NONCE &&
          k.byteLength === CURVE_KEY,
        "secretbox: c = m + 16, nonce 24, key 32 bytes",
      );
      ok(b.crypto_secretbox_easy(c, m, n, k), "crypto_secretbox_easy");
    },
    crypto_secretbox_open_easy(m, c, n, k) {
      need(
        c.byteLength >= SECRETBOX_MAC &&
          m.byteLength === c.byteLength - SECRETBOX_MAC &&
          n.byteLength === SECRETBOX_NONCE &&
          k.byteLength === CURVE_KEY,
        "secretbox open: m = c - 16, nonce 24, key 32 bytes",
      );
      return b.crypto_secretbox_open_easy(m, c, n, k);
    },
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(c, mac, m, ad, _nsec, npub, k) {
      needAeadLengths(c, m, mac, npub, k, "seal");
      const sealed = b.crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        c,
        mac,
        m,
        ad ?? undefined,
        npub,
        k,
      );
      if (sealed < 0) throw new Error("sodium: could not encrypt data");
    },
    crypto_aead_chacha20poly1305_ietf_decrypt_detached(m, _nsec, c, mac, ad, npub, k) {
      needAeadLengths(m, c, mac, npub, k, "open");
      if (b.crypto_aead_chacha20poly1305_ietf_decrypt_detached(m, c, mac, ad ?? undefined, npub, k) !== 0)
        throw new Error("sodium: could not verify data");
    },
  };
}

/** Where the binding came from: this platform's prebuild, or the package (no prebuild here). */
export let sodiumSource: "prebuild" | "package" | undefined;
let loaded: Sodium | undefined;

/**
 * sodium-native's functions; throws when the package is not installed. The prebuild for this
 * platform and CPU when the package ships one, the package's own index.js otherwise (it finds a
 * local build, or one for a libc the prebuilds' names do not say).
 */
export function loadSodium(): Sodium {
  if (loaded) return loaded;
  const require = createRequire(import.meta.url);
  const prebuild = join(
    dirname(require.resolve("sodium-native")),
    "prebuilds",
    `${process.platform}-${process.arch}`,
    "sodium-native.node",
  );
  if (existsSync(prebuild)) {
    try {
      loaded = wrapBinding(require(prebuild) as SodiumBinding);
      sodiumSource = "prebuild";
      return loaded;
    } catch {} // a prebuild for another libc than this one (musl): the package picks
  }
  loaded = require("sodium-native") as Sodium;
  sodiumSource = "package";
  return loaded;
}
