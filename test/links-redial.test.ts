// Issue 15: the static-peer redial policy (redial.ts) on a fake clock, and the link manager's
// reasons to redial at once, over loopback.
import { afterEach, describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { DEFAULT_REDIAL, RedialBackoff } from "../src/overlay/links/redial.js";
import { startLinkNode, stopLinkNodes } from "./support/links.js";

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
  it("doubles from 1 s to an 8 s cap while the network fails, jittered down to 80 % at most", () => {
    expect(delays(backoff(1), 7)).toEqual([1000, 2000, 4000, 8000, 8000, 8000, 8000]);
    expect(delays(backoff(0), 5)).toEqual([800, 1600, 3200, 6400, 6400]);
  });

  it("counts the delay from the start of the attempt, so a 5 s dial timeout does not add to it", () => {
    const b = backoff(1);
    delays(b, 3); // the step is now 8 s
    b.attemptStarted(100_000);
    expect(b.failed(105_000, false)).toBe(108_000);
    // A step shorter than the attempt: at least half a second after the failure.
    const fresh = backoff(1);
    fresh.attemptStarted(0);
    expect(fresh.failed(5000, false)).toBe(5500);
  });

  it("backs off to 60 s from a peer that refuses us, and back under 8 s once the failure is the network's", () => {
    const b = backoff(1);
    let t = 0;
    const steps: number[] = [];
    for (let i = 0; i < 8; i++) {
      b.attemptStarted(t);
      const next = b.failed(t, true);
      steps.push(next - t);
      t = next;
    }
    expect(steps).toEqual([1000, 2000, 4000, 8000, 16_000, 32_000, 60_000, 60_000]);
    b.attemptStarted(t);
    b.failed(t, false);
    expect(b.currentStepMs).toBe(8000);
  });

  it("a link that held resets the backoff; one that died at once keeps backing off", () => {
    const b = backoff(1);
    delays(b, 4);
    b.linkUp(50_000);
    expect(b.linkLost(70_000)).toBe(71_000);
    delays(b, 4, 71_000);
    b.linkUp(200_000);
    const next = b.linkLost(200_300);
    expect(next - 200_000).toBe(8000);
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
    const probe = await startLinkNode({ listen: ["tcp://127.0.0.1:0"] }, aId);
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

  it("without a reason it waits for its timer", async () => {
    const aId = Identity.generate();
    const probe = await startLinkNode({ listen: ["tcp://127.0.0.1:0"] }, aId);
    const aUri = probe.mgr.listenAddresses()[0]!;
    await probe.mgr.stop();
    const b = await startLinkNode({ peers: [aUri], redial: { initialMs: 30_000, maxMs: 30_000 } });
    await b.nextLog(/failed/);
    await startLinkNode({ listen: [aUri] }, aId);
    await new Promise((r) => setTimeout(r, 1500));
    expect(b.links).toHaveLength(0);
  });
});
