// TCP super-packets between planetd nodes (issue 11). A TUN with segmentation offloads hands us TCP
// super-packets of up to 64 KiB; between two planetd ends they travel whole, one session message
// each, and the receiving TUN takes them as one GSO write, so neither end pays per-segment costs.
// Never towards Yggdrasil: both messages are planetd-only core messages (CORE_PLANETD, see the
// header of src/overlay/nat.ts, which owns signal types 1 and 2), which Yggdrasil 0.4.7 drops.
//
//   ACCEPT 3 ‖ flags u8             "send me super-packets": repeated every ANNOUNCE_MS while we
//                                   send to that node, believed for ACCEPT_TTL_MS. Flag 0x01: "and
//                                   TCP packets with partial checksums" (below); older nodes send no
//                                   flags byte, and ignore ours
//   TCP6   4 ‖ gsoSize u16 ‖ IPv6   an IPv6/TCP packet (no extension headers) whose payload is cut
//                                   into gsoSize segments on delivery; its checksum field is unused
// A peer that never said ACCEPT gets ordinary segments, cut by the sender.
//
// Partial checksums: the TUN offers checksum offload, so the kernel hands us TCP packets whose
// checksum field holds only the pseudo-header sum (PARTIAL_CHECKSUM). A node that said flag 0x01
// writes every plain TCP packet it receives as CHECKSUM_PARTIAL (the pseudo-header sum put back in
// the field: src/tun/native/offload.c tcp_prepare_partial), so its kernel neither verifies the sum
// nor misses it, and the packet goes to it as read; anyone else gets it completed first. The session
// AEAD already vouches for every byte end to end, as Linux's WireGuard trusts its decrypted packets
// (CHECKSUM_UNNECESSARY); a packet forwarded on from there gets its sum from the output path.
import { SESSION_MTU } from "../overlay/sessions.js";

export const SIG_SUPER_ACCEPT = 3;
export const SIG_SUPER_TCP6 = 4;
export const SUPER_HEADER_BYTES = 3;
/** Largest super-packet one session message carries (after the core byte and our header). */
export const MAX_SUPER_PACKET = SESSION_MTU - 1 - SUPER_HEADER_BYTES;
/** Smaller segments are cut by the sender: a peer may not make the kernel cut a packet into crumbs. */
export const MIN_SUPER_GSO_SIZE = 536;
export const SUPER_ANNOUNCE_MS = 10_000;
/** Three announcements and some slack: a node restarted without super-packets is believed ≤ 35 s. */
export const SUPER_ACCEPT_TTL_MS = 35_000;
/** ACCEPT's flag: this node writes received TCP packets as CHECKSUM_PARTIAL (see above). */
export const ACCEPT_PARTIAL_CHECKSUMS = 0x01;
export const SUPER_ACCEPT_BODY = Buffer.of(SIG_SUPER_ACCEPT, ACCEPT_PARTIAL_CHECKSUMS);
/** A read's gso size for a TCP packet whose checksum the kernel left partial (the addon's PARTIAL_CSUM). */
export const PARTIAL_CHECKSUM = -1;

/**
 * The size of one segment of a super-packet (IPv6 + TCP header + gsoSize), or 0 when it is not a
 * plain IPv6/TCP packet with consistent lengths and more than one segment of data.
 */
export function superPacketSegmentBytes(packet: Buffer, gsoSize: number): number {
  if (gsoSize < MIN_SUPER_GSO_SIZE || packet.length < 60 || packet.length > MAX_SUPER_PACKET) return 0;
  if (packet[6] !== 6 || packet.readUInt16BE(4) !== packet.length - 40) return 0;
  const tcpHeader = (packet[52]! >> 4) * 4;
  if (tcpHeader < 20 || 40 + tcpHeader + gsoSize >= packet.length) return 0;
  return 40 + tcpHeader + gsoSize;
}
