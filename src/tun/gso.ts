// TCP super-packets between planetd nodes (issue 11). A TUN with segmentation offloads hands us TCP
// super-packets of up to 64 KiB; between two planetd ends they travel whole, one session message
// each, and the receiving TUN takes them as one GSO write, so neither end pays per-segment costs.
// Never towards Yggdrasil: both messages are planetd-only core messages (CORE_PLANETD, see the
// header of src/overlay/nat.ts, which owns signal types 1 and 2), which Yggdrasil 0.4.7 drops.
//
//   ACCEPT 3                        "send me super-packets": repeated every ANNOUNCE_MS while we
//                                   send to that node, believed for ACCEPT_TTL_MS
//   TCP6   4 ‖ gsoSize u16 ‖ IPv6   an IPv6/TCP packet (no extension headers) whose payload is cut
//                                   into gsoSize segments on delivery; its checksum field is unused
// A peer that never said ACCEPT gets ordinary segments, cut by the sender.
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
export const SUPER_ACCEPT_BODY = Buffer.of(SIG_SUPER_ACCEPT);

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
