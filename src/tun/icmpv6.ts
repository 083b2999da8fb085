// ICMPv6 Packet Too Big (RFC 4443 §3.2) as the IPv6 adapter sends it (spec 8.3 step 2).

export const IPV6_HEADER_BYTES = 40;
export const ICMPV6_NEXT_HEADER = 58;
export const ICMPV6_PACKET_TOO_BIG = 2;
/** How much of the offending packet a Packet Too Big quotes. */
export const PTB_QUOTE_BYTES = 512;

/**
 * RFC 4443 checksum of an ICMPv6 message: one's complement sum over the pseudo-header (source,
 * destination, upper-layer length, next header 58) and the message with its checksum field zeroed.
 */
export function icmpv6Checksum(source: Uint8Array, destination: Uint8Array, message: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < 16; i += 2)
    sum += ((source[i]! << 8) | source[i + 1]!) + ((destination[i]! << 8) | destination[i + 1]!);
  const len = message.length;
  sum += (len >>> 16) + (len & 0xffff) + ICMPV6_NEXT_HEADER;
  for (let i = 0; i + 1 < len; i += 2) {
    if (i === 2) continue; // the checksum field itself
    sum += (message[i]! << 8) | message[i + 1]!;
  }
  if (len & 1) sum += message[len - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/**
 * A Packet Too Big for `original`, from its destination back to its source: hop limit 255, MTU field
 * `mtu`, quoting the first 512 bytes of the original packet.
 */
export function buildPacketTooBig(original: Uint8Array, mtu: number): Buffer {
  const quote = Math.min(original.length, PTB_QUOTE_BYTES);
  const icmpLength = 8 + quote;
  const out = Buffer.alloc(IPV6_HEADER_BYTES + icmpLength);
  out[0] = 0x60;
  out.writeUInt16BE(icmpLength, 4);
  out[6] = ICMPV6_NEXT_HEADER;
  out[7] = 255;
  out.set(original.subarray(24, 40), 8); // source = the original destination
  out.set(original.subarray(8, 24), 24); // destination = the original source
  const icmp = out.subarray(IPV6_HEADER_BYTES);
  icmp[0] = ICMPV6_PACKET_TOO_BIG;
  icmp[1] = 0;
  icmp.writeUInt32BE(mtu >>> 0, 4);
  icmp.set(original.subarray(0, quote), 8);
  icmp.writeUInt16BE(icmpv6Checksum(out.subarray(8, 24), out.subarray(24, 40), icmp), 2);
  return out;
}
