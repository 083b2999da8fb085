// Inbound handshakes in flight: the per-source cap, eviction when the table is full, the first-byte
// deadline and the refusal counters; unit tests on the table, then over loopback with clients bound
// to different 127.0.0.x addresses (one source each).
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { createMetricsRegistry } from "../src/admin/metrics-registry.js";
import { Identity } from "../src/crypto/identity.js";
import { HandshakeSlots, sourceOf } from "../src/overlay/links/handshake-slots.js";
import { encodeMetadata } from "../src/overlay/links/stream.js";
import { type LinkNode, startLinkNode, stopLinkNodes } from "./support/links.js";
import { emptySnapshot } from "./support/prometheus.js";

afterEach(stopLinkNodes);

describe("sourceOf", () => {
  it("groups IPv4 by address, IPv6 by /64, link-local by address and zone", () => {
    expect(sourceOf("192.0.2.7")).toBe("192.0.2.7");
    expect(sourceOf("::ffff:192.0.2.7")).toBe("192.0.2.7");
    expect(sourceOf("2001:db8:1:2::1")).toBe("2001:0db8:0001:0002::/64");
    expect(sourceOf("2001:db8:1:2:ffff:1:2:3")).toBe(sourceOf("2001:db8:1:2::1"));
    expect(sourceOf("2001:db8:1:3::1")).not.toBe(sourceOf("2001:db8:1:2::1"));
    expect(sourceOf("fe80::1%eth0")).toBe("fe80::1%eth0");
    expect(sourceOf("fe80::2%eth0")).not.toBe(sourceOf("fe80::1%eth0"));
    expect(sourceOf("")).toBe("local");
  });
});

describe("HandshakeSlots", () => {
  it("refuses a source's handshake beyond perSource, not another source's", () => {
    const slots = new HandshakeSlots<string>({ total: 100, perSource: 3 });
    for (let i = 0; i < 3; i++) expect(slots.acquire("a", `a${i}`).ok).toBe(true);
    expect(slots.acquire("a", "a3")).toEqual({ ok: false, reason: "source_limit" });
    expect(slots.acquire("b", "b0")).toEqual({ ok: true, evicted: undefined });
    expect(slots.refused.source_limit).toBe(1);
    expect(slots.release("a", "a1")).toBe(true);
    expect(slots.acquire("a", "a4").ok).toBe(true);
    expect(slots.size).toBe(4);
  });

  it("when full, evicts the oldest handshake of the source holding the most slots", () => {
    const slots = new HandshakeSlots<string>({ total: 6, perSource: 4 });
    slots.acquire("b", "b0");
    for (let i = 0; i < 3; i++) slots.acquire("a", `a${i}`);
    slots.acquire("b", "b1");
    slots.acquire("c", "c0");
    expect(slots.acquire("d", "d0")).toEqual({ ok: true, evicted: "a0" });
    expect(slots.held("a")).toBe(2);
    expect(slots.size).toBe(6);
    expect(slots.refused.evicted).toBe(1);
    // The evicted one's slot is gone already: releasing it later changes nothing.
    expect(slots.release("a", "a0")).toBe(false);
    expect(slots.size).toBe(6);
  });

  it("among sources holding equally many, evicts the one whose oldest handshake is oldest", () => {
    const slots = new HandshakeSlots<string>({ total: 4, perSource: 4 });
    slots.acquire("b", "b0");
    slots.acquire("a", "a0");
    slots.acquire("a", "a1");
    slots.acquire("b", "b1");
    expect(slots.acquire("c", "c0")).toEqual({ ok: true, evicted: "b0" });
    expect(slots.acquire("d", "d0")).toEqual({ ok: true, evicted: "a0" });
  });

  it("refuses a source that already holds as many slots as the largest (table_full)", () => {
    const slots = new HandshakeSlots<string>({ total: 4, perSource: 4 });
    for (const s of ["a", "b", "c", "d"]) slots.acquire(s, `${s}0`);
    expect(slots.acquire("a", "a1")).toEqual({ ok: false, reason: "table_full" });
    expect(slots.refused.table_full).toBe(1);
    // A source with nothing still gets in, at the expense of the oldest.
    expect(slots.acquire("e", "e0")).toEqual({ ok: true, evicted: "a0" });
  });
});

interface RawClient {
  socket: net.Socket;
  /** Resolves with ms from connect to close. */
  closed: Promise<number>;
  /** Resolves once at least n bytes arrived. */
  bytes(n: number): Promise<void>;
}

/** A connection from `from` (a 127.0.0.x address: one source) that writes `send` and waits. */
async function rawClient(port: number, from: string, send: Buffer): Promise<RawClient> {
  const socket = net.connect({ host: "127.0.0.1", port, localAddress: from });
  socket.on("error", () => {});
  let got = 0;
  const waiters: Array<{ n: number; done: () => void }> = [];
  socket.on("data", (c: Buffer) => {
    got += c.length;
    for (const w of waiters.filter((w) => got >= w.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.done();
    }
  });
  await new Promise((r) => socket.once("connect", r));
  const t0 = Date.now();
  const closed = new Promise<number>((r) => socket.once("close", () => r(Date.now() - t0)));
  if (send.length > 0) socket.write(send);
  return {
    socket,
    closed,
    bytes: (n) => (got >= n ? Promise.resolve() : new Promise((done) => waiters.push({ n, done }))),
  };
}

const portOf = (n: LinkNode) => Number(n.mgr.listenAddresses()[0]!.split(":").pop());
const partialMetadata = () => encodeMetadata(Identity.generate().publicKey).subarray(0, 20);

describe("LinkManager under a handshake stall flood", () => {
  it("one host gets perSource slots; an honest host still links at once", async () => {
    const server = await startLinkNode({
      listen: ["tcp://127.0.0.1:0"],
      timeouts: { handshakeMs: 10_000 },
      handshakes: { total: 16, perSource: 4 },
    });
    const port = portOf(server);
    const flood = await Promise.all(
      Array.from({ length: 40 }, () => rawClient(port, "127.0.0.2", partialMetadata())),
    );
    // All but perSource are closed at once (long before the 10 s deadline).
    const closedOnes = await Promise.all(flood.slice(4).map((c) => c.closed));
    expect(Math.max(...closedOnes)).toBeLessThan(2000);
    expect(server.mgr.stats().handshakeRefusals.source_limit).toBe(36);

    const t0 = Date.now();
    const honestKey = Identity.generate().publicKey;
    const honest = await rawClient(port, "127.0.0.3", encodeMetadata(honestKey));
    const link = await server.nextLink();
    expect(link.remoteKey.equals(honestKey)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(2000);
    await honest.bytes(38);
    for (const c of flood.slice(0, 4)) expect(c.socket.destroyed).toBe(false);
  });

  it("with the table full of several sources, a new source evicts the oldest of the largest", async () => {
    const server = await startLinkNode({
      listen: ["tcp://127.0.0.1:0"],
      timeouts: { handshakeMs: 10_000 },
      handshakes: { total: 8, perSource: 3 },
    });
    const port = portOf(server);
    const stalled: RawClient[] = [];
    // Sources .2 and .3 hold 3 each, .4 holds 2: the table is full.
    for (const [from, n] of [
      ["127.0.0.2", 3],
      ["127.0.0.3", 3],
      ["127.0.0.4", 2],
    ] as const) {
      for (let i = 0; i < n; i++) {
        stalled.push(await rawClient(port, from, partialMetadata()));
        await new Promise((r) => setImmediate(r)); // accepted in this order
      }
    }
    const honestKey = Identity.generate().publicKey;
    const honest = await rawClient(port, "127.0.0.9", encodeMetadata(honestKey));
    expect((await server.nextLink()).remoteKey.equals(honestKey)).toBe(true);
    // .2 and .3 tie at 3; .2's oldest is the oldest handshake of all.
    await stalled[0]!.closed;
    expect(stalled.slice(1).every((c) => !c.socket.destroyed)).toBe(true);
    expect(server.mgr.stats().handshakeRefusals).toMatchObject({ evicted: 1, table_full: 0 });
    expect(await server.nextLog(/inbound link from tcp:\/\/127\.0\.0\.2:\d+ failed/)).toMatch(/make room/);
    await honest.bytes(38);
  });

  it("closes a connection that sends nothing at the first-byte deadline, one that sent part at the handshake deadline", async () => {
    const server = await startLinkNode({
      listen: ["tcp://127.0.0.1:0"],
      timeouts: { handshakeMs: 800 },
      handshakes: { firstByteMs: 150 },
    });
    const port = portOf(server);
    const [silent, partial] = await Promise.all([
      rawClient(port, "127.0.0.2", Buffer.alloc(0)),
      rawClient(port, "127.0.0.3", partialMetadata()),
    ]);
    const silentMs = await silent.closed;
    expect(silentMs).toBeGreaterThanOrEqual(130);
    expect(silentMs).toBeLessThan(700);
    expect(partial.socket.destroyed).toBe(false);
    expect(await partial.closed).toBeGreaterThanOrEqual(780);
    expect(server.mgr.stats().handshakeRefusals.silent).toBe(1);
    expect(await server.nextLog(/sent nothing/)).toMatch(
      /^inbound link from tcp:\/\/127\.0\.0\.2:\d+ failed: sent nothing for 150 ms$/,
    );
  });

  it("logs the first inbound failures of a source and then one line with the count of the rest", async () => {
    const server = await startLinkNode({
      listen: ["tcp://127.0.0.1:0"],
      timeouts: { handshakeMs: 5000 },
    });
    const port = portOf(server);
    for (let i = 0; i < 30; i++) {
      const c = await rawClient(port, "127.0.0.2", Buffer.from("GET / HTTP/1.1\r\n".repeat(3)));
      await c.closed;
    }
    await server.mgr.stop();
    const failures = server.logs.filter((l) => l.startsWith("inbound link from tcp://127.0.0.2:"));
    expect(failures).toHaveLength(10);
    expect(server.logs).toContain("suppressed 20 similar messages: inbound links from 127.0.0.2 failed");
    expect(server.mgr.stats().handshakeFailures).toBe(30);
  });
});

describe("planetd_handshake_refused_total", () => {
  it("exports the refusal counters by reason", async () => {
    const registry = createMetricsRegistry(() =>
      emptySnapshot({ handshakeRefusals: { source_limit: 36, table_full: 0, evicted: 2, silent: 1 } }),
    );
    const text = await registry.metrics();
    expect(text).toContain('planetd_handshake_refused_total{reason="source_limit"} 36');
    expect(text).toContain('planetd_handshake_refused_total{reason="evicted"} 2');
  });
});
