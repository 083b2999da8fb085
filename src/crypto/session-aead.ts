import { hkdfSync } from "node:crypto";
// ChaCha20-Poly1305 (IETF) for session traffic between planetd nodes, through the planetd_session
// addon (src/tun/native/session_chacha.c on the ChaCha20 and Poly1305 that Node's OpenSSL exports,
// session_aead.c's EVP where it does not): about twice as fast here as the NaCl
// secretbox that Yggdrasil's sessions use, which stays the cipher towards every node that has not
// said it takes this one (src/overlay/sessions/aead.ts).
import { createRequire } from "node:module";
import { addonPath } from "../util/addon-path.js";

export const AEAD_TAG_BYTES = 16;
export const AEAD_KEY_BYTES = 32;

/** The addon's calls; the nonce is 4 zero bytes ‖ (nonceHi ‖ nonceLo) as a u64 big-endian. */
export interface SessionAead {
  /** Encrypts buf[adEnd, end) in place with AD buf[0, adEnd) and writes the tag at buf[end, end + 16). */
  seal(
    key: Uint8Array,
    nonceHi: number,
    nonceLo: number,
    buf: Uint8Array,
    adEnd: number,
    end: number,
  ): boolean;
  /**
   * Opens src[adEnd, end) (ciphertext ‖ tag, AD src[0, adEnd)) into dst at dstOff, which is either
   * disjoint from the ciphertext or exactly on it (in place). False when the tag does not verify;
   * dst's bytes are then garbage.
   */
  open(
    key: Uint8Array,
    nonceHi: number,
    nonceLo: number,
    src: Uint8Array,
    adEnd: number,
    end: number,
    dst: Uint8Array,
    dstOff: number,
  ): boolean;
}

interface Addon extends SessionAead {
  available(): boolean;
  /** Picks the implementation; false when that one is not available here. */
  use(implementation: SessionAeadImplementation): boolean;
  implementation(): SessionAeadImplementation | "none";
}

/**
 * direct: RFC 8439 on OpenSSL's ChaCha20_ctr32 and Poly1305_* (the same assembly as EVP, without its
 * provider dispatch: ~0.2 us less per 100-byte seal or open, bench/session-aead-call.mjs); evp:
 * EVP_chacha20_poly1305. The output is the same bytes.
 */
export type SessionAeadImplementation = "direct" | "evp";

/**
 * The label keeps the session's box key from being used as a ChaCha20 key as is (one key, one
 * construction); the sender's ed25519 key in the info gives each direction its own key even where
 * both ends' shared box keys coincide, so the two send counters can never meet under one key.
 */
const LABEL = Buffer.from("planetd session chacha20-poly1305 v1 sender:");

/** The AEAD key for traffic that `sender` seals under the session's box key `shared`. */
export function deriveSessionAeadKey(shared: Uint8Array, sender: Uint8Array): Buffer {
  return Buffer.from(
    hkdfSync("sha256", shared, Buffer.alloc(0), Buffer.concat([LABEL, sender]), AEAD_KEY_BYTES),
  );
}

let loaded: Addon | null | undefined;

/** The addon when it is built with OpenSSL, else undefined (sessions then only use box). */
export function loadSessionAead(): SessionAead | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  loaded = null;
  const path = addonPath("planetd_session.node", import.meta.url, 2);
  if (!path) return undefined;
  try {
    const addon = createRequire(import.meta.url)(path) as Addon;
    if (addon.available()) loaded = addon;
  } catch {
    // built for another Node ABI: box still works
  }
  return loaded ?? undefined;
}

/** Which implementation the loaded addon seals and opens with ("none" without the addon). */
export function sessionAeadImplementation(): SessionAeadImplementation | "none" {
  loadSessionAead();
  return loaded ? loaded.implementation() : "none";
}

/**
 * What a node uses unless told otherwise: the addon, or nothing when PLANETD_SESSION_CIPHER=box
 * (for A/B benchmarks, and to rule the cipher out when looking for a fault). PLANETD_SESSION_AEAD=evp
 * makes the addon go through EVP (an A/B of the implementations; direct is the default and falls
 * back to EVP where Node does not export the primitives).
 */
export function sessionAeadFromEnv(env: NodeJS.ProcessEnv = process.env): SessionAead | undefined {
  const choice = env.PLANETD_SESSION_CIPHER;
  if (choice === "box") return undefined;
  if (choice !== undefined && choice !== "" && choice !== "auto" && choice !== "chacha20-poly1305") {
    throw new Error(`PLANETD_SESSION_CIPHER=${choice}: expected box, chacha20-poly1305 or auto`);
  }
  const impl = env.PLANETD_SESSION_AEAD;
  if (impl !== undefined && impl !== "" && impl !== "direct" && impl !== "evp") {
    throw new Error(`PLANETD_SESSION_AEAD=${impl}: expected direct or evp`);
  }
  const addon = loadSessionAead() as Addon | undefined;
  if (addon && !addon.use(impl === "evp" ? "evp" : "direct") && impl === "evp") {
    throw new Error("PLANETD_SESSION_AEAD=evp: this build has no OpenSSL EVP");
  }
  return addon;
}
