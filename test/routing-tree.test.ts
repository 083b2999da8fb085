// Spanning tree (spec 5.3): hello, _fix root election, hold-down, loops, expiry, bad frames.
import { describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { RouterHarness, chainFrame, sortedIdentities } from "../src/routing/sim/harness.js";
import { Sim } from "../src/routing/sim/sim.js";
import { FrameType } from "../src/routing/types.js";
import { decodeTree } from "../src/routing/wire.js";

const HOUR = 3_600_000;

function treesSent(h: RouterHarness): Array<{ port: number; root: Buffer; seq: bigint; hops: number }> {
  return h.take(FrameType.Tree).map((s) => {
    const info = decodeTree(s.frame.subarray(1));
    return { port: s.port, root: info.root, seq: info.seq, hops: info.hops.length };
  });
}

describe("tree announcements", () => {
  it("the hello on a new link is spec vector 13.3 #1, byte for byte", () => {
    const a = Identity.fromSeed(Buffer.alloc(32));
    const b = Identity.fromSeed(Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1)));
    const h = new RouterHarness(a);
    expect(h.addPeer(b)).toBe(1);
    const [hello] = h.take();
    expect(hello.port).toBe(1);
    expect(hello.frame.toString("hex")).toBe(
      "013b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29000000000000000079b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664017fc806ccffa08cf9244d29a6ed65b894d9a1fff7bed71f3f8f93cd84cdce9b8865b7bdc3e6ad4b48ea6f0dae1d1f81d33dd573fd4e7c6f278d024cae4d503a00",
    );
  });

  it("ports are the lowest unused numbers and are reused", () => {
    const [r, p1, p2, p3] = sortedIdentities(4);
    const h = new RouterHarness(r);
    expect([h.addPeer(p1), h.addPeer(p2)]).toEqual([1, 2]);
    h.router.removePeer(1, h.now);
    expect(h.addPeer(p3)).toBe(1);
  });
});

describe("parent selection (_fix)", () => {
  it("takes a smaller root, then a higher seq; on a tie keeps the info that arrived first", () => {
    const [k0, k1, , k3, p1, p2] = sortedIdentities(6);
    const h = new RouterHarness(k3);
    const port1 = h.addPeer(p1);
    const port2 = h.addPeer(p2);
    h.take();
    h.frame(port1, chainFrame([p1], [1], 0n, h.key)); // hello: p1 is a worse root than us
    expect(h.router.selfInfo().root).toEqual(h.key);
    expect(treesSent(h).map((t) => t.port)).toEqual([port1]); // reply to a peer's first info

    h.frame(port1, chainFrame([k1, p1], [7, 1], 10n, h.key));
    expect(h.router.selfInfo()).toMatchObject({
      root: k1.publicKey,
      rootSeq: 10n,
      coords: [7, 1],
      parent: port1,
    });
    expect(treesSent(h)).toEqual([{ port: port1, root: k1.publicKey, seq: 10n, hops: 3 }]);

    h.frame(port2, chainFrame([k0, p2], [3, 1], 5n, h.key));
    expect(h.router.selfInfo()).toMatchObject({
      root: k0.publicKey,
      rootSeq: 5n,
      coords: [3, 1],
      parent: port2,
    });
    expect(
      treesSent(h)
        .map((t) => t.port)
        .sort(),
    ).toEqual([port1, port2, port2].sort()); // hello-reply to p2, then the change to both

    h.frame(port1, chainFrame([k0, p1], [4, 1], 5n, h.key)); // same root and seq, arrived later
    expect(h.router.selfInfo().parent).toBe(port2);
    expect(treesSent(h)).toEqual([]);

    h.frame(port1, chainFrame([k0, p1], [4, 1], 6n, h.key)); // newer seq
    expect(h.router.selfInfo()).toMatchObject({ root: k0.publicKey, rootSeq: 6n, parent: port1 });
  });

  it("bad news from the parent: announce ourselves as root with seq 0 at once, hold selection for 7 s", () => {
    const [k0, k1, , k3, p1, p2] = sortedIdentities(6);
    const h = new RouterHarness(k3);
    const port1 = h.addPeer(p1);
    const port2 = h.addPeer(p2);
    h.frame(port1, chainFrame([k0, p1], [4, 1], 6n, h.key));
    h.frame(port2, chainFrame([k0, p2], [5, 1], 6n, h.key));
    expect(h.router.selfInfo().parent).toBe(port1);
    h.take();

    const start = h.now;
    h.frame(port1, chainFrame([k1, p1], [4, 1], 11n, h.key)); // worse root from the parent
    expect(h.router.selfInfo()).toMatchObject({ root: h.key, rootSeq: 0n, parent: undefined });
    expect(h.router.dhtState().holdDown).toBe(true);
    const bad = treesSent(h);
    expect(bad.map((t) => t.port).sort()).toEqual([port1, port2]);
    for (const t of bad) expect(t).toMatchObject({ root: h.key, seq: 0n, hops: 1 });

    h.advanceTo(start + 3000);
    h.frame(port2, chainFrame([k0, p2], [5, 1], 7n, h.key)); // good news, but still holding down
    expect(h.router.selfInfo().root).toEqual(h.key);
    h.advanceTo(start + 6999);
    expect(h.router.selfInfo().root).toEqual(h.key);
    h.advanceTo(start + 7000);
    expect(h.router.selfInfo()).toMatchObject({ root: k0.publicKey, rootSeq: 7n, parent: port2 });
    expect(h.router.dhtState().holdDown).toBe(false);
  });

  it("the parent re-sending the same root with a seq not above ours is bad news too", () => {
    const [k0, k1, , k3, p1] = sortedIdentities(5);
    const h = new RouterHarness(k3);
    const port1 = h.addPeer(p1);
    h.frame(port1, chainFrame([k0, p1], [4, 1], 6n, h.key));
    expect(h.router.selfInfo().root).toEqual(k0.publicKey);
    h.frame(port1, chainFrame([k0, k1, p1], [2, 3, 1], 6n, h.key));
    expect(h.router.selfInfo()).toMatchObject({ root: h.key, rootSeq: 0n });
    expect(h.router.dhtState().holdDown).toBe(true);
  });

  it("never adopts an info whose key chain has a loop, e.g. one passing through us", () => {
    const [k0, , k2, k3, p1] = sortedIdentities(5);
    const h = new RouterHarness(k3);
    const port1 = h.addPeer(p1);
    h.frame(port1, chainFrame([k0, k3, p1], [1, 2, 1], 9n, h.key)); // through ourselves
    expect(h.router.selfInfo().root).toEqual(h.key);
    h.frame(port1, chainFrame([k0, k2, p1, k2, p1], [1, 2, 3, 4, 1], 9n, h.key)); // k2 and p1 twice
    expect(h.router.selfInfo().root).toEqual(h.key);
    expect(h.closed).toEqual([]); // a loop is not a protocol violation
    h.frame(port1, chainFrame([k0, k2, p1], [1, 2, 1], 9n, h.key));
    expect(h.router.selfInfo()).toMatchObject({ root: k0.publicKey, coords: [1, 2, 1] });
  });
});

describe("timers", () => {
  it("a root seq not refreshed for 1 h expires; we become root with a wall-clock seq", () => {
    const [k0, , , k3, p1] = sortedIdentities(5);
    const h = new RouterHarness(k3);
    const port1 = h.addPeer(p1);
    const start = h.now;
    h.frame(port1, chainFrame([k0, p1], [4, 1], 9n, h.key));
    expect(h.router.selfInfo().root).toEqual(k0.publicKey);
    h.advanceTo(start + HOUR - 1);
    expect(h.router.selfInfo().root).toEqual(k0.publicKey);
    h.take();
    h.advanceTo(start + HOUR);
    const self = h.router.selfInfo();
    expect(self).toMatchObject({ root: h.key, parent: undefined });
    expect(self.rootSeq).toBe(BigInt(Math.floor((start + HOUR) / 1000)));
    expect(treesSent(h)).toEqual([{ port: port1, root: h.key, seq: self.rootSeq, hops: 1 }]);
  });

  it("the root re-announces with a new seq every 30 min and not in between", () => {
    const [k0, p1] = sortedIdentities(2);
    const h = new RouterHarness(k0);
    const start = h.now;
    expect(h.router.selfInfo().rootSeq).toBe(BigInt(Math.floor(start / 1000)));
    const port1 = h.addPeer(p1);
    h.frame(port1, chainFrame([p1], [1], 0n, h.key));
    h.take();
    h.advanceTo(start + HOUR / 2 - 1);
    expect(treesSent(h)).toEqual([]);
    h.advanceTo(start + HOUR / 2);
    const seq = BigInt(Math.floor((start + HOUR / 2) / 1000));
    expect(h.router.selfInfo().rootSeq).toBe(seq);
    expect(treesSent(h)).toEqual([{ port: port1, root: h.key, seq, hops: 1 }]);
  });

  it("losing the parent link re-selects at once, without hold-down", () => {
    const [k0, , , k3, p1, p2] = sortedIdentities(6);
    const h = new RouterHarness(k3);
    const port1 = h.addPeer(p1);
    const port2 = h.addPeer(p2);
    h.frame(port1, chainFrame([k0, p1], [4, 1], 6n, h.key));
    h.frame(port2, chainFrame([k0, p2], [5, 1], 6n, h.key));
    h.router.removePeer(port1, h.now);
    expect(h.router.selfInfo()).toMatchObject({ root: k0.publicKey, parent: port2, coords: [5, 1] });
    expect(h.router.dhtState().holdDown).toBe(false);
  });
});

describe("hostile tree frames close the link", () => {
  function setup(): { h: RouterHarness; ids: Identity[]; port: number } {
    const ids = sortedIdentities(5);
    const h = new RouterHarness(ids[3]);
    return { h, ids, port: h.addPeer(ids[4]) };
  }

  it("a bad hop signature", () => {
    const { h, ids, port } = setup();
    const frame = chainFrame([ids[0], ids[4]], [4, 1], 6n, h.key);
    frame[100] ^= 1; // inside the first hop's signature (bytes 74..137)
    h.frame(port, frame);
    expect(h.closed).toEqual([{ port, reason: expect.stringContaining("signature") }]);
    expect(h.router.selfInfo().root).toEqual(h.key);
    // Nothing more is processed from a closed link.
    h.frame(port, chainFrame([ids[0], ids[4]], [4, 1], 6n, h.key));
    expect(h.router.selfInfo().root).toEqual(h.key);
    expect(h.router.stats().drop_frame_from_unknown_port).toBe(1);
  });

  it("a bad signature in a hop prefix we verified before (the verified-prefix shortcut)", () => {
    const { h, ids, port } = setup();
    h.frame(port, chainFrame([ids[0], ids[1], ids[4]], [4, 2, 1], 6n, h.key));
    expect(h.router.selfInfo().root).toEqual(ids[0].publicKey);
    const frame = chainFrame([ids[0], ids[1], ids[4]], [4, 2, 1], 7n, h.key);
    const again = chainFrame([ids[0], ids[1], ids[4]], [4, 2, 1], 6n, h.key);
    again[100] ^= 1;
    h.frame(port, again);
    expect(h.closed.map((c) => c.reason)).toEqual(["tree info signature does not verify"]);
    expect(frame.length).toBe(again.length);
  });

  it("an info not sent by this peer, or not addressed to us", () => {
    const { h, ids, port } = setup();
    h.frame(port, chainFrame([ids[0], ids[2]], [4, 1], 6n, h.key));
    expect(h.closed.map((c) => c.reason)).toEqual(["tree info not from this peer"]);
    const b = setup();
    b.h.frame(b.port, chainFrame([b.ids[0], b.ids[4]], [4, 1], 6n, b.ids[1].publicKey));
    expect(b.h.closed.map((c) => c.reason)).toEqual(["tree info not addressed to us"]);
  });

  it("truncated frames, trailing garbage and unknown types", () => {
    for (const frame of [
      Buffer.from([FrameType.Tree, 1, 2, 3]),
      Buffer.concat([chainFrame([sortedIdentities(1)[0]], [1], 0n, Buffer.alloc(32)), Buffer.from([1, 2])]),
      Buffer.from([11, 0]),
      Buffer.alloc(0),
      Buffer.from([FrameType.DhtTeardown, 1, 2]),
      Buffer.from([FrameType.DhtTraffic, 1, 2]),
    ]) {
      const { h, port } = setup();
      h.frame(port, frame);
      expect(h.closed.length).toBe(1);
      expect(h.closed[0].port).toBe(port);
    }
  });
});

describe("coordinates (spec 5.3.6) in a simulated chain C(root)–B–A", () => {
  it("B is [1], A is [1,1]; getPeers coordinates are the peer's own; DHT entries as observed (5.4.2)", () => {
    const [c, b, a] = sortedIdentities(3);
    const sim = new Sim({ seed: 2 });
    const [na, nb, nc] = [sim.addNode(a), sim.addNode(b), sim.addNode(c)];
    sim.connect(nb, na); // B's port for A = 1, A's port for B = 1
    sim.connect(nb, nc); // B's port for C = 2, C's port for B = 1
    expect(sim.runUntilTrue(() => sim.converged(), 30_000)).toBeDefined();
    expect(nc.router.selfInfo()).toMatchObject({ root: c.publicKey, coords: [], parent: undefined });
    expect(nb.router.selfInfo()).toMatchObject({ root: c.publicKey, coords: [1], parent: 2 });
    expect(na.router.selfInfo()).toMatchObject({ root: c.publicKey, coords: [1, 1], parent: 1 });
    expect(nb.router.peerInfos().map((p) => [p.port, p.coords])).toEqual([
      [1, [1, 1]],
      [2, []],
    ]);
    // B's predecessor is C (the root): C holds {B, port 1, rest 0}, B holds {B, port 0, rest 2}.
    expect(nc.router.dhtEntries()).toContainEqual({ key: b.publicKey, port: 1, rest: 0 });
    expect(nb.router.dhtEntries()).toContainEqual({ key: b.publicKey, port: 0, rest: 2 });
  });
});
