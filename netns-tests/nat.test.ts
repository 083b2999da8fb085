// NAT traversal (issue 13) through real NATs: a public node P; routers R1 and R2 masquerade (nftables)
// for hosts A and B behind them; A and B know only udp://P. A pings B; A and B must punch a direct
// udp:// link within 10 s of the first ping. With `masquerade random` (endpoint-dependent mapping)
// on both routers no direct link can appear, and A↔B traffic keeps flowing through P.
import { readFileSync } from "node:fs";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Lab, type Netns, describeNetns, ping6 } from "./harness.js";

let lab: Lab;

interface Topology {
  a: Awaited<ReturnType<Lab["startPlanetd"]>>;
  b: Awaited<ReturnType<Lab["startPlanetd"]>>;
  p: Awaited<ReturnType<Lab["startPlanetd"]>>;
  nsA: Netns;
  nsB: Netns;
}

async function topology(random: boolean): Promise<Topology> {
  const [nsP, nsR1, nsR2, nsA, nsB] = [
    await lab.netns(),
    await lab.netns(),
    await lab.netns(),
    await lab.netns(),
    await lab.netns(),
  ];
  const r1p = await lab.link(nsR1, nsP); // 10.1.0.1 R1 — 10.1.0.2 P
  const r2p = await lab.link(nsR2, nsP); // 10.2.0.1 R2 — 10.2.0.2 P
  const ar1 = await lab.link(nsA, nsR1); // 10.3.0.1 A — 10.3.0.2 R1
  const br2 = await lab.link(nsB, nsR2); // 10.4.0.1 B — 10.4.0.2 R2
  await nsP.sysctl("net.ipv4.ip_forward", "1");
  // The "internet" is P's two links; the private nets behind R1 and R2 are unreachable from it.
  await nsR1.ip("route", "add", "10.2.0.0/24", "via", r1p.b.ipv4);
  await nsR2.ip("route", "add", "10.1.0.0/24", "via", r2p.b.ipv4);
  await nsA.ip("route", "add", "default", "via", ar1.b.ipv4);
  await nsB.ip("route", "add", "default", "via", br2.b.ipv4);
  for (const [r, out] of [
    [nsR1, r1p.a.ifname],
    [nsR2, r2p.a.ifname],
  ] as const) {
    await r.sysctl("net.ipv4.ip_forward", "1");
    await r.mustExec("nft", ["add", "table", "ip", "pdnat"]);
    await r.mustExec("nft", [
      "add",
      "chain",
      "ip",
      "pdnat",
      "post",
      "{ type nat hook postrouting priority 100 ; }",
    ]);
    const masquerade = random ? ["masquerade", "random"] : ["masquerade"];
    await r.mustExec("nft", ["add", "rule", "ip", "pdnat", "post", "oifname", out, ...masquerade]);
  }
  const p = await lab.startPlanetd(nsP, "pdP", { listen: ["udp://0.0.0.0:12345"] });
  const a = await lab.startPlanetd(nsA, "pdA", { peers: [`udp://${r1p.b.ipv4}:12345`] });
  const b = await lab.startPlanetd(nsB, "pdB", { peers: [`udp://${r2p.b.ipv4}:12345`] });
  return { a, b, p, nsA, nsB };
}

const directTo = async (node: Topology["a"], key: string) =>
  (await node.getPeers()).find((peer) => peer.key === key && peer.remote.startsWith("udp://"));

describeNetns("NAT traversal between planetd nodes behind NATs", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it("endpoint-independent NATs: A and B punch a direct udp:// link within 10 s of the first ping", async () => {
    const { a, b, nsA } = await topology(false);
    await lab.waitFor(async () => (await a.getPeers()).length === 1, 30_000, "A linked to P");
    await lab.waitFor(async () => (await b.getPeers()).length === 1, 30_000, "B linked to P");
    const firstPing = Date.now();
    const before = await ping6(nsA, b.address, { count: 3, intervalS: 0.2 });
    expect(before.received, before.output).toBeGreaterThan(0);
    await lab.waitFor(
      async () => (await directTo(a, b.key)) !== undefined && (await directTo(b, a.key)) !== undefined,
      10_000 - (Date.now() - firstPing),
      "A and B list each other as udp:// peers",
    );
    const took = Date.now() - firstPing;
    const ab = (await directTo(a, b.key))!;
    const ba = (await directTo(b, a.key))!;
    const after = await ping6(nsA, b.address, { count: 20, intervalS: 0.1 });
    console.log(
      `direct link after ${took} ms; A sees B at ${ab.remote}, B sees A at ${ba.remote}; ` +
        `ping before ${before.output.split("\n").at(-2)}; after ${after.output.split("\n").at(-2)}`,
    );
    expect(after.lossPercent, after.output).toBe(0);
    const punched = (await a.ctl("getPeers")) as { peers: Array<{ key: string; punched?: boolean }> };
    expect(punched.peers.find((peer) => peer.key === b.key)?.punched).toBe(true);
  });

  it("endpoint-dependent NATs (masquerade random): no direct link, traffic keeps flowing through P", async () => {
    const { a, b, nsA } = await topology(true);
    await lab.waitFor(async () => (await a.getPeers()).length === 1, 30_000, "A linked to P");
    await lab.waitFor(async () => (await b.getPeers()).length === 1, 30_000, "B linked to P");
    await lab.waitFor(
      async () => (await ping6(nsA, b.address, { count: 1 })).received === 1,
      20_000,
      "a first ping A→B through P",
    );
    const r = await ping6(nsA, b.address, { count: 60, intervalS: 0.2 });
    console.log(`through P with punching failing: ${r.output.split("\n").slice(-3).join(" | ")}`);
    expect(r.lossPercent, r.output).toBe(0);
    expect(await directTo(a, b.key)).toBeUndefined();
    expect(await directTo(b, a.key)).toBeUndefined();
    // The punch was tried and failed (not merely never started), on both sides.
    for (const node of [a, b]) {
      expect(readFileSync(node.logPath, "utf8")).toMatch(/NAT traversal: no direct link to/);
    }
  });
});
