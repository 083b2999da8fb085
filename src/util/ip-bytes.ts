// IP addresses as the bytes on the wire (NAT traversal's candidates and reflexive answers).

/** 4 bytes for dotted IPv4 (also IPv4-mapped IPv6), 16 for IPv6 text (zone dropped); else undefined. */
export function ipBytes(ip: string): Buffer | undefined {
  const v4 = /^(?:::ffff:)?(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (v4) {
    const parts = v4.slice(1, 5).map(Number);
    return parts.every((n) => n <= 255) ? Buffer.from(parts) : undefined;
  }
  const [head = "", tail] = ip.split("%")[0]!.split("::");
  const h = head ? head.split(":") : [];
  const t = tail ? tail.split(":") : [];
  if (tail === undefined && h.length !== 8) return undefined;
  if (h.length + t.length > 7 && tail !== undefined) return undefined;
  const groups = tail === undefined ? h : [...h, ...Array(8 - h.length - t.length).fill("0"), ...t];
  if (!groups.every((g) => /^[0-9a-f]{1,4}$/i.test(g))) return undefined;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(Number.parseInt(g, 16), i * 2));
  return out;
}

/** Dotted IPv4 for 4 bytes, uncompressed lower-case IPv6 for 16. */
export function ipText(raw: Uint8Array): string {
  if (raw.length === 4) return Array.from(raw).join(".");
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(((raw[i]! << 8) | raw[i + 1]!).toString(16));
  return groups.join(":");
}
