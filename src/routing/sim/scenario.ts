// One end-to-end simulator scenario (used by bench/sim-10k.mjs): build a Barabási–Albert graph,
// converge, probe random pairs, cut a fraction of links, re-converge, probe again.
import { Sim } from "./sim.js";
import { barabasiAlbert } from "./topology.js";

export interface ScenarioOptions {
  nodes: number;
  /** Links per new node in the BA graph. */
  m?: number;
  seed?: number;
  pairs?: number;
  /** Fraction of links to cut after the first probe round (0 = skip). */
  cutFraction?: number;
  /** Virtual time limit for each convergence, ms. */
  maxConvergeMs?: number;
  log?: (line: string) => void;
}

export interface ScenarioResult {
  nodes: number;
  links: number;
  convergeMs: number | undefined;
  convergeWallMs: number;
  delivery: number;
  stretchMedian: number;
  stretchP95: number;
  controlPerNode: number;
  dhtMean: number;
  dhtMax: number;
  reconvergeMs?: number;
  deliveryAfterCut?: number;
  events: number;
  wallMs: number;
  heapMB: number;
}

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * q))];
}

export function runScenario(opts: ScenarioOptions): ScenarioResult {
  const log = opts.log ?? (() => {});
  const started = Date.now();
  const sim = new Sim({ seed: opts.seed ?? 1 });
  const nodes = sim.addNodes(opts.nodes);
  const edges = barabasiAlbert(opts.nodes, opts.m ?? 2, sim.random);
  for (const [a, b] of edges) sim.connect(nodes[a], nodes[b]);
  log(`built ${opts.nodes} nodes, ${edges.length} links in ${Date.now() - started} ms`);
  const maxMs = opts.maxConvergeMs ?? 300_000;
  let t = Date.now();
  const convergeMs = sim.runUntilTrue(() => sim.converged(), maxMs, 1000);
  const convergeWallMs = Date.now() - t;
  log(`converged after ${convergeMs} ms virtual, ${convergeWallMs} ms wall, ${sim.eventsProcessed} events`);
  t = Date.now();
  const r = sim.probe(sim.randomPairs(opts.pairs ?? 10_000));
  log(`probe: ${r.delivered}/${r.sent} delivered in ${Date.now() - t} ms wall`);
  const dht = sim.dhtEntriesPerNode();
  const result: ScenarioResult = {
    nodes: opts.nodes,
    links: edges.length,
    convergeMs,
    convergeWallMs,
    delivery: r.ratio,
    stretchMedian: quantile(r.stretch, 0.5),
    stretchP95: quantile(r.stretch, 0.95),
    controlPerNode: sim.controlFramesPerNode(),
    dhtMean: dht.mean,
    dhtMax: dht.max,
    events: 0,
    wallMs: 0,
    heapMB: 0,
  };
  if ((opts.cutFraction ?? 0) > 0) {
    const count = Math.floor(sim.links.length * (opts.cutFraction ?? 0));
    for (let i = 0; i < count; i++) sim.cut(sim.links[Math.floor(sim.random() * sim.links.length)]);
    t = Date.now();
    result.reconvergeMs = sim.runUntilTrue(() => sim.converged(), maxMs, 1000);
    log(
      `re-converged after cutting ${count} links: ${result.reconvergeMs} ms virtual, ${Date.now() - t} ms wall`,
    );
    result.deliveryAfterCut = sim.probe(sim.randomPairs(opts.pairs ?? 10_000)).ratio;
  }
  result.events = sim.eventsProcessed;
  result.wallMs = Date.now() - started;
  result.heapMB = Math.round(process.memoryUsage().heapUsed / 1e6);
  return result;
}
