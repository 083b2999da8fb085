// udp:// on lossy paths and without IP fragmentation, on a real kernel. Loss is nftables
// (`numgen random mod 100 < 10 drop` on input at both ends of every veth: 10 % per direction per
// hop); the kernel here has no sch_netem.
//
// CI runs a short version: 60 s idle and 10 MiB per transfer. PLANETD_SOAK=1 runs issue 9's
// must-show figures instead (300 s idle, 50 MiB per transfer; about 12 minutes); PD_UDP_LOSS_IDLE_S
// and PD_UDP_LOSS_MIB set either figure on their own.
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { type DaemonNode, Lab, type Netns, delay, describeNetns, ping6 } from "./harness.js";
import { checkedTransfer } from "./support/transfer.js";

const SOAK = process.env.PLANETD_SOAK === "1";
const IDLE_S = Number(process.env.PD_UDP_LOSS_IDLE_S ?? (SOAK ? 300 : 60));
const MIB = Number(process.env.PD_UDP_LOSS_MIB ?? (SOAK ? 50 : 10));

// One TCP transfer through the overlay (server/client, sha256 checked): support/tcp-transfer.mjs.

let lab: Lab;

async function lossy(ns: Netns, ifname: string, percent: number): Promise<void> {
  await ns.exec("nft", ["add table inet t"]);
  await ns.exec("nft", ["add chain inet t input { type filter hook input priority 0 ; }"]);
  await ns.mustExec("nft", [
    `add rule inet t input iifname ${ifname} numgen random mod 100 < ${percent} drop`,
  ]);
}

function linkDowns(node: DaemonNode): number {
  return node
    .proc!.logTail(100_000)
    .split("\n")
    .filter((l) => l.includes("link down")).length;
}

/** The TUN MTU of every node, set on the interface (a restart would rebuild a changing tree). */
async function setMtu(nodes: DaemonNode[], mtu: number): Promise<void> {
  for (const n of nodes) await n.ns.ip("link", "set", "pdtun", "mtu", String(mtu));
}

/** Moves A's and C's peering from one URI each to another, through the admin socket. */
async function repeer(
  a: DaemonNode,
  c: DaemonNode,
  from: Record<"a" | "c", string>,
  to: Record<"a" | "c", string>,
) {
  for (const [n, k] of [
    [a, "a"],
    [c, "c"],
  ] as const) {
    await n.ctl("removePeer", { uri: from[k] });
    await n.ctl("addPeer", { uri: to[k] });
  }
  await lab.waitFor(
    async () => (await a.getPeers()).length === 1 && (await a.getPeers())[0]!.remote.startsWith("tcp"),
    30_000,
    "A to peer over tcp:// alone",
  );
  await reachable(a, c);
}

async function reachable(a: DaemonNode, c: DaemonNode): Promise<void> {
  await lab.waitFor(
    async () => (await ping6(a.ns, c.address, { count: 1 })).received === 1,
    60_000,
    `a ping from ${a.name} to ${c.name} through the overlay`,
  );
}

/** Moves `MIB` MiB A→C through the overlay, sha256-checked (support/transfer.ts); returns the ms. */
async function transfer(a: DaemonNode, c: DaemonNode, label: string): Promise<number> {
  const { ms } = await checkedTransfer(a, c, MIB, { label, timeoutMs: 300_000 });
  console.log(`${label}: ${MIB} MiB A→C in ${ms} ms (${((MIB * 8388.608) / ms).toFixed(1)} Mbit/s)`);
  return ms;
}

describeNetns("udp:// links on lossy paths, never IP-fragmented", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it(`A–B–C over udp:// at 10 % loss per hop and direction: ${IDLE_S} s idle without link-downs, ping, ${MIB} MiB TCP at the default IfMTU and 1420, and the same over tcp://`, async () => {
    const [nsA, nsB, nsC] = [await lab.netns(), await lab.netns(), await lab.netns()];
    const ab = await lab.link(nsA, nsB);
    const bc = await lab.link(nsB, nsC);
    for (const end of [ab.a, ab.b, bc.a, bc.b]) await lossy(end.ns, end.ifname, 10);
    const udpPeers = { a: `udp://${ab.b.ipv4}:12346`, c: `udp://${bc.a.ipv4}:12346` };
    const tcpPeers = { a: `tcp://${ab.b.ipv4}:12347`, c: `tcp://${bc.a.ipv4}:12347` };
    const b = await lab.startPlanetd(nsB, "pdB", { listen: ["udp://0.0.0.0:12346", "tcp://0.0.0.0:12347"] });
    const a = await lab.startPlanetd(nsA, "pdA", { peers: [udpPeers.a] });
    const c = await lab.startPlanetd(nsC, "pdC", { peers: [udpPeers.c] });
    const nodes = [a, b, c];
    await reachable(a, c);

    const downsBefore = nodes.map(linkDowns);
    await delay(IDLE_S * 1000);
    const downs = nodes.map((n, i) => linkDowns(n) - downsBefore[i]!);
    console.log(`link-downs during ${IDLE_S} s of idleness at 10 % loss (A, B, C): ${downs.join(", ")}`);
    expect(downs, lab.logTails(10)).toEqual([0, 0, 0]);
    // One link per neighbour: no stale link left over from a flap.
    expect((await b.getPeers()).length).toBe(2);
    // Each link renewed its keys every 2 minutes or less (each end jitters its timer down) under loss.
    const generations: number[] = [];
    for (const n of nodes) {
      for (const peer of await n.getPeers()) {
        generations.push((peer as { key_generation?: number }).key_generation ?? -1);
      }
    }
    console.log(`udp:// key generations after ${IDLE_S} s idle (A, B's two, C): ${generations.join(", ")}`);
    for (const g of generations) expect(g).toBeGreaterThanOrEqual(Math.floor(IDLE_S / 120));

    const p = await ping6(nsA, c.address, { count: 20, intervalS: 0.2 });
    console.log(`ping A→C after the idle period: ${p.received} replies to ${p.transmitted} requests`);
    expect(p.received, p.output).toBeGreaterThanOrEqual(5);

    const ms: Record<string, number> = {};
    // The default IfMTU (65535) is clamped to 53049 on the TUN.
    ms["udp, IfMTU default"] = await transfer(a, c, "udp:// IfMTU default");
    await setMtu(nodes, 1420);
    ms["udp, IfMTU 1420"] = await transfer(a, c, "udp:// IfMTU 1420");
    await repeer(a, c, udpPeers, tcpPeers);
    ms["tcp, IfMTU 1420"] = await transfer(a, c, "tcp:// IfMTU 1420");
    await setMtu(nodes, 53049);
    ms["tcp, IfMTU default"] = await transfer(a, c, "tcp:// IfMTU default");
    console.log(`${MIB} MiB A→C at 10 % loss per hop, ms: ${JSON.stringify(ms)}`);
  }, 1_800_000);

  it("no IP fragment is created on either end while iperf3 runs through a udp:// pair at IfMTU 65535 and 1420", async () => {
    const [nsA, nsB] = [await lab.netns(), await lab.netns()];
    const veth = await lab.link(nsA, nsB);
    const b = await lab.startPlanetd(nsB, "pdB", { listen: [`udp://${veth.b.ipv4}:12346`] });
    const a = await lab.startPlanetd(nsA, "pdA", { peers: [`udp://${veth.b.ipv4}:12346`] });
    const counters = async (ns: Netns) => {
      const out = await ns.mustExec("nstat", ["-az", "IpFragCreates", "Ip6FragCreates", "UdpOutDatagrams"]);
      const get = (name: string) => Number(new RegExp(`^${name}\\s+(\\d+)`, "m").exec(out)?.[1] ?? 0);
      return { v4: get("IpFragCreates"), v6: get("Ip6FragCreates"), udpOut: get("UdpOutDatagrams") };
    };
    // The counter works: an oversized IPv4 ping is fragmented and counted.
    const c0 = await counters(nsA);
    await nsA.exec("ping", ["-c", "1", "-s", "3000", "-W", "1", veth.b.ipv4]);
    expect((await counters(nsA)).v4).toBeGreaterThan(c0.v4);

    for (const mtu of [65535, 1420]) {
      await setMtu([a, b], Math.min(mtu, 53049));
      await reachable(a, b);
      const server = lab.spawn("iperf3-s", join(lab.dir, `iperf-${mtu}.log`), "ip", [
        ...["netns", "exec", nsB.name, "iperf3", "-s", "-1", "-B", b.address],
      ]);
      // The client must find the server listening: a refused connect fails the run (a fixed 500 ms
      // here was a guess at how long iperf3 takes to start on a loaded machine).
      await lab.waitFor(
        async () => (await nsB.mustExec("ss", ["-Hltn", "sport = :5201"])).trim() !== "",
        10_000,
        `iperf3 -s in ${nsB.name} to listen (IfMTU ${mtu})`,
        () => !server.running,
      );
      const before = [await counters(nsA), await counters(nsB)];
      const r = await nsA.exec("iperf3", ["-c", b.address, "-t", "5", "-J"], 60_000);
      const after = [await counters(nsA), await counters(nsB)];
      await server.stop();
      expect(r.code, r.stderr).toBe(0);
      const mbit = (JSON.parse(r.stdout).end.sum_received.bits_per_second as number) / 1e6;
      const datagrams = after[0]!.udpOut - before[0]!.udpOut;
      console.log(
        `IfMTU ${mtu}: iperf3 ${mbit.toFixed(0)} Mbit/s, A sent ${datagrams} UDP datagrams; ` +
          `IpFragCreates/Ip6FragCreates A ${after[0]!.v4 - before[0]!.v4}/${after[0]!.v6 - before[0]!.v6}, ` +
          `B ${after[1]!.v4 - before[1]!.v4}/${after[1]!.v6 - before[1]!.v6}`,
      );
      expect(datagrams).toBeGreaterThan(1000);
      for (const i of [0, 1]) {
        expect(after[i]!.v4 - before[i]!.v4).toBe(0);
        expect(after[i]!.v6 - before[i]!.v6).toBe(0);
      }
    }
  }, 300_000);
});
