// planetd's own UDP links on a real kernel: two planetd nodes in namespaces peered only over
// udp://, with TUNs, carry pings both ways and list each other with a udp:// remote.
import { afterEach, beforeEach, expect, it } from "vitest";
import { Lab, describeNetns, ping6 } from "./harness.js";

let lab: Lab;

describeNetns("UDP links between planetd nodes", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it("two planetd peered over udp:// ping each other cleanly", async () => {
    const [nsA, nsB] = [await lab.netns(), await lab.netns()];
    const veth = await lab.link(nsA, nsB);
    const uri = `udp://${veth.a.ipv4}:12346`;
    const a = await lab.startPlanetd(nsA, "pdA", { listen: [uri] });
    const b = await lab.startPlanetd(nsB, "pdB", { peers: [uri] });

    await lab.waitFor(
      async () => (await ping6(nsB, a.address, { count: 1 })).received === 1,
      30_000,
      "a first ping from B to A over the UDP link",
    );
    for (const [from, to] of [
      [nsB, a.address],
      [nsA, b.address],
    ] as const) {
      const r = await ping6(from, to, { count: 20, intervalS: 0.2 });
      expect(r.lossPercent, r.output).toBe(0);
    }
    const peersOfB = await b.getPeers();
    expect(peersOfB.map((p) => [p.key, p.remote])).toEqual([[a.key, uri]]);
    const peersOfA = await a.getPeers();
    expect(peersOfA).toHaveLength(1);
    expect(peersOfA[0]!.remote).toMatch(/^udp:\/\//);
  });
});
