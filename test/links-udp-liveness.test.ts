// udp:// liveness on lossy paths: the pure state machine over a day of virtual idleness at 10 and
// 20 % loss per direction (no false death), a dead peer found within 10 s, and the same on real
// links over loopback with the loss hooks.
import { afterEach, describe, expect, it } from "vitest";
import { DEFAULT_TIMEOUTS, type LinkTimeouts } from "../src/overlay/links/stream.js";
import { ACT_DEAD, ACT_PROBE, Liveness, livenessFor } from "../src/overlay/links/udp-liveness.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { seededRandom } from "../src/routing/sim/sim.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";

afterEach(stopLinkNodes);

interface SimResult {
  deaths: number;
  /** When the first end declared the other dead (ms after start), or -1. */
  firstDeathAt: number;
  datagrams: number;
}

/**
 * Two ends idle for `durationMs` of virtual time; every datagram is lost with probability `loss`
 * and delayed 20 ± 10 ms. A probe is answered at once. From `muteAt` on, end 1 sends nothing.
 */
function simulate(
  t: LinkTimeouts,
  loss: number,
  durationMs: number,
  seed: number,
  muteAt = Number.POSITIVE_INFINITY,
): SimResult {
  const rand = seededRandom(seed);
  const cfg = livenessFor(t);
  const ends = [new Liveness(cfg, 0), new Liveness(cfg, 0)];
  const arrivals: Array<{ at: number; to: number; probe: boolean }> = [];
  const out: SimResult = { deaths: 0, firstDeathAt: -1, datagrams: 0 };
  const srtt = 40;
  const rttvar = 5;
  const send = (from: number, now: number, probe: boolean) => {
    ends[from]!.sent(now);
    out.datagrams++;
    if (from === 1 && now >= muteAt) return;
    if (rand() < loss) return;
    arrivals.push({ at: now + 10 + rand() * 20, to: 1 - from, probe });
  };
  let now = 0;
  while (now < durationMs) {
    let next = Math.min(ends[0]!.wakeAt, ends[1]!.wakeAt);
    let arrival = -1;
    for (let i = 0; i < arrivals.length; i++) {
      if (arrivals[i]!.at < next) {
        next = arrivals[i]!.at;
        arrival = i;
      }
    }
    now = next;
    if (arrival >= 0) {
      const a = arrivals.splice(arrival, 1)[0]!;
      ends[a.to]!.received(now);
      if (a.probe) send(a.to, now, false);
      continue;
    }
    for (let i = 0; i < 2; i++) {
      if (ends[i]!.wakeAt > now) continue;
      const act = ends[i]!.check(now, srtt, rttvar);
      if (act === ACT_DEAD) {
        out.deaths++;
        if (out.firstDeathAt < 0) out.firstDeathAt = now;
        ends[i] = new Liveness(cfg, now); // a redial, so the run goes on
      } else if (act !== 0) {
        send(i, now, act === ACT_PROBE);
      }
    }
  }
  return out;
}

describe("udp liveness (virtual time)", () => {
  it("defaults probe every second and give up after 8–9.5 s of silence", () => {
    expect(livenessFor(DEFAULT_TIMEOUTS)).toEqual({ intervalMs: 1000, deadMs: 8000, capMs: 9500 });
  });

  it.each([0.1, 0.2])(
    "never declares a live peer dead over 24 idle hours at %s loss per direction",
    (loss) => {
      const day = 24 * 3600 * 1000;
      const r = simulate(DEFAULT_TIMEOUTS, loss, day, 9);
      expect(r.deaths).toBe(0);
      // About one keepalive per second each way, probes on top: cheap.
      expect(r.datagrams / (day / 1000)).toBeLessThan(4);
    },
  );

  it("finds a dead peer within 10 s, also at 20 % loss", () => {
    for (let seed = 1; seed <= 50; seed++) {
      const r = simulate(DEFAULT_TIMEOUTS, 0.2, 60_000, seed, 30_000);
      expect(r.firstDeathAt).toBeGreaterThan(30_000);
      expect(r.firstDeathAt - 30_000).toBeLessThan(10_000);
    }
  });
});

describe("udp liveness on loopback links", () => {
  const lossy = (loss: number) => ({
    hooks: { dropDatagram: (d: Buffer) => d[0]! >= 0x10 && Math.random() < loss },
  });

  it("keeps an idle link up at 20 % loss each way for 100 probe intervals", async () => {
    // Interval 100 ms, deadline 800 ms: the default proportions at an eighth of the time.
    const timeouts = { handshakeMs: 2000, keepaliveMs: 400, idleMs: 800 };
    const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"], timeouts, udp: lossy(0.2) });
    const aLinkP = a.nextLink();
    const b = await startLinkNode({ peers: [a.mgr.listenAddresses()[0]!], timeouts, udp: lossy(0.2) });
    const bLink = (await b.nextLink()) as UdpLink;
    const aLink = (await aLinkP) as UdpLink;
    const atA = collect(aLink);
    const atB = collect(bLink);
    const downs: string[] = [];
    void atA.closed.then((r) => downs.push(`a: ${r}`));
    void atB.closed.then((r) => downs.push(`b: ${r}`));
    await new Promise((r) => setTimeout(r, 10_000));
    expect(downs).toEqual([]);
    expect(aLink.datagramsIn).toBeGreaterThan(60);
    expect(bLink.datagramsIn).toBeGreaterThan(60);
  }, 20_000);

  it("with the default timeouts, closes a link whose peer fell silent within 10 s", async () => {
    let mute = false;
    const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"], timeouts: DEFAULT_TIMEOUTS });
    const aLinkP = a.nextLink();
    const b = await startLinkNode({
      peers: [a.mgr.listenAddresses()[0]!],
      timeouts: DEFAULT_TIMEOUTS,
      udp: { hooks: { dropDatagram: () => mute } },
    });
    await b.nextLink();
    const atA = collect(await aLinkP);
    mute = true;
    const t0 = Date.now();
    expect(await atA.closed).toMatch(/^no datagram received for \d+ ms$/);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThan(7000);
    expect(took).toBeLessThan(10_000);
  }, 15_000);
});
