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

/** ICMPv6 Destination Unreachable (RFC 4443 §3.1); code 1 = communication administratively prohibited. */
export const ICMPV6_DESTINATION_UNREACHABLE = 1;
export const UNREACHABLE_ADMIN_PROHIBITED = 1;
/** An error message quotes as much as fits in the minimum IPv6 MTU (RFC 4443 §3.1). */
export const UNREACHABLE_QUOTE_BYTES = 1280 - IPV6_HEADER_BYTES - 8;

/**
 * An ICMPv6 error about `original`, from its destination back to its source: type, code, the 32-bit
 * field after the checksum, and the first `quoteBytes` of the original packet.
 */
function buildError(
  original: Uint8Array,
  type: number,
  code: number,
  word: number,
  quoteBytes: number,
  hopLimit: number,
): Buffer {
  const quote = Math.min(original.length, quoteBytes);
  const icmpLength = 8 + quote;
  const out = Buffer.alloc(IPV6_HEADER_BYTES + icmpLength);
  out[0] = 0x60;
  out.writeUInt16BE(icmpLength, 4);
  out[6] = ICMPV6_NEXT_HEADER;
  out[7] = hopLimit;
  out.set(original.subarray(24, 40), 8); // source = the original destination
  out.set(original.subarray(8, 24), 24); // destination = the original source
  const icmp = out.subarray(IPV6_HEADER_BYTES);
  icmp[0] = type;
  icmp[1] = code;
  icmp.writeUInt32BE(word >>> 0, 4);
  icmp.set(original.subarray(0, quote), 8);
  icmp.writeUInt16BE(icmpv6Checksum(out.subarray(8, 24), out.subarray(24, 40), icmp), 2);
  return out;
}

/**
 * A Packet Too Big for `original`, from its destination back to its source: hop limit 255, MTU field
 * `mtu`, quoting the first 512 bytes of the original packet.
 */
export function buildPacketTooBig(original: Uint8Array, mtu: number): Buffer {
  return buildError(original, ICMPV6_PACKET_TOO_BIG, 0, mtu, PTB_QUOTE_BYTES, 255);
}

/**
 * The firewall's reject: Destination Unreachable, code 1 (administratively prohibited), from the
 * original destination to its source, hop limit 64, quoting up to 1232 bytes of `original`.
 */
export function buildAdminProhibited(original: Uint8Array): Buffer {
  return buildError(
    original,
    ICMPV6_DESTINATION_UNREACHABLE,
    UNREACHABLE_ADMIN_PROHIBITED,
    0,
    UNREACHABLE_QUOTE_BYTES,
    64,
  );
}
