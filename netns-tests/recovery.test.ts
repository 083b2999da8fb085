// Issue 15: recovery in seconds. Two regions of four nodes (each a full mesh over tcp://, planetd and
// Debian's yggdrasil 0.4.7 mixed) joined by two inter-region links, one planetd–planetd and one
// planetd–yggdrasil; the cut is an nftables drop on both ends of both inter-region veths. During a
// cut every pair inside a region keeps answering; after the heal every pair answers within 10 s.
//
// PD_NETNS_LONG=1: three cycles of a 60 s cut (the issue's figure); otherwise one cycle of 45 s (the
// redial reaches its 8 s cap after 32 s of downtime). With the old redial (1 s doubling to 60 s after
// each 5 s dial timeout) PD_RECOVERY_CUT_S=90 healed in 12-14 s; 45 and 60 s cuts happened to heal
// in 2-3 s, because an attempt was in flight at the heal and its SYN retransmission got through.
// PD_RECOVERY_CYCLES and PD_RECOVERY_CUT_S override either (for measuring); PD_RECOVERY_YGG_DIALS=1
// lets the yggdrasil end dial the planetd–yggdrasil link between the regions; PD_RECOVERY_DOWN_S sets
// how long the transit node stays dead (default 5 s).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, expect, it } from "vitest";
import {
  type DaemonNode,
  Lab,
  type Netns,
  type VethEnd,
  delay,
  describeNetns,
  identitiesByKey,
  run,
} from "./harness.js";
import { PairProbe, allAnsweredAfter, probeAllPairs, timeToAllAnswered } from "./support/probes.js";

const LONG = process.env.PD_NETNS_LONG === "1";
const YGG_DIALS = process.env.PD_RECOVERY_YGG_DIALS === "1";
const CYCLES = Number(process.env.PD_RECOVERY_CYCLES ?? (LONG ? 3 : 1));
/** PD_RECOVERY_CUT_S overrides the cut's length (e.g. 90, the issue's first measurement). */
const CUT_MS = Number(process.env.PD_RECOVERY_CUT_S ?? (LONG ? 60 : 45)) * 1000;
/** The issue's bound: every pair answers again within this long after the heal. */
const HEAL_BOUND_MS = 10_000;
/** How long we keep measuring a heal beyond the bound, so a slow heal still prints its figure. */
const HEAL_MEASURE_MS = 90_000;
/**
 * Inside a region a pair "keeps answering" when it never goes longer than this without a reply
 * (probes every 0.5 s): the cut takes the inter-region links down after their 6 s read timeout,
 * and the region cut off from the root re-forms its tree while sessions keep their source routes.
 */
const INTRA_GAP_BOUND_MS = 3000;
const PORT = 12345;
const CHURN_MS = 60_000;
const CHURN_EVERY_MS = 5000;
/** How long the transit node stays dead before its restart (a supervisor's delay plus boot). */
const RESTART_DOWN_MS = Number(process.env.PD_RECOVERY_DOWN_S ?? 5) * 1000;

let lab: Lab;

/** Drop everything in and out of `end`'s interface (table `pdcut` in its namespace). */
async function cut(end: VethEnd): Promise<void> {
  const file = join(lab.dir, `cut-${end.ifname}.nft`);
  writeFileSync(
    file,
    [
      "table inet pdcut {",
      `  chain cutin { type filter hook input priority -10; policy accept; iifname "${end.ifname}" drop; }`,
      `  chain cutout { type filter hook output priority -10; policy accept; oifname "${end.ifname}" drop; }`,
      "}",
      "",
    ].join("\n"),
  );
  await end.ns.mustExec("nft", ["-f", file]);
}

async function heal(end: VethEnd): Promise<void> {
  await end.ns.mustExec("nft", ["delete", "table", "inet", "pdcut"]);
}

interface Region {
  nodes: DaemonNode[];
  namespaces: Netns[];
}

describeNetns("recovery: two regions, cut and heal (issue 15)", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it(
    `regions keep their pairs during a ${CUT_MS / 1000} s cut and every pair answers within 10 s of the heal (${CYCLES} cycle${CYCLES > 1 ? "s" : ""})`,
    async () => {
      const nft = await run("nft", ["--version"]);
      expect(nft.code, `nft (apt-get install nftables) is needed for the cut: ${nft.stderr}`).toBe(0);

      // Key order pins the tree: the root (smallest key) is a planetd node in region A that is on
      // no inter-region link, and region B's own root during a cut is a yggdrasil node.
      const ids = identitiesByKey(8);
      const roles = {
        A: ["planetd", "planetd", "yggdrasil", "planetd"],
        B: ["planetd", "planetd", "yggdrasil", "yggdrasil"],
      } as const;
      const keyFor = { A: [ids[2], ids[0], ids[4], ids[5]], B: [ids[3], ids[6], ids[1], ids[7]] };

      const regions: Record<"A" | "B", Region> = {
        A: { nodes: [], namespaces: [] },
        B: { nodes: [], namespaces: [] },
      };
      // Namespaces and veths first: a full mesh per region, then the two inter-region links.
      const meshPeers = new Map<string, string[]>();
      for (const r of ["A", "B"] as const) {
        for (let i = 0; i < 4; i++) regions[r].namespaces.push(await lab.netns());
        for (let i = 0; i < 4; i++) {
          for (let j = i + 1; j < 4; j++) {
            const v = await lab.link(regions[r].namespaces[i]!, regions[r].namespaces[j]!);
            // The earlier node dials the later one.
            const list = meshPeers.get(`${r}${i}`) ?? [];
            list.push(`tcp://${v.b.ipv4}:${PORT}`);
            meshPeers.set(`${r}${i}`, list);
          }
        }
      }
      // X1: A0 (planetd) dials B0 (planetd). X2: B1 (planetd) dials A2 (yggdrasil): yggdrasil 0.4.7
      // redials only once a minute, so the planetd end is the one that dials.
      const x1 = await lab.link(regions.A.namespaces[0]!, regions.B.namespaces[0]!);
      const x2 = await lab.link(regions.B.namespaces[1]!, regions.A.namespaces[2]!);
      meshPeers.get("A0")!.push(`tcp://${x1.b.ipv4}:${PORT}`);
      // PD_RECOVERY_YGG_DIALS=1: A2 dials instead, so X2 returns only with yggdrasil's once-a-minute
      // redial and the heal must come through X1 alone (routing, DHT and sessions, not links).
      if (YGG_DIALS) {
        const list = meshPeers.get("A2") ?? [];
        list.push(`tcp://${x2.a.ipv4}:${PORT}`);
        meshPeers.set("A2", list);
      } else meshPeers.get("B1")!.push(`tcp://${x2.b.ipv4}:${PORT}`);
      const cutEnds = [x1.a, x1.b, x2.a, x2.b];

      for (const r of ["A", "B"] as const) {
        for (let i = 0; i < 4; i++) {
          const opts = {
            identity: keyFor[r][i]!,
            listen: [`tcp://0.0.0.0:${PORT}`],
            peers: meshPeers.get(`${r}${i}`) ?? [],
          };
          const ns = regions[r].namespaces[i]!;
          const name = `${r}${i}${roles[r][i] === "yggdrasil" ? "y" : "p"}`;
          regions[r].nodes.push(
            roles[r][i] === "yggdrasil"
              ? await lab.startYggdrasil(ns, name, opts)
              : await lab.startPlanetd(ns, name, opts),
          );
        }
      }
      const all = [...regions.A.nodes, ...regions.B.nodes];
      const probes = probeAllPairs(lab, all);
      const inRegion = (p: PairProbe) => regions.A.nodes.includes(p.from) === regions.A.nodes.includes(p.to);
      const intra = probes.filter(inRegion);
      const inter = probes.filter((p) => !inRegion(p));

      await allAnsweredAfter(lab, probes, Date.now(), 60_000, "every pair to answer before the first cut");
      // Until sessions hold source routes, traffic inside a region may follow DHT paths through the
      // other one; a cut that early measures the 6 s link timeout, not the region's resilience.
      await delay(10_000);

      const results: Array<{
        cycle: number;
        healMs: number;
        worstGap: { pair: string; gapMs: number };
        leaked: string[];
      }> = [];
      for (let cycle = 1; cycle <= CYCLES; cycle++) {
        // Steady state first: every pair answered within the last two seconds.
        await allAnsweredAfter(lab, probes, Date.now(), 30_000, `every pair to answer before cut ${cycle}`);
        const cutAt = Date.now();
        for (const end of cutEnds) await cut(end);
        await delay(CUT_MS);
        const healAt = Date.now();
        for (const end of cutEnds) await heal(end);

        const gaps = intra.map((p) => ({ pair: p.name, gapMs: p.longestGap(cutAt, healAt) }));
        const worst = gaps.reduce((a, b) => (b.gapMs > a.gapMs ? b : a));
        // The cut must really have cut: no pair across it answered once the links timed out.
        const leaked = inter.filter((p) => p.repliesBetween(cutAt + 10_000, healAt).length > 0);

        const { ms: healMs, last: slowest } = await timeToAllAnswered(
          lab,
          probes,
          healAt,
          HEAL_MEASURE_MS,
          `every pair to answer after heal ${cycle}`,
        );
        results.push({ cycle, healMs, worstGap: worst, leaked: leaked.map((p) => p.name) });
        console.log(
          `recovery cycle ${cycle}/${CYCLES}: cut ${((healAt - cutAt) / 1000).toFixed(1)} s; ` +
            `worst intra-region gap ${(worst.gapMs / 1000).toFixed(1)} s (${worst.pair}); ` +
            `all 28 pairs answered ${(healMs / 1000).toFixed(1)} s after the heal (last: ${slowest})`,
        );
      }
      console.log(`recovery heal times (s): ${results.map((r) => (r.healMs / 1000).toFixed(1)).join(", ")}`);
      // Every cycle is measured before any is judged, so a failing run still prints all its figures.
      for (const r of results) {
        expect(r.leaked, `cycle ${r.cycle}: pairs across the cut that answered during it`).toEqual([]);
        expect(
          r.worstGap.gapMs,
          `cycle ${r.cycle}: longest silence of an intra-region pair (${r.worstGap.pair})`,
        ).toBeLessThanOrEqual(INTRA_GAP_BOUND_MS);
        expect(
          r.healMs,
          `cycle ${r.cycle}: time until all pairs answered after the heal`,
        ).toBeLessThanOrEqual(HEAL_BOUND_MS);
      }
    },
    CYCLES * (CUT_MS + HEAL_MEASURE_MS + 40_000) + 120_000,
  );

  it(
    `kill -9 of a transit node: after its restart every node reaches it and traffic across it resumes within 10 s (${CYCLES} cycle${CYCLES > 1 ? "s" : ""})`,
    async () => {
      // A and B reach C only through T: A–T, B–T, T–C and A–B. A and B dial T; T dials C, the
      // yggdrasil node (which would redial only once a minute).
      const [nsA, nsB, nsT, nsC] = [
        await lab.netns(),
        await lab.netns(),
        await lab.netns(),
        await lab.netns(),
      ];
      const at = await lab.link(nsA, nsT);
      const bt = await lab.link(nsB, nsT);
      const tc = await lab.link(nsT, nsC);
      const ab = await lab.link(nsA, nsB);
      const listen = [`tcp://0.0.0.0:${PORT}`];
      const c = await lab.startYggdrasil(nsC, "Cy", { listen });
      const t = await lab.startPlanetd(nsT, "Tp", { listen, peers: [`tcp://${tc.b.ipv4}:${PORT}`] });
      const a = await lab.startPlanetd(nsA, "Ap", {
        listen,
        peers: [`tcp://${at.b.ipv4}:${PORT}`, `tcp://${ab.b.ipv4}:${PORT}`],
      });
      const b = await lab.startPlanetd(nsB, "Bp", { listen, peers: [`tcp://${bt.b.ipv4}:${PORT}`] });
      const toT = [new PairProbe(lab, a, t), new PairProbe(lab, b, t), new PairProbe(lab, c, t)];
      const across = [new PairProbe(lab, a, c), new PairProbe(lab, b, c)];
      const probes = [...toT, ...across];
      await allAnsweredAfter(lab, probes, Date.now(), 60_000, "every probe to answer before the kill");
      await delay(5000);

      const results: Array<{ cycle: number; ms: number; down: number; last: string }> = [];
      for (let cycle = 1; cycle <= CYCLES; cycle++) {
        // A node up for a few seconds, not a crash loop: the previous cycle's links settle first.
        if (cycle > 1) await delay(5000);
        await allAnsweredAfter(lab, probes, Date.now(), 30_000, `every probe to answer before kill ${cycle}`);
        const killAt = Date.now();
        await t.stop("SIGKILL");
        // Long enough for every peer to notice and start backing off, as a crash and a supervisor's
        // restart delay would be.
        await delay(RESTART_DOWN_MS);
        const restartAt = Date.now();
        await t.start();
        const down = probes.filter((p) => p.repliesBetween(killAt + 1000, restartAt).length > 0);
        expect(
          down.map((p) => p.name),
          "probes answered while T was dead",
        ).toEqual([]);
        const { ms, last } = await timeToAllAnswered(
          lab,
          probes,
          restartAt,
          60_000,
          `every probe to answer after restart ${cycle}`,
        );
        results.push({ cycle, ms, down: restartAt - killAt, last });
        console.log(
          `transit restart ${cycle}/${CYCLES}: down ${((restartAt - killAt) / 1000).toFixed(1)} s; ` +
            `every probe (to T, across T) answered ${(ms / 1000).toFixed(1)} s after the restart began (last: ${last})`,
        );
      }
      for (const r of results) {
        expect(
          r.ms,
          `restart ${r.cycle}: time until every probe answered (last ${r.last})`,
        ).toBeLessThanOrEqual(HEAL_BOUND_MS);
      }
    },
    CYCLES * (RESTART_DOWN_MS + 100_000) + 90_000,
  );

  it(
    "churn of 8 nodes, one kill -9 and restart every 5 s for a minute: the first one restarted answers every probe from 10 s after its restart on",
    async () => {
      // Full mesh of 8. Stable: R (planetd, the smallest key, so the root never churns) and S
      // (yggdrasil, dialled by everyone: it would redial only once a minute). X is restarted first,
      // then the other five in turn. Every planetd node dials the planetd nodes after it and S.
      const ids = identitiesByKey(8);
      const names = ["Rp", "Sy", "Xp", "P3p", "P4p", "P5p", "P6p", "P7p"];
      const namespaces: Netns[] = [];
      for (let i = 0; i < 8; i++) namespaces.push(await lab.netns());
      const peers: string[][] = names.map(() => []);
      for (let i = 0; i < 8; i++) {
        for (let j = i + 1; j < 8; j++) {
          const v = await lab.link(namespaces[i]!, namespaces[j]!);
          // S never dials; otherwise the earlier node dials the later one.
          if (i === 1) peers[j]!.push(`tcp://${v.a.ipv4}:${PORT}`);
          else peers[i]!.push(`tcp://${v.b.ipv4}:${PORT}`);
        }
      }
      const nodes: DaemonNode[] = [];
      for (let i = 0; i < 8; i++) {
        const opts = { identity: ids[i]!, listen: [`tcp://0.0.0.0:${PORT}`], peers: peers[i]! };
        nodes.push(
          i === 1
            ? await lab.startYggdrasil(namespaces[i]!, names[i]!, opts)
            : await lab.startPlanetd(namespaces[i]!, names[i]!, opts),
        );
      }
      const [r, sNode, x] = [nodes[0]!, nodes[1]!, nodes[2]!];
      const toX = [new PairProbe(lab, sNode, x), new PairProbe(lab, r, x)];
      const warm = probeAllPairs(lab, [r, sNode]).concat(
        nodes.slice(2).flatMap((n) => [new PairProbe(lab, r, n), new PairProbe(lab, sNode, n)]),
      );
      await allAnsweredAfter(
        lab,
        [...toX, ...warm],
        Date.now(),
        60_000,
        "every node to answer R and S before the churn",
      );
      await Promise.all(warm.map((p) => p.stop()));
      await delay(5000);

      // Random pairs of nodes that are up, one probe each, while the churn runs.
      const up = new Set(nodes);
      let probesSent = 0;
      let probesAnswered = 0;
      let churning = true;
      const prober = (async () => {
        while (churning) {
          const alive = [...up];
          const batch = Array.from({ length: 3 }, () => {
            const from = alive[Math.floor(Math.random() * alive.length)]!;
            const others = alive.filter((n) => n !== from);
            return [from, others[Math.floor(Math.random() * others.length)]!] as const;
          });
          const started = Date.now();
          const results = await Promise.all(
            batch.map(([from, to]) => from.ping(to.address, { count: 1, deadlineS: 2 })),
          );
          if (!churning) break;
          probesSent += results.length;
          probesAnswered += results.filter((p) => p.received === 1).length;
          await delay(Math.max(0, 1000 - (Date.now() - started)));
        }
      })();

      const churnStart = Date.now();
      const order = [x, ...nodes.slice(3)];
      let xRestartAt = 0;
      for (let k = 0; k < CHURN_MS / CHURN_EVERY_MS; k++) {
        await delay(Math.max(0, churnStart + k * CHURN_EVERY_MS - Date.now()));
        const victim = k === 0 ? x : order[1 + ((k - 1) % (order.length - 1))]!;
        up.delete(victim);
        await victim.stop("SIGKILL");
        if (victim === x) xRestartAt = Date.now();
        await victim.start();
        up.add(victim);
      }
      await delay(Math.max(0, churnStart + CHURN_MS - Date.now()));
      const churnEnd = Date.now();
      churning = false;
      await prober;

      const from = xRestartAt + 10_000;
      const xProbes = toX.map((p) => {
        const replies = p.repliesBetween(from, churnEnd).length;
        const sent = p.sentBetween(from, churnEnd);
        return { pair: p.name, sent, replies, lost: p.lostBetween(from, churnEnd) };
      });
      console.log(
        `churn: ${CHURN_MS / CHURN_EVERY_MS} restarts in ${((churnEnd - churnStart) / 1000).toFixed(0)} s; ` +
          `random-pair probes answered ${probesAnswered}/${probesSent} (${((100 * probesAnswered) / Math.max(1, probesSent)).toFixed(1)}%); ` +
          `probes to X from ${((from - churnStart) / 1000).toFixed(1)} s on: ${xProbes.map((p) => `${p.pair} ${p.replies} answered, ${p.lost} lost of ${p.sent} sent`).join("; ")}`,
      );
      for (const p of xProbes) {
        expect(p.lost, `${p.pair}: probes lost from 10 s after X's restart on`).toBe(0);
        // One probe of slack for the window's edges.
        expect(p.replies, `${p.pair}: probes answered from 10 s after X's restart on`).toBeGreaterThanOrEqual(
          p.sent - 1,
        );
      }
    },
    CHURN_MS + 180_000,
  );
});
