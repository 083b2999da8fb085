// Two LinkManagers linked over udp:// on loopback, for the rekey tests (links-udp-rekey*.test.ts):
// each end's outgoing datagrams pass a drop rule (UdpHooks, before sealing), paced frame streams,
// and a bounded poll for state no event announces.
import { randomBytes } from "node:crypto";
import { expect } from "vitest";
import type { Link } from "../../src/overlay/links/link.js";
import type { LinkManagerConfig } from "../../src/overlay/links/manager.js";
import type { RekeyOptions } from "../../src/overlay/links/udp-rekey.js";
import type { UdpLink } from "../../src/overlay/links/udp.js";
import { startLinkNode } from "./links.js";

/** A (listening) and B (dialing) linked over udp://; each end's outgoing datagrams pass `drop`. */
export async function udpPair(
  rekey: Partial<RekeyOptions>,
  drop: { a?: (d: Buffer) => boolean; b?: (d: Buffer) => boolean } = {},
) {
  const cfg = (f?: (d: Buffer) => boolean): Partial<LinkManagerConfig> => ({
    udp: { rekey, hooks: { dropDatagram: (d) => f?.(d) ?? false } },
  });
  const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"], ...cfg(drop.a) });
  const aLink = a.nextLink();
  const b = await startLinkNode({ peers: [a.mgr.listenAddresses()[0]!], ...cfg(drop.b) });
  return { a, b, aLink: (await aLink) as UdpLink, bLink: (await b.nextLink()) as UdpLink };
}

/** Sends frames of `type` (1: protocol, 9: traffic) numbered from `from`, in paced slices. */
export async function stream(link: Link, count: number, type: number, from = 0): Promise<void> {
  for (let i = from; i < from + count; i++) {
    const f = randomBytes(200);
    f[0] = type;
    f.writeUInt32BE(i, 1);
    link.send(f);
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 2));
  }
}

/** Polls `cond` every 10 ms for at most `ms`, then asserts it (`what()` says what failed). */
export async function until(cond: () => boolean, ms = 10_000, what?: () => string): Promise<void> {
  for (let t = 0; t < ms && !cond(); t += 10) await new Promise((r) => setTimeout(r, 10));
  expect(cond(), what?.()).toBe(true);
}
