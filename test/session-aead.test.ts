// The planetd_session addon's ChaCha20-Poly1305 against libsodium's crypto_aead_chacha20poly1305_ietf,
// in both of its implementations (direct: OpenSSL's ChaCha20_ctr32 and Poly1305 from Node's binary;
// evp: EVP_chacha20_poly1305): the same key, nonce and AD give the same bytes every way, and any
// flipped bit fails to open.
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type SessionAeadImplementation,
  deriveSessionAeadKey,
  loadSessionAead,
  sessionAeadFromEnv,
  sessionAeadImplementation,
} from "../src/crypto/session-aead.js";

interface SodiumAead {
  crypto_aead_chacha20poly1305_ietf_encrypt(
    c: Uint8Array,
    m: Uint8Array,
    ad: Uint8Array | null,
    nsec: null,
    npub: Uint8Array,
    k: Uint8Array,
  ): number;
  crypto_aead_chacha20poly1305_ietf_decrypt(
    m: Uint8Array,
    nsec: null,
    c: Uint8Array,
    ad: Uint8Array | null,
    npub: Uint8Array,
    k: Uint8Array,
  ): number;
}
const sodium = createRequire(import.meta.url)("sodium-native") as SodiumAead;

const aead = loadSessionAead();
/** The addon's implementation switch (not part of SessionAead: nodes choose through the environment). */
const addon = aead as unknown as { use(impl: SessionAeadImplementation): boolean } | undefined;
const defaultImplementation = sessionAeadImplementation();

/** The IETF nonce the addon builds from (hi, lo): 4 zero bytes ‖ u64 big-endian. */
function ietfNonce(hi: number, lo: number): Buffer {
  const n = Buffer.alloc(12);
  n.writeUInt32BE(hi, 4);
  n.writeUInt32BE(lo, 8);
  return n;
}

function sodiumSeal(key: Buffer, hi: number, lo: number, ad: Buffer, plain: Buffer): Buffer {
  const out = Buffer.alloc(plain.length + 16);
  sodium.crypto_aead_chacha20poly1305_ietf_encrypt(out, plain, ad, null, ietfNonce(hi, lo), key);
  return out;
}

function sodiumOpens(key: Buffer, hi: number, lo: number, ad: Buffer, sealed: Buffer): Buffer | undefined {
  const out = Buffer.alloc(sealed.length - 16);
  try {
    sodium.crypto_aead_chacha20poly1305_ietf_decrypt(out, null, sealed, ad, ietfNonce(hi, lo), key);
    return out;
  } catch {
    return undefined;
  }
}

/** buf = ad ‖ plain ‖ 16 spare bytes, sealed in place by the addon. */
function nativeSeal(key: Buffer, hi: number, lo: number, ad: Buffer, plain: Buffer): Buffer {
  const buf = Buffer.concat([ad, plain, Buffer.alloc(16)]);
  expect(aead!.seal(key, hi, lo, buf, ad.length, ad.length + plain.length)).toBe(true);
  return buf;
}

it("the addon is built with OpenSSL here (PLANETD_NO_OPENSSL builds skip the next block)", () => {
  expect(aead !== undefined || process.env.PLANETD_NO_OPENSSL !== undefined).toBe(true);
});

it("seals and opens through Node's own ChaCha20 and Poly1305, not EVP, by default", () => {
  // Node's official and Debian builds export OpenSSL's symbols to addons; one that does not would
  // fall back to EVP and fail here, which is worth knowing.
  expect(aead === undefined || defaultImplementation === "direct").toBe(true);
});

it("the direct and EVP implementations seal the same bytes", () => {
  if (!addon?.use("evp") || !addon.use("direct")) return;
  const key = randomBytes(32);
  for (const bytes of [0, 1, 63, 64, 65, 1400, 53_081]) {
    const ad = randomBytes(bytes % 13);
    const plain = randomBytes(bytes);
    addon.use("evp");
    const viaEvp = nativeSeal(key, 3, 0x89abcdef, ad, plain);
    addon.use("direct");
    expect(nativeSeal(key, 3, 0x89abcdef, ad, plain).equals(viaEvp), `${bytes} bytes`).toBe(true);
  }
});

const implementations = (["direct", "evp"] as const).filter((impl) => {
  const usable = addon?.use(impl) ?? false;
  if (defaultImplementation !== "none") addon?.use(defaultImplementation);
  return usable;
});

describe.skipIf(aead === undefined).each(implementations)("session AEAD addon (%s)", (impl) => {
  beforeAll(() => {
    expect(addon!.use(impl)).toBe(true);
  });
  afterAll(() => {
    if (defaultImplementation !== "none") addon!.use(defaultImplementation);
  });
  const cases = [
    { name: "empty message, no AD", adBytes: 0, bytes: 0, hi: 0, lo: 0 },
    { name: "one byte", adBytes: 4, bytes: 1, hi: 0, lo: 1 },
    { name: "1400 bytes, counter past 2^32", adBytes: 4, bytes: 1400, hi: 1, lo: 0xfffffffe },
    { name: "53 KB, 13-byte AD", adBytes: 13, bytes: 53_081, hi: 0x12345, lo: 0x6789abcd },
  ];
  for (const c of cases) {
    it(`seals what sodium opens and opens what sodium seals: ${c.name}`, () => {
      const key = randomBytes(32);
      const ad = randomBytes(c.adBytes);
      const plain = randomBytes(c.bytes);
      const sealedHere = nativeSeal(key, c.hi, c.lo, ad, plain);
      const sealedThere = sodiumSeal(key, c.hi, c.lo, ad, plain);
      expect(sealedHere.subarray(c.adBytes).equals(sealedThere)).toBe(true);
      expect(sodiumOpens(key, c.hi, c.lo, ad, sealedHere.subarray(c.adBytes))?.equals(plain)).toBe(true);

      const src = Buffer.concat([ad, sealedThere]);
      const dst = Buffer.alloc(c.bytes + 3);
      expect(aead!.open(key, c.hi, c.lo, src, c.adBytes, src.length, dst, 3)).toBe(true);
      expect(dst.subarray(3).equals(plain)).toBe(true);
      // In place: the plaintext replaces the ciphertext.
      expect(aead!.open(key, c.hi, c.lo, src, c.adBytes, src.length, src, c.adBytes)).toBe(true);
      expect(src.subarray(c.adBytes, c.adBytes + c.bytes).equals(plain)).toBe(true);
    });
  }

  it("refuses a flipped bit anywhere (AD, ciphertext, tag), another counter or another key", () => {
    const key = randomBytes(32);
    const ad = randomBytes(5);
    const plain = randomBytes(300);
    const sealed = nativeSeal(key, 0, 7, ad, plain);
    const dst = Buffer.alloc(plain.length);
    const opens = (buf: Buffer, k = key, lo = 7) => aead!.open(k, 0, lo, buf, ad.length, buf.length, dst, 0);
    expect(opens(sealed)).toBe(true);
    for (const at of [0, 4, 5, 150, 304, 305, sealed.length - 1]) {
      const forged = Buffer.from(sealed);
      forged[at]! ^= 0x01;
      expect(opens(forged), `bit flipped at ${at}`).toBe(false);
      expect(sodiumOpens(key, 0, 7, forged.subarray(0, 5), forged.subarray(5))).toBeUndefined();
    }
    expect(opens(sealed, key, 8)).toBe(false);
    expect(opens(sealed, randomBytes(32))).toBe(false);
    // The key the context holds changed and back: still opens (the key cache follows).
    expect(opens(sealed)).toBe(true);
  });

  it("bad arguments are a clear TypeError, not a crash", () => {
    const buf = Buffer.alloc(64);
    expect(() => aead!.seal(Buffer.alloc(31), 0, 0, buf, 0, 10)).toThrow(/key of 32 bytes/);
    expect(() => aead!.seal(Buffer.alloc(32), 0, 0, buf, 0, 49)).toThrow(TypeError);
    expect(() => aead!.open(Buffer.alloc(32), 0, 0, buf, 0, 15, buf, 0)).toThrow(/adEnd \+ 16 <= end/);
    expect(() => aead!.open(Buffer.alloc(32), 0, 0, buf, 0, 64, Buffer.alloc(47), 0)).toThrow(TypeError);
  });
});

describe("session AEAD keys and choice", () => {
  it("each direction has its own key, and neither is the box key", () => {
    const shared = randomBytes(32);
    const a = randomBytes(32);
    const b = randomBytes(32);
    const ka = deriveSessionAeadKey(shared, a);
    expect(ka.length).toBe(32);
    expect(ka.equals(deriveSessionAeadKey(shared, a))).toBe(true);
    expect(ka.equals(deriveSessionAeadKey(shared, b))).toBe(false);
    expect(ka.equals(deriveSessionAeadKey(randomBytes(32), a))).toBe(false);
    expect(ka.equals(shared)).toBe(false);
  });

  it("PLANETD_SESSION_CIPHER=box turns it off; a typo is a clear error", () => {
    expect(sessionAeadFromEnv({ PLANETD_SESSION_CIPHER: "box" })).toBeUndefined();
    expect(sessionAeadFromEnv({})).toBe(loadSessionAead());
    expect(() => sessionAeadFromEnv({ PLANETD_SESSION_CIPHER: "chacha" })).toThrow(
      /PLANETD_SESSION_CIPHER=chacha: expected box, chacha20-poly1305 or auto/,
    );
    expect(() => sessionAeadFromEnv({ PLANETD_SESSION_AEAD: "sodium" })).toThrow(
      /PLANETD_SESSION_AEAD=sodium: expected direct or evp/,
    );
  });

  it.skipIf(aead === undefined)("PLANETD_SESSION_AEAD=evp picks EVP, unset the default", () => {
    sessionAeadFromEnv({ PLANETD_SESSION_AEAD: "evp" });
    expect(sessionAeadImplementation()).toBe("evp");
    sessionAeadFromEnv({});
    expect(sessionAeadImplementation()).toBe(defaultImplementation);
  });
});
