// The IPv6 adapter's side of TCP super-packets (src/tun/gso.ts): who gets them whole, who gets them
// cut, what a receiver checks, and how often a node says it takes them. Two adapters back to back.
import { describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import {
  ACCEPT_PARTIAL_CHECKSUMS,
  PARTIAL_CHECKSUM,
  SIG_SUPER_ACCEPT,
  SIG_SUPER_TCP6,
  SUPER_ACCEPT_TTL_MS,
  SUPER_ANNOUNCE_MS,
  SUPER_HEADER_BYTES,
} from "../src/tun/gso.js";
import { type CoreSender, Ipv6Adapter, type SuperPacketTun } from "../src/tun/ipv6.js";
import { ipv6Packet } from "./support/packets.js";

const A = Identity.fromSeed(Buffer.alloc(32, 0x0a));
const B = Identity.fromSeed(Buffer.alloc(32, 0x0b));
const T0 = 1_700_000_000_000;
const GSO = 1360; // a 1420 MTU less IPv6 and a bare TCP header

/** IPv6/TCP (20-byte header, ACK) from `src` to `dst` with `segments` segments of GSO bytes. */
function superPacket(src: Identity, dst: Identity, segments: number): Buffer {
  const tcp = Buffer.alloc(20 + segments * GSO, 0x5a);
  tcp[12] = 5 << 4;
  tcp[13] = 0x10;
  return ipv6Packet(src.address, dst.address, tcp, 6);
}

const COMPLETED_MARK = 0xc5c5;

/** The cut a real TUN does (checksums aside): the header repeated before each GSO-byte chunk. */
const cutter = (): SuperPacketTun & { calls: number; completed: number } => {
  const t = {
    calls: 0,
    completed: 0,
    /** Stands in for the addon's sum: marks the checksum field so that a test sees which went out completed. */
    completeChecksum(packet: Buffer): boolean {
      t.completed++;
      packet.writeUInt16BE(COMPLETED_MARK, 56);
      return true;
    },
    segment(packet: Buffer, gsoSize: number): Buffer[] {
      t.calls++;
      const out: Buffer[] = [];
      for (let off = 60; off < packet.length; off += gsoSize) {
        const seg = Buffer.concat([
          packet.subarray(0, 60),
          packet.subarray(off, Math.min(off + gsoSize, packet.length)),
        ]);
        seg.writeUInt16BE(seg.length - 40, 4);
        out.push(seg);
      }
      return out;
    },
  };
  return t;
};

interface End {
  adapter: Ipv6Adapter;
  ipv6: Buffer[];
  planetd: Buffer[];
  /** Where each planetd message sent in place lay (sendPlanetd's inPlace). */
  planetdInPlace: { buffer: ArrayBufferLike; offset: number }[];
  tun: { packet: Buffer; gsoSize: number }[];
  tunDevice: ReturnType<typeof cutter>;
}

function end(id: Identity, opts: { superPackets?: boolean; mtu?: number } = {}): End {
  const e = { ipv6: [], planetd: [], planetdInPlace: [], tun: [], tunDevice: cutter() } as unknown as End;
  const core: CoreSender = {
    sendIPv6: (_dest, packet) => e.ipv6.push(Buffer.from(packet)),
    sendOutOfBand: () => {},
    sendPlanetd: (_dest, body, _now, inPlace) => {
      e.planetd.push(Buffer.from(body));
      if (inPlace) e.planetdInPlace.push({ buffer: body.buffer, offset: body.byteOffset });
    },
  };
  e.adapter = new Ipv6Adapter(
    id,
    core,
    (packet, gsoSize) => e.tun.push({ packet: Buffer.from(packet), gsoSize }),
    opts.mtu ?? 1420,
    opts.superPackets === false ? undefined : e.tunDevice,
  );
  return e;
}

/** A's adapter learns `b`'s key from one ordinary packet b sends to A. */
function introduce(a: End, b: Identity, now: number): void {
  a.adapter.fromNetwork(b.publicKey, ipv6Packet(b.address, A.address, Buffer.alloc(8), 59), now);
}

describe("TCP super-packets between planetd nodes", () => {
  it("are cut for a node that has not said it takes them, and sent whole once it has", () => {
    const a = end(A);
    introduce(a, B, T0);
    a.adapter.fromTun(superPacket(A, B, 5), T0, GSO);
    expect(a.tunDevice.calls).toBe(1);
    expect(a.ipv6.map((p) => p.length)).toEqual([60 + GSO, 60 + GSO, 60 + GSO, 60 + GSO, 60 + GSO]);
    // Sending to B made A say, once, that it takes super-packets (and partial checksums) itself.
    expect(a.planetd).toEqual([Buffer.of(SIG_SUPER_ACCEPT, ACCEPT_PARTIAL_CHECKSUMS)]);

    a.adapter.handlePlanetd(B.publicKey, Buffer.of(SIG_SUPER_ACCEPT), T0 + 1);
    const sp = superPacket(A, B, 5);
    a.adapter.fromTun(sp, T0 + 2, GSO);
    expect(a.tunDevice.calls).toBe(1);
    const msg = a.planetd[1]!;
    expect(msg[0]).toBe(SIG_SUPER_TCP6);
    expect(msg.readUInt16BE(1)).toBe(GSO);
    expect(msg.subarray(SUPER_HEADER_BYTES).equals(sp)).toBe(true);
    expect(a.adapter.stats()).toMatchObject({
      superPacketsSent: 1,
      superPacketsCut: 1,
      superAcceptsHeard: 1,
    });

    // The word expires: without a fresh ACCEPT, cut again.
    a.adapter.fromTun(superPacket(A, B, 2), T0 + 1 + SUPER_ACCEPT_TTL_MS, GSO);
    expect(a.tunDevice.calls).toBe(2);
  });

  it("a super-packet read with room around it goes with its header in that room, not copied", () => {
    const a = end(A);
    introduce(a, B, T0);
    a.adapter.handlePlanetd(B.publicKey, Buffer.of(SIG_SUPER_ACCEPT), T0);
    const sp = superPacket(A, B, 5);
    const HEADROOM = 128; // as the native TUN's reads (src/tun/native.ts READ_HEADROOM)
    const read = Buffer.alloc(HEADROOM + sp.length + 16, 0xab);
    const packet = read.subarray(HEADROOM, HEADROOM + sp.length);
    sp.copy(packet);
    a.adapter.fromTun(packet, T0 + 1, GSO, true);
    expect(a.planetdInPlace).toEqual([
      { buffer: read.buffer, offset: read.byteOffset + HEADROOM - SUPER_HEADER_BYTES },
    ]);
    const msg = a.planetd.at(-1)!;
    expect(msg[0]).toBe(SIG_SUPER_TCP6);
    expect(msg.readUInt16BE(1)).toBe(GSO);
    expect(msg.subarray(SUPER_HEADER_BYTES).equals(sp)).toBe(true);
    // Without room, the same packet is copied behind the header in the adapter's own buffer.
    a.adapter.fromTun(Buffer.from(sp), T0 + 2, GSO);
    expect(a.planetdInPlace).toHaveLength(1);
    expect(a.planetd.at(-1)!.equals(msg)).toBe(true);
  });

  it("a TCP packet read with a partial checksum goes as read to a node that said it rewrites them, completed to any other", () => {
    const a = end(A);
    introduce(a, B, T0);
    const read = () => {
      const p = superPacket(A, B, 1);
      p.writeUInt16BE(0x1234, 56); // what the kernel left: the pseudo-header sum
      return p;
    };
    const sentSums = () => a.ipv6.map((p) => p.readUInt16BE(56));
    a.adapter.fromTun(read(), T0, PARTIAL_CHECKSUM); // B has said nothing yet
    // An older planetd says ACCEPT without flags: it takes super-packets but verifies checksums.
    a.adapter.handlePlanetd(B.publicKey, Buffer.of(SIG_SUPER_ACCEPT), T0 + 1);
    a.adapter.fromTun(read(), T0 + 2, PARTIAL_CHECKSUM);
    expect(sentSums()).toEqual([COMPLETED_MARK, COMPLETED_MARK]);

    a.adapter.handlePlanetd(B.publicKey, Buffer.of(SIG_SUPER_ACCEPT, ACCEPT_PARTIAL_CHECKSUMS), T0 + 3);
    a.adapter.fromTun(read(), T0 + 4, PARTIAL_CHECKSUM);
    expect(sentSums()).toEqual([COMPLETED_MARK, COMPLETED_MARK, 0x1234]);
    expect(a.adapter.stats()).toMatchObject({
      partialChecksumsCompleted: 2,
      superPacketsCut: 0,
      superPacketsSent: 0,
    });

    // The word expires with the ACCEPT, and a later ACCEPT without the flag withdraws it.
    a.adapter.fromTun(read(), T0 + 3 + SUPER_ACCEPT_TTL_MS, PARTIAL_CHECKSUM);
    a.adapter.handlePlanetd(B.publicKey, Buffer.of(SIG_SUPER_ACCEPT, ACCEPT_PARTIAL_CHECKSUMS), T0 + 5);
    a.adapter.handlePlanetd(B.publicKey, Buffer.of(SIG_SUPER_ACCEPT), T0 + 6);
    a.adapter.fromTun(read(), T0 + 7, PARTIAL_CHECKSUM);
    expect(sentSums().slice(3)).toEqual([COMPLETED_MARK, COMPLETED_MARK]);
    // A destination not yet known is completed before the packet waits for its key.
    const C = Identity.fromSeed(Buffer.alloc(32, 0x0c));
    a.adapter.fromTun(superPacket(A, C, 1), T0 + 8, PARTIAL_CHECKSUM);
    expect(a.tunDevice.completed).toBe(5);
  });

  it("says it takes them at most once per SUPER_ANNOUNCE_MS per destination, and never without a TUN that can", () => {
    const a = end(A);
    introduce(a, B, T0);
    const ordinary = ipv6Packet(A.address, B.address, Buffer.alloc(100), 59);
    for (let t = 0; t < SUPER_ANNOUNCE_MS; t += 1000) a.adapter.fromTun(ordinary, T0 + t);
    a.adapter.fromTun(ordinary, T0 + SUPER_ANNOUNCE_MS);
    expect(a.planetd.filter((m) => m[0] === SIG_SUPER_ACCEPT)).toHaveLength(2);

    const plain = end(A, { superPackets: false });
    introduce(plain, B, T0);
    plain.adapter.fromTun(ordinary, T0);
    expect(plain.planetd).toHaveLength(0);
    const written = plain.tun.length;
    plain.adapter.handlePlanetd(
      B.publicKey,
      Buffer.of(SIG_SUPER_TCP6, GSO >> 8, GSO & 0xff, ...superPacket(B, A, 3)),
      T0,
    );
    expect(plain.tun).toHaveLength(written);
    expect(plain.adapter.stats().superPacketsRefused).toBe(1);
  });

  it("a receiver writes a super-packet with its gso size, answers Packet Too Big by segment size, and drops malformed ones", () => {
    const b = end(B, { mtu: 1420 });
    const message = (packet: Buffer, gso: number) =>
      Buffer.concat([Buffer.of(SIG_SUPER_TCP6, gso >> 8, gso & 0xff), packet]);
    const sp = superPacket(A, B, 10);
    b.adapter.handlePlanetd(A.publicKey, message(sp, GSO), T0);
    expect(b.tun).toHaveLength(1);
    expect(b.tun[0]!.gsoSize).toBe(GSO);
    expect(b.tun[0]!.packet.equals(sp)).toBe(true);

    // Segments of 1500 bytes do not fit a 1420 MTU, though the super-packet is far larger anyway.
    b.adapter.handlePlanetd(A.publicKey, message(superPacket(A, B, 3), 1440), T0);
    expect(b.adapter.stats().packetTooBigSent).toBe(1);
    expect(b.tun).toHaveLength(1);

    b.adapter.handlePlanetd(A.publicKey, message(sp, 100), T0); // crumbs
    b.adapter.handlePlanetd(A.publicKey, message(superPacket(A, B, 1), GSO), T0); // one segment
    const udp = Buffer.from(sp);
    udp[6] = 17;
    b.adapter.handlePlanetd(A.publicKey, message(udp, GSO), T0);
    b.adapter.handlePlanetd(A.publicKey, Buffer.of(SIG_SUPER_TCP6), T0);
    expect(b.adapter.stats().superPacketsMalformed).toBe(4);
    expect(b.tun).toHaveLength(1);

    // Not from the session's own address: refused as any packet would be.
    b.adapter.handlePlanetd(A.publicKey, message(superPacket(B, B, 3), GSO), T0);
    expect(b.tun).toHaveLength(1);
    expect(b.adapter.stats().netBadSource).toBe(1);
  });
});
