// Many Nodes in one process over in-memory links and TUNs: the whole stack (IPv6 adapter, key
// lookup, sessions, router, links) without a socket or a kernel.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import {
  type Member,
  connect,
  deliver,
  inSubnet,
  ipv6Packet,
  startMember,
  stopAll,
} from "./support/nodes.js";

afterEach(stopAll);

describe("in-process nodes over memory links", () => {
  it("a line A–B–C carries node-to-node and workload-to-workload packets end to end", async () => {
    const [a, b, c] = [await startMember(), await startMember(), await startMember()];
    connect(a!, b!);
    connect(b!, c!);
    const A = a!;
    const C = c!;
    await deliver(A, C, ipv6Packet(A.node.identity.address, C.node.identity.address, randomBytes(64)));
    await deliver(C, A, ipv6Packet(C.node.identity.address, A.node.identity.address, randomBytes(1200)));
    // Workloads: addresses inside each node's /64 (300::/8), found by subnet key lookup.
    const wa = inSubnet(A.node.identity.subnet, 7);
    const wc = inSubnet(C.node.identity.subnet, 9);
    await deliver(A, C, ipv6Packet(wa, wc, randomBytes(300)));
    // B only forwarded: it holds no session with either end.
    expect(b!.node.sessions.list()).toHaveLength(0);
    expect(A.node.sessions.list().map((s) => s.key.toString("hex"))).toContain(
      C.node.publicKey.toString("hex"),
    );
  });

  it("a node refuses to send packets whose source is not its own address or /64", async () => {
    const [a, b] = [await startMember(), await startMember()];
    connect(a!, b!);
    const forged = ipv6Packet(b!.node.identity.address, b!.node.identity.address, randomBytes(16));
    a!.tun.inject(forged);
    // A genuine packet sent afterwards arrives, and the forged one never did.
    const seen: Buffer[] = [];
    b!.tun.onWrite((p) => seen.push(p));
    await deliver(a!, b!, ipv6Packet(a!.node.identity.address, b!.node.identity.address, randomBytes(32)));
    expect(seen.some((p) => p.equals(forged))).toBe(false);
    expect(a!.node.ipv6!.stats().tunBadSource).toBeGreaterThan(0);
  });

  it("20 nodes on a random connected graph all reach each other", async () => {
    const members: Member[] = [];
    for (let i = 0; i < 20; i++) members.push(await startMember());
    // A random tree plus a few extra edges, so there are cycles to route around.
    for (let i = 1; i < members.length; i++) connect(members[i]!, members[Math.floor(Math.random() * i)]!);
    for (let i = 0; i < 5; i++) {
      const x = Math.floor(Math.random() * 20);
      const y = Math.floor(Math.random() * 20);
      if (x !== y) connect(members[x]!, members[y]!);
    }
    const pairs: Array<[Member, Member]> = [];
    for (let i = 0; i < 30; i++) {
      const x = members[Math.floor(Math.random() * 20)]!;
      let y = members[Math.floor(Math.random() * 20)]!;
      if (x === y) y = members[(members.indexOf(x) + 1) % 20]!;
      pairs.push([x, y]);
    }
    for (const [x, y] of pairs) {
      await deliver(x, y, ipv6Packet(x.node.identity.address, y.node.identity.address, randomBytes(100)));
    }
  }, 60_000);
});
