import { randomBytes } from "node:crypto";
import { rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import tls from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import { selfSignedCertificate } from "../src/crypto/cert.js";
import { Identity } from "../src/crypto/identity.js";
import type { Link } from "../src/overlay/links/link.js";
import type { LinkManagerConfig } from "../src/overlay/links/manager.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";
import { restartablePort } from "./support/ports.js";

afterEach(stopLinkNodes);

const FAST = { handshakeMs: 2000, keepaliveMs: 4000, idleMs: 6000 };

const node = (cfg: Partial<LinkManagerConfig> = {}, id?: Identity) =>
  startLinkNode({ timeouts: FAST, ...cfg }, id);

function randomFrames(n: number, maxSize: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    // Mostly packet-sized frames with some up to the maximum.
    const size = 1 + Math.floor(Math.random() * (Math.random() < 0.05 ? maxSize : Math.min(maxSize, 1500)));
    const f = randomBytes(size);
    f[0] = 1 + (i % 10); // never a dummy frame
    out.push(f);
  }
  return out;
}

/** Same frames in the same order (vitest's deep equality is far too slow for megabytes of Buffers). */
function sameFrames(got: Buffer[], want: Buffer[]): boolean {
  return got.length === want.length && got.every((f, i) => f.equals(want[i]!));
}

async function pair(scheme: "tcp" | "tls" | "unix", peerQuery = "", listenQuery = "") {
  const sock = join(tmpdir(), `pd-links-${process.pid}-${randomBytes(4).toString("hex")}.sock`);
  const listenUri = scheme === "unix" ? `unix://${sock}` : `${scheme}://127.0.0.1:0${listenQuery}`;
  const a = await node({ listen: [listenUri] });
  const aLink = a.nextLink();
  const b = await node({ peers: [`${a.mgr.listenAddresses()[0]}${peerQuery}`] });
  const bLink = b.nextLink();
  return { a, b, aLink: await aLink, bLink: await bLink, cleanup: () => rmSync(sock, { force: true }) };
}

describe.each(["tcp", "tls", "unix"] as const)("LinkManager over %s", (scheme) => {
  it("links two nodes and moves 5,000 random frames each way in order", async () => {
    const { a, b, aLink, bLink, cleanup } = await pair(scheme);
    expect(aLink.remoteKey.equals(b.id.publicKey)).toBe(true);
    expect(bLink.remoteKey.equals(a.id.publicKey)).toBe(true);
    expect(aLink.outbound).toBe(false);
    expect(bLink.outbound).toBe(true);
    const ab = randomFrames(5000, 65535);
    const ba = randomFrames(5000, 2000);
    const atA = collect(aLink);
    const atB = collect(bLink);
    for (const f of ab) {
      bLink.send(f);
      f.fill(0); // the link must have copied it
    }
    for (const f of ba) aLink.send(f);
    const [gotA, gotB] = await Promise.all([atA.received(ab.length), atB.received(ba.length)]);
    expect(sameFrames(gotB, ba)).toBe(true);
    expect(gotA.map((f) => f.length)).toEqual(ab.map((f) => f.length));
    expect(bLink.bytesOut).toBeGreaterThan(ab.reduce((s, f) => s + f.length + 2, 0));
    expect(aLink.bytesIn).toBeGreaterThan(0);
    cleanup();
  });
});

describe("LinkManager", () => {
  it("delivers frame contents intact (copy on send)", async () => {
    const { aLink, bLink } = await pair("tcp");
    const frames = randomFrames(300, 65535);
    const expected = frames.map((f) => Buffer.from(f));
    const atA = collect(aLink);
    const reused = Buffer.alloc(65535);
    for (const f of frames) {
      f.copy(reused);
      bLink.send(reused.subarray(0, f.length));
    }
    expect(sameFrames(await atA.received(frames.length), expected)).toBe(true);
  });

  it("negotiates priority to the max of both ends", async () => {
    const { a, aLink, bLink } = await pair("tcp", "?priority=3");
    expect(bLink.priority).toBe(3);
    const announced = new Promise<number>((resolve) =>
      aLink.setHandler({ onFrame() {}, onPriority: resolve, onClose() {} }),
    );
    expect(await announced).toBe(3);
    expect(aLink.priority).toBe(3);
    expect(a.links).toHaveLength(1);
  });

  it("keeps an idle link alive with keepalives past the idle timeout", async () => {
    const fast = { handshakeMs: 1000, keepaliveMs: 100, idleMs: 300 };
    const a = await node({ listen: ["tcp://127.0.0.1:0"], timeouts: fast });
    const aLink = a.nextLink();
    const b = await node({ peers: [a.mgr.listenAddresses()[0]!], timeouts: fast });
    const bLink = await b.nextLink();
    const atA = collect(await aLink);
    const atB = collect(bLink);
    let closed = false;
    void atA.closed.then(() => {
      closed = true;
    });
    // Wait through several idle periods by watching the keepalive bytes arrive.
    const start = bLink.bytesIn;
    await new Promise<void>((resolve) => {
      const t = setInterval(() => {
        if (bLink.bytesIn - start >= 3 * 10) {
          clearInterval(t);
          resolve();
        }
      }, 50);
    });
    expect(closed).toBe(false);
    expect(atB.frames).toHaveLength(0);
    bLink.send(Buffer.from([5, 1, 2]));
    expect(await atA.received(1)).toEqual([Buffer.from([5, 1, 2])]);
  });

  it("closes an outbound link whose key does not match the pin", async () => {
    const a = await node({ listen: ["tcp://127.0.0.1:0"] });
    const b = await node({ peers: [`${a.mgr.listenAddresses()[0]}?key=${"ab".repeat(32)}`] });
    expect(await b.nextLog(/does not match the pinned key/)).toContain(a.id.publicKey.toString("hex"));
    expect(b.links).toHaveLength(0);
  });

  it("accepts a pinned key that matches", async () => {
    const a = await node({ listen: ["tcp://127.0.0.1:0"] });
    const b = await node({ peers: [`${a.mgr.listenAddresses()[0]}?key=${a.id.publicKey.toString("hex")}`] });
    expect((await b.nextLink()).remoteKey.equals(a.id.publicKey)).toBe(true);
  });

  it("rejects inbound keys outside AllowedPublicKeys", async () => {
    const a = await node({
      listen: ["tcp://127.0.0.1:0"],
      allowedPublicKeys: [Identity.generate().publicKey],
    });
    const b = await node({ peers: [a.mgr.listenAddresses()[0]!] });
    expect(await a.nextLog(/is not in AllowedPublicKeys/)).toContain(b.id.publicKey.toString("hex"));
    expect(a.links).toHaveLength(0);
  });

  it("admits inbound keys listed in AllowedPublicKeys", async () => {
    const bId = Identity.generate();
    const a = await node({ listen: ["tcp://127.0.0.1:0"], allowedPublicKeys: [bId.publicKey] });
    const aLink = a.nextLink();
    await node({ peers: [a.mgr.listenAddresses()[0]!] }, bId);
    expect((await aLink).remoteKey.equals(bId.publicKey)).toBe(true);
  });

  it("refuses a link to its own key", async () => {
    const a = await node({ listen: ["tcp://127.0.0.1:0"] });
    a.mgr.addPeer(a.mgr.listenAddresses()[0]!);
    expect(await a.nextLog(/our own key/)).toBeTruthy();
    expect(a.links).toHaveLength(0);
  });

  it.each(["tcp://127.0.0.1:0", "tls://127.0.0.1:0", "tls://[::1]:0", "unix"])(
    "redials %s after the remote listener restarts",
    async (listen) => {
      const aId = Identity.generate();
      const sock = join(tmpdir(), `pd-links-${process.pid}-${randomBytes(4).toString("hex")}.sock`);
      // Restarted below on the same port: one below the ephemeral range (support/ports.ts).
      const port =
        listen === "unix" ? 0 : await restartablePort(new URL(listen).hostname.replace(/[[\]]/g, ""), "tcp");
      const a = await node(
        { listen: [listen === "unix" ? `unix://${sock}` : listen.replace(/:0$/, `:${port}`)] },
        aId,
      );
      const uri = a.mgr.listenAddresses()[0]!;
      const b = await node({ peers: [uri] });
      const first = collect(await b.nextLink());
      await a.mgr.stop();
      expect(await first.closed).toBeTruthy();
      await b.nextLog(/link down/);
      const second = b.nextLink();
      const a2 = await node({ listen: [uri] }, aId);
      const a2Link = a2.nextLink();
      const link = await second;
      expect(link.remoteKey.equals(aId.publicKey)).toBe(true);
      const atA = collect(await a2Link);
      link.send(Buffer.from([7, 7]));
      expect(await atA.received(1)).toEqual([Buffer.from([7, 7])]);
      rmSync(sock, { force: true });
    },
  );

  it("backs off while a peer is unreachable", async () => {
    const a = await node({ listen: ["tcp://127.0.0.1:0"] });
    const uri = a.mgr.listenAddresses()[0]!;
    await a.mgr.stop();
    const b = await node({ peers: [uri] });
    await b.nextLog(/failed/);
    const t0 = Date.now();
    // Eight more failures (the log limit lets ten a minute through). The delays' growth is tested on
    // a fake clock (links-redial.test.ts); here: never faster than the 50 ms floor, jittered to
    // 80 %, and still retrying well before a fixed 1 s would.
    for (let i = 0; i < 8; i++) {
      const n = b.logs.length;
      await new Promise<void>((resolve) => {
        const t = setInterval(() => {
          if (b.logs.length > n) {
            clearInterval(t);
            resolve();
          }
        }, 10);
      });
    }
    const elapsed = Date.now() - t0;
    expect(elapsed).toBeGreaterThanOrEqual(8 * 50 * 0.8);
    expect(elapsed).toBeLessThan(3000);
  });

  it("keeps one link per scheme and remote address (spec 4.2 dedupe)", async () => {
    const a = await node({ listen: ["tcp://127.0.0.1:0"] });
    const uri = a.mgr.listenAddresses()[0]!;
    const b = await node({ peers: [uri, `${uri}?priority=1`] });
    await b.nextLink();
    expect(await b.nextLog(/failed: already connected to this address/)).toBeTruthy();
    expect(b.links).toHaveLength(1);
    await a.nextLink();
    expect(a.links).toHaveLength(1);
  });

  it("sends SNI for DNS names and sni=, never for IP literals", async () => {
    const creds = selfSignedCertificate(Identity.generate());
    const names: Array<string | false> = [];
    const srv = tls.createServer({ cert: creds.cert, key: creds.key, minVersion: "TLSv1.3" }, (s) => {
      names.push((s as tls.TLSSocket & { servername: string | false }).servername);
      s.destroy();
    });
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    const port = (srv.address() as AddressInfo).port;
    const b = await node({ redial: { initialMs: 60_000, maxMs: 60_000 } });
    for (const uri of [
      `tls://127.0.0.1:${port}`,
      `tls://127.0.0.1:${port}?sni=peer.example.org`,
      `tls://localhost:${port}`,
    ]) {
      b.mgr.addPeer(uri);
      await b.nextLog(new RegExp(`link to ${uri.replace(/[?.]/g, "\\$&")} failed`));
    }
    await new Promise<void>((r) => srv.close(() => r()));
    expect(names).toEqual([false, "peer.example.org", "localhost"]);
  });

  it("adds and removes peers at run time", async () => {
    const a = await node({ listen: ["tcp://127.0.0.1:0"] });
    const uri = a.mgr.listenAddresses()[0]!;
    const b = await node();
    const aLink = a.nextLink();
    b.mgr.addPeer(uri);
    expect(() => b.mgr.addPeer(uri)).toThrow("peer already configured");
    expect(() => b.mgr.removePeer("tcp://127.0.0.1:1")).toThrow("peer not configured");
    const atA = collect(await aLink);
    await b.nextLink();
    b.mgr.removePeer(uri);
    expect(await atA.closed).toBeTruthy();
    expect(b.mgr.peerList()).toEqual([]);
  });

  it("fails start() with a clear error when a Listen address is taken", async () => {
    const a = await node({ listen: ["tcp://127.0.0.1:0"] });
    const uri = a.mgr.listenAddresses()[0]!;
    await expect(node({ listen: [uri] })).rejects.toThrow(/cannot bind: .*EADDRINUSE/);
  });

  it("stop() leaves no sockets or timers behind", async () => {
    const resources = () =>
      process
        .getActiveResourcesInfo()
        .filter((r) => r !== "TTYWrap")
        .sort();
    const before = resources();
    const a = await node({ listen: ["tcp://127.0.0.1:0", "tls://127.0.0.1:0"] });
    const b = await node({
      peers: [a.mgr.listenAddresses()[0]!, a.mgr.listenAddresses()[1]!, "tcp://127.0.0.1:1"],
    });
    const link = await b.nextLink();
    const closed = collect(link).closed;
    await b.nextLink();
    await b.mgr.stop();
    await a.mgr.stop();
    expect(await closed).toBe("stopping");
    await new Promise((r) => setImmediate(r));
    const count = (list: string[]) => list.filter((r) => /^(TCP|Timeout)/.test(r)).length;
    expect(count(resources())).toBeLessThanOrEqual(count(before));
  });
});
