// Key ↔ address maths of spec section 3. Pure functions over byte arrays.

/** key → 16-byte address in 200::/8: 0x02 ‖ ones ‖ bits of NOT key after the leading ones and their 0. */
export function addressForKey(key: Uint8Array): Buffer {
  const addr = Buffer.alloc(16);
  addr[0] = 0x02;
  let ones = 0;
  let bit = 0;
  // Count leading ones of the inverted key.
  while (bit < 256 && ((~key[bit >> 3]! >> (7 - (bit & 7))) & 1) === 1) {
    ones++;
    bit++;
  }
  bit++; // skip the terminating zero
  addr[1] = ones;
  let out = 16; // bit index into addr (starts at byte 2)
  for (; bit < 256 && out < 128; bit++, out++) {
    const b = (~key[bit >> 3]! >> (7 - (bit & 7))) & 1;
    if (b) addr[out >> 3]! |= 1 << (7 - (out & 7));
  }
  // An incomplete final byte is discarded: zero any partial byte if the key ran out mid-byte.
  if (out < 128 && (out & 7) !== 0) addr[out >> 3] = 0;
  return addr;
}

/** key → the first 8 bytes of its address with byte 0 = 0x03 (the routed /64 prefix). */
export function subnetForKey(key: Uint8Array): Buffer {
  const sub = addressForKey(key).subarray(0, 8);
  sub[0] = 0x03;
  return Buffer.from(sub);
}

export function isValidAddress(addr: Uint8Array): boolean {
  return addr.length >= 16 && addr[0] === 0x02;
}

export function isValidSubnet(subnet: Uint8Array): boolean {
  return subnet.length >= 8 && subnet[0] === 0x03;
}

/**
 * Address (16 bytes) or subnet (8 bytes, zero-extended) → the partial key used for lookups: the
 * known bits of the key, with every unknown bit set to 1 (spec 3.3).
 */
export function partialKeyFor(addrOrSubnet: Uint8Array): Buffer {
  const a = Buffer.alloc(16);
  Buffer.from(addrOrSubnet.subarray(0, 16)).copy(a);
  const ones = a[1]!;
  const bits = new Uint8Array(256); // 0/1 per bit, padded with zeros
  let n = 0;
  for (let i = 0; i < ones && n < 256; i++) bits[n++] = 1;
  if (n < 256) bits[n++] = 0;
  for (let i = 16; i < 128 && n < 256; i++) bits[n++] = (a[i >> 3]! >> (7 - (i & 7))) & 1;
  const key = Buffer.alloc(32);
  for (let i = 0; i < 256; i++) if (bits[i] === 0) key[i >> 3]! |= 1 << (7 - (i & 7));
  return key;
}

/** Format 16 bytes as the canonical compressed IPv6 text form (RFC 5952). */
export function formatIPv6(addr: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((addr[i]! << 8) | addr[i + 1]!);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

export function formatSubnet(subnet: Uint8Array): string {
  const a = Buffer.alloc(16);
  Buffer.from(subnet.subarray(0, 8)).copy(a);
  return `${formatIPv6(a)}/64`;
}
