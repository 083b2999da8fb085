// A single Router under test, with hand-made peers: records everything it outputs and builds the
// signed tree infos, labels, tokens and setups those peers would send.
import { Identity } from "../../crypto/identity.js";
import { Router, type RouterOutput } from "../router.js";
import type { RouterLimits } from "../state.js";
import type { TreeInfo } from "../types.js";
import { appendTreeHop, encodeTree } from "../wire.js";

export interface Sent {
  port: number;
  frame: Buffer;
}

export class RouterHarness {
  readonly router: Router;
  readonly sent: Sent[] = [];
  readonly delivered: Array<{ source: Buffer; payload: Buffer }> = [];
  readonly oob: Array<{ source: Buffer; dest: Buffer; payload: Buffer }> = [];
  readonly closed: Array<{ port: number; reason: string }> = [];
  now: number;

  constructor(
    readonly id: Identity,
    now = 1_700_000_000_000,
    limits: Partial<RouterLimits> = {},
  ) {
    this.now = now;
    const out: RouterOutput = {
      send: (port, frame) => this.sent.push({ port, frame: Buffer.from(frame) }),
      deliver: (source, payload) =>
        this.delivered.push({ source: Buffer.from(source), payload: Buffer.from(payload) }),
      deliverOutOfBand: (source, dest, payload) =>
        this.oob.push({
          source: Buffer.from(source),
          dest: Buffer.from(dest),
          payload: Buffer.from(payload),
        }),
      closePeer: (port, reason) => this.closed.push({ port, reason }),
    };
    this.router = new Router(id, out, now, () => 0.5, limits);
  }

  get key(): Buffer {
    return this.id.publicKey;
  }

  /** Frames sent since the last take(), optionally only one type; clears the record. */
  take(type?: number): Sent[] {
    const all = this.sent.splice(0);
    return type === undefined ? all : all.filter((s) => s.frame[0] === type);
  }

  addPeer(peer: Identity, priority = 0): number {
    return this.router.addPeer(peer.publicKey, priority, this.now);
  }

  frame(port: number, frame: Buffer): void {
    this.router.handleFrame(port, frame, this.now);
  }

  /** Advance the clock to t, firing the router's timer whenever it is due on the way. */
  advanceTo(t: number): void {
    for (;;) {
      const due = this.router.nextTimeout();
      if (due === undefined || due > t) break;
      this.now = Math.max(this.now, due);
      this.router.handleTimeout(this.now);
    }
    this.now = t;
  }

  advance(ms: number): void {
    this.advanceTo(this.now + ms);
  }
}

/**
 * The tree info that chain[chain.length - 1] sends to `to`: root chain[0] at seq, each key in turn
 * appending a hop to the next with the given ports (ports[i] = chain[i]'s port for the next hop;
 * the last port is the sender's port for `to`).
 */
export function chainInfo(chain: Identity[], ports: number[], seq: bigint, to: Buffer): TreeInfo {
  let info: TreeInfo = { root: chain[0].publicKey, seq, hops: [] };
  for (let i = 0; i < chain.length; i++) {
    const next = i + 1 < chain.length ? chain[i + 1].publicKey : to;
    info = appendTreeHop(chain[i], info, next, ports[i]);
  }
  return info;
}

export function chainFrame(chain: Identity[], ports: number[], seq: bigint, to: Buffer): Buffer {
  return encodeTree(chainInfo(chain, ports, seq, to));
}

/** n fresh identities sorted by key (index 0 = smallest = best root). */
export function sortedIdentities(n: number): Identity[] {
  const ids: Identity[] = [];
  for (let i = 0; i < n; i++) ids.push(Identity.generate());
  return ids.sort((a, b) => a.publicKey.compare(b.publicKey));
}
