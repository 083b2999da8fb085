// udp:// links never need IP fragmentation: big frames leave as link fragments no larger than the
// link's datagram size, a lost fragment loses only its frame, reassembly memory is bounded under a
// flood, and the datagram size search settles below a path's limit.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { parseConfig } from "../src/config/config.js";
import { FRAG_MALFORMED, FRAG_OK, MAX_ASSEMBLIES, Reassembler } from "../src/overlay/links/udp-frag.js";
import { BASE_DATAGRAM } from "../src/overlay/links/udp-pmtu.js";
import type { UdpHooks, UdpLink } from "../src/overlay/links/udp.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";

afterEach(stopLinkNodes);

/** The fragment record in a data datagram: [frame id, index], or undefined. */
function fragmentOf(d: Buffer): [number, number] | undefined {
  if (d[0] !== 0x10 && d[0] !== 0x11) return undefined;
  // Hooks see datagrams before sealing: header 9, counter 8, [ack block 12], records.
  const pos = d[0] === 0x11 ? 29 : 17;
  return d.length > pos + 8 && d[pos] === 2 ? [d.readUInt32BE(pos + 3), d[pos + 7]!] : undefined;
}

async function pair(maxDatagram: number, hooks: UdpHooks = {}) {
  const udp = { datagramBytes: maxDatagram, hooks };
  const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"], udp });
  const aLinkP = a.nextLink();
  const b = await startLinkNode({ peers: [a.mgr.listenAddresses()[0]!], udp });
  return { aLink: (await aLinkP) as UdpLink, bLink: (await b.nextLink()) as UdpLink };
}

function trafficFrame(size: number, n: number): Buffer {
  const f = randomBytes(size);
  f[0] = 9;
  f.writeUInt32BE(n, 1);
  return f;
}

describe("udp fragment reassembly", () => {
  it("rebuilds a frame from fragments in any order and refuses contradictions", () => {
    const r = new Reassembler();
    const frame = randomBytes(53_000);
    const parts = [0, 1, 2, 3].map((i) => frame.subarray(i * 13_250, (i + 1) * 13_250));
    for (const i of [2, 0, 3]) expect(r.add(7, i, 4, i * 13_250, parts[i]!)).toBe(FRAG_OK);
    expect(r.frame.length).toBe(0);
    expect(r.add(7, 2, 4, 2 * 13_250, parts[2]!)).toBe(FRAG_OK); // duplicate
    expect(r.add(7, 1, 5, 13_250, parts[1]!)).toBe(FRAG_OK); // another count
    expect(r.refused).toBe(2);
    r.add(7, 1, 4, 13_250, parts[1]!);
    expect(r.frame.equals(frame)).toBe(true);
    expect(r.pending).toBe(0);
    for (const [index, count, offset, len] of [
      [0, 1, 0, 10],
      [3, 3, 0, 10],
      [0, 2, 65_530, 10],
      [0, 2, 0, 0],
    ]) {
      expect(r.add(1, index!, count!, offset!, Buffer.alloc(len!))).toBe(FRAG_MALFORMED);
    }
  });

  it("refuses fragments that overlap and leave a gap: the gap would carry an earlier frame's plaintext", () => {
    const r = new Reassembler();
    // Frame 1 completes and, as Sessions does with an AEAD frame, is opened in the buffer it lies in.
    const first = randomBytes(3000);
    for (const i of [0, 1, 2]) r.add(1, i, 3, i * 1000, first.subarray(i * 1000, (i + 1) * 1000));
    const plaintext = Buffer.alloc(1000, 0x5a);
    plaintext.copy(r.frame, 1500);
    // Frame 2 from a peer that relays: fragment 1 overlaps fragment 0 by 500 bytes and stops 500
    // short of fragment 2, so the bytes still add up to the last fragment's end.
    const refusedBefore = r.refused;
    r.add(2, 0, 3, 0, Buffer.alloc(1000, 1));
    r.add(2, 1, 3, 500, Buffer.alloc(1000, 2));
    r.add(2, 2, 3, 2000, Buffer.alloc(1000, 3));
    expect(r.frame.length).toBe(0);
    expect(r.refused).toBe(refusedBefore + 1);
    // An honest frame whose last fragment is shorter still completes, its last fragment first.
    const honest = randomBytes(2500);
    for (const i of [2, 0, 1]) r.add(3, i, 3, i * 834, honest.subarray(i * 834, (i + 1) * 834));
    expect(r.frame.equals(honest)).toBe(true);
  });

  it("stays within MAX_ASSEMBLIES buffers under 100,000 bogus first fragments, and still completes a frame", () => {
    const r = new Reassembler();
    const chunk = Buffer.alloc(1200);
    const heapBefore = process.memoryUsage().arrayBuffers;
    for (let i = 0; i < 100_000; i++) r.add(i, 0, 50, 0, chunk);
    expect(r.pending).toBe(MAX_ASSEMBLIES);
    expect(r.evicted).toBe(100_000 - MAX_ASSEMBLIES);
    expect(process.memoryUsage().arrayBuffers - heapBefore).toBeLessThan(2 * 1024 * 1024);
    const frame = randomBytes(3000);
    r.add(1e6, 1, 2, 1500, frame.subarray(1500));
    r.add(1e6, 0, 2, 0, frame.subarray(0, 1500));
    expect(r.frame.equals(frame)).toBe(true);
  });
});

describe("udp fragmentation on loopback links", () => {
  it("a 53 KB frame round-trips as fragments, no datagram over the link's size", async () => {
    let largest = 0;
    const hooks = {
      dropDatagram: (d: Buffer) => {
        if (d[0] !== 0x13) largest = Math.max(largest, d.length);
        return false;
      },
    };
    const { aLink, bLink } = await pair(BASE_DATAGRAM, hooks);
    const atA = collect(aLink);
    const frame = trafficFrame(53_000, 1);
    bLink.send(frame);
    await atA.until((f) => f.length === 1);
    expect(atA.frames[0]!.equals(frame)).toBe(true);
    expect(bLink.fragmentedOut).toBe(1);
    expect(bLink.budget).toBe(BASE_DATAGRAM);
    expect(largest).toBeLessThanOrEqual(BASE_DATAGRAM);
    // Rebuilt once: by the link's reassembler, or by the native socket that read every fragment in
    // one batch (joined; the default where the socket reads on the loop thread).
    expect(aLink.reassembly.completed + aLink.framesJoined).toBe(1);
  });

  it("a frame sent as head and tail (sendJoined) arrives whole, small or fragmented, and is repaired from the joined copy", async () => {
    // The tail is overwritten right after each call: the link must have copied it by then.
    async function sendParts(hooks: UdpHooks) {
      const { aLink, bLink } = await pair(BASE_DATAGRAM, hooks);
      const atA = collect(aLink);
      const frames = [trafficFrame(300, 0), trafficFrame(20_000, 1), trafficFrame(53_000, 2)];
      for (const f of frames) {
        const parts = Buffer.from(f);
        bLink.sendJoined(parts.subarray(0, 37), parts.subarray(37));
        parts.fill(0);
      }
      await atA.until((f) => f.length === 3);
      const got = [...atA.frames].sort((x, y) => x.readUInt32BE(1) - y.readUInt32BE(1));
      for (let i = 0; i < 3; i++) expect(got[i]!.equals(frames[i]!), `frame ${i}`).toBe(true);
      expect(bLink.fragmentedOut).toBe(2);
      return bLink;
    }
    // Built fragment by fragment here (a hook sees every datagram); the first fragmented frame
    // (id 0) loses its third fragment once and is sent again from the store.
    let lostOnce = 0;
    const repaired = await sendParts({
      dropDatagram: (d: Buffer) => {
        const frag = fragmentOf(d);
        return frag?.[0] === 0 && frag[1] === 2 && lostOnce++ === 0;
      },
    });
    expect(lostOnce).toBeGreaterThan(1);
    expect(repaired.fragmentsRepaired).toBeGreaterThanOrEqual(1);
    // No hooks: the native socket builds and seals the runs where it can.
    await sendParts({});
  });

  it("a fragment lost once is sent again on request; one lost for good loses only its frame", async () => {
    // Frame 1 loses its third fragment once (repaired), frame 2 every time (given up).
    let lostOnce = 0;
    const hooks = {
      dropDatagram: (d: Buffer) => {
        const frag = fragmentOf(d);
        if (frag?.[0] === 1 && frag[1] === 2 && lostOnce === 0) return ++lostOnce > 0;
        return frag?.[0] === 2 && frag[1] === 2;
      },
    };
    const { aLink, bLink } = await pair(BASE_DATAGRAM, hooks);
    const atA = collect(aLink);
    const frames = [0, 1, 2, 3].map((n) => trafficFrame(20_000, n));
    for (const f of frames) bLink.send(f);
    await atA.until((f) => f.length === 3);
    for (let i = 0; i < 100 && aLink.reassembly.abandoned === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
    }
    const got = atA.frames.map((x) => x.readUInt32BE(1)).sort();
    expect(got).toEqual([0, 1, 3]);
    for (const x of atA.frames) expect(x.equals(frames[x.readUInt32BE(1)]!)).toBe(true);
    expect(bLink.fragmentsRepaired).toBeGreaterThanOrEqual(1);
    expect(aLink.reassembly.abandoned).toBe(1);
    expect(aLink.reassembly.pending).toBe(0);
    expect(aLink.closed).toBe(false);
  });

  it("the size search settles just under a path that drops datagrams over 1,400 bytes", async () => {
    const hooks = { dropDatagram: (d: Buffer) => d.length > 1400 };
    const { aLink, bLink } = await pair(9000, hooks);
    const settled = async (l: UdpLink) => {
      for (let i = 0; i < 400 && (l.budget < 1400 - 16 || l.pmtu.searching); i++) {
        await new Promise((r) => setTimeout(r, 50));
      }
      return l.budget;
    };
    for (const l of [aLink, bLink]) {
      const size = await settled(l);
      expect(size).toBeLessThanOrEqual(1400);
      expect(size).toBeGreaterThan(1400 - 16);
    }
    // Traffic still flows at the settled size, fragmented below it.
    const atA = collect(aLink);
    const frame = trafficFrame(30_000, 5);
    bLink.send(frame);
    await atA.until((f) => f.length === 1);
    expect(atA.frames[0]!.equals(frame)).toBe(true);
  }, 30_000);

  it("without a limit on the path, the search reaches the configured maximum", async () => {
    const { aLink, bLink } = await pair(9000);
    for (const l of [aLink, bLink]) {
      for (let i = 0; i < 200 && l.budget < 9000; i++) await new Promise((r) => setTimeout(r, 25));
      expect(l.budget).toBe(9000);
    }
  });
});

describe("Planetd.UdpMaxDatagram", () => {
  it("is optional, takes 1232..65507 and refuses other values with one line", () => {
    expect(parseConfig("{}", "t").config.Planetd.UdpMaxDatagram).toBeUndefined();
    const ok = parseConfig(JSON.stringify({ Planetd: { UdpMaxDatagram: 1452 } }), "t");
    expect(ok.config.Planetd.UdpMaxDatagram).toBe(1452);
    for (const bad of [1000, 70000, "big"]) {
      expect(() => parseConfig(JSON.stringify({ Planetd: { UdpMaxDatagram: bad } }), "t")).toThrow(
        /^config: Planetd\.UdpMaxDatagram .* \(expected a datagram size in bytes, 1232\.\.65507\)$/,
      );
    }
  });
});
