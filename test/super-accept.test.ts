// A node with TUN offloads says ACCEPT (src/tun/gso.ts: "send me super-packets, and TCP packets with
// partial checksums") to each node it sends to. The first packet to a node goes before a session
// exists, and sessions keep only the latest message while the handshake runs: an ACCEPT sent just
// before that packet was displaced by it, and the next one came SUPER_ANNOUNCE_MS (10 s) later, so
// the peer completed every checksum and cut every super-packet for the first 10 s of each session.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { MemoryTun } from "../src/tun/memory.js";
import { connect, deliver, ipv6Packet, startMember, stopAll } from "./support/nodes.js";

afterEach(stopAll);

/** An in-memory TUN that says it has offloads: the node then takes and announces super-packets. */
class OffloadTun extends MemoryTun {
  readonly offload = true;
  enableSuperPackets(): void {}
  completeChecksum(): boolean {
    return true;
  }
  segment(packet: Buffer): Buffer[] {
    return [packet];
  }
}

describe("ACCEPT between planetd nodes with TUN offloads", () => {
  it("reaches the peer with the first packets of a session, not one announcement period later", async () => {
    const a = await startMember({}, new OffloadTun("mem", 53049));
    const b = await startMember({}, new OffloadTun("mem", 53049));
    connect(a, b);
    const aAddr = a.node.identity.address;
    const bAddr = b.node.identity.address;
    // A opens: its first packet waits for the session handshake. B answers, then A sends again.
    await deliver(a, b, ipv6Packet(aAddr, bAddr, randomBytes(64)));
    await deliver(b, a, ipv6Packet(bAddr, aAddr, randomBytes(64)));
    await deliver(a, b, ipv6Packet(aAddr, bAddr, randomBytes(64)));
    // Well within SUPER_ANNOUNCE_MS of the first packet: each has heard the other's ACCEPT.
    expect(b.node.ipv6!.stats().superAcceptsHeard).toBeGreaterThanOrEqual(1);
    expect(a.node.ipv6!.stats().superAcceptsHeard).toBeGreaterThanOrEqual(1);
    // And none was sent that a session could not carry at once (one per node so far).
    expect(a.node.ipv6!.stats().superAcceptsSent).toBe(1);
    expect(b.node.ipv6!.stats().superAcceptsSent).toBe(1);
  });
});
