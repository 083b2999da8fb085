// The IPv6 adapter's key store stays within its caps, dropping the oldest first.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { addressForKey } from "../src/crypto/address.js";
import { KeyStore, MAX_KEYS, MAX_PENDING } from "../src/tun/keystore.js";

const NOW = 1_800_000_000_000;

/** A 40-byte IPv6 header whose destination (bytes 24..40) is `dest`. */
function packetTo(dest: Buffer): Buffer {
  const p = Buffer.alloc(40);
  p[0] = 0x60;
  dest.copy(p, 24);
  return p;
}

describe("key store bounds", () => {
  it("learning more than MAX_KEYS keys drops the oldest learned, and only those", () => {
    const store = new KeyStore();
    const keys = Array.from({ length: MAX_KEYS + 100 }, () => randomBytes(32));
    for (const k of keys) store.learn(k, NOW, []);
    expect(store.size).toBe(MAX_KEYS);
    expect(store.evicted.keys).toBe(100);
    const lookup = (k: Buffer) => store.useAddress(packetTo(addressForKey(k)), 24, NOW);
    expect(lookup(keys[99]!)).toBeUndefined();
    expect(lookup(keys[100]!)?.key.equals(keys[100]!)).toBe(true);
    expect(lookup(keys.at(-1)!)?.key.equals(keys.at(-1)!)).toBe(true);
  });

  it("pending packets for more than MAX_PENDING destinations drop the oldest; a learned key still flushes its own", () => {
    const store = new KeyStore();
    const keys = Array.from({ length: MAX_PENDING + 10 }, () => randomBytes(32));
    for (const k of keys) store.holdPending(packetTo(addressForKey(k)), false, NOW);
    expect(store.pendingCount).toBe(MAX_PENDING);
    expect(store.evicted.pending).toBe(10);
    const flushed: Buffer[] = [];
    store.learn(keys[5]!, NOW, flushed);
    expect(flushed).toEqual([]);
    store.learn(keys.at(-1)!, NOW, flushed);
    expect(flushed.length).toBe(1);
    expect(store.pendingCount).toBe(MAX_PENDING - 1);
  });
});
