import { verify } from "../../crypto/identity.js";
// The udp:// handshake packets (udp.ts drives the exchange; udp-seal.ts holds the cryptography):
//
//   INIT      1 ‖ dialer cookie ‖ 0^8 ‖ dialer metadata ‖ dialer ephemeral ‖ 0^64       151 bytes
//   CHALLENGE 2 ‖ dialer cookie ‖ listener cookie ‖ listener metadata                      55 bytes
//   CONFIRM   3 ‖ dialer cookie ‖ listener cookie ‖ dialer metadata ‖ dialer eph ‖ sig   151 bytes
//   ACCEPT    4 ‖ dialer cookie ‖ listener cookie ‖ listener metadata ‖ listener eph ‖ sig 151 bytes
//
// The listener cookie is HMAC(secret, source ip:port ‖ dialer cookie ‖ dialer ephemeral), so the
// listener answers an INIT with no state and no signature (INIT is padded: replies are never larger
// than requests). The dialer signs (CONFIRM) both cookies, both identities and its ephemeral key; the
// listener checks that before anything else, then signs (ACCEPT) the same plus its own ephemeral key.
import { decodeMetadata } from "./stream.js";
import { EPHEMERAL_BYTES, type Ephemeral, SIGNATURE_BYTES, sessionKeys, transcript } from "./udp-seal.js";

export const HS_BYTES = 151;
export const CHALLENGE_BYTES = 55;
const META_AT = 17;
const EPH_AT = 55;
const SIG_AT = EPH_AT + EPHEMERAL_BYTES;

export type Signer = (message: Uint8Array) => Buffer;

export interface HandshakeFields {
  dialerCookie: Buffer;
  listenerCookie: Buffer;
  /** The sender's ed25519 key from its metadata. */
  key: Buffer;
  ephemeral: Buffer;
  signature: Buffer;
}

export function handshakePacket(
  type: number,
  dialerCookie: Uint8Array,
  listenerCookie: Uint8Array,
  meta: Uint8Array,
  ephemeral?: Uint8Array,
  signature?: Uint8Array,
): Buffer {
  const out = Buffer.alloc(ephemeral ? HS_BYTES : CHALLENGE_BYTES);
  out[0] = type;
  out.set(dialerCookie, 1);
  out.set(listenerCookie, 9);
  out.set(meta, META_AT);
  if (ephemeral) out.set(ephemeral, EPH_AT);
  if (signature) out.set(signature, SIG_AT);
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
) {
  return transcript("confirm", [dc, lc, dKey, lKey, dEph]);
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

/** The dialer's CONFIRM: its signature binds the listener's key it was told in the CHALLENGE. */
export function confirmPacket(
  dc: Buffer,
  lc: Buffer,
  meta: Buffer,
  localKey: Buffer,
  listenerKey: Buffer,
  eph: Ephemeral,
  sign: Signer,
): Buffer {
  const sig = sign(confirmTranscript(dc, lc, localKey, listenerKey, eph.publicKey));
  return handshakePacket(3, dc, lc, meta, eph.publicKey, sig);
}

export function confirmValid(f: HandshakeFields, listenerKey: Buffer): boolean {
  const t = confirmTranscript(f.dialerCookie, f.listenerCookie, f.key, listenerKey, f.ephemeral);
  return verify(f.key, t, f.signature);
}

export interface Accepted {
  packet: Buffer;
  keys: { d2l: Buffer; l2d: Buffer };
}

/** The listener's ACCEPT and the link keys, or undefined for a degenerate dialer ephemeral key. */
export function acceptPacket(
  f: HandshakeFields,
  meta: Buffer,
  localKey: Buffer,
  eph: Ephemeral,
  sign: Signer,
): Accepted | undefined {
  const t = acceptTranscript(f.dialerCookie, f.listenerCookie, f.key, localKey, f.ephemeral, eph.publicKey);
  const keys = sessionKeys(eph, f.ephemeral, t);
  if (!keys) return undefined;
  const packet = handshakePacket(4, f.dialerCookie, f.listenerCookie, meta, eph.publicKey, sign(t));
  return { packet, keys };
}

/** The dialer's check of an ACCEPT; returns the link keys when the listener proved its key. */
export function acceptKeys(
  f: HandshakeFields,
  localKey: Buffer,
  eph: Ephemeral,
): { d2l: Buffer; l2d: Buffer } | undefined {
  const t = acceptTranscript(f.dialerCookie, f.listenerCookie, localKey, f.key, eph.publicKey, f.ephemeral);
  if (!verify(f.key, t, f.signature)) return undefined;
  return sessionKeys(eph, f.ephemeral, t);
}
