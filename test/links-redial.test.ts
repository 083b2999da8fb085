// Issue 15: the static-peer redial policy (redial.ts) on a fake clock, and the link manager's
// reasons to redial at once, over loopback.
import os from "node:os";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { DEFAULT_REDIAL, RedialBackoff } from "../src/overlay/links/redial.js";
import { startLinkNode, stopLinkNodes } from "./support/links.js";
import { restartablePort } from "./support/ports.js";

/** A backoff whose jitter is fixed: 1 gives the full step, 0 its 80 % floor. */
const backoff = (random: number) => new RedialBackoff(DEFAULT_REDIAL, () => random);

/** Delays (next attempt - now) of `n` immediate failures in a row, starting at `t`. */
function delays(b: RedialBackoff, n: number, t = 0): number[] {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    b.attemptStarted(t);
    const next = b.failed(t, false);
    out.push(next - t);
    t = next;
  }
  return out;
}

describe("redial policy (fake clock)", () => {
  it("waits a quarter of the time the peer has been unreachable: at least 1 s, at most 8 s, jittered down to 80 %", () => {
    const full = delays(backoff(1), 16);
    expect(full.slice(0, 5)).toEqual([1000, 1000, 1000, 1000, 1000]);
    let t = 0;
    for (const d of full) {
      expect(d).toBe(Math.min(8000, Math.max(1000, t / 4)));
      t += d;
    }
    expect(full.at(-1)).toBe(8000);
    expect(delays(backoff(0), 3)).toEqual([800, 800, 800]);
  });

  it("counts the delay from the start of the attempt, so a 5 s dial timeout does not add to it", () => {
    const b = backoff(1);
    b.attemptStarted(0);
    b.attemptStarted(100_000);
    // Unreachable for 105 s: the step is the 8 s cap, from the attempt's start.
    expect(b.failed(105_000, false)).toBe(108_000);
    // A step shorter than the attempt: half a second after the failure.
    const fresh = backoff(1);
    fresh.attemptStarted(0);
    expect(fresh.failed(5000, false)).toBe(5500);
    const early = backoff(1);
    early.attemptStarted(0);
    early.attemptStarted(1000);
    expect(early.failed(3000, false)).toBe(3500);
  });

  it("a peer that refuses us waits as long as it has been unreachable, up to 60 s; a network failure brings it back under 8 s", () => {
    const b = backoff(1);
    let t = 0;
    const steps: number[] = [];
    for (let i = 0; i < 9; i++) {
      b.attemptStarted(t);
      const next = b.failed(t, true);
      steps.push(next - t);
      t = next;
    }
    expect(steps).toEqual([1000, 1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
    b.attemptStarted(t);
    expect(b.failed(t, false) - t).toBe(8000);
  });

  it("a link that held starts a new stretch at 1 s; one that died at once keeps the old stretch", () => {
    const b = backoff(1);
    delays(b, 12); // unreachable for about 20 s
    b.linkUp(50_000);
    expect(b.linkLost(70_000)).toBe(71_000);
    delays(b, 12, 71_000);
    // Down since 70 s; a link from 200 s that died at 200.3 s: a quarter of 130 s, capped, from its start.
    b.linkUp(200_000);
    expect(b.linkLost(200_300)).toBe(208_000);
  });

  it("a nudge dials at once, at most once a second", () => {
    const b = backoff(1);
    expect(b.nudge(10_000)).toBe(true);
    expect(b.nudge(10_500)).toBe(false);
    expect(b.nudge(11_000)).toBe(true);
  });
});

describe("redial triggers (loopback)", () => {
  afterEach(stopLinkNodes);

  it("a static peer waiting out a long backoff is dialled at once when its key links to us inbound", async () => {
    const aId = Identity.generate();
    // Restarted below on the same port: one below the ephemeral range (support/ports.ts).
    const probe = await startLinkNode(
      { listen: [`tcp://127.0.0.1:${await restartablePort("127.0.0.1", "tcp")}`] },
      aId,
    );
    const aUri = probe.mgr.listenAddresses()[0]!;
    await probe.mgr.stop();
    // B's only redial timer is 30 s away after the first failure.
    const b = await startLinkNode({
      listen: ["tcp://127.0.0.1:0"],
      peers: [`${aUri}?key=${aId.publicKey.toString("hex")}`],
      redial: { initialMs: 30_000, maxMs: 30_000 },
    });
    await b.nextLog(/failed/);
    const t0 = Date.now();
    await startLinkNode({ listen: [aUri], peers: [b.mgr.listenAddresses()[0]!] }, aId);
    const first = await b.nextLink();
    const second = await b.nextLink();
    expect([first.outbound, second.outbound].sort()).toEqual([false, true]);
    expect(second.remoteKey.equals(aId.publicKey)).toBe(true);
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(b.mgr.peerList()).toEqual([{ uri: expect.any(String), iface: undefined, connected: true }]);
  });

  it("a change of the local interfaces dials every waiting peer at once", async () => {
    const aId = Identity.generate();
    // Restarted below on the same port: one below the ephemeral range (support/ports.ts).
    const probe = await startLinkNode(
      { listen: [`tcp://127.0.0.1:${await restartablePort("127.0.0.1", "tcp")}`] },
      aId,
    );
    const aUri = probe.mgr.listenAddresses()[0]!;
    await probe.mgr.stop();
    const real = os.networkInterfaces();
    const spy = vi.spyOn(os, "networkInterfaces").mockReturnValue(real);
    try {
      const b = await startLinkNode({ peers: [aUri], redial: { initialMs: 30_000, maxMs: 30_000 } });
      await b.nextLog(/failed/);
      await startLinkNode({ listen: [aUri] }, aId);
      const t0 = Date.now();
      // A new address, as DHCP or a returning uplink would bring (polled every 3 s).
      spy.mockReturnValue({
        ...real,
        pdtest0: [
          {
            address: "192.0.2.7",
            netmask: "255.255.255.0",
            family: "IPv4",
            mac: "02:00:00:00:00:07",
            internal: false,
            cidr: "192.0.2.7/24",
          },
        ],
      });
      const link = await b.nextLink();
      expect(link.remoteKey.equals(aId.publicKey)).toBe(true);
      expect(Date.now() - t0).toBeLessThan(5000);
    } finally {
      spy.mockRestore();
    }
  });

  it("without a reason it waits for its timer", async () => {
    const aId = Identity.generate();
    // Restarted below on the same port: one below the ephemeral range (support/ports.ts).
    const probe = await startLinkNode(
      { listen: [`tcp://127.0.0.1:${await restartablePort("127.0.0.1", "tcp")}`] },
      aId,
    );
    const aUri = probe.mgr.listenAddresses()[0]!;
    await probe.mgr.stop();
    const b = await startLinkNode({ peers: [aUri], redial: { initialMs: 30_000, maxMs: 30_000 } });
    await b.nextLog(/failed/);
    await startLinkNode({ listen: [aUri] }, aId);
    await new Promise((r) => setTimeout(r, 1500));
    expect(b.links).toHaveLength(0);
  });
});
