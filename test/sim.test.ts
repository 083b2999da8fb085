// Many-node simulations of the real Router (real signatures) on virtual graphs.
import { describe, expect, it } from "vitest";
import { Sim, type SimNode } from "../src/routing/sim/sim.js";
import { type Edge, barabasiAlbert, grid, line, ring, star } from "../src/routing/sim/topology.js";

function build(n: number, edges: (sim: Sim) => Edge[], seed = 1): { sim: Sim; nodes: SimNode[] } {
  const sim = new Sim({ seed });
  const nodes = sim.addNodes(n);
  for (const [a, b] of edges(sim)) sim.connect(nodes[a], nodes[b]);
  return { sim, nodes };
}

function q(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))];
}

function report(name: string, sim: Sim, convergeMs: number | undefined, r: ReturnType<Sim["probe"]>): void {
  const dht = sim.dhtEntriesPerNode();
  console.log(
    `${name}: converged in ${convergeMs} ms (virtual); delivery ${r.delivered}/${r.sent}; stretch median ${q(r.stretch, 0.5).toFixed(2)} p95 ${q(r.stretch, 0.95).toFixed(2)}; control frames/node ${sim.controlFramesPerNode().toFixed(1)}; DHT entries/node mean ${dht.mean.toFixed(1)} max ${dht.max}`,
  );
}

describe("simulated topologies converge and deliver", () => {
  const shapes: Array<[string, number, (sim: Sim) => Edge[]]> = [
    ["line 40", 40, () => line(40)],
    ["ring 100", 100, () => ring(100)],
    ["star 200", 200, () => star(200)],
    ["grid 20x20", 400, () => grid(20, 20)],
  ];
  for (const [name, n, edges] of shapes) {
    it(name, () => {
      const { sim } = build(n, edges);
      const convergeMs = sim.runUntilTrue(() => sim.converged(), 120_000, 250);
      expect(convergeMs, JSON.stringify(sim.convergence())).toBeDefined();
      const r = sim.probe(sim.randomPairs(2000));
      report(name, sim, convergeMs, r);
      expect(r.wrongNode).toBe(0);
      expect(r.delivered).toBe(r.sent);
      expect(sim.closed).toEqual([]);
    });
  }
});

describe("Barabási–Albert, 1,000 nodes", () => {
  it("converges, delivers 10,000 random pairs, and recovers after 5% of links are cut", () => {
    const { sim } = build(1000, (s) => barabasiAlbert(1000, 2, s.random), 7);
    const convergeMs = sim.runUntilTrue(() => sim.converged(), 120_000, 500);
    expect(convergeMs, JSON.stringify(sim.convergence())).toBeDefined();
    const r = sim.probe(sim.randomPairs(10_000));
    report("BA 1000", sim, convergeMs, r);
    expect(r.wrongNode).toBe(0);
    expect(r.delivered).toBe(10_000);

    const setupsBefore = sim.nodes.reduce((a, n) => a + n.router.stats().out_setup, 0);
    const cut = Math.floor(sim.links.length * 0.05);
    for (let i = 0; i < cut; i++) sim.cut(sim.links[Math.floor(sim.random() * sim.links.length)]);
    const comps = sim.components().length;
    const reconvergeMs = sim.runUntilTrue(() => sim.converged(), 120_000, 500);
    expect(reconvergeMs, JSON.stringify(sim.convergence())).toBeDefined();
    const after = sim.probe(sim.randomPairs(10_000));
    report(`BA 1000 after cutting ${cut} links (${comps} components)`, sim, reconvergeMs, after);
    expect(after.wrongNode).toBe(0);
    expect(after.delivered).toBe(after.sent);
    const setupsAfter = sim.nodes.reduce((a, n) => a + n.router.stats().out_setup, 0);
    console.log(`setups sent during recovery: ${setupsAfter - setupsBefore}`);
    // No node ever had a setup refused as a duplicate (spec 5.4.4: one setup per (root, rootSeq)).
    for (const n of sim.nodes) expect(n.router.stats().drop_setup_duplicate ?? 0).toBe(0);
  }, 60_000);
});
