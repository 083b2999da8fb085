// Two whole Nodes (router, sessions, IPv6 adapter, MemoryTun) peered over a real udp:// link on
// loopback: an IPv6 packet injected into one TUN comes out of the other byte for byte.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { deliver, ipv6Packet, startMember, stopAll } from "./support/nodes.js";

afterEach(stopAll);

describe("Nodes over a udp:// link", () => {
  it("carry an IPv6 packet from one MemoryTun to the other", async () => {
    const a = await startMember({ Listen: ["udp://127.0.0.1:0"] });
    const b = await startMember({ Peers: [a.node.links.listenAddresses()[0]!] });
    const packet = ipv6Packet(b.node.identity.address, a.node.identity.address, randomBytes(1200));
    // Re-injected until the tree and the session are up; the wait is bounded.
    await deliver(b, a, packet);
    const peers = a.node.router.peerInfos();
    expect(peers).toHaveLength(1);
    const link = a.node.linkForPort(peers[0]!.port)!;
    expect(link.remote).toMatch(/^udp:\/\/127\.0\.0\.1:\d+$/);
    expect(link.remoteKey.equals(b.node.publicKey)).toBe(true);
    expect(a.node.portCounters(peers[0]!.port)!.framesIn).toBeGreaterThan(0);
  });
});
