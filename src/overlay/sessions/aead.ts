// A faster session cipher between planetd nodes (issue 11): ChaCha20-Poly1305 from OpenSSL instead of
// NaCl's XSalsa20-Poly1305 secretbox, under a key derived from the session's own box key, in a
// planetd-only traffic type with the same header, so the same key ratchet and replay windows apply.
//
//   TRAFFIC_AEAD  0x70 ‖ uv(localKeySeq) ‖ uv(remoteKeySeq) ‖ uv(n) ‖ ChaCha20-Poly1305(nextPub ‖ message) ‖ tag
//     key: HKDF-SHA256 of the shared box key the Traffic type would use, labelled, with the sender's
//     ed25519 key (src/crypto/session-aead.ts); nonce: 4 zero bytes ‖ n as u64 big-endian; AD: the
//     header bytes before the ciphertext (type and the three uvarints).
//   ANNOUNCE      a session message (inside the box or the AEAD) 0x70 ‖ 5 ‖ ciphers u8, bit 0:
//     "I open TRAFFIC_AEAD". Core byte 0x70 is planetd's (src/overlay/nat.ts owns signal types 1-2,
//     src/tun/gso.ts 3-4); a longer body is read for its first three bytes.
//
// A node seals TRAFFIC_AEAD only towards a session whose remote announced it on this session
// instance: taking a newer init or ack from the remote (a restart, or keys out of sync) forgets the
// announcement until the remote says it again, and sending one of ours makes us say it again at the
// next message. Each side repeats its announcement every ANNOUNCE_MS on a session it sends or
// receives on, so a lost one costs at most that long on box. The receiver opens both types.
// An announcement lapses PEER_ANNOUNCE_TTL_MS after we last heard it: a remote that came back with
// the same key as a build that drops TRAFFIC_AEAD without a word (PLANETD_SESSION_CIPHER=box, no
// OpenSSL, Yggdrasil 0.4.7) and never sends to us would otherwise get AEAD traffic for as long as we
// keep sending; on box it draws the init that resyncs the session.
//
// Yggdrasil 0.4.7 never receives TRAFFIC_AEAD (it never announces), and forwarders never look
// inside kind-1 payloads. Were one to arrive anyway it is dropped without an answer: ironwood
// ec61cea (the version yggdrasil-go v0.4.7's go.mod pins) encrypted/session.go
// sessionManager.handleData switches on data[0] with an empty `default:` for types other than 0-3
// (lines 88-103), and yggdrasil-go v0.4.7 src/core/core.go ReadFrom skips the ANNOUNCE's unknown
// core byte 0x70 (`default: continue`, lines 168-179).
import { type SessionAead, deriveSessionAeadKey } from "../../crypto/session-aead.js";
import { CORE_PLANETD } from "../nat.js";
import type { Session } from "./state.js";
import type { U64 } from "./wire.js";

export const SIG_SESSION_CIPHER = 5;
export const CIPHER_CHACHA20_POLY1305 = 1;
export const ANNOUNCE_MS = 10_000;
/** Three of the remote's announcement periods: two lost in a row do not move us back to box. */
export const PEER_ANNOUNCE_TTL_MS = 3 * ANNOUNCE_MS;
/**
 * What we announce: we open TRAFFIC_AEAD. A Buffer, as every other message sendOn takes: a plain
 * Uint8Array there deoptimized sendOn ("wrong map") at the first announcement.
 */
export const ANNOUNCE_BODY = Buffer.from([CORE_PLANETD, SIG_SESSION_CIPHER, CIPHER_CHACHA20_POLY1305]);

export type CipherName = "box" | "chacha20-poly1305";

/** True for a session message that is an ANNOUNCE (checked on every opened message: two compares). */
export function isAnnounce(message: Uint8Array): boolean {
  return message.length >= 3 && message[0] === CORE_PLANETD && message[1] === SIG_SESSION_CIPHER;
}

/** ANNOUNCE's ciphers byte says the remote opens TRAFFIC_AEAD. */
export function announcesChacha(message: Uint8Array): boolean {
  return (message[2]! & CIPHER_CHACHA20_POLY1305) !== 0;
}

function nonceHi(n: U64): number {
  return typeof n === "number" ? Math.floor(n / 0x100000000) : Number(n >> 32n);
}

function nonceLo(n: U64): number {
  return typeof n === "number" ? n >>> 0 : Number(n & 0xffffffffn);
}

/** Seals buf[adEnd, end) in place under counter n; the tag goes to buf[end, end + 16). */
export function sealTraffic(
  aead: SessionAead,
  key: Uint8Array,
  n: U64,
  buf: Buffer,
  adEnd: number,
  end: number,
) {
  return aead.seal(key, nonceHi(n), nonceLo(n), buf, adEnd, end);
}

/** Opens payload[adEnd, end) under counter n where it lies: the plaintext replaces the ciphertext. */
export function openTraffic(aead: SessionAead, key: Uint8Array, n: U64, payload: Buffer, adEnd: number) {
  return aead.open(key, nonceHi(n), nonceLo(n), payload, adEnd, payload.length, payload, adEnd);
}

/** Our send key for s (derived once per key change: fixShared clears it). */
export function sendAeadKey(s: Session, self: Uint8Array): Buffer {
  s.sendAeadKey ??= deriveSessionAeadKey(s.sendShared, self);
  return s.sendAeadKey;
}

/** The remote's send key for the shared box key `shared` of one of the three receive cases. */
export function recvAeadKey(s: Session, which: 0 | 1 | 2, shared: Buffer): Buffer {
  if (which === 0) {
    s.recvAeadKey ??= deriveSessionAeadKey(shared, s.key);
    return s.recvAeadKey;
  }
  if (which === 1) {
    s.nextSendAeadKey ??= deriveSessionAeadKey(shared, s.key);
    return s.nextSendAeadKey;
  }
  s.nextRecvAeadKey ??= deriveSessionAeadKey(shared, s.key);
  return s.nextRecvAeadKey;
}
