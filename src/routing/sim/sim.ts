// A many-node simulator: real Routers (real ed25519 signatures) on a virtual graph with a virtual
// clock. Links have latency and loss, can be cut and restored; nodes can crash and restart.
import { Identity } from "../../crypto/identity.js";
import { Router, type RouterOutput } from "../router.js";
import { EventHeap } from "./heap.js";

export interface SimLinkOptions {
  /** One-way latency, ms (default: the simulator's). */
  latency?: number;
  /** Probability that a frame is lost, 0..1. */
  loss?: number;
}

export interface SimOptions {
  seed?: number;
  /** Default one-way latency, ms. */
  latency?: number;
  /** Start of the virtual clock, ms since the epoch. */
  start?: number;
}

export interface SimLink {
  readonly a: SimNode;
  readonly b: SimNode;
  latency: number;
  loss: number;
  /** Not cut by the test. */
  enabled: boolean;
  /** Currently peered on both sides. */
  up: boolean;
  portA: number;
  portB: number;
  /** Bumped whenever the link goes down, so frames in flight on the old incarnation are lost. */
  gen: number;
}

export interface SimNode {
  readonly index: number;
  readonly identity: Identity;
  readonly key: Buffer;
  router: Router;
  alive: boolean;
  readonly links: SimLink[];
  readonly portLinks: Map<number, SimLink>;
  /** Control frames (types 1–8) sent, across restarts. */
  controlOut: number;
  epoch: number;
  timerAt: number | undefined;
}

interface Probe {
  src: SimNode;
  dst: SimNode;
  hops: number;
  delivered: boolean;
  wrongNode: boolean;
}

type SimEvent =
  | { kind: "frame"; time: number; order: number; link: SimLink; toB: boolean; gen: number; frame: Buffer }
  | { kind: "timer"; time: number; order: number; node: SimNode; epoch: number; deadline: number }
  | { kind: "close"; time: number; order: number; link: SimLink; gen: number };

const PROBE_MAGIC = 0x50524f42; // "PROB"
const PROBE_BYTES = 8;

/** mulberry32: small, seedable, good enough for topology and loss decisions. */
export function seededRandom(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Sim {
  now: number;
  readonly nodes: SimNode[] = [];
  readonly links: SimLink[] = [];
  readonly random: () => number;
  readonly closed: Array<{ node: number; port: number; reason: string }> = [];
  private readonly queue = new EventHeap<SimEvent>();
  private readonly defaultLatency: number;
  private probes: Probe[] = [];
  /** While a node runs addPeer, sends on the not-yet-known port belong to this link. */
  private pendingLink: SimLink | undefined;
  eventsProcessed = 0;
  /** Sees every frame a router sends (before loss), e.g. to check wire contents in tests. */
  tap: ((from: SimNode, port: number, frame: Buffer) => void) | undefined;
  /** Control frames (types 1–8) queued on links and not yet delivered or lost. */
  controlInFlight = 0;

  constructor(opts: SimOptions = {}) {
    this.random = seededRandom(opts.seed ?? 1);
    this.now = opts.start ?? 1_700_000_000_000;
    this.defaultLatency = opts.latency ?? 5;
  }

  addNode(identity?: Identity): SimNode {
    const id = identity ?? Identity.fromSeed(this.randomBytes(32));
    const node: SimNode = {
      index: this.nodes.length,
      identity: id,
      key: id.publicKey,
      router: undefined as unknown as Router,
      alive: true,
      links: [],
      portLinks: new Map(),
      controlOut: 0,
      epoch: 0,
      timerAt: undefined,
    };
    node.router = this.makeRouter(node);
    this.nodes.push(node);
    this.rearm(node);
    return node;
  }

  addNodes(n: number): SimNode[] {
    const out: SimNode[] = [];
    for (let i = 0; i < n; i++) out.push(this.addNode());
    return out;
  }

  connect(a: SimNode, b: SimNode, opts: SimLinkOptions = {}): SimLink {
    const link: SimLink = {
      a,
      b,
      latency: opts.latency ?? this.defaultLatency,
      loss: opts.loss ?? 0,
      enabled: true,
      up: false,
      portA: 0,
      portB: 0,
      gen: 0,
    };
    this.links.push(link);
    a.links.push(link);
    b.links.push(link);
    this.bringUp(link);
    return link;
  }

  cut(link: SimLink): void {
    link.enabled = false;
    this.bringDown(link);
  }

  restore(link: SimLink): void {
    link.enabled = true;
    this.bringUp(link);
  }

  crash(node: SimNode): void {
    if (!node.alive) return;
    for (const link of node.links) this.bringDown(link);
    node.alive = false;
    node.epoch++;
    node.timerAt = undefined;
  }

  restart(node: SimNode): void {
    if (node.alive) return;
    node.alive = true;
    node.router = this.makeRouter(node);
    this.rearm(node);
    for (const link of node.links) this.bringUp(link);
  }

  /** Process events up to and including time `until`. */
  runUntil(until: number): void {
    for (;;) {
      const ev = this.queue.peek();
      if (ev === undefined || ev.time > until) break;
      this.queue.pop();
      this.now = ev.time;
      this.eventsProcessed++;
      this.process(ev);
    }
    this.now = until;
  }

  runFor(ms: number): void {
    this.runUntil(this.now + ms);
  }

  /** Run in steps of `step` ms until pred() holds or `maxMs` pass; returns the elapsed time or undefined. */
  runUntilTrue(pred: () => boolean, maxMs: number, step = 100): number | undefined {
    const start = this.now;
    while (this.now - start <= maxMs) {
      if (pred()) return this.now - start;
      this.runFor(step);
    }
    return pred() ? this.now - start : undefined;
  }

  /** A local send on node (Router.sendTraffic), keeping the node's timer armed. */
  sendTraffic(node: SimNode, dest: Buffer, payload: Buffer, kind = 1): void {
    node.router.sendTraffic(dest, kind, payload, this.now);
    this.rearm(node);
  }

  // ---- metrics -------------------------------------------------------------------------------

  /** Connected components of live nodes over up links. */
  components(): SimNode[][] {
    const seen = new Uint8Array(this.nodes.length);
    const out: SimNode[][] = [];
    for (const start of this.nodes) {
      if (!start.alive || seen[start.index]) continue;
      const comp: SimNode[] = [start];
      seen[start.index] = 1;
      for (let i = 0; i < comp.length; i++) {
        for (const l of comp[i].links) {
          if (!l.up) continue;
          const o = l.a === comp[i] ? l.b : l.a;
          if (!seen[o.index]) {
            seen[o.index] = 1;
            comp.push(o);
          }
        }
      }
      out.push(comp);
    }
    return out;
  }

  /**
   * Converged: in every component all nodes follow the smallest key as root at its current seq, none
   * is in hold-down, every non-root node has a prev path to its exact keyspace predecessor, and no
   * control frame is in flight (a prev is set before its setup has installed the path downstream).
   */
  converged(): boolean {
    return this.convergence().ok;
  }

  convergence(): { ok: boolean; wrongRoot: number; noPrev: number; wrongPrev: number; inFlight: number } {
    let wrongRoot = 0;
    let noPrev = 0;
    let wrongPrev = 0;
    for (const comp of this.components()) {
      const sorted = [...comp].sort((x, y) => x.key.compare(y.key));
      const root = sorted[0].router.selfInfo();
      for (let i = 0; i < sorted.length; i++) {
        const r = sorted[i].router;
        const self = r.selfInfo();
        const st = r.dhtState();
        if (st.holdDown || !self.root.equals(root.key) || self.rootSeq !== root.rootSeq) {
          wrongRoot++;
          continue;
        }
        if (i === 0) continue;
        if (!st.prev || st.prev.rootSeq !== root.rootSeq || !st.prev.root.equals(root.key)) noPrev++;
        else if (!st.prev.dest.equals(sorted[i - 1].key)) wrongPrev++;
      }
    }
    const ok = wrongRoot + noPrev + wrongPrev === 0 && this.controlInFlight === 0;
    return { ok, wrongRoot, noPrev, wrongPrev, inFlight: this.controlInFlight };
  }

  /** Hop distances from src over up links (BFS); -1 = unreachable. */
  bfs(src: SimNode): Int32Array {
    const dist = new Int32Array(this.nodes.length).fill(-1);
    dist[src.index] = 0;
    const q = [src];
    for (let i = 0; i < q.length; i++) {
      for (const l of q[i].links) {
        if (!l.up) continue;
        const o = l.a === q[i] ? l.b : l.a;
        if (dist[o.index] < 0) {
          dist[o.index] = dist[q[i].index] + 1;
          q.push(o);
        }
      }
    }
    return dist;
  }

  /** Random pairs of distinct live nodes in the same component. */
  randomPairs(count: number): Array<[SimNode, SimNode]> {
    const comps = this.components().filter((c) => c.length > 1);
    const weights = comps.map((c) => c.length);
    const total = weights.reduce((a, b) => a + b, 0);
    const pairs: Array<[SimNode, SimNode]> = [];
    if (total === 0) return pairs;
    for (let k = 0; k < count; k++) {
      let pick = Math.floor(this.random() * total);
      let ci = 0;
      while (pick >= weights[ci]) pick -= weights[ci++];
      const comp = comps[ci];
      const a = comp[Math.floor(this.random() * comp.length)];
      let b = a;
      while (b === a) b = comp[Math.floor(this.random() * comp.length)];
      pairs.push([a, b]);
    }
    return pairs;
  }

  /**
   * Send one kind-1 probe per pair (all at once), run `waitMs`, and report delivery and stretch
   * (hops taken / BFS shortest hops) over the delivered probes.
   */
  probe(
    pairs: Array<[SimNode, SimNode]>,
    waitMs = 5000,
    /** First exchange one packet each way per pair, so the pathfinder can discover source routes. */
    warmup = false,
  ): {
    sent: number;
    delivered: number;
    ratio: number;
    stretch: number[];
    wrongNode: number;
    failed: Array<[SimNode, SimNode]>;
  } {
    this.probes = [];
    if (warmup) {
      const hello = Buffer.from("warmup");
      for (const [src, dst] of pairs) {
        this.sendTraffic(src, dst.key, hello);
        this.sendTraffic(dst, src.key, hello);
      }
      this.runFor(waitMs);
    }
    for (const [src, dst] of pairs) {
      const id = this.probes.length;
      this.probes.push({ src, dst, hops: 0, delivered: false, wrongNode: false });
      const payload = Buffer.alloc(PROBE_BYTES);
      payload.writeUInt32BE(PROBE_MAGIC, 0);
      payload.writeUInt32BE(id, 4);
      this.sendTraffic(src, dst.key, payload);
    }
    this.runFor(waitMs);
    const bfsCache = new Map<number, Int32Array>();
    const stretch: number[] = [];
    let delivered = 0;
    let wrongNode = 0;
    const failed: Array<[SimNode, SimNode]> = [];
    for (const p of this.probes) {
      if (p.wrongNode) wrongNode++;
      if (!p.delivered) {
        failed.push([p.src, p.dst]);
        continue;
      }
      delivered++;
      let d = bfsCache.get(p.src.index);
      if (!d) {
        d = this.bfs(p.src);
        bfsCache.set(p.src.index, d);
      }
      stretch.push(p.hops / d[p.dst.index]);
    }
    stretch.sort((x, y) => x - y);
    const sent = this.probes.length;
    this.probes = [];
    return { sent, delivered, ratio: sent === 0 ? 1 : delivered / sent, stretch, wrongNode, failed };
  }

  controlFramesPerNode(): number {
    let total = 0;
    for (const n of this.nodes) total += n.controlOut;
    return total / this.nodes.length;
  }

  /** DHT entries per live node: mean and max. */
  dhtEntriesPerNode(): { mean: number; max: number } {
    let total = 0;
    let max = 0;
    let live = 0;
    for (const n of this.nodes) {
      if (!n.alive) continue;
      live++;
      const size = n.router.stats().dht_entries;
      total += size;
      if (size > max) max = size;
    }
    return { mean: live === 0 ? 0 : total / live, max };
  }

  // ---- internals -----------------------------------------------------------------------------

  private randomBytes(n: number): Buffer {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = Math.floor(this.random() * 256);
    return b;
  }

  private makeRouter(node: SimNode): Router {
    const out: RouterOutput = {
      send: (port, frame) => this.onSend(node, port, frame),
      deliver: (source, payload) => this.onDeliver(node, source, payload),
      deliverOutOfBand: () => {},
      closePeer: (port, reason) => {
        this.closed.push({ node: node.index, port, reason });
        const link = node.portLinks.get(port);
        if (link) this.queue.push({ kind: "close", time: this.now, order: 0, link, gen: link.gen });
      },
    };
    return new Router(node.identity, out, this.now, this.random);
  }

  private onSend(node: SimNode, port: number, frame: Buffer): void {
    this.tap?.(node, port, frame);
    const type = frame[0];
    if (type >= 1 && type <= 8) node.controlOut++;
    else if ((type === 9 || type === 10) && frame.length >= PROBE_BYTES) {
      const o = frame.length - PROBE_BYTES;
      if (frame.readUInt32BE(o) === PROBE_MAGIC) {
        const probe = this.probes[frame.readUInt32BE(o + 4)];
        if (probe) probe.hops++;
      }
    }
    const link = node.portLinks.get(port) ?? this.pendingLink;
    if (link === undefined || (!link.up && link !== this.pendingLink)) return;
    if (link.loss > 0 && this.random() < link.loss) return;
    const toB = link.a === node;
    if (type >= 1 && type <= 8) this.controlInFlight++;
    this.queue.push({
      kind: "frame",
      time: this.now + link.latency,
      order: 0,
      link,
      toB,
      gen: link.gen,
      frame: Buffer.from(frame),
    });
  }

  private onDeliver(node: SimNode, _source: Buffer, payload: Buffer): void {
    if (payload.length !== PROBE_BYTES || payload.readUInt32BE(0) !== PROBE_MAGIC) return;
    const probe = this.probes[payload.readUInt32BE(4)];
    if (!probe) return;
    if (probe.dst === node) probe.delivered = true;
    else probe.wrongNode = true;
  }

  private process(ev: SimEvent): void {
    switch (ev.kind) {
      case "frame": {
        const link = ev.link;
        const t = ev.frame[0];
        if (t >= 1 && t <= 8) this.controlInFlight--;
        if (!link.up || link.gen !== ev.gen) return;
        const node = ev.toB ? link.b : link.a;
        node.router.handleFrame(ev.toB ? link.portB : link.portA, ev.frame, this.now);
        this.rearm(node);
        return;
      }
      case "timer": {
        const node = ev.node;
        if (!node.alive || node.epoch !== ev.epoch || node.timerAt !== ev.deadline) return;
        node.timerAt = undefined;
        node.router.handleTimeout(this.now);
        this.rearm(node);
        return;
      }
      case "close":
        if (ev.link.gen === ev.gen && ev.link.up) {
          this.bringDown(ev.link);
          ev.link.enabled = false;
        }
    }
  }

  private rearm(node: SimNode): void {
    if (!node.alive) return;
    const t = node.router.nextTimeout();
    if (t === undefined || t === node.timerAt) return;
    node.timerAt = t;
    this.queue.push({
      kind: "timer",
      time: Math.max(t, this.now),
      order: 0,
      node,
      epoch: node.epoch,
      deadline: t,
    });
  }

  private bringUp(link: SimLink): void {
    if (link.up || !link.enabled || !link.a.alive || !link.b.alive) return;
    link.up = true;
    link.gen++;
    this.pendingLink = link;
    link.portA = link.a.router.addPeer(link.b.key, 0, this.now);
    link.a.portLinks.set(link.portA, link);
    link.portB = link.b.router.addPeer(link.a.key, 0, this.now);
    link.b.portLinks.set(link.portB, link);
    this.pendingLink = undefined;
    this.rearm(link.a);
    this.rearm(link.b);
  }

  private bringDown(link: SimLink): void {
    if (!link.up) return;
    link.up = false;
    link.gen++;
    for (const [node, port] of [
      [link.a, link.portA],
      [link.b, link.portB],
    ] as const) {
      if (!node.alive) continue;
      node.portLinks.delete(port);
      node.router.removePeer(port, this.now);
      this.rearm(node);
    }
  }
}
