// udp:// links through the LinkManager on loopback: ordered reliable protocol frames under loss,
// unreliable traffic, keepalive and silence, admission rules, redial and replacement after a flap
// (the handshake against spoofing and forged datagrams: links-udp-seal.test.ts).
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import type { Link } from "../src/overlay/links/link.js";
import type { LinkManagerConfig } from "../src/overlay/links/manager.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";
import { restartablePort } from "./support/ports.js";

afterEach(async () => {
  await stopLinkNodes();
});

const FAST = { handshakeMs: 3000, keepaliveMs: 4000, idleMs: 6000 };

const node = (cfg: Partial<LinkManagerConfig> = {}, id?: Identity) =>
  startLinkNode({ timeouts: FAST, ...cfg }, id);

/** Mixed frames: types 1–10 round robin, numbered in bytes 1–4, mostly packet-sized, a few up to 60 kB. */
function mixedFrames(n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const big = Math.random() < 0.02;
    const size = 5 + Math.floor(Math.random() * (big ? 60_000 : 1500));
    const f = randomBytes(size);
    f[0] = 1 + (i % 10);
    f.writeUInt32BE(i, 1);
    out.push(f);
  }
  return out;
}

const isTraffic = (f: Buffer) => f[0] === 9 || f[0] === 10;

/** Send in slices so two endpoints in one process both get to read (the kernel queue is finite). */
async function paced(link: Link, frames: Buffer[], slice = 50): Promise<void> {
  for (let i = 0; i < frames.length; i += slice) {
    for (const f of frames.slice(i, i + slice)) link.send(f);
    await new Promise((r) => setImmediate(r));
  }
}

async function pair(listenHost: string, opts: { peerQuery?: string; cfg?: Partial<LinkManagerConfig> } = {}) {
  const a = await node({ listen: [`udp://${listenHost}:0`], ...opts.cfg });
  const aLink = a.nextLink();
  const b = await node({ peers: [`${a.mgr.listenAddresses()[0]}${opts.peerQuery ?? ""}`], ...opts.cfg });
  return { a, b, aLink: await aLink, bLink: await b.nextLink() };
}

describe.each(["127.0.0.1", "[::1]"])("udp links over %s", (host) => {
  it("moves 5,000 mixed frames each way: every protocol frame in order under 10 % loss, most traffic", async () => {
    let dropped = 0;
    const lossy = {
      udp: {
        // An Ethernet-sized path, so frames spread over many datagrams as they would there.
        datagramBytes: 1452,
        hooks: {
          dropDatagram: () => {
            if (Math.random() < 0.1) {
              dropped++;
              return true;
            }
            return false;
          },
        },
      },
    };
    const { a, b, aLink, bLink } = await pair(host, { cfg: lossy });
    expect(aLink.remoteKey.equals(b.id.publicKey)).toBe(true);
    expect(bLink.remoteKey.equals(a.id.publicKey)).toBe(true);
    expect(aLink.outbound).toBe(false);
    expect(bLink.outbound).toBe(true);
    expect(bLink.remote).toBe(a.mgr.listenAddresses()[0]);
    expect(aLink.remote).toMatch(/^udp:\/\//);
    const ab = mixedFrames(5000);
    const ba = mixedFrames(5000);
    const atA = collect(aLink);
    const atB = collect(bLink);
    const wantA = ab.filter((f) => !isTraffic(f));
    const wantB = ba.filter((f) => !isTraffic(f));
    const controlCount = (frames: Buffer[], n: number) => frames.filter((f) => !isTraffic(f)).length >= n;
    await Promise.all([paced(bLink, ab), paced(aLink, ba)]);
    await Promise.all([
      atA.until((f) => controlCount(f, wantA.length)),
      atB.until((f) => controlCount(f, wantB.length)),
    ]);
    for (const [got, want, sent] of [
      [atA.frames, wantA, ab],
      [atB.frames, wantB, ba],
    ] as const) {
      const control = got.filter((f) => !isTraffic(f));
      expect(control.length).toBe(want.length);
      expect(control.every((f, i) => f.equals(want[i]!))).toBe(true);
      const traffic = got.filter(isTraffic);
      // Every traffic frame that arrived is one that was sent, intact.
      expect(traffic.every((f) => f.equals(sent[f.readUInt32BE(1)]!))).toBe(true);
      const sentTraffic = sent.length - want.length;
      expect(traffic.length).toBeGreaterThan(sentTraffic * 0.6);
      expect(traffic.length).toBeLessThanOrEqual(sentTraffic);
    }
    expect(dropped).toBeGreaterThan(100);
    expect((bLink as UdpLink).retransmits).toBeGreaterThan(0);
    expect(bLink.bytesOut).toBeGreaterThan(ab.reduce((s, f) => s + f.length, 0) * 0.9);
    expect(aLink.bytesIn).toBeGreaterThan(0);
  }, 30_000);

  it("redials after the listener restarts", async () => {
    const aId = Identity.generate();
    // Restarted below: a port below the ephemeral range (support/ports.ts).
    const port = await restartablePort(host.replace(/[[\]]/g, ""));
    const a = await node({ listen: [`udp://${host}:${port}`] }, aId);
    const uri = a.mgr.listenAddresses()[0]!;
    const b = await node({ peers: [uri] });
    const first = collect(await b.nextLink());
    await a.mgr.stop();
    expect(await first.closed).toBe("closed by peer");
    const second = b.nextLink();
    const a2 = await node({ listen: [uri] }, aId);
    const a2Link = a2.nextLink();
    const link = await second;
    expect(link.remoteKey.equals(aId.publicKey)).toBe(true);
    const atA = collect(await a2Link);
    link.send(Buffer.from([7, 7]));
    await atA.until((f) => f.length === 1);
    expect(atA.frames).toEqual([Buffer.from([7, 7])]);
  });
});

describe("udp links", () => {
  it("redials at once when the listener lost its state without saying goodbye", async () => {
    const aId = Identity.generate();
    let crashed = false;
    const timeouts = { handshakeMs: 3000, keepaliveMs: 100, idleMs: 5000 };
    const port = await restartablePort(); // restarted below: support/ports.ts
    const a = await node(
      { listen: [`udp://127.0.0.1:${port}`], timeouts, udp: { hooks: { dropDatagram: () => crashed } } },
      aId,
    );
    const uri = a.mgr.listenAddresses()[0]!;
    const b = await node({ peers: [uri], timeouts });
    const first = collect(await b.nextLink());
    crashed = true; // nothing more leaves a, not even its close datagrams
    await a.mgr.stop();
    const second = b.nextLink();
    await node({ listen: [uri], timeouts }, aId);
    const t0 = Date.now();
    // Either way the dialer learns at once: the restarted listener's RESET, or, when a keepalive
    // leaves while no socket is bound there, the kernel's port unreachable (once in three full-suite
    // runs here): node:dgram's closes the link, the native socket's is a hint whose probe meets
    // the restarted listener's RESET or, with none bound yet, a second of silence.
    // links-udp-reset.test.ts covers the RESET itself.
    expect(await first.closed).toMatch(
      /^(reset by peer \(it no longer knows this link\)|connection refused|no datagram received for \d+ ms after an ICMP error \(ECONNREFUSED\))$/,
    );
    expect((await second).remoteKey.equals(aId.publicKey)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(timeouts.idleMs);
  });

  it("a redial after a flap replaces the peer's old link at once", async () => {
    let lossyClose = true;
    const hooks = { dropDatagram: (d: Buffer) => lossyClose && d[0] === 5 };
    const a = await node({ listen: ["udp://127.0.0.1:0"] });
    const firstAtA = a.nextLink();
    const b = await node({ peers: [a.mgr.listenAddresses()[0]!], udp: { hooks } });
    const old = collect(await firstAtA);
    // B gives its link up and its close datagram is lost: A still believes in the old link.
    (await b.nextLink()).close("test: flap");
    const next = await a.nextLink();
    expect(next.remote).not.toBe((await firstAtA).remote);
    expect(await old.closed).toBe("replaced by a newer link from the same peer");
    expect(a.links.filter((l) => !(l as UdpLink).closed)).toEqual([next]);
    lossyClose = false;
  });

  it("negotiates priority to the max of both ends", async () => {
    const { aLink, bLink } = await pair("127.0.0.1", { peerQuery: "?priority=3" });
    expect(bLink.priority).toBe(3);
    const announced = new Promise<number>((resolve) =>
      aLink.setHandler({ onFrame() {}, onPriority: resolve, onClose() {} }),
    );
    expect(await announced).toBe(3);
    expect(aLink.priority).toBe(3);
  });

  it("coalesces small frames sent in one tick, and fragments traffic over the datagram size", async () => {
    const { aLink, bLink } = await pair("127.0.0.1");
    const tx = bLink as UdpLink;
    const atA = collect(aLink);
    const before = tx.datagramsOut;
    for (let i = 0; i < 100; i++) tx.send(Buffer.from([i % 2 ? 9 : 1, i, 0, 0, 0, 0, 0, 0]));
    await atA.until((f) => f.filter((x) => x[0] === 1).length === 50);
    expect(tx.datagramsOut - before).toBeLessThan(5);
    // The largest frames of both kinds arrive whole, whatever the datagram size.
    const reliable = randomBytes(65_535);
    reliable[0] = 2;
    const traffic = randomBytes(65_535);
    traffic[0] = 9;
    tx.send(reliable);
    tx.send(traffic);
    await atA.until((f) => f.some((x) => x[0] === 2) && f.some((x) => x.length === 65_535 && x[0] === 9));
    expect(atA.frames.find((x) => x[0] === 2)!.equals(reliable)).toBe(true);
    expect(atA.frames.find((x) => x.length === 65_535 && x[0] === 9)!.equals(traffic)).toBe(true);
  });

  it("keeps an idle link alive with keepalives, and closes it when the peer falls silent", async () => {
    let mute = false;
    const fast = { handshakeMs: 1000, keepaliveMs: 100, idleMs: 300 };
    const muting = { dropDatagram: () => mute };
    const a = await node({ listen: ["udp://127.0.0.1:0"], timeouts: fast });
    const aLinkP = a.nextLink();
    const b = await node({ peers: [a.mgr.listenAddresses()[0]!], timeouts: fast, udp: { hooks: muting } });
    const bLink = (await b.nextLink()) as UdpLink;
    const aLink = (await aLinkP) as UdpLink;
    const atA = collect(aLink);
    const atB = collect(bLink);
    // Several idle periods pass, counted by keepalive datagrams in both directions.
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (aLink.datagramsIn >= 8 && bLink.datagramsIn >= 8) {
          clearInterval(t);
          resolve();
        }
      }, 20);
    });
    expect(aLink.closed || bLink.closed).toBe(false);
    expect(atA.frames).toHaveLength(0);
    expect(atB.frames).toHaveLength(0);
    // Now b's datagrams vanish: a hears nothing and closes after idleMs.
    mute = true;
    const t0 = Date.now();
    expect(await atA.closed).toMatch(/^no datagram received for 3\d\d ms$/);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250);
  });

  it("applies key pins on dial and AllowedPublicKeys on accept", async () => {
    const a = await node({ listen: ["udp://127.0.0.1:0"] });
    const uri = a.mgr.listenAddresses()[0]!;
    const wrong = await node({ peers: [`${uri}?key=${"ab".repeat(32)}`] });
    expect(await wrong.nextLog(/does not match the pinned key/)).toContain(a.id.publicKey.toString("hex"));
    const right = await node({ peers: [`${uri}?key=${a.id.publicKey.toString("hex")}`] });
    expect((await right.nextLink()).remoteKey.equals(a.id.publicKey)).toBe(true);
    expect(wrong.links).toHaveLength(0);

    const allowedId = Identity.generate();
    const guarded = await node({ listen: ["udp://127.0.0.1:0"], allowedPublicKeys: [allowedId.publicKey] });
    const gUri = guarded.mgr.listenAddresses()[0]!;
    const stranger = await node({ peers: [gUri] });
    expect(await guarded.nextLog(/is not in AllowedPublicKeys/)).toContain(
      stranger.id.publicKey.toString("hex"),
    );
    expect(await stranger.nextLog(/refused by the peer/)).toBeTruthy();
    expect(guarded.links).toHaveLength(0);
    const friendLink = guarded.nextLink();
    await node({ peers: [gUri] }, allowedId);
    expect((await friendLink).remoteKey.equals(allowedId.publicKey)).toBe(true);
  });

  it("refuses a link to its own key", async () => {
    const a = await node({ listen: ["udp://127.0.0.1:0"] });
    a.mgr.addPeer(a.mgr.listenAddresses()[0]!);
    expect(await a.nextLog(/our own key/)).toBeTruthy();
    expect(a.links).toHaveLength(0);
  });

  it("fails fast when nothing listens, and stop() leaves no sockets or timers", async () => {
    const resources = () => process.getActiveResourcesInfo().filter((r) => /^(UDP|Timeout)/.test(r)).length;
    const before = resources();
    const probe = dgram.createSocket("udp4");
    await new Promise<void>((r) => probe.bind(0, "127.0.0.1", () => r()));
    const deadPort = probe.address().port;
    probe.close();
    const b = await node({ peers: [`udp://127.0.0.1:${deadPort}`] });
    expect(await b.nextLog(/failed: connection refused/)).toBeTruthy();
    const { a } = await pair("127.0.0.1");
    await b.mgr.stop();
    await a.mgr.stop();
    await stopLinkNodes();
    await new Promise((r) => setImmediate(r));
    expect(resources()).toBeLessThanOrEqual(before);
  });
});
