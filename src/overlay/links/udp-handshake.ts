// The udp:// handshake packets (udp.ts drives the exchange; udp-seal.ts holds the cryptography):
//
//   INIT      1 ‖ dialer cookie ‖ 0^8 ‖ dialer metadata ‖ dialer ephemeral ‖ 0^81                168 bytes
//   CHALLENGE 2 ‖ dialer cookie ‖ listener cookie ‖ listener metadata                         55 bytes
//   CONFIRM   3 ‖ dialer cookie ‖ listener cookie ‖ dialer metadata ‖ dialer eph ‖ sig ‖
//             priority u8 ‖ reset commitment (16, or 0^16)                                  168 bytes
//   ACCEPT    4 ‖ dialer cookie ‖ listener cookie ‖ listener metadata ‖ listener eph ‖ sig ‖
//             0 ‖ sealed reset token (16)                                                   168 bytes
//
// The priority is the dialer's for this link (one link per peer key and priority: the listener
// replaces an older link only when key, host and priority all match). The reset token
// (udp.ts: the listener's authentic RESET) travels XORed with a pad that only the two ends derive
// from the X25519 result, and the ACCEPT's signature covers it. The dialer cannot hide a token of
// its own that way (it signs the CONFIRM before it knows the listener's key share), so it commits
// to one instead: SHA-256 of its token, truncated to 16 bytes, under the CONFIRM's signature. The
// token itself (HMAC of its cookie under the same restart-proof secret) stays with the dialer until
// a RESET reveals it, when the link it names is gone from the dialer anyway; a dialer on a socket
// no restart gets back (a dial's own ephemeral port) commits to nothing (0^16).
//
// The listener cookie is HMAC(secret, minute ‖ source ip:port ‖ dialer cookie ‖ dialer ephemeral)
// (udp-listener.ts), so the listener answers an INIT with no state and no signature (INIT is padded:
// replies are never larger than requests). The dialer signs (CONFIRM) both cookies, both identities
// and its ephemeral key; the listener checks that before anything else, then signs (ACCEPT) the same
// plus its own ephemeral key.
import { createHash } from "node:crypto";
import { verify } from "../../crypto/identity.js";
import { decodeMetadata } from "./stream.js";
import { EPHEMERAL_BYTES, type Ephemeral, SIGNATURE_BYTES, sessionKeys, transcript } from "./udp-seal.js";

export const HS_BYTES = 168;
export const CHALLENGE_BYTES = 55;
export const RESET_TOKEN_BYTES = 16;
const META_AT = 17;
const EPH_AT = 55;
const SIG_AT = EPH_AT + EPHEMERAL_BYTES;
const PRIORITY_AT = SIG_AT + SIGNATURE_BYTES;
const TOKEN_AT = PRIORITY_AT + 1;

export type Signer = (message: Uint8Array) => Buffer;

export interface HandshakeFields {
  dialerCookie: Buffer;
  listenerCookie: Buffer;
  /** The sender's ed25519 key from its metadata. */
  key: Buffer;
  ephemeral: Buffer;
  signature: Buffer;
  /** CONFIRM: the dialer's priority for this link. */
  priority: number;
  /**
   * ACCEPT: the listener's reset token XORed with the pad of the handshake's keys; CONFIRM: the
   * dialer's reset commitment (resetCommitment of its token), 0^16 for none.
   */
  resetField: Buffer;
}

export function handshakePacket(
  type: number,
  dialerCookie: Uint8Array,
  listenerCookie: Uint8Array,
  meta: Uint8Array,
  ephemeral?: Uint8Array,
  signature?: Uint8Array,
  priority = 0,
  resetField?: Uint8Array,
): Buffer {
  const out = Buffer.alloc(ephemeral ? HS_BYTES : CHALLENGE_BYTES);
  out[0] = type;
  out.set(dialerCookie, 1);
  out.set(listenerCookie, 9);
  out.set(meta, META_AT);
  if (ephemeral) out.set(ephemeral, EPH_AT);
  if (signature) out.set(signature, SIG_AT);
  if (ephemeral) out[PRIORITY_AT] = priority;
  if (resetField) out.set(resetField, TOKEN_AT);
  return out;
}

/** The fields of a 151-byte handshake packet, or undefined when its metadata is malformed. */
export function parseHandshake(msg: Buffer): HandshakeFields | undefined {
  let key: Buffer;
  try {
    key = decodeMetadata(Buffer.from(msg.subarray(META_AT, EPH_AT)));
  } catch {
    return undefined;
  }
  return {
    dialerCookie: Buffer.from(msg.subarray(1, 9)),
    listenerCookie: Buffer.from(msg.subarray(9, 17)),
    key,
    ephemeral: Buffer.from(msg.subarray(EPH_AT, SIG_AT)),
    signature: Buffer.from(msg.subarray(SIG_AT, SIG_AT + SIGNATURE_BYTES)),
    priority: msg[PRIORITY_AT]!,
    resetField: Buffer.from(msg.subarray(TOKEN_AT, TOKEN_AT + RESET_TOKEN_BYTES)),
  };
}

/** The listener's metadata key in a CHALLENGE, or undefined. */
export function challengeKey(msg: Buffer): Buffer | undefined {
  try {
    return decodeMetadata(Buffer.from(msg.subarray(META_AT, CHALLENGE_BYTES)));
  } catch {
    return undefined;
  }
}

function confirmTranscript(
  dc: Uint8Array,
  lc: Uint8Array,
  dKey: Uint8Array,
  lKey: Uint8Array,
  dEph: Uint8Array,
  priority: number,
  commitment: Uint8Array,
) {
  return transcript("confirm", [dc, lc, dKey, lKey, dEph, Uint8Array.of(priority), commitment]);
}

const NO_COMMITMENT = Buffer.alloc(RESET_TOKEN_BYTES);

/**
 * What a link keeps to check a RESET's token: SHA-256 of it, truncated to 16 bytes (the dialer's
 * CONFIRM carries this for its own token; the dialer computes it from the listener's token).
 */
export function resetCommitment(token: Uint8Array): Buffer {
  return createHash("sha256")
    .update("planetd udp reset")
    .update(token)
    .digest()
    .subarray(0, RESET_TOKEN_BYTES);
}

/** A CONFIRM's commitment, or undefined when the dialer made none (0^16). */
export function confirmCommitment(f: HandshakeFields): Buffer | undefined {
  return f.resetField.equals(NO_COMMITMENT) ? undefined : f.resetField;
}

function acceptTranscript(
  dc: Uint8Array,
  lc: Uint8Array,
  dKey: Uint8Array,
  lKey: Uint8Array,
  dEph: Uint8Array,
  lEph: Uint8Array,
) {
  return transcript("accept", [dc, lc, dKey, lKey, dEph, lEph]);
}

/**
 * The dialer's CONFIRM: its signature binds the listener's key it was told in the CHALLENGE, and
 * the commitment to its reset token (so no one on the path can swap in one they know the token of).
 */
export function confirmPacket(
  dc: Buffer,
  lc: Buffer,
  meta: Buffer,
  localKey: Buffer,
  listenerKey: Buffer,
  eph: Ephemeral,
  sign: Signer,
  priority = 0,
  commitment: Buffer = NO_COMMITMENT,
): Buffer {
  const sig = sign(confirmTranscript(dc, lc, localKey, listenerKey, eph.publicKey, priority, commitment));
  return handshakePacket(3, dc, lc, meta, eph.publicKey, sig, priority, commitment);
}

export function confirmValid(f: HandshakeFields, listenerKey: Buffer): boolean {
  const t = confirmTranscript(
    f.dialerCookie,
    f.listenerCookie,
    f.key,
    listenerKey,
    f.ephemeral,
    f.priority,
    f.resetField,
  );
  return verify(f.key, t, f.signature);
}

export interface Accepted {
  packet: Buffer;
  keys: { d2l: Buffer; l2d: Buffer };
}

function xorPad(token: Uint8Array, pad: Buffer): Buffer {
  const out = Buffer.alloc(RESET_TOKEN_BYTES);
  for (let i = 0; i < RESET_TOKEN_BYTES; i++) out[i] = token[i]! ^ pad[i]!;
  return out;
}

/** The listener's ACCEPT and the link keys, or undefined for a degenerate dialer ephemeral key. */
export function acceptPacket(
  f: HandshakeFields,
  meta: Buffer,
  localKey: Buffer,
  eph: Ephemeral,
  sign: Signer,
  resetToken: Buffer,
): Accepted | undefined {
  const t = acceptTranscript(f.dialerCookie, f.listenerCookie, f.key, localKey, f.ephemeral, eph.publicKey);
  const keys = sessionKeys(eph, f.ephemeral, t);
  if (!keys) return undefined;
  const sealed = xorPad(resetToken, keys.pad);
  const sig = sign(Buffer.concat([t, sealed]));
  const packet = handshakePacket(4, f.dialerCookie, f.listenerCookie, meta, eph.publicKey, sig, 0, sealed);
  return { packet, keys: { d2l: keys.d2l, l2d: keys.l2d } };
}

/**
 * The dialer's check of an ACCEPT; returns the link keys and the listener's reset token when the
 * listener proved its key.
 */
export function acceptKeys(
  f: HandshakeFields,
  localKey: Buffer,
  eph: Ephemeral,
): { d2l: Buffer; l2d: Buffer; resetToken: Buffer } | undefined {
  const t = acceptTranscript(f.dialerCookie, f.listenerCookie, localKey, f.key, eph.publicKey, f.ephemeral);
  if (!verify(f.key, Buffer.concat([t, f.resetField]), f.signature)) return undefined;
  const keys = sessionKeys(eph, f.ephemeral, t);
  if (!keys) return undefined;
  return { d2l: keys.d2l, l2d: keys.l2d, resetToken: xorPad(f.resetField, keys.pad) };
}
