// Planetd.Firewall on real namespaces (issue 14). N (planetd) drops inbound by default and lets only
// A's key reach its TCP port 22; B's connection and pings are dropped and counted; N's own outbound
// connections and pings get their replies. A workload namespace behind N has its own rules: B may
// reach its port 8080, A is rejected (ICMPv6 administratively prohibited). A reload that moves port 22
// from A to B takes effect for new flows, cuts A's open connection and keeps B's open one to the
// workload, which the new rules still allow.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import { formatIPv6 } from "../src/crypto/address.js";
import { Identity } from "../src/crypto/identity.js";
import {
  type DaemonNode,
  type JsonObject,
  Lab,
  type Netns,
  delay,
  describeNetns,
  ping6,
  repoRoot,
  substitutePlanetd,
} from "./harness.js";

let lab: Lab;
const ECHO = join(repoRoot, "netns-tests", "support", "tcp-echo.mjs");

interface Probe {
  result: "connected" | "timeout" | "error";
  code?: string;
  sent: number;
  received: number;
  echoTimes: number[];
}

/** A TCP echo server on [::]:port in `ns`, up when it says so in its log. */
async function serve(ns: Netns, name: string, port: number): Promise<void> {
  const log = join(lab.dir, `${name}.log`);
  const proc = lab.spawn(name, log, "ip", [
    "netns",
    "exec",
    ns.name,
    process.execPath,
    ECHO,
    "serve",
    String(port),
  ]);
  await lab.waitFor(() => /listening/.test(proc.logTail(5)), 10_000, `${name} listening`);
}

/** Connect from `ns` to [host]:port; `holdMs` > 0 keeps the connection and counts echoes. */
async function probe(ns: Netns, host: string, port: number, holdMs = 0): Promise<Probe> {
  const r = await ns.exec(
    process.execPath,
    [ECHO, "probe", host, String(port), String(holdMs)],
    holdMs + 15_000,
  );
  const line = r.stdout.trim().split("\n").pop() ?? "";
  try {
    return JSON.parse(line) as Probe;
  } catch {
    throw new Error(`probe ${host} ${port}: no result (${r.code}): ${r.stdout}${r.stderr}`);
  }
}

function firewallConfig(sshFrom: string, webFrom: string, workload: string): JsonObject {
  return {
    InboundDefault: "drop",
    Inbound: [
      { Name: "ssh", Action: "accept", PublicKeys: [sshFrom], Local: ["self"], Protocol: "tcp", Ports: "22" },
      {
        Name: "web",
        Action: "accept",
        PublicKeys: [webFrom],
        Local: [`${workload}/128`],
        Protocol: "tcp",
        Ports: "8080",
      },
      { Name: "workload-tcp", Action: "reject", Local: [`${workload}/128`], Protocol: "tcp" },
    ],
  };
}

interface RuleHits {
  name: string;
  hits: number;
}

async function firewallOf(
  node: DaemonNode,
): Promise<{ rules: RuleHits[]; defaultHits: number; raw: JsonObject }> {
  const raw = await node.ctl("getFirewall");
  const inbound = raw.inbound as unknown as { rules: RuleHits[]; default_hits: number };
  return { rules: inbound.rules, defaultHits: inbound.default_hits, raw };
}

describeNetns("firewall", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it.skipIf(substitutePlanetd)(
    "port 22 from one key only, the node's own flows, a workload's own rules, and a reload",
    async () => {
      const [nsN, nsA, nsB] = [await lab.netns(), await lab.netns(), await lab.netns()];
      const na = await lab.link(nsN, nsA);
      const nb = await lab.link(nsN, nsB);
      const idN = Identity.generate();
      const idA = Identity.generate();
      const idB = Identity.generate();
      const keyA = idA.publicKey.toString("hex");
      const keyB = idB.publicKey.toString("hex");
      // The workload's address is the second host of N's /64 (lab.workload's convention).
      const workloadAddress = (() => {
        const a = Buffer.alloc(16);
        idN.subnet.copy(a, 0, 0, 8);
        a[15] = 2;
        return a;
      })();
      const w = formatIPv6(workloadAddress);
      const n = await lab.startPlanetd(nsN, "n", {
        identity: idN,
        listen: [`tcp://[${na.a.ipv6}]:7001`, `tcp://[${nb.a.ipv6}]:7002`],
        extra: { Planetd: { Firewall: firewallConfig(keyA, keyB, w) } },
      });
      const a = await lab.startPlanetd(nsA, "a", { identity: idA, peers: [`tcp://[${na.a.ipv6}]:7001`] });
      const b = await lab.startPlanetd(nsB, "b", { identity: idB, peers: [`tcp://[${nb.a.ipv6}]:7002`] });
      const workload = await lab.workload(n);
      expect(workload.address).toBe(w);
      await serve(nsN, "n-ssh", 22);
      await serve(nsA, "a-web", 8000);
      await serve(workload.ns, "w-web", 8080);

      // N's own pings get their replies through inbound default drop (tracked echo).
      for (const peer of [a, b])
        await lab.waitFor(
          async () => (await n.ping(peer.address)).received === 1,
          30_000,
          `n reaches ${peer.name}`,
        );
      // N's own outbound TCP connection gets its replies too.
      expect(await probe(nsN, a.address, 8000)).toMatchObject({ result: "connected" });

      // Port 22: A connects; B's connection and pings are dropped and counted.
      expect(await probe(nsA, n.address, 22)).toMatchObject({ result: "connected" });
      const before = await firewallOf(n);
      expect(await probe(nsB, n.address, 22)).toMatchObject({ result: "timeout" });
      expect((await b.ping(n.address, { count: 3 })).received).toBe(0);
      expect((await a.ping(n.address, { count: 2 })).received).toBe(0);
      const after = await firewallOf(n);
      expect(after.rules.find((r) => r.name === "ssh")!.hits).toBeGreaterThanOrEqual(1);
      // B's SYN (and its retransmissions) and 3 + 2 echo requests fell to the default.
      expect(after.defaultHits - before.defaultHits).toBeGreaterThanOrEqual(6);
      expect(after.raw.enabled).toBe(true);

      // The workload: B reaches port 8080, A is rejected at once, pings to it are dropped; the
      // workload's own ping out gets its replies.
      expect(await probe(nsB, w, 8080)).toMatchObject({ result: "connected" });
      expect(await probe(nsA, w, 8080)).toMatchObject({ result: "error", code: "EACCES" });
      expect((await a.ping(w, { count: 2 })).received).toBe(0);
      expect((await ping6(workload.ns, a.address, { count: 2 })).received).toBe(2);
      const wRules = (await firewallOf(n)).rules;
      expect(wRules.find((r) => r.name === "web")!.hits).toBeGreaterThanOrEqual(1);
      expect(wRules.find((r) => r.name === "workload-tcp")!.hits).toBeGreaterThanOrEqual(1);
      expect((await n.ctl("getFirewall")).rejects_sent).toBeGreaterThanOrEqual(1);

      // Reload: port 22 now belongs to B. Two connections stay open across it: A's to port 22
      // (no longer allowed: cut) and B's to the workload (still allowed: keeps its echoes). Each
      // holds 10 s: B's five echoes must come between a second after the reload answered and the
      // hold's end, and on a loaded machine the reload's planetctl alone can take seconds (with 6 s
      // holds, a reload 2 s slower than the probes' own start left that window a second long).
      const HOLD_MS = 10_000;
      const holdA = probe(nsA, n.address, 22, HOLD_MS);
      const holdB = probe(nsB, w, 8080, HOLD_MS);
      await delay(2000);
      n.config.Planetd = { Firewall: firewallConfig(keyB, keyB, w) };
      writeFileSync(n.configPath, `${JSON.stringify(n.config, null, 2)}\n`);
      expect(await n.ctl("reload")).toEqual({ reloaded: "Firewall" });
      const reloadedAt = Date.now();
      const [heldA, heldB] = [await holdA, await holdB];
      console.log(
        `across the reload: a→n:22 ${heldA.received}/${heldA.sent} echoes, b→w:8080 ${heldB.received}/${heldB.sent}`,
      );
      expect(heldA.echoTimes.filter((t) => t > reloadedAt + 500)).toEqual([]);
      expect(heldB.echoTimes.filter((t) => t > reloadedAt + 1000).length).toBeGreaterThanOrEqual(5);
      expect((await n.ctl("getFirewall")).flows_revoked).toBeGreaterThanOrEqual(1);
      expect(await probe(nsB, n.address, 22)).toMatchObject({ result: "connected" });
      expect(await probe(nsA, n.address, 22)).toMatchObject({ result: "timeout" });

      // A rule error refuses the reload in one line naming the rule and the field.
      n.config.Planetd = {
        Firewall: { Inbound: [{ Action: "accept", Protocol: "tcp", Ports: "80-" }] },
      };
      writeFileSync(n.configPath, `${JSON.stringify(n.config, null, 2)}\n`);
      await expect(n.ctl("reload")).rejects.toThrow(
        'config: Planetd.Firewall.Inbound[0].Ports "80-" is not a port range (expected 80 or 80-90)',
      );
      expect(await probe(nsB, n.address, 22)).toMatchObject({ result: "connected" });
    },
    180_000,
  );
});
