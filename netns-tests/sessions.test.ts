// Issue 5: end-to-end sessions and the IPv6 adapter on real TUNs: planetd ↔ Debian yggdrasil,
// a line of three planetd nodes with workload namespaces behind the ends, Packet Too Big (spec 14.2).
import { afterEach, beforeEach, expect, it } from "vitest";
import { type DaemonNode, Lab, type Netns, describeNetns, ping6 } from "./harness.js";

let lab: Lab;

async function firstPing(from: Netns, fromName: string, to: string, toName: string, timeoutMs = 30_000) {
  await lab.waitFor(
    async () => (await ping6(from, to, { count: 1 })).received === 1,
    timeoutMs,
    `a first ping from ${fromName} to ${toName} (${to})`,
  );
}

async function cleanPings(from: Netns, to: string, what: string): Promise<void> {
  const r = await ping6(from, to, { count: 20, intervalS: 0.2 });
  expect(r.transmitted, `${what}: ${r.output}`).toBe(20);
  expect(r.lossPercent, `${what}: ${r.output}`).toBe(0);
}

/** `ping -s 2000 -M do` must report the 1280-byte MTU of the far side (PTB, spec 8.3). */
async function expectPacketTooBig(from: DaemonNode, to: DaemonNode): Promise<void> {
  const r = await from.ping(to.address, { count: 3, intervalS: 0.3, size: 2000, dontFragment: true });
  // First reply: "From <to> icmp_seq=1 Packet too big: mtu=1280"; once the kernel has learnt the
  // path MTU, later sends fail locally with "message too long, mtu=1280". Either proves the PTB.
  expect(r.output, `${from.name} → ${to.name}`).toMatch(/mtu[=:] ?1280/);
  expect(r.received, `${from.name} → ${to.name}: no oversized echo may get through`).toBe(0);
}

describeNetns("sessions: encrypted traffic over TUN (issue 5)", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it("planetd ↔ yggdrasil: clean pings both ways, session and NodeInfo visible, Packet Too Big both ways", async () => {
    const [nsY, nsP] = [await lab.netns(), await lab.netns()];
    const veth = await lab.link(nsY, nsP);
    const yTcp = `tcp://${veth.a.ipv4}:12345`;
    const ygg = await lab.startYggdrasil(nsY, "ygg", { listen: [yTcp], ifMtu: 1280 });
    const nodeInfo = { name: `pd-node-${lab.id}`, purpose: "netns test" };
    const pd = await lab.startPlanetd(nsP, "pd", { peers: [yTcp], nodeInfo });

    await firstPing(nsP, "planetd", ygg.address, "yggdrasil");
    await firstPing(nsY, "yggdrasil", pd.address, "planetd");
    await cleanPings(nsP, ygg.address, "planetd → yggdrasil");
    await cleanPings(nsY, pd.address, "yggdrasil → planetd");

    const sessions = await ygg.getSessions();
    const session = sessions.find((s) => s.key === pd.key);
    expect(session, JSON.stringify(sessions)).toBeDefined();
    expect(session!.address).toBe(pd.address);
    expect(session!.bytes_recvd).toBeGreaterThan(0);
    // Yggdrasil never announces planetd's ChaCha20-Poly1305: both directions stay NaCl box.
    const ours = (await pd.getSessions()).find((s) => s.key === ygg.key);
    expect([ours?.cipher_out, ours?.cipher_in]).toEqual(["box", "box"]);

    const info = await ygg.ctl("getNodeInfo", { key: pd.key });
    expect(Object.keys(info)).toEqual([pd.key]);
    expect(info[pd.key]).toMatchObject(nodeInfo);

    // yggdrasil's TUN has MTU 1280: it answers planetd's oversized packet with a PTB.
    await expectPacketTooBig(pd, ygg);

    // And the other way round: planetd at 1280 must generate the PTB itself.
    ygg.config.IfMTU = 65535;
    pd.config.IfMTU = 1280;
    await pd.stop();
    await ygg.restart();
    await pd.start();
    await firstPing(nsY, "yggdrasil", pd.address, "planetd (restarted with IfMTU 1280)");
    await expectPacketTooBig(ygg, pd);
  });

  it("three planetd in a line: A reaches C through B, and workloads behind A and C reach each other", async () => {
    const [nsA, nsB, nsC] = [await lab.netns(), await lab.netns(), await lab.netns()];
    const left = await lab.link(nsA, nsB);
    const right = await lab.link(nsB, nsC);
    const bListen = [`tcp://${left.b.ipv4}:12345`, `tcp://${right.a.ipv4}:12345`];
    const b = await lab.startPlanetd(nsB, "pdB", { listen: bListen, ifName: "none" });
    const a = await lab.startPlanetd(nsA, "pdA", { peers: [bListen[0]!] });
    const c = await lab.startPlanetd(nsC, "pdC", { peers: [bListen[1]!] });

    await firstPing(nsA, "pdA", c.address, "pdC");
    await cleanPings(nsA, c.address, "pdA → pdC");
    await cleanPings(nsC, a.address, "pdC → pdA");
    const toC = (await a.getSessions()).find((s) => s.key === c.key);
    expect(toC).toBeDefined();
    // Two planetd ends: ChaCha20-Poly1305 both ways once each heard the other's announcement.
    expect([toC!.cipher_out, toC!.cipher_in]).toEqual(["chacha20-poly1305", "chacha20-poly1305"]);

    const wa = await lab.workload(a);
    const wc = await lab.workload(c);
    await firstPing(wa.ns, "workload behind A", wc.address, "workload behind C");
    await cleanPings(wa.ns, wc.address, "workload A → workload C");
    await cleanPings(wc.ns, wa.address, "workload C → workload A");
    // The node itself is reachable from the other node's workload too.
    await cleanPings(wc.ns, a.address, "workload C → pdA");
  });
});
