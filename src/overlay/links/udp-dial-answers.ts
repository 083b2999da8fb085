// What a udp:// dialer (udp-dial.ts, or a punch from a listener's socket: udp-punch.ts) takes from
// the listener it dials, and what it counts when it takes nothing (udp-refusals.ts
// dialAnswersRefused). Anyone who saw the INIT on the path can answer it, so a CHALLENGE only names
// a key to try; the ACCEPT's signature over both cookies and both ephemeral keys proves it.
import { CHALLENGE_BYTES, HS_BYTES, acceptKeys, parseHandshake } from "./udp-handshake.js";
import { udpRefusals } from "./udp-refusals.js";
import type { Ephemeral } from "./udp-seal.js";
import { DATA_HEADER, PKT_ACCEPT, PKT_CHALLENGE, PKT_CLOSE } from "./udp-wire.js";

/**
 * True when `msg` is an answer to the dial whose cookie is `dialerCookie`: a CHALLENGE, an ACCEPT
 * once a CHALLENGE gave the listener cookie (`challenged`), or a CLOSE, of its size and naming that
 * cookie. Anything else is counted (unsolicited, or of a type no dial takes) and dropped.
 */
export function answersDial(msg: Buffer, dialerCookie: Buffer, challenged: boolean): boolean {
  const type = msg[0];
  let size = DATA_HEADER;
  if (type === PKT_CHALLENGE) size = CHALLENGE_BYTES;
  else if (type === PKT_ACCEPT) size = challenged ? HS_BYTES : -1;
  else if (type !== PKT_CLOSE) {
    udpRefusals.strayDatagrams.type++;
    return false;
  }
  if (msg.length === size && dialerCookie.equals(msg.subarray(1, 9))) return true;
  udpRefusals.dialAnswersRefused.unsolicited++;
  return false;
}

/**
 * The link keys and reset token an ACCEPT for this dial (answersDial said so) proves, or undefined
 * when another listener cookie, another key than the CHALLENGE's or its signature gives it away
 * (counted forged: the dial keeps waiting for the real one) or its metadata does not parse.
 */
export function provenAccept(
  msg: Buffer,
  listenerCookie: Buffer,
  expectKey: Buffer,
  localKey: Buffer,
  eph: Ephemeral,
): { d2l: Buffer; l2d: Buffer; resetToken: Buffer } | undefined {
  const refused = udpRefusals.dialAnswersRefused;
  if (!listenerCookie.equals(msg.subarray(9, 17))) {
    refused.forged++;
    return undefined;
  }
  const f = parseHandshake(msg);
  if (!f) {
    refused.malformed++;
    return undefined;
  }
  const keys = f.key.equals(expectKey) ? acceptKeys(f, localKey, eph) : undefined;
  if (!keys) refused.forged++;
  return keys;
}
