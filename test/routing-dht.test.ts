// DHT (spec 5.4) and traffic forwarding (5.5): dhtLookup, bootstrap/ack/setup/teardown rules,
// link loss, hostile floods.
import { beforeEach, describe, expect, it } from "vitest";
import type { Identity } from "../src/crypto/identity.js";
import { RouterHarness, chainFrame, sortedIdentities } from "../src/routing/sim/harness.js";
import type { RouterLimits } from "../src/routing/state.js";
import { FrameType, type TreeLabel } from "../src/routing/types.js";
import {
  decodeBootstrap,
  decodeBootstrapAck,
  decodeSetup,
  decodeTeardown,
  encodeBootstrap,
  encodeBootstrapAck,
  encodeDhtTraffic,
  encodeSetup,
  encodeTeardown,
  makeLabel,
  makeSetup,
  makeToken,
  verifySetup,
  verifyToken,
} from "../src/routing/wire.js";

const SEQ = 10n;

/** key - 1 as a 256-bit number: strictly between key's predecessor and key for random keys. */
function justBelow(key: Buffer): Buffer {
  const b = Buffer.from(key);
  for (let i = 31; i >= 0; i--) {
    if (b[i] > 0) {
      b[i]--;
      break;
    }
    b[i] = 0xff;
  }
  return b;
}

/**
 * R = k[4] with peers A = k[0] (root, R's parent), B = k[2] (A's child at port 2) and C = k[5] (A's
 * child at port 3). Keys k[1], k[3] and k[6] belong to nodes R does not peer with.
 */
function world(limits: Partial<RouterLimits> = {}) {
  const k = sortedIdentities(7);
  const h = new RouterHarness(k[4], undefined, limits);
  const portA = h.addPeer(k[0]);
  const portB = h.addPeer(k[2]);
  const portC = h.addPeer(k[5]);
  h.frame(portA, chainFrame([k[0]], [1], SEQ, h.key));
  h.frame(portB, chainFrame([k[0], k[2]], [2, 1], SEQ, h.key));
  h.frame(portC, chainFrame([k[0], k[5]], [3, 1], SEQ, h.key));
  return { k, h, portA, portB, portC };
}

function label(id: Identity, path: number[], root: Buffer, seq = SEQ): TreeLabel {
  return makeLabel(id, root, seq, path);
}

describe("greedy keyspace forwarding (dhtLookup, spec 5.4.3)", () => {
  let w: ReturnType<typeof world>;
  beforeEach(() => {
    w = world();
    w.h.take();
  });

  function trafficTo(dest: Buffer, kind = 1): Buffer {
    return encodeDhtTraffic({ source: w.k[0].publicKey, dest, kind, payload: Buffer.from("hi") });
  }

  it("an exact key we know goes to that peer, unchanged", () => {
    const frame = trafficTo(w.k[5].publicKey);
    w.h.frame(w.portA, frame);
    expect(w.h.take()).toEqual([{ port: w.portC, frame }]);
  });

  it("an unknown key goes to the largest known key below it", () => {
    w.h.frame(w.portA, trafficTo(w.k[3].publicKey)); // k2 < k3 < us: toward B
    w.h.frame(w.portA, trafficTo(justBelow(w.k[4].publicKey)));
    w.h.frame(w.portA, trafficTo(Buffer.alloc(32, 0xff))); // above everyone we know: C
    expect(w.h.take().map((s) => s.port)).toEqual([w.portB, w.portB, w.portC]);
  });

  it("a new DHT path changes the next hop at once (the per-destination memo is invalidated)", () => {
    const frame = trafficTo(w.k[3].publicKey);
    w.h.frame(w.portA, frame);
    expect(w.h.take().map((s) => s.port)).toEqual([w.portB]);
    // k3's path to its predecessor k2 enters via C and leaves via B: now we know k3 itself, via C.
    const token = makeToken(w.k[2], w.k[3].publicKey, label(w.k[2], [2], w.k[0].publicKey));
    w.h.frame(w.portC, encodeSetup(makeSetup(w.k[3], 1n, token)));
    w.h.take();
    w.h.frame(w.portA, frame);
    expect(w.h.take()).toEqual([{ port: w.portC, frame }]);
    w.h.router.removePeer(w.portC, w.h.now);
    w.h.take();
    w.h.frame(w.portA, frame);
    expect(w.h.take().map((s) => s.port)).toEqual([w.portB]);
  });

  it("a frame buffer reused for another destination is routed by the key it holds now, not the memo's", () => {
    // The daemon parses frames from one shared read buffer: the memo must hold a copy of the key.
    const frame = trafficTo(w.k[5].publicKey);
    w.h.frame(w.portA, frame);
    trafficTo(w.k[3].publicKey).copy(frame);
    w.h.frame(w.portA, frame);
    w.h.frame(w.portA, frame);
    expect(w.h.take().map((s) => s.port)).toEqual([w.portC, w.portB, w.portB]);
  });

  it("traffic for us is delivered; below every known key it stops here: OOB delivered, kind 1 dropped", () => {
    w.h.frame(w.portA, trafficTo(w.h.key));
    expect(w.h.delivered).toEqual([{ source: w.k[0].publicKey, payload: Buffer.from("hi") }]);
    const partial = Buffer.alloc(32); // below the root's key
    w.h.frame(w.portA, trafficTo(partial, 2));
    w.h.frame(w.portA, trafficTo(partial, 1));
    w.h.frame(w.portA, trafficTo(partial, 0));
    expect(w.h.oob).toEqual([{ source: w.k[0].publicKey, dest: partial, payload: Buffer.from("hi") }]);
    expect(w.h.delivered.length).toBe(1);
    expect(w.h.take()).toEqual([]);
    expect(w.h.router.stats()).toMatchObject({ drop_traffic_no_route: 1, drop_traffic_bad_kind: 1 });
  });

  it("a bootstrap stops strictly before its source: we ack k5's, and forward k6's toward k5", () => {
    w.h.frame(w.portC, encodeBootstrap(label(w.k[5], [3], w.k[0].publicKey)));
    const [ack] = w.h.take();
    expect(ack.port).toBe(w.portC); // treeLookup: C's coordinates [3] match its label exactly
    expect(ack.frame[0]).toBe(FrameType.DhtBootstrapAck);
    const decoded = decodeBootstrapAck(ack.frame.subarray(1));
    expect(decoded.bootstrap.key).toEqual(w.k[5].publicKey);
    expect(decoded.token.source).toEqual(w.k[5].publicKey);
    expect(decoded.token.dest).toMatchObject({ key: w.h.key, root: w.k[0].publicKey, seq: SEQ, path: [1] });
    expect(verifyToken(decoded.token)).toBe(true);

    const far = encodeBootstrap(label(w.k[6], [3, 7], w.k[0].publicKey));
    w.h.frame(w.portC, far);
    expect(w.h.take()).toEqual([{ port: w.portC, frame: far }]);
  });

  it("a bootstrap with a bad label signature is dropped where it would be acked", () => {
    const frame = encodeBootstrap(label(w.k[5], [3], w.k[0].publicKey));
    frame[10] ^= 1;
    w.h.frame(w.portC, frame);
    expect(w.h.take()).toEqual([]);
    expect(w.h.router.stats().drop_bootstrap_bad_signature).toBe(1);
    expect(w.h.closed).toEqual([]);
  });
});

describe("bootstrap, ack and setup (spec 5.4.4)", () => {
  it("bootstraps toward the predecessor, accepts its ack once, sets up one path; a better one replaces it", () => {
    const { k, h, portA, portB } = world();
    const root = k[0].publicKey;
    // The first bootstrap went out when only A's info was known (to A); the next waits 1 s.
    expect(h.take(FrameType.DhtBootstrap).map((b) => b.port)).toEqual([portA]);
    h.advance(999);
    expect(h.take(FrameType.DhtBootstrap)).toEqual([]);
    h.advance(1);
    const boots = h.take(FrameType.DhtBootstrap);
    expect(boots.map((b) => b.port)).toEqual([portB]); // k2: the largest key below us that we know
    const ours = decodeBootstrap(boots[0].frame.subarray(1));
    expect(ours).toMatchObject({ key: h.key, root, seq: SEQ, path: [1] });
    h.take();

    const ackFrom = (id: Identity, path: number[], seq = SEQ) =>
      encodeBootstrapAck({ bootstrap: ours, token: makeToken(id, h.key, label(id, path, root, seq)) });

    h.frame(portB, ackFrom(k[2], [2]));
    const [setup] = h.take();
    expect(setup.port).toBe(portB);
    const s = decodeSetup(setup.frame.subarray(1));
    expect(verifySetup(s)).toBe(true);
    expect(s.token.source).toEqual(h.key);
    expect(s.token.dest.key).toEqual(k[2].publicKey);
    expect(h.router.dhtState().prev?.dest).toEqual(k[2].publicKey);
    expect(h.router.dhtEntries()).toEqual([{ key: h.key, port: 0, rest: portB }]);

    // Same predecessor while the path is alive: never a second setup for this (root, rootSeq).
    h.frame(portB, ackFrom(k[2], [2]));
    // A worse predecessor, and a stale root seq: dropped.
    h.frame(portA, ackFrom(k[0], []));
    h.frame(portB, ackFrom(k[3], [2, 5], SEQ - 1n));
    expect(h.take()).toEqual([]);
    expect(h.router.stats()).toMatchObject({ drop_ack_not_better: 2, drop_ack_stale_root: 1 });

    // Nor does the bootstrap timer send anything while prev is current.
    h.advance(5000);
    expect(h.take(FrameType.DhtBootstrap)).toEqual([]);

    // k3 lies between k2 and us: tear down the old path, set up the new one.
    h.frame(portB, ackFrom(k[3], [2, 5]));
    const out = h.take();
    expect(out.map((o) => [o.frame[0], o.port])).toEqual([
      [FrameType.DhtTeardown, portB],
      [FrameType.DhtSetup, portB],
    ]);
    const td = decodeTeardown(out[0].frame.subarray(1));
    expect(td).toEqual({ seq: s.seq, key: h.key, root, rootSeq: SEQ });
    const s2 = decodeSetup(out[1].frame.subarray(1));
    expect(s2.token.dest.key).toEqual(k[3].publicKey);
    expect(s2.seq).toBe(s.seq + 1n);
    expect(h.router.dhtState().prev?.dest).toEqual(k[3].publicKey);
  });

  it("an ack for someone else's bootstrap with no tree route is dropped", () => {
    const { k, h, portB } = world();
    h.take();
    const theirs = label(k[3], [9, 9], k[6].publicKey); // a root nobody here follows
    h.frame(
      portB,
      encodeBootstrapAck({
        bootstrap: theirs,
        token: makeToken(k[2], k[3].publicKey, label(k[2], [2], k[0].publicKey)),
      }),
    );
    expect(h.take()).toEqual([]);
    expect(h.router.stats().drop_ack_not_ours).toBe(1);
  });

  describe("setups arriving from a peer", () => {
    let w: ReturnType<typeof world>;
    let ourLabel: TreeLabel;
    beforeEach(() => {
      w = world();
      w.h.take();
      ourLabel = label(w.k[4], [1], w.k[0].publicKey);
    });
    const setupFrom = (source: Identity, dest: Identity, destLabel: TreeLabel, seq: bigint) =>
      encodeSetup(makeSetup(source, seq, makeToken(dest, source.publicKey, destLabel)));

    it("a setup to us installs our next path; a duplicate (source, root, rootSeq) is torn down", () => {
      const { h, k, portC } = w;
      h.frame(portC, setupFrom(k[6], k[4], ourLabel, 77n));
      expect(h.take()).toEqual([]);
      expect(h.router.dhtEntries()).toEqual([{ key: k[6].publicKey, port: portC, rest: 0 }]);
      expect(h.router.dhtState().next).toEqual(k[6].publicKey);

      h.frame(portC, setupFrom(k[6], k[4], ourLabel, 78n));
      const [td] = h.take();
      expect(td.port).toBe(portC);
      expect(decodeTeardown(td.frame.subarray(1))).toEqual({
        seq: 78n,
        key: k[6].publicKey,
        root: k[0].publicKey,
        rootSeq: SEQ,
      });
      expect(h.router.dhtEntries().length).toBe(1);
      expect(h.router.stats().drop_setup_duplicate).toBe(1);
    });

    it("a setup for a foreign root, or with no route, is answered with a teardown", () => {
      const { h, k, portC } = w;
      h.frame(portC, setupFrom(k[6], k[4], label(k[4], [], k[1].publicKey, 3n), 5n));
      h.frame(portC, setupFrom(k[6], k[3], label(k[3], [4, 4], k[1].publicKey, 3n), 6n));
      const out = h.take();
      expect(out.map((o) => [o.frame[0], o.port])).toEqual([
        [FrameType.DhtTeardown, portC],
        [FrameType.DhtTeardown, portC],
      ]);
      expect(decodeTeardown(out[0].frame.subarray(1))).toMatchObject({
        seq: 5n,
        root: k[1].publicKey,
        rootSeq: 3n,
      });
      expect(h.router.stats()).toMatchObject({ drop_setup_foreign_root: 1, drop_setup_no_route: 1 });
      expect(h.router.dhtEntries()).toEqual([]);
    });

    it("a setup passing through is stored and forwarded unchanged along the tree", () => {
      const { h, k, portB, portC } = w;
      const frame = setupFrom(k[6], k[3], label(k[3], [2, 5], k[0].publicKey), 9n);
      h.frame(portC, frame);
      expect(h.take()).toEqual([{ port: portB, frame }]);
      expect(h.router.dhtEntries()).toEqual([{ key: k[6].publicKey, port: portC, rest: portB }]);

      // Teardowns: wrong seq or wrong side are ignored; the right one is forwarded to the other side.
      const td = (seq: bigint) =>
        encodeTeardown({ seq, key: k[6].publicKey, root: k[0].publicKey, rootSeq: SEQ });
      h.frame(portC, td(8n));
      h.frame(w.portA, td(9n));
      expect(h.take()).toEqual([]);
      expect(h.router.dhtEntries().length).toBe(1);
      h.frame(portB, td(9n));
      expect(h.take()).toEqual([{ port: portC, frame: td(9n) }]);
      expect(h.router.dhtEntries()).toEqual([]);
    });

    it("link loss tears down the paths through it toward their other side", () => {
      const { h, k, portB, portC } = w;
      h.frame(portC, setupFrom(k[6], k[3], label(k[3], [2, 5], k[0].publicKey), 9n));
      h.take();
      h.router.removePeer(portB, h.now);
      const out = h.take(FrameType.DhtTeardown);
      expect(out.map((o) => o.port)).toEqual([portC]);
      expect(h.router.dhtEntries()).toEqual([]);
    });

    it("a paths expires after 2 h: teardowns go both ways", () => {
      const { h, k, portB, portC } = w;
      h.frame(portC, setupFrom(k[6], k[3], label(k[3], [2, 5], k[0].publicKey), 9n));
      h.take();
      h.advance(2 * 3_600_000 - 1);
      expect(h.router.dhtEntries().length).toBe(1);
      h.take();
      h.advance(1);
      expect(
        h
          .take(FrameType.DhtTeardown)
          .map((o) => o.port)
          .sort(),
      ).toEqual([portB, portC].sort());
      expect(h.router.dhtEntries()).toEqual([]);
    });

    it("a setup with a bad signature closes the link", () => {
      const { h, k, portC } = w;
      const frame = setupFrom(k[6], k[4], ourLabel, 77n);
      frame[5] ^= 1;
      h.frame(portC, frame);
      expect(h.closed).toEqual([{ port: portC, reason: "setup signature does not verify" }]);
      expect(h.router.dhtEntries()).toEqual([]);
    });
  });
});

describe("a peer closed for a violation, before its removePeer", () => {
  function trafficTo(w: ReturnType<typeof world>, dest: Buffer): Buffer {
    return encodeDhtTraffic({ source: w.k[6].publicKey, dest, kind: 1, payload: Buffer.from("hi") });
  }

  it("is not the root step of dhtLookup: traffic toward the root goes to another peer under that root", () => {
    const w = world();
    w.h.take();
    w.h.frame(w.portC, trafficTo(w, w.k[1].publicKey)); // root k0 < k1 < us: the root step, our parent A
    expect(w.h.take().map((s) => s.port)).toEqual([w.portA]);
    w.h.frame(w.portA, Buffer.alloc(0)); // violation: A is closed, removePeer not yet called
    expect(w.h.closed.map((c) => c.port)).toEqual([w.portA]);
    w.h.frame(w.portC, trafficTo(w, w.k[1].publicKey));
    expect(w.h.take().map((s) => s.port)).toEqual([w.portB]);
    expect(w.h.router.stats().drop_send_to_gone_peer).toBeUndefined();
  });

  it("is not the next hop of a DHT entry whose source side it is", () => {
    const w = world();
    const token = makeToken(w.k[2], w.k[3].publicKey, label(w.k[2], [2], w.k[0].publicKey));
    w.h.frame(w.portC, encodeSetup(makeSetup(w.k[3], 1n, token))); // k3's path enters via C
    w.h.take();
    w.h.frame(w.portA, trafficTo(w, w.k[3].publicKey));
    expect(w.h.take().map((s) => s.port)).toEqual([w.portC]);
    w.h.frame(w.portC, Buffer.alloc(0));
    w.h.frame(w.portA, trafficTo(w, w.k[3].publicKey));
    expect(w.h.take().map((s) => s.port)).toEqual([w.portB]); // largest open key below k3: k2
    expect(w.h.router.stats().drop_send_to_gone_peer).toBeUndefined();
  });

  it("is not kept as our tree parent when the next tree info arrives", () => {
    const w = world();
    expect(w.h.router.selfInfo().parent).toBe(w.portA);
    w.h.frame(w.portA, Buffer.alloc(0));
    w.h.frame(w.portB, chainFrame([w.k[0], w.k[2]], [2, 1], SEQ, w.h.key));
    // Same root and seq: the open peer's info known longest wins (C's; B's was just replaced).
    expect(w.h.router.selfInfo()).toMatchObject({ root: w.k[0].publicKey, parent: w.portC });
  });
});

describe("hostile floods do not grow state", () => {
  it("10,000 bootstraps in one second from one peer", () => {
    const { k, h, portC } = world();
    h.take();
    const before = h.router.stats();
    const signers = sortedIdentities(64);
    const frames = signers.map((id, i) => encodeBootstrap(label(id, [3, i + 1], k[0].publicKey)));
    const start = h.now;
    for (let i = 0; i < 10_000; i++) {
      h.now = start + i / 10;
      h.router.handleFrame(portC, frames[i % frames.length], h.now);
    }
    h.advance(1000);
    const after = h.router.stats();
    expect(h.closed).toEqual([]);
    for (const key of ["dht_entries", "path_entries", "expired_roots", "peers"]) {
      expect(after[key], key).toBe(before[key]);
    }
    expect(after.in_bootstrap).toBe(10_000);
    // Every one was either forwarded or answered: nothing queued up inside.
    expect(
      after.out_bootstrap - before.out_bootstrap + after.out_bootstrap_ack - before.out_bootstrap_ack,
    ).toBeGreaterThan(0);
    h.take();
  });

  it("signed control frames beyond a link's budget are dropped before any check; other links keep theirs", () => {
    const { k, h, portA, portC } = world({ controlPerSecond: 400 }); // burst 100
    h.take();
    const frame = encodeBootstrap(label(k[6], [3, 1], k[0].publicKey));
    for (let i = 0; i < 500; i++) h.router.handleFrame(portC, frame, h.now); // one instant: the burst only
    expect(h.router.stats().drop_control_budget).toBe(400);
    expect(h.router.stats().in_bootstrap).toBe(500);
    h.router.handleFrame(portA, frame, h.now);
    expect(h.router.stats().drop_control_budget).toBe(400);
    h.now += 1000; // refills to the burst, not beyond
    for (let i = 0; i < 150; i++) h.router.handleFrame(portC, frame, h.now);
    expect(h.router.stats().drop_control_budget).toBe(450);
    // Traffic and tree frames are not budgeted.
    for (let i = 0; i < 300; i++)
      h.router.handleFrame(
        portC,
        encodeDhtTraffic({ source: k[5].publicKey, dest: h.key, kind: 1, payload: Buffer.from("x") }),
        h.now,
      );
    expect(h.delivered.length).toBe(300);
    expect(h.closed).toEqual([]);
  });

  it("at the DHT cap, a link's setup displaces the oldest entry of a link holding two or more than it; else it is dropped", () => {
    const { k, h, portA, portB, portC } = world({ dhtEntries: 3 });
    h.take();
    const sources = sortedIdentities(7);
    const setup = (src: Identity, seq: bigint) =>
      encodeSetup(makeSetup(src, seq, makeToken(k[3], src.publicKey, label(k[3], [2, 5], k[0].publicKey))));
    for (const [i, src] of sources.slice(0, 4).entries()) h.frame(portC, setup(src, BigInt(i + 1)));
    // C filled the table; its fourth is refused without a teardown (C is the largest itself).
    expect(h.take().map((o) => [o.frame[0], o.port])).toEqual([
      [FrameType.DhtSetup, portB],
      [FrameType.DhtSetup, portB],
      [FrameType.DhtSetup, portB],
    ]);
    expect(h.router.stats().drop_setup_table_full).toBe(1);
    // A (holding none) gets in: C's oldest path is torn down both ways, A's setup goes on.
    h.frame(portA, setup(sources[4], 5n));
    const out = h.take();
    expect(out.map((o) => [o.frame[0], o.port])).toEqual([
      [FrameType.DhtTeardown, portC],
      [FrameType.DhtTeardown, portB],
      [FrameType.DhtSetup, portB],
    ]);
    expect(decodeTeardown(out[0].frame.subarray(1)).key).toEqual(sources[0].publicKey);
    expect(h.router.stats().drop_setup_evicted_fair_share).toBe(1);
    // C 2, A 1: A's next displaces C again (C holds two more than... 2 >= 1 + 2? no): refused.
    h.frame(portA, setup(sources[5], 6n));
    expect(h.take()).toEqual([]);
    expect(h.router.stats().drop_setup_table_full).toBe(2);
    expect(h.router.dhtEntries().map((e) => e.key)).toEqual(
      [sources[1], sources[2], sources[4]].map((s) => s.publicKey),
    );
    expect(h.closed).toEqual([]);
  });

  it("pathfinder entries are bounded (the oldest goes first)", () => {
    const { k, h } = world({ paths: 2 });
    for (const id of [k[1], k[2], k[3], k[2]]) h.router.sendTraffic(id.publicKey, 1, Buffer.from("x"), h.now);
    expect(h.router.pathEntries().map((e) => e.key)).toEqual([k[2].publicKey, k[3].publicKey]);
  });

  it("tree infos with ever-new smaller roots that are never selected (key loops) keep `expired` bounded", () => {
    const ids = sortedIdentities(303);
    const [k, p1] = [ids[301], ids[302]];
    const h = new RouterHarness(k);
    const port1 = h.addPeer(p1);
    // Each root is smaller than ours but the chain repeats p1, so _fix never adopts it.
    for (const r of ids.slice(0, 300))
      h.frame(port1, chainFrame([r, p1, ids[300], p1], [1, 2, 3, 1], 1n, h.key));
    expect(h.router.dhtState().holdDown).toBe(false);
    expect(h.router.selfInfo().root).toEqual(h.key);
    expect(h.closed).toEqual([]);
    expect(h.router.stats().expired_roots).toBeLessThanOrEqual(64 + 2 * 1 + 1);
  });

  it("tree infos with ever-new roots during hold-down keep `expired` bounded", () => {
    const [k0, k1, , k3, p1, p2] = sortedIdentities(6);
    const h = new RouterHarness(k3);
    const port1 = h.addPeer(p1);
    const port2 = h.addPeer(p2);
    h.frame(port1, chainFrame([k0, p1], [4, 1], 6n, h.key));
    h.frame(port1, chainFrame([k1, p1], [4, 1], 6n, h.key)); // bad news: hold-down
    expect(h.router.dhtState().holdDown).toBe(true);
    for (const r of sortedIdentities(300)) h.frame(port2, chainFrame([r, p2], [1, 1], 1n, h.key));
    expect(h.router.stats().expired_roots).toBeLessThanOrEqual(64 + 2 * 2 + 1);
  });
});
