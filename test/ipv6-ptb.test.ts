import { describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { buildPacketTooBig } from "../src/tun/icmpv6.js";
import { type CoreSender, Ipv6Adapter } from "../src/tun/ipv6.js";
import { checksumHolds, ipv6Packet } from "./support/packets.js";

const A = Identity.fromSeed(Buffer.alloc(32));
const B = Identity.fromSeed(Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1)));
const T0 = 1_700_000_000_000;

/** A UDP-numbered (next header 17) packet whose payload is a position-dependent pattern. */
function ipv6(src: Buffer, dst: Buffer, payload: number): Buffer {
  const body = Buffer.alloc(payload);
  for (let i = 0; i < payload; i++) body[i] = ((40 + i) * 7) & 0xff;
  return ipv6Packet(src, dst, body, 17);
}

describe("ICMPv6 Packet Too Big", () => {
  it("builds the exact layout with a valid checksum", () => {
    const original = ipv6(B.address, A.address, 1960);
    const ptb = buildPacketTooBig(original, 1280);
    expect(ptb.length).toBe(40 + 8 + 512);
    expect(ptb[0]).toBe(0x60);
    expect(ptb.readUInt32BE(0)).toBe(0x60000000); // traffic class and flow label zero
    expect(ptb.readUInt16BE(4)).toBe(520);
    expect(ptb[6]).toBe(58);
    expect(ptb[7]).toBe(255);
    expect(ptb.subarray(8, 24).equals(A.address)).toBe(true);
    expect(ptb.subarray(24, 40).equals(B.address)).toBe(true);
    expect(ptb[40]).toBe(2);
    expect(ptb[41]).toBe(0);
    expect(ptb.readUInt32BE(44)).toBe(1280);
    expect(ptb.subarray(48).equals(original.subarray(0, 512))).toBe(true);
    expect(checksumHolds(ptb)).toBe(true);
    const corrupted = Buffer.from(ptb);
    corrupted[100]! ^= 1;
    expect(checksumHolds(corrupted)).toBe(false);
  });

  it("quotes a short original whole, odd length included", () => {
    const original = ipv6(B.address, A.address, 61);
    const ptb = buildPacketTooBig(original, 1400);
    expect(ptb.length).toBe(40 + 8 + original.length);
    expect(ptb.subarray(48).equals(original)).toBe(true);
    expect(ptb.length % 2).toBe(1);
    expect(checksumHolds(ptb)).toBe(true);
  });

  it("an oversize packet from the network goes back to its sender as a PTB, not to the TUN", () => {
    const sentIPv6: { dest: Buffer; packet: Buffer }[] = [];
    const sentOob: { dest: Buffer; payload: Buffer }[] = [];
    const tun: Buffer[] = [];
    const core: CoreSender = {
      sendIPv6: (dest, packet) => sentIPv6.push({ dest: Buffer.from(dest), packet: Buffer.from(packet) }),
      sendOutOfBand: (dest, payload) =>
        sentOob.push({ dest: Buffer.from(dest), payload: Buffer.from(payload) }),
    };
    const a = new Ipv6Adapter(A, core, (p) => tun.push(Buffer.from(p)), 1280);
    const big = ipv6(B.address, A.address, 1960);
    a.fromNetwork(B.publicKey, big, T0);
    expect(tun).toHaveLength(0);
    expect(a.stats().packetTooBigSent).toBe(1);
    // As in Go, the PTB check comes before learning the sender, so the PTB waits for a lookup.
    expect(sentOob).toHaveLength(1);
    a.handleOutOfBand(B.publicKey, A.publicKey, Buffer.concat([Buffer.of(2), B.sign(A.publicKey)]), T0 + 1);
    expect(sentIPv6).toHaveLength(1);
    expect(sentIPv6[0]!.dest.equals(B.publicKey)).toBe(true);
    const ptb = sentIPv6[0]!.packet;
    expect(ptb.length).toBe(560); // 561-byte core message with the 0x01 prefix, as observed
    expect(ptb.equals(buildPacketTooBig(big, 1280))).toBe(true);
    expect(checksumHolds(ptb)).toBe(true);
    // Exactly MTU-sized packets are delivered.
    const fits = ipv6(B.address, A.address, 1240);
    a.fromNetwork(B.publicKey, fits, T0 + 2);
    expect(tun.map((p) => p.length)).toEqual([1280]);
  });

  it("clamps the adapter MTU to [1280, 53049]", () => {
    const core: CoreSender = { sendIPv6: () => {}, sendOutOfBand: () => {} };
    expect(new Ipv6Adapter(A, core, () => {}, 65535).mtu).toBe(53049);
    expect(new Ipv6Adapter(A, core, () => {}, 576).mtu).toBe(1280);
  });
});
