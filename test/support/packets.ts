// Raw IPv6 packets for tests: a fixed 40-byte header (no extension headers) and a given payload.

/** An IPv6 packet carrying `payload` with next header `nextHeader` (59 = none) and hop limit 64. */
export function ipv6Packet(src: Buffer, dst: Buffer, payload: Buffer, nextHeader = 59): Buffer {
  const p = Buffer.alloc(40 + payload.length);
  p[0] = 0x60;
  p.writeUInt16BE(payload.length, 4);
  p[6] = nextHeader;
  p[7] = 64;
  src.copy(p, 8);
  dst.copy(p, 24);
  payload.copy(p, 40);
  return p;
}

/** Host number `host` (0..255) in the /64 `subnet` (8 bytes). */
export function inSubnet(subnet: Buffer, host: number): Buffer {
  const a = Buffer.alloc(16);
  subnet.copy(a, 0, 0, 8);
  a[15] = host;
  return a;
}

/**
 * Independent check (RFC 1071 style): summing every 16-bit word of pseudo-header and message,
 * checksum field included, must give 0xffff.
 */
export function checksumHolds(packet: Buffer): boolean {
  const payloadLength = packet.readUInt16BE(4);
  const pseudo = Buffer.alloc(40);
  packet.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(payloadLength, 32);
  pseudo[39] = packet[6]!;
  const all = Buffer.concat([pseudo, packet.subarray(40), Buffer.alloc((packet.length - 40) & 1)]);
  let sum = 0;
  for (let i = 0; i < all.length; i += 2) sum += all.readUInt16BE(i);
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return sum === 0xffff;
}
