// Issue 9: udp:// is planetd's own link type, but the overlay it joins is Yggdrasil's. Debian's
// yggdrasil 0.4.7 peers with a planetd over tcp://, that planetd peers with another only over
// udp://, and the yggdrasil node and the far planetd reach each other through both links.
import { afterEach, beforeEach, expect, it } from "vitest";
import { Lab, type Netns, describeNetns, ping6 } from "./harness.js";

let lab: Lab;

async function firstPing(from: Netns, to: string, what: string): Promise<void> {
  await lab.waitFor(async () => (await ping6(from, to, { count: 1 })).received === 1, 30_000, what);
}

describeNetns("udp:// inside a Yggdrasil overlay", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it("yggdrasil –tcp– planetd –udp– planetd: yggdrasil pings the far planetd and back", async () => {
    const [nsY, nsM, nsF] = [await lab.netns(), await lab.netns(), await lab.netns()];
    const left = await lab.link(nsY, nsM);
    const right = await lab.link(nsM, nsF);
    const tcp = `tcp://${left.a.ipv4}:12345`;
    const udp = `udp://${right.a.ipv4}:12346`;
    const ygg = await lab.startYggdrasil(nsY, "ygg", { listen: [tcp] });
    const middle = await lab.startPlanetd(nsM, "pdM", { peers: [tcp], listen: [udp], ifName: "none" });
    const far = await lab.startPlanetd(nsF, "pdF", { peers: [udp] });

    await firstPing(nsY, far.address, "a first ping from yggdrasil to the far planetd");
    await firstPing(nsF, ygg.address, "a first ping from the far planetd to yggdrasil");
    for (const [from, to, what] of [
      [nsY, far.address, "yggdrasil → far planetd"],
      [nsF, ygg.address, "far planetd → yggdrasil"],
    ] as const) {
      const r = await ping6(from, to, { count: 20, intervalS: 0.2 });
      expect(r.transmitted, `${what}: ${r.output}`).toBe(20);
      expect(r.lossPercent, `${what}: ${r.output}`).toBe(0);
    }

    // The path really is tcp:// then udp://: the middle node holds one link of each kind.
    const remotes = (await middle.getPeers()).map((p) => p.remote.split(":")[0]).sort();
    expect(remotes).toEqual(["tcp", "udp"]);
    const sessions = await ygg.getSessions();
    const session = sessions.find((s) => s.key === far.key);
    expect(session, JSON.stringify(sessions)).toBeDefined();
    expect(session!.bytes_recvd).toBeGreaterThan(0);
  });
});
