// The NAT traversal labs (netns-tests/nat*.test.ts): a public "internet" namespace P with one link to
// each router R1 and R2; R1 and R2 masquerade (nftables) for the hosts behind them. Addresses:
// 10.1.0.1 R1 — 10.1.0.2 P, 10.2.0.1 R2 — 10.2.0.2 P, 10.3.0.1 A — 10.3.0.2 R1, 10.4.0.1 B — 10.4.0.2 R2.
// A "public" host sits on a third link of P (10.3.0.1 — 10.3.0.2 P) instead of behind a router.
import { join } from "node:path";
import { expect } from "vitest";
import type { DaemonNode, Lab, Netns } from "../harness.js";
import { checkedTransfer } from "./transfer.js";

export interface Router {
  ns: Netns;
  /** Its link towards P: what it masquerades on. */
  uplink: string;
  /** P's address on that link. */
  p: string;
}

export interface Internet {
  nsP: Netns;
  r1: Router;
  r2: Router;
}

/** P with links to R1 and R2; R1 and R2 reach each other through P. */
export async function internet(lab: Lab): Promise<Internet> {
  const [nsP, nsR1, nsR2] = [await lab.netns(), await lab.netns(), await lab.netns()];
  const r1p = await lab.link(nsR1, nsP);
  const r2p = await lab.link(nsR2, nsP);
  await nsP.sysctl("net.ipv4.ip_forward", "1");
  // The "internet" is P's links; the private nets behind R1 and R2 are unreachable from it.
  await nsR1.ip("route", "add", "10.2.0.0/24", "via", r1p.b.ipv4);
  await nsR2.ip("route", "add", "10.1.0.0/24", "via", r2p.b.ipv4);
  return {
    nsP,
    r1: { ns: nsR1, uplink: r1p.a.ifname, p: r1p.b.ipv4 },
    r2: { ns: nsR2, uplink: r2p.a.ifname, p: r2p.b.ipv4 },
  };
}

/** A host behind `router`, which masquerades (endpoint-dependent with `random`) towards P. */
export async function behindNat(lab: Lab, router: Router, random: boolean): Promise<Netns> {
  const ns = await lab.netns();
  const veth = await lab.link(ns, router.ns);
  await ns.ip("route", "add", "default", "via", veth.b.ipv4);
  await router.ns.sysctl("net.ipv4.ip_forward", "1");
  await router.ns.mustExec("nft", ["add", "table", "ip", "pdnat"]);
  await router.ns.mustExec("nft", [
    "add",
    "chain",
    "ip",
    "pdnat",
    "post",
    "{ type nat hook postrouting priority 100 ; }",
  ]);
  const masquerade = random ? ["masquerade", "random"] : ["masquerade"];
  await router.ns.mustExec("nft", [
    "add",
    "rule",
    "ip",
    "pdnat",
    "post",
    "oifname",
    router.uplink,
    ...masquerade,
  ]);
  return ns;
}

/** A host with a public address: its own link to P, which the routers reach through P. */
export async function publicHost(lab: Lab, inet: Internet): Promise<{ ns: Netns; ip: string; p: string }> {
  const ns = await lab.netns();
  const veth = await lab.link(ns, inet.nsP);
  await ns.ip("route", "add", "default", "via", veth.b.ipv4);
  const net = `${veth.a.ipv4.split(".").slice(0, 3).join(".")}.0/24`;
  for (const r of [inet.r1, inet.r2]) await r.ns.ip("route", "add", net, "via", r.p);
  return { ns, ip: veth.a.ipv4, p: veth.b.ipv4 };
}

export const directTo = async (node: DaemonNode, key: string) =>
  (await node.getPeers()).find((peer) => peer.key === key && peer.remote.startsWith("udp://"));

export interface NatStatus {
  enabled: boolean;
  mapping?: string;
  punch_attempts?: number;
  punch_successes?: number;
  punch_failures?: number;
  punch_skipped?: number;
  punched_peers?: Array<{ key: string; remote: string }>;
  forwarded_frames: number;
  forwarded_bytes: number;
}

export const natStatus = async (node: DaemonNode) => (await node.ctl("getNat")) as unknown as NatStatus;

export interface PingSeries {
  transmitted: number;
  /** Sequence numbers that got no reply. */
  lost: number[];
  /** One entry per reply: its sequence number, arrival (epoch ms) and round trip (ms). */
  replies: Array<{ seq: number; at: number; rtt: number }>;
  output: string;
}

/** `ping -D` every `intervalS` for `count` echoes, each reply kept with its timestamp. */
export async function pingSeries(
  ns: Netns,
  dest: string,
  count: number,
  intervalS: number,
): Promise<PingSeries> {
  const deadline = Math.ceil(count * intervalS + 5);
  const args = [
    "-6",
    "-n",
    "-D",
    "-c",
    String(count),
    "-i",
    String(intervalS),
    "-W",
    "1",
    "-w",
    String(deadline),
  ];
  const r = await ns.exec("ping", [...args, dest], (deadline + 5) * 1000);
  const output = r.stdout + r.stderr;
  const replies: PingSeries["replies"] = [];
  for (const m of output.matchAll(/^\[(\d+\.\d+)\] .*icmp_seq=(\d+) .*time=([\d.]+) ms$/gm)) {
    replies.push({ at: Number(m[1]) * 1000, seq: Number(m[2]), rtt: Number(m[3]) });
  }
  const tx = Number(/(\d+) packets transmitted/.exec(output)?.[1] ?? 0);
  const got = new Set(replies.map((x) => x.seq));
  const lost: number[] = [];
  for (let seq = 1; seq <= tx; seq++) if (!got.has(seq)) lost.push(seq);
  return { transmitted: tx, lost, replies, output };
}

/** A counter of `nstat -az` in `ns` (e.g. TcpRetransSegs). */
export async function nstat(ns: Netns, name: string): Promise<number> {
  const out = await ns.mustExec("nstat", ["-az", name]);
  const line = out.split("\n").find((l) => l.startsWith(`${name} `));
  return Number(line?.trim().split(/\s+/)[1] ?? Number.NaN);
}

export function median(values: number[]): number {
  expect(values.length).toBeGreaterThan(0);
  const s = [...values].sort((x, y) => x - y);
  const mid = s.length >> 1;
  return s.length % 2 === 1 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Moves `mib` MiB from `from` to `to` through the overlay, sha256-checked (support/transfer.ts). */
export function transfer(from: DaemonNode, to: DaemonNode, mib: number, paceKiB?: number) {
  return checkedTransfer(from, to, mib, { paceKiB });
}

/**
 * iperf3 from `from` to `to` over their overlay addresses for `seconds`; `sample` runs once a
 * second while the client runs (and once more after it). Returns the bytes the server received.
 */
export async function iperf3During(
  lab: Lab,
  from: DaemonNode,
  to: DaemonNode,
  seconds: number,
  sample: () => Promise<void>,
): Promise<number> {
  const server = lab.spawn("iperf3-s", join(lab.dir, "iperf3-server.log"), "ip", [
    ...["netns", "exec", to.ns.name, "iperf3", "-s", "-1", "-B", to.address],
  ]);
  try {
    await lab.waitFor(
      async () => (await to.ns.mustExec("ss", ["-Hltn", "sport = :5201"])).trim() !== "",
      10_000,
      "iperf3 to listen",
    );
    let done = false;
    const client = from.ns.exec(
      "iperf3",
      ["-c", to.address, "-t", String(seconds), "-J"],
      (seconds + 30) * 1000,
    );
    void client.finally(() => {
      done = true;
    });
    while (!done) {
      await sample();
      await Promise.race([client, new Promise((r) => setTimeout(r, 1000))]);
    }
    await sample();
    const r = await client;
    expect(r.code, r.stderr).toBe(0);
    return JSON.parse(r.stdout).end.sum_received.bytes as number;
  } finally {
    await server.stop();
  }
}
