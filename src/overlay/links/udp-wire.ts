// The udp:// datagram and record types (udp.ts's header describes the whole format).

export const PKT_INIT = 1;
export const PKT_CHALLENGE = 2;
export const PKT_CONFIRM = 3;
export const PKT_ACCEPT = 4;
export const PKT_CLOSE = 5;
export const PKT_RESET = 6;
export const PKT_DATA = 0x10;
export const PKT_DATA_ACK = 0x11;
/** DATA+ACK that asks for an ack at once: the liveness probe. */
export const PKT_PING = 0x12;
/** type ‖ cookie ‖ nonce u32 ‖ padding: a datagram size probe. */
export const PKT_MTU_PROBE = 0x13;
/** type ‖ cookie ‖ nonce u32 ‖ size received u32. */
export const PKT_MTU_ACK = 0x14;
/** type ‖ cookie ‖ (frame id u32 ‖ fragment index u8)…: fragments to send again. */
export const PKT_NACK = 0x15;
/**
 * type ‖ cookie ‖ nonce u32: "which source ip:port do you see?" (NAT traversal). It may come from
 * another socket of the sender than the link's own (the one whose mapping it wants to learn), so the
 * receiver answers over the link and never moves the link to its source.
 */
export const PKT_OBSERVE = 0x16;
/** type ‖ cookie ‖ nonce u32 ‖ port u16 ‖ ip (4 or 16 bytes): the answer to an OBSERVE. */
export const PKT_OBSERVED = 0x17;
/** type ‖ cookie ‖ counter ‖ sealed (generation u32 ‖ fresh X25519 key) ‖ tag: new keys, please. */
export const PKT_REKEY = 0x18;
/** The same layout: the responder's fresh key for that generation (udp-rekey.ts). */
export const PKT_REKEY_ACK = 0x19;
/** The datagram types that belong to an established link. */
export const isLinkPacket = (type: number): boolean => type >= PKT_DATA && type <= PKT_REKEY_ACK;
/** type ‖ receiver's cookie (8). */
export const DATA_HEADER = 9;
/** RESET: type ‖ the cookie a stray datagram carried ‖ the listener's reset token for it (16). */
export const RESET_BYTES = DATA_HEADER + 16;
export const REC_UNRELIABLE = 0;
/** A reliable segment that ends its frame (most frames are one segment). */
export const REC_RELIABLE = 1;
export const REC_FRAGMENT = 2;
/** A reliable segment the next one continues. */
export const REC_RELIABLE_MORE = 3;

export interface UdpHooks {
  /**
   * Tests: return true to drop an outgoing link datagram (loss injection); it sees the datagram
   * before sealing (type ‖ cookie ‖ counter space ‖ plaintext ‖ tag space). Handshakes never are.
   */
  dropDatagram?(datagram: Buffer): boolean;
}
