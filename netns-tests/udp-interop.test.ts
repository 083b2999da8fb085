// Issue 9: udp:// is planetd's own link type, but the overlay it joins is Yggdrasil's. Debian's
// yggdrasil 0.4.7 peers with a planetd over tcp://, that planetd peers with another only over
// udp://, and the yggdrasil node and the far planetd reach each other through both links. On a LAN,
// planetd's udp:// beacons (Planetd.MulticastUdp) link two planetd over udp://, and a yggdrasil
// hearing them keeps to TLS, without a complaint in its debug log.
import { readFileSync } from "node:fs";
import { afterEach, beforeEach, expect, it } from "vitest";
import { type DaemonNode, Lab, type Netns, delay, describeNetns, ping6 } from "./harness.js";

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

  const beaconing = (ifname: string) => ({
    multicast: [{ Regex: `^${ifname}$`, Beacon: true, Listen: true, Port: 0, Priority: 0 }],
    ifName: "none",
    extra: { Planetd: { MulticastUdp: true } },
  });

  async function onlyPeers(a: DaemonNode, b: DaemonNode): Promise<[string, string]> {
    return lab.waitFor(
      async () => {
        const [pa, pb] = await Promise.all([a.getPeers(), b.getPeers()]);
        if (pa.length !== 1 || pb.length !== 1 || pa[0]!.key !== b.key || pb[0]!.key !== a.key)
          return undefined;
        return [pa[0]!.remote, pb[0]!.remote] as [string, string];
      },
      30_000,
      `${a.name} and ${b.name} to list each other as their one peer`,
    );
  }

  it("multicast: two planetd announcing udp:// link over link-local udp://", async () => {
    const [nsA, nsB] = [await lab.netns(), await lab.netns()];
    const veth = await lab.link(nsA, nsB);
    const a = await lab.startPlanetd(nsA, "pdA", beaconing(veth.a.ifname));
    const b = await lab.startPlanetd(nsB, "pdB", beaconing(veth.b.ifname));
    const remotes = await onlyPeers(a, b);
    for (const r of remotes) expect(r).toMatch(/^udp:\/\/\[fe80:/);
    // Beacons keep coming every second: the one link stays the only one.
    await delay(4000);
    expect(await onlyPeers(a, b)).toEqual(remotes);
    console.log(`multicast udp:// link: A lists ${remotes[0]}, B lists ${remotes[1]}`);
  });

  it("multicast: yggdrasil 0.4.7 hearing planetd's udp:// beacon ignores it and links over TLS", async () => {
    const [nsY, nsP] = [await lab.netns(), await lab.netns()];
    const veth = await lab.link(nsY, nsP);
    const mc = beaconing(veth.a.ifname);
    const ygg = await lab.startYggdrasil(nsY, "ygg", { multicast: mc.multicast, ifName: "none" });
    const pd = await lab.startPlanetd(nsP, "pd", beaconing(veth.b.ifname));
    const remotes = await onlyPeers(ygg, pd);
    for (const r of remotes) expect(r).toMatch(/^tls:\/\/\[fe80:/);
    await delay(5000); // five more rounds of both beacons
    expect(await onlyPeers(ygg, pd)).toEqual(remotes);
    const log = readFileSync(ygg.logPath, "utf8").split("\n");
    const complaints = log.filter(
      (l) => /multicast|fail|error|panic/i.test(l) && !/Multicast (module )?start/i.test(l),
    );
    console.log(
      `yggdrasil log: ${log.length} lines, about multicast or failures: ${JSON.stringify(complaints)}`,
    );
    expect(complaints.filter((l) => /fail|error|panic/i.test(l))).toEqual([]);
  });
});
