// Pathfinder (spec 5.6): the notify → lookup → response worked example on the chain C–B–A, and
// source-routed traffic (5.5) that falls back to greedy routing.
import { describe, expect, it } from "vitest";
import { Sim, type SimNode } from "../src/routing/sim/sim.js";
import { FrameType } from "../src/routing/types.js";
import { decodeLookup, decodePathTraffic, decodeResponse } from "../src/routing/wire.js";

interface Seen {
  from: string;
  port: number;
  frame: Buffer;
}

function chain(): { sim: Sim; a: SimNode; b: SimNode; c: SimNode; seen: Seen[] } {
  const sim = new Sim({ seed: 5 });
  const [a, b, c] = sim.addNodes(3);
  sim.connect(b, a); // B's port for A = 1, A's port for B = 1
  sim.connect(b, c); // B's port for C = 2, C's port for B = 1
  const names = new Map([
    [a, "A"],
    [b, "B"],
    [c, "C"],
  ]);
  const name = (n: SimNode) => names.get(n) ?? "D";
  const seen: Seen[] = [];
  sim.tap = (from, port, frame) => seen.push({ from: name(from), port, frame: Buffer.from(frame) });
  expect(sim.runUntilTrue(() => sim.converged(), 30_000)).toBeDefined();
  seen.length = 0;
  return { sim, a, b, c, seen };
}

describe("pathfinder worked example (spec 5.6): chain C–B–A", () => {
  it("C learns the route [1,1,0] to A and then source-routes to it", () => {
    const { sim, a, c, seen } = chain();
    const payload = Buffer.from("ping");
    // A has sent to C before (so A keeps a paths[C] entry and will notify C); then C sends to A.
    sim.sendTraffic(a, c.key, payload);
    sim.runFor(100);
    sim.sendTraffic(c, a.key, payload);
    sim.runFor(100);

    const lookups = seen
      .filter((s) => s.frame[0] === FrameType.PathLookup)
      .map((s) => ({ from: s.from, port: s.port, rpath: decodeLookup(s.frame.subarray(1)).rpath }));
    expect(lookups).toEqual([
      { from: "C", port: 1, rpath: [] },
      { from: "B", port: 1, rpath: [2] },
    ]);
    const responses = seen
      .filter((s) => s.frame[0] === FrameType.PathResponse)
      .map((s) => {
        const r = decodeResponse(s.frame.subarray(1));
        return { from: s.from, port: s.port, who: r.from.equals(a.key), path: r.path, rpath: r.rpath };
      });
    expect(responses).toEqual([
      { from: "A", port: 1, who: true, path: [2, 0], rpath: [] },
      { from: "B", port: 2, who: true, path: [0], rpath: [1] },
    ]);
    expect(c.router.pathEntries()).toEqual([{ key: a.key, path: [1, 1, 0] }]);

    seen.length = 0;
    const delivered = a.router.stats().delivered;
    sim.sendTraffic(c, a.key, payload);
    sim.runFor(100);
    const hops = seen
      .filter((s) => s.frame[0] === FrameType.PathTraffic)
      .map((s) => ({ from: s.from, port: s.port, path: decodePathTraffic(s.frame.subarray(1)).path }));
    expect(hops).toEqual([
      { from: "C", port: 1, path: [1, 0] },
      { from: "B", port: 1, path: [0] },
    ]);
    expect(a.router.stats().delivered).toBe(delivered + 1);
  });

  it("a stale route falls back to greedy routing and still arrives", () => {
    const { sim, a, b, c, seen } = chain();
    sim.sendTraffic(a, c.key, Buffer.from("x"));
    sim.runFor(100);
    sim.sendTraffic(c, a.key, Buffer.from("x"));
    sim.runFor(100);
    expect(c.router.pathEntries()[0].path).toEqual([1, 1, 0]);
    // Re-link B–A after a new node D took B's port 1: the stored route now leads C → B → D.
    const d = sim.addNode();
    sim.cut(sim.links[0]);
    sim.connect(b, d); // B's port 1
    sim.connect(b, a); // B's port 3
    expect(sim.runUntilTrue(() => sim.converged(), 30_000)).toBeDefined();
    seen.length = 0;
    const delivered = a.router.stats().delivered;
    sim.sendTraffic(c, a.key, Buffer.from("y"));
    sim.runFor(100);
    expect(a.router.stats().delivered).toBe(delivered + 1);
  });

  it("a new direct link to a destination takes its traffic at once, not after the stored route's refresh", () => {
    const { sim, a, b, c, seen } = chain();
    sim.sendTraffic(a, c.key, Buffer.from("x"));
    sim.runFor(100);
    sim.sendTraffic(c, a.key, Buffer.from("x"));
    sim.runFor(100);
    expect(c.router.pathEntries()[0].path).toEqual([1, 1, 0]);
    // A punched link (NAT traversal) C–A: C's port 2. The stored route through B is still valid.
    sim.connect(c, a);
    expect(sim.runUntilTrue(() => sim.converged(), 30_000)).toBeDefined();
    seen.length = 0;
    const relayedBefore = b.router.stats().forwarded_frames ?? 0;
    for (let i = 0; i < 5; i++) {
      sim.sendTraffic(c, a.key, Buffer.from("y"));
      sim.runFor(100);
    }
    const fromC = seen.filter(
      (s) => s.from === "C" && (s.frame[0] === FrameType.PathTraffic || s.frame[0] === FrameType.DhtTraffic),
    );
    expect(fromC.map((s) => s.port)).toEqual([2, 2, 2, 2, 2]);
    expect(b.router.stats().forwarded_frames ?? 0).toBe(relayedBefore);
    // The route learned again leads over the direct link.
    sim.runFor(2_000);
    sim.sendTraffic(c, a.key, Buffer.from("z"));
    sim.runFor(100);
    expect(c.router.pathEntries()).toEqual([{ key: a.key, path: [2, 0] }]);
  });

  it("entries expire 1 min after the last send", () => {
    const { sim, a, c } = chain();
    sim.sendTraffic(c, a.key, Buffer.from("x"));
    expect(c.router.pathEntries().length).toBe(1);
    sim.runFor(59_000);
    sim.sendTraffic(c, a.key, Buffer.from("x"));
    sim.runFor(59_000);
    expect(c.router.pathEntries().length).toBe(1);
    sim.runFor(1_100);
    expect(c.router.pathEntries()).toEqual([]);
  });

  // The router remembers its last destination (pathfinder.ts find, dht.ts lookupTraffic) and compares
  // the next packet's key with it; the daemon passes keys as views of buffers it reuses.
  it("a destination key passed in a reused buffer is looked up anew when the buffer holds another key", () => {
    const { sim, a, b, c, seen } = chain();
    const dest = Buffer.from(a.key);
    sim.sendTraffic(b, dest, Buffer.from("x"));
    c.key.copy(dest);
    sim.sendTraffic(b, dest, Buffer.from("y"));
    sim.runFor(100);
    const fromB = seen.filter((s) => s.from === "B" && s.frame[0] === FrameType.DhtTraffic);
    expect(fromB.map((s) => s.port)).toEqual([1, 2]);
    expect(
      b.router
        .pathEntries()
        .map((e) => e.key.toString("hex"))
        .sort(),
    ).toEqual([a.key.toString("hex"), c.key.toString("hex")].sort());
  });

  it("an entry that expired is made again by the next send to its key, and learns its route again", () => {
    const { sim, a, c } = chain();
    sim.sendTraffic(a, c.key, Buffer.from("x"));
    sim.runFor(100);
    sim.sendTraffic(c, a.key, Buffer.from("x"));
    sim.runFor(100);
    expect(c.router.pathEntries()).toEqual([{ key: a.key, path: [1, 1, 0] }]);
    sim.sendTraffic(c, a.key, Buffer.from("x")); // found in the table: the one remembered
    sim.runFor(61_000);
    expect(c.router.pathEntries()).toEqual([]);
    sim.sendTraffic(a, c.key, Buffer.from("x"));
    sim.runFor(100);
    sim.sendTraffic(c, a.key, Buffer.from("x"));
    expect(c.router.pathEntries()).toEqual([{ key: a.key, path: [] }]);
    sim.runFor(100);
    expect(c.router.pathEntries()).toEqual([{ key: a.key, path: [1, 1, 0] }]);
  });
});
