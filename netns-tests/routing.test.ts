// Issue 4: planetd as a pure transit node between two Debian yggdrasil nodes (spec 14.2 step 10).
// The end nodes' routing tables (getDHT, getPaths) must be what spec 5.4 and 5.6 predict for a chain.
import { afterEach, beforeEach, expect, it } from "vitest";
import { type DaemonNode, type DhtEntry, Lab, describeNetns, identitiesByKey } from "./harness.js";

let lab: Lab;

/** Port numbers each node uses for each of its neighbours, read from getPeers. */
async function portMap(nodes: DaemonNode[]): Promise<Map<string, number>> {
  const ports = new Map<string, number>();
  for (const n of nodes) {
    for (const p of await n.getPeers()) ports.set(`${n.key}>${p.key}`, p.port);
  }
  return ports;
}

/**
 * What spec 5.4 says every node of a chain must hold: each node but the one with the smallest key
 * (the root) has a path to its predecessor in key order; along that path the source holds
 * {port 0, rest → next hop}, every transit node {port → source side, rest → destination side}, the
 * destination {port → source side, rest 0}.
 */
function expectedDht(chain: DaemonNode[], ports: Map<string, number>): Map<DaemonNode, DhtEntry[]> {
  const port = (from: DaemonNode, to: DaemonNode) => {
    const p = ports.get(`${from.key}>${to.key}`);
    if (p === undefined) throw new Error(`${from.name} has no port for ${to.name}`);
    return p;
  };
  const expected = new Map<DaemonNode, DhtEntry[]>(chain.map((n) => [n, []]));
  const byKey = [...chain].sort((a, b) => a.key.localeCompare(b.key));
  for (let k = 1; k < byKey.length; k++) {
    const src = byKey[k]!;
    const dst = byKey[k - 1]!;
    const i = chain.indexOf(src);
    const j = chain.indexOf(dst);
    const step = j > i ? 1 : -1;
    for (let m = i; m !== j + step; m += step) {
      const here = chain[m]!;
      const towardSrc = m === i ? 0 : port(here, chain[m - step]!);
      const towardDst = m === j ? 0 : port(here, chain[m + step]!);
      expected.get(here)!.push({ address: src.address, key: src.key, port: towardSrc, rest: towardDst });
    }
  }
  return expected;
}

/** Wait (bounded) until dhtProblem finds nothing; the failure names the first mismatch. */
async function dhtConsistent(chain: DaemonNode[], what: string): Promise<void> {
  await lab.waitFor(
    async () => {
      const problem = await dhtProblem(chain);
      if (problem) throw new Error(problem);
      return true;
    },
    20_000,
    what,
  );
}

async function dhtProblem(chain: DaemonNode[]): Promise<string | undefined> {
  const expected = expectedDht(chain, await portMap(chain));
  for (const node of chain) {
    const dht = await node.getDHT();
    for (const want of expected.get(node)!) {
      if (!dht.some((e) => e.key === want.key && e.port === want.port && e.rest === want.rest)) {
        return `${node.name} getDHT ${JSON.stringify(dht)} lacks ${JSON.stringify(want)}`;
      }
    }
    if (dht.length !== expected.get(node)!.length) {
      return `${node.name} getDHT ${JSON.stringify(dht)} has entries beyond ${JSON.stringify(expected.get(node))}`;
    }
  }
  return undefined;
}

describeNetns("routing: yggdrasil – planetd – yggdrasil chain (issue 4)", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it("the ends ping through planetd, their DHT and paths agree with the spec, and a restarted end is reachable again within 15 s", async () => {
    const [nsA, nsP, nsC] = [await lab.netns(), await lab.netns(), await lab.netns()];
    const left = await lab.link(nsA, nsP);
    const right = await lab.link(nsP, nsC);
    const pListen = [`tcp://${left.b.ipv4}:12345`, `tcp://${right.a.ipv4}:12345`];
    // planetd has the smallest key: it is the tree root, and yggC's DHT path to its predecessor
    // yggA runs through it (spec 5.4). It only forwards: no TUN, no sessions of its own.
    const [kP, kA, kC] = identitiesByKey(3);
    const pd = await lab.startPlanetd(nsP, "pd", { listen: pListen, ifName: "none", identity: kP });
    const a = await lab.startYggdrasil(nsA, "yggA", { peers: [pListen[0]!], identity: kA });
    const c = await lab.startYggdrasil(nsC, "yggC", { peers: [pListen[1]!], identity: kC });
    const chain = [a, pd, c];

    await lab.waitFor(
      async () => (await pd.getPeers()).length === 2 && (await a.peerEntry(pd)) && (await c.peerEntry(pd)),
      20_000,
      "both yggdrasil nodes to be peered with planetd",
    );
    await lab.waitFor(
      async () => (await a.ping(c.address, { count: 1 })).received === 1,
      30_000,
      "the first ping from yggA to yggC through planetd",
    );
    const ac = await a.ping(c.address, { count: 10, intervalS: 0.2 });
    expect(ac.lossPercent, ac.output).toBe(0);
    const ca = await c.ping(a.address, { count: 10, intervalS: 0.2 });
    expect(ca.lossPercent, ca.output).toBe(0);

    // Spec 5.6: after traffic each end holds a source route [own port to pd, pd's port onward, 0].
    const ports = await portMap(chain);
    for (const [from, to] of [
      [a, c],
      [c, a],
    ] as const) {
      const want = [ports.get(`${from.key}>${pd.key}`), ports.get(`${pd.key}>${to.key}`), 0];
      await lab.waitFor(
        async () => {
          await from.ping(to.address, { count: 1 });
          const entry = (await from.getPaths()).find((p) => p.key === to.key);
          return entry && JSON.stringify(entry.path) === JSON.stringify(want) ? entry : undefined;
        },
        15_000,
        `${from.name} getPaths to hold ${to.name} with path ${JSON.stringify(want)}`,
      );
    }

    await dhtConsistent(chain, "every node's getDHT to hold the chain's predecessor paths (spec 5.4)");

    // Kill one end outright and bring it back with the same key.
    await c.stop("SIGKILL");
    await lab.waitFor(async () => !(await pd.peerEntry(c)), 15_000, "planetd to drop the killed yggC");
    const restartedAt = Date.now();
    await c.start();
    await lab.waitFor(
      async () => (await a.ping(c.address, { count: 1 })).received === 1,
      15_000 - (Date.now() - restartedAt),
      "pings from yggA to reach the restarted yggC within 15 s of its restart",
    );
    const again = await a.ping(c.address, { count: 10, intervalS: 0.2 });
    expect(again.lossPercent, again.output).toBe(0);
    await dhtConsistent(chain, "getDHT to be consistent again after the restart");
  });
});
