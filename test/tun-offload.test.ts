// The addon's offload byte work (src/tun/native/offload.c) without a TUN: a crafted TCP super-packet
// with its virtio_net_hdr is cut into segments, the segments are coalesced back into one GSO write,
// and every checksum is checked with the plain JS one's-complement sum below.
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import { describe, expect, it } from "vitest";

interface OffloadHooks {
  completeChecksum(packet: Uint8Array): boolean;
  gsoSplit(input: Uint8Array, out: Uint8Array, meta: Int32Array): number;
  groCoalesce(
    input: Uint8Array,
    meta: Int32Array,
    count: number,
    out: Uint8Array,
    outMeta: Int32Array,
  ): number;
}
const addon = createRequire(import.meta.url)("../build/Release/planetd_tun.node") as OffloadHooks;

const VNET = 10;
const NEEDS_CSUM = 1;
const GSO_TCPV6 = 4;
const GSO_ECN = 0x80;
const [FIN, PSH, ACK, CWR] = [0x01, 0x08, 0x10, 0x80];
const SRC = Buffer.from("0200000000000000000000000000000a", "hex");
const DST = Buffer.from("0200000000000000000000000000000b", "hex");

/** RFC 1071 over 16-bit big-endian words, one byte at a time: independent of the C code's loop. */
function onesSum(parts: Uint8Array[]): number {
  let sum = 0;
  for (const p of parts) {
    for (let i = 0; i < p.length; i += 2) sum += (p[i]! << 8) | (i + 1 < p.length ? p[i + 1]! : 0);
  }
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

function pseudoHeader(ip6: Buffer, upperLength: number, nextHeader: number): Buffer {
  const ph = Buffer.alloc(40);
  ip6.copy(ph, 0, 8, 40);
  ph.writeUInt32BE(upperLength, 32);
  ph[39] = nextHeader;
  return ph;
}

/** True when the TCP (or UDP, nextHeader 17) checksum of an IPv6 packet without extension headers holds. */
function checksumHolds(pkt: Buffer, nextHeader = 6): boolean {
  return onesSum([pseudoHeader(pkt, pkt.length - 40, nextHeader), pkt.subarray(40)]) === 0xffff;
}

/** IPv6 + TCP with a 12-byte timestamp option (32-byte TCP header), checksum filled in. */
function tcpPacket(
  seq: number,
  flags: number,
  payload: Buffer,
  opts: { window?: number; srcPort?: number } = {},
): Buffer {
  const p = Buffer.alloc(40 + 32 + payload.length);
  p.writeUInt32BE(0x60000000, 0);
  p.writeUInt16BE(32 + payload.length, 4);
  p[6] = 6;
  p[7] = 64;
  SRC.copy(p, 8);
  DST.copy(p, 24);
  p.writeUInt16BE(opts.srcPort ?? 40000, 40);
  p.writeUInt16BE(5201, 42);
  p.writeUInt32BE(seq >>> 0, 44);
  p.writeUInt32BE(777, 48);
  p[52] = 8 << 4;
  p[53] = flags;
  p.writeUInt16BE(opts.window ?? 512, 54);
  Buffer.of(1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2).copy(p, 60);
  payload.copy(p, 72);
  p.writeUInt16BE(0xffff - onesSum([pseudoHeader(p, p.length - 40, 6), p.subarray(40)]), 56);
  return p;
}

function vnetHeader(fields: { flags: number; gsoType: number; hdrLen: number; gsoSize: number }): Buffer {
  const h = Buffer.alloc(VNET);
  h[0] = fields.flags;
  h[1] = fields.gsoType;
  h.writeUInt16LE(fields.hdrLen, 2);
  h.writeUInt16LE(fields.gsoSize, 4);
  h.writeUInt16LE(40, 6); // csum_start: the TCP header
  h.writeUInt16LE(16, 8); // csum_offset: its checksum field
  return h;
}

function split(input: Buffer): Buffer[] {
  const out = Buffer.alloc(256 * 1024);
  const meta = new Int32Array(256);
  const n = addon.gsoSplit(input, out, meta);
  if (n < 0) return [];
  return Array.from({ length: n }, (_, i) =>
    Buffer.from(out.subarray(meta[2 * i]!, meta[2 * i]! + meta[2 * i + 1]!)),
  );
}

function coalesce(packets: Buffer[]): Buffer[] {
  const input = Buffer.concat(packets);
  const meta = new Int32Array(packets.length * 2);
  let off = 0;
  packets.forEach((p, i) => {
    meta[2 * i] = off;
    meta[2 * i + 1] = p.length;
    off += p.length;
  });
  const out = Buffer.alloc(input.length + packets.length * VNET);
  const outMeta = new Int32Array(packets.length * 2);
  const n = addon.groCoalesce(input, meta, packets.length, out, outMeta);
  return Array.from({ length: n }, (_, i) =>
    Buffer.from(out.subarray(outMeta[2 * i]!, outMeta[2 * i]! + outMeta[2 * i + 1]!)),
  );
}

const MSS = 1388;

describe("TUN offloads in the addon", () => {
  it("cuts a TCPv6 super-packet into MSS segments: sequence, length, flags (CWR first, PSH/FIN last) and full checksums", () => {
    const payload = randomBytes(5000);
    const superPacket = tcpPacket(0xfffff000, ACK | PSH | FIN | CWR, payload);
    superPacket.writeUInt16BE(0, 56); // the kernel leaves only the pseudo-header sum here; any value is replaced
    const hdr = vnetHeader({ flags: NEEDS_CSUM, gsoType: GSO_TCPV6 | GSO_ECN, hdrLen: 72, gsoSize: MSS });
    const segments = split(Buffer.concat([hdr, superPacket]));
    expect(segments.map((s) => s.length - 72)).toEqual([MSS, MSS, MSS, 5000 - 3 * MSS]);
    segments.forEach((s, i) => {
      expect(s.readUInt16BE(4), `segment ${i} payload length`).toBe(s.length - 40);
      expect(s.readUInt32BE(44), `segment ${i} seq`).toBe((0xfffff000 + i * MSS) >>> 0);
      const last = i === segments.length - 1;
      expect(s[53], `segment ${i} flags`).toBe(ACK | (i === 0 ? CWR : 0) | (last ? PSH | FIN : 0));
      expect(checksumHolds(s), `segment ${i} checksum`).toBe(true);
      expect(s.subarray(60, 72).equals(superPacket.subarray(60, 72))).toBe(true); // options repeated
    });
    expect(Buffer.concat(segments.map((s) => s.subarray(72))).equals(payload)).toBe(true);
  });

  it("completes a partial checksum on an ordinary packet and refuses malformed GSO headers", () => {
    const udp = Buffer.alloc(40 + 8 + 11);
    udp.writeUInt32BE(0x60000000, 0);
    udp.writeUInt16BE(19, 4);
    udp[6] = 17;
    SRC.copy(udp, 8);
    DST.copy(udp, 24);
    udp.writeUInt16BE(19, 44);
    Buffer.from("hello there").copy(udp, 48);
    // The kernel leaves the pseudo-header sum in the field and asks us to finish.
    udp.writeUInt16BE(onesSum([pseudoHeader(udp, 19, 17)]), 46);
    const h = vnetHeader({ flags: NEEDS_CSUM, gsoType: 0, hdrLen: 0, gsoSize: 0 });
    h.writeUInt16LE(6, 8); // UDP's checksum offset
    const [done] = split(Buffer.concat([h, udp]));
    expect(checksumHolds(done!, 17)).toBe(true);

    const pkt = tcpPacket(1, ACK, randomBytes(3000));
    const beyond = vnetHeader({ flags: NEEDS_CSUM, gsoType: GSO_TCPV6, hdrLen: 72, gsoSize: MSS });
    beyond.writeUInt16LE(pkt.length, 6); // csum_start past the end
    expect(addon.gsoSplit(Buffer.concat([beyond, pkt]), Buffer.alloc(65536), new Int32Array(64))).toBe(-1);
    const noMss = vnetHeader({ flags: NEEDS_CSUM, gsoType: GSO_TCPV6, hdrLen: 72, gsoSize: 0 });
    expect(addon.gsoSplit(Buffer.concat([noMss, pkt]), Buffer.alloc(65536), new Int32Array(64))).toBe(-1);
    const udpGso = vnetHeader({ flags: NEEDS_CSUM, gsoType: 5, hdrLen: 72, gsoSize: MSS });
    expect(addon.gsoSplit(Buffer.concat([udpGso, pkt]), Buffer.alloc(65536), new Int32Array(64))).toBe(-1);
  });

  it("writes a lone TCP packet as CHECKSUM_PARTIAL, whose completion is the sender's checksum; anything else as is", () => {
    const pkt = tcpPacket(7, ACK | PSH, Buffer.alloc(3000, 0x5a));
    const original = Buffer.from(pkt);
    const [w] = coalesce([pkt]);
    expect([w![0], w![1], w!.readUInt16LE(4), w!.readUInt16LE(6), w!.readUInt16LE(8)]).toEqual([
      NEEDS_CSUM,
      0,
      0,
      40,
      16,
    ]);
    const body = Buffer.from(w!.subarray(VNET));
    // The field holds the pseudo-header sum, whatever the sender put there: the kernel adds the rest.
    expect(body.readUInt16BE(56)).toBe(onesSum([pseudoHeader(body, body.length - 40, 6)]));
    expect(body.readUInt16BE(56)).not.toBe(original.readUInt16BE(56));
    expect(addon.completeChecksum(body)).toBe(true);
    expect(body.equals(original)).toBe(true);

    const udp = Buffer.from(original);
    udp[6] = 17;
    const [u] = coalesce([udp]);
    expect(u!.subarray(0, VNET).equals(Buffer.alloc(VNET))).toBe(true);
    expect(u!.subarray(VNET).equals(udp)).toBe(true);
    expect(addon.completeChecksum(udp)).toBe(false);
    const lying = Buffer.from(original);
    lying.writeUInt16BE(9, 4); // payload length says 9 bytes: not a packet to sum
    expect(addon.completeChecksum(lying)).toBe(false);
  });

  it("coalesces in-order segments of one flow into one GSO write that cuts back into the same segments", () => {
    const payload = randomBytes(4 * MSS + 100);
    const seq0 = 1000;
    const segments = [0, 1, 2, 3, 4].map((i) =>
      tcpPacket(
        seq0 + i * MSS,
        i === 4 ? ACK | PSH : ACK,
        payload.subarray(i * MSS, Math.min((i + 1) * MSS, payload.length)),
      ),
    );
    const originals = segments.map((s) => Buffer.from(s));
    const writes = coalesce(segments);
    expect(writes).toHaveLength(1);
    const w = writes[0]!;
    expect([w[0], w[1], w.readUInt16LE(2), w.readUInt16LE(4), w.readUInt16LE(6), w.readUInt16LE(8)]).toEqual([
      NEEDS_CSUM,
      GSO_TCPV6,
      72,
      MSS,
      40,
      16,
    ]);
    const head = w.subarray(VNET);
    expect(head.length).toBe(72 + payload.length);
    expect(head.readUInt16BE(4)).toBe(32 + payload.length);
    expect(head[53]).toBe(ACK | PSH); // the last segment's PSH
    // CHECKSUM_PARTIAL: the field holds the folded pseudo-header sum over the whole run.
    expect(head.readUInt16BE(56)).toBe(onesSum([pseudoHeader(head, 32 + payload.length, 6)]));
    expect(head.subarray(72).equals(payload)).toBe(true);
    // What the kernel would cut it into is what went in.
    const again = split(w);
    expect(again.map((s) => s.toString("hex"))).toEqual(originals.map((s) => s.toString("hex")));
  });

  it("writes alone what must not join a run: bad checksum, gap, other flow, other window, SYN, non-TCP", () => {
    const p = (i: number, flags = ACK) => tcpPacket(i * MSS, flags, randomBytes(MSS));
    const lens = (ws: Buffer[]) => ws.map((w) => (w[1] === GSO_TCPV6 ? (w.length - VNET - 72) / MSS : 1));

    const bad = p(1);
    bad[100] ^= 0xff; // corrupt payload: its checksum no longer holds
    expect(lens(coalesce([p(0), bad, p(2)]))).toEqual([1, 1, 1]);
    expect(lens(coalesce([p(0), p(1), p(3), p(4)]))).toEqual([2, 2]); // a gap ends the run
    const other = tcpPacket(2 * MSS, ACK, randomBytes(MSS), { srcPort: 40001 });
    expect(lens(coalesce([p(0), p(1), other, p(2)]))).toEqual([2, 1, 1]);
    const moved = tcpPacket(1 * MSS, ACK, randomBytes(MSS), { window: 9 });
    expect(lens(coalesce([p(0), moved]))).toEqual([1, 1]);
    expect(lens(coalesce([p(0, ACK | 0x02), p(1)]))).toEqual([1, 1]);
    const pushed = p(0, ACK | PSH); // PSH ends a run, so it cannot start one
    expect(lens(coalesce([pushed, p(1), p(2)]))).toEqual([1, 2]);
    const notTcp = p(1);
    notTcp[6] = 17;
    expect(lens(coalesce([p(0), notTcp]))).toEqual([1, 1]);
  });
});
