// ICMP errors as liveness hints on the native udp:// socket (udp_err.c, udp-icmp-hints.ts): a
// listener's link whose peer's socket vanished without a word (a killed daemon: its port now answers
// port unreachable) closes about a second after the first error instead of after 8 to 10 s of
// silence; a hint while the peer lives, injected or a forged ICMP error sent through the kernel,
// costs a few probes and never the link. Both durations are printed; only the hinted one is bounded.
import { spawnSync } from "node:child_process";
import { constants } from "node:os";
import { afterEach, describe, expect, it } from "vitest";
import { COMMANDS } from "../src/admin/commands.js";
import { formatResponse } from "../src/admin/format.js";
import { createMetricsRegistry } from "../src/admin/metrics-registry.js";
import type { AdminView } from "../src/admin/view.js";
import { DEFAULT_TIMEOUTS } from "../src/overlay/links/stream.js";
import { udpIcmpHints } from "../src/overlay/links/udp-icmp-hints.js";
import {
  ACT_DEAD_HINTED,
  ACT_KEEPALIVE,
  ACT_NONE,
  ACT_PROBE,
  HINT_PROBES,
  Liveness,
  livenessFor,
} from "../src/overlay/links/udp-liveness.js";
import { loadNativeUdp, udpSocketTotals } from "../src/overlay/links/udp-native.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";
import { emptySnapshot, parsePrometheus } from "./support/prometheus.js";
import { until } from "./support/udp-pair.js";

afterEach(stopLinkNodes);

const ECONNREFUSED = constants.errno.ECONNREFUSED;

/** A listens (its socket opened with IP_RECVERR on or off), B dials; both with the default timeouts. */
async function pair(recverr: boolean, host = "127.0.0.1") {
  const saved = process.env.PLANETD_UDP_RECVERR;
  process.env.PLANETD_UDP_RECVERR = recverr ? "1" : "0";
  try {
    let crashed = false;
    const timeouts = DEFAULT_TIMEOUTS;
    const a = await startLinkNode({
      listen: [`udp://${host.includes(":") ? `[${host}]` : host}:0`],
      timeouts,
    });
    const aLinkP = a.nextLink();
    const b = await startLinkNode({
      peers: [a.mgr.listenAddresses()[0]!],
      timeouts,
      udp: { hooks: { dropDatagram: () => crashed } },
    });
    const bLink = (await b.nextLink()) as UdpLink;
    const aLink = (await aLinkP) as UdpLink;
    /** B's node dies without a word: nothing more leaves it, and its socket is closed. */
    const kill = async () => {
      crashed = true;
      await b.mgr.stop();
    };
    return { a, b, aLink, bLink, kill };
  } finally {
    if (saved === undefined) Reflect.deleteProperty(process.env, "PLANETD_UDP_RECVERR");
    else process.env.PLANETD_UDP_RECVERR = saved;
  }
}

const native = loadNativeUdp() !== undefined;

describe("Liveness under an ICMP hint", () => {
  const c = livenessFor(DEFAULT_TIMEOUTS); // 1 s interval, 8 s of silence
  /** Every action check() asks for from `from` to `to` ms, each at the wakeAt it set. */
  const run = (l: Liveness, from: number, to: number, srtt = 0) => {
    const acts: Array<[number, number]> = [];
    for (let now = from; now <= to; now = Math.max(now + 1, l.wakeAt)) {
      const act = l.check(now, srtt, 0);
      if (act !== ACT_NONE) acts.push([now, act]);
      if (act === ACT_DEAD_HINTED) break;
    }
    return acts;
  };

  it("probes HINT_PROBES times in its window, then gives a silent peer up; a datagram ends it", () => {
    const l = new Liveness(c, 0);
    l.received(400);
    expect(l.hint(500, 0, 0)).toBe(true);
    expect(l.hint(600, 0, 0)).toBe(false); // a second error keeps the first one's deadline
    const acts = run(l, 500, 5000);
    // The first probe went with the hint (UdpLink.unreachable), the rest every 1000 / HINT_PROBES ms.
    const every = Math.ceil(1000 / HINT_PROBES);
    expect(acts.filter(([, a]) => a === ACT_PROBE).map(([t]) => t)).toEqual(
      Array.from({ length: HINT_PROBES - 1 }, (_, i) => 500 + (i + 1) * every),
    );
    expect(acts.at(-1)).toEqual([1500, ACT_DEAD_HINTED]);

    const alive = new Liveness(c, 0);
    alive.hint(500, 0, 0);
    alive.received(700);
    // Back to the silence rule: a keepalive a second after the last send, no close before 8 s.
    const after = run(alive, 700, 3000);
    expect(after.some(([, a]) => a === ACT_DEAD_HINTED)).toBe(false);
    expect(after[0]).toEqual([1500, ACT_KEEPALIVE]);
  });

  it("a long RTT widens the window to three RTT bounds, never past the silence deadline", () => {
    const l = new Liveness(c, 0);
    expect(l.hintWindow(0, 0)).toBe(1000);
    expect(l.hintWindow(600, 0)).toBe(1800);
    expect(l.hintWindow(5000, 0)).toBe(l.deadline(5000, 0));
  });
});

describe.skipIf(!native)("udp:// ICMP errors as liveness hints", () => {
  // The silence deadline is 8 to 9.5 s with these timeouts; netns-tests/udp-icmp.test.ts measures
  // both against real daemons, so the unit suite does not wait out the silence here.
  it("a listener's link to a killed peer closes on the hint, far sooner than silence would", async () => {
    const { aLink, kill } = await pair(true);
    const closed = collect(aLink).closed;
    const before = { ...udpIcmpHints };
    await kill();
    const t0 = Date.now();
    const reason = await closed;
    const took = Date.now() - t0;
    console.log(`link-down ${took} ms after the peer was killed, with ICMP hints`);
    expect(took).toBeLessThan(4000);
    expect(reason).toMatch(/^no datagram received for \d+ ms after an ICMP error \(ECONNREFUSED\)$/);
    expect(aLink.icmpHints).toBeGreaterThan(0);
    expect(udpIcmpHints.probed - before.probed).toBe(1);
    expect(udpIcmpHints.closed - before.closed).toBe(1);
    // The hints an operator sees: /metrics and the socket totals getUdp shows.
    const totals = udpSocketTotals();
    const snapshot = emptySnapshot({ udpSockets: totals });
    const samples = parsePrometheus(await createMetricsRegistry(() => snapshot).metrics()).samples;
    const closedSample = samples.find(
      (s) => s.name === "planetd_udp_icmp_hints_total" && s.labels.outcome === "closed",
    );
    expect(closedSample?.value).toBe(totals.icmpHints.closed);
    const view = { udpSockets: udpSocketTotals } as unknown as AdminView;
    const json = (await COMMANDS.getudp!.run({ view, remoteTimeoutMs: 0 }, {})) as {
      icmp_hints: Record<string, number>;
    };
    expect(json.icmp_hints).toEqual(udpSocketTotals().icmpHints);
    expect(formatResponse("getudp", json)).toMatch(
      new RegExp(
        `ICMP hints: +${json.icmp_hints.received} received: ${json.icmp_hints.probed} probed \\(${json.icmp_hints.closed} closed`,
      ),
    );
  });

  it("with IP_RECVERR off (PLANETD_UDP_RECVERR=0) a killed peer's link sees no hint", async () => {
    const { aLink, bLink, kill } = await pair(false);
    await kill();
    // B's stopped socket answers A's next datagrams with port unreachable; without IP_RECVERR A's
    // socket never reads them. Give them time to arrive, then the link must still be up, unhinted.
    for (let i = 0; i < 3; i++) aLink.send(Buffer.from([9, i]));
    await new Promise((r) => setTimeout(r, 300));
    expect(aLink.icmpHints).toBe(0);
    expect(aLink.closed).toBe(false);
    expect(bLink.closed).toBe(true);
  });

  it("on IPv6 too (IPV6_RECVERR)", async () => {
    const { aLink, kill } = await pair(true, "::1");
    const closed = collect(aLink).closed;
    await kill();
    const t0 = Date.now();
    expect(await closed).toMatch(/after an ICMP error \(ECONNREFUSED\)$/);
    expect(Date.now() - t0).toBeLessThan(4000);
  }, 10_000);

  it("a dialer's link takes its port unreachable as a hint too, not as a close", async () => {
    let crashed = false;
    const a = await startLinkNode({
      listen: ["udp://127.0.0.1:0"],
      timeouts: DEFAULT_TIMEOUTS,
      udp: { hooks: { dropDatagram: () => crashed } },
    });
    const b = await startLinkNode({ peers: [a.mgr.listenAddresses()[0]!], timeouts: DEFAULT_TIMEOUTS });
    const bLink = (await b.nextLink()) as UdpLink;
    const closed = collect(bLink).closed;
    crashed = true;
    await a.mgr.stop();
    const t0 = Date.now();
    expect(await closed).toMatch(/^no datagram received for \d+ ms after an ICMP error \(ECONNREFUSED\)$/);
    expect(Date.now() - t0).toBeLessThan(4000);
  }, 10_000);

  it("a hint while the peer lives costs probes, never the link", async () => {
    const { aLink } = await pair(true);
    const down = collect(aLink).closed.then((r) => `closed: ${r}`);
    const before = { ...udpIcmpHints };
    const heardBefore = aLink.datagramsIn;
    aLink.unreachable(ECONNREFUSED);
    aLink.unreachable(ECONNREFUSED);
    expect(udpIcmpHints.probed - before.probed).toBe(1);
    expect(udpIcmpHints.repeated - before.repeated).toBe(1);
    // The probe's answer is authentic: it ends the hint.
    await until(() => udpIcmpHints.cancelled > before.cancelled, 3000);
    expect(aLink.datagramsIn).toBeGreaterThan(heardBefore);
    // Well past the short deadline (1 s here), the link is still up.
    const outcome = await Promise.race([down, new Promise((r) => setTimeout(() => r("up"), 2500))]);
    expect(outcome).toBe("up");
    expect(udpIcmpHints.closed).toBe(before.closed);
  }, 10_000);

  it.skipIf(process.getuid?.() !== 0 || spawnSync("python3", ["-c", ""]).status !== 0)(
    "a forged ICMP port unreachable sent through the kernel is read as a hint and does not close a live link",
    async () => {
      const { a, aLink, bLink } = await pair(true);
      const aPort = Number(new URL(a.mgr.listenAddresses()[0]!).port);
      const down = collect(aLink).closed.then((r) => `closed: ${r}`);
      const before = { ...udpIcmpHints };
      const heardAtB = bLink.datagramsIn;
      // An ICMP port unreachable quoting a datagram from A's port to B's, from a raw socket: the
      // kernel queues it on A's socket as if B's host had sent it.
      const forged = spawnSync("python3", ["-c", FORGE, String(aPort), String(aLink.peerPort)], {
        encoding: "utf8",
      });
      expect(forged.status, forged.stderr).toBe(0);
      await until(() => udpIcmpHints.received > before.received, 3000);
      expect(aLink.icmpHints).toBe(1);
      await until(() => udpIcmpHints.cancelled > before.cancelled, 3000);
      // A's sends after the error (its probe among them) reached B: the socket error the kernel set
      // with it was not taken for theirs.
      await until(() => bLink.datagramsIn > heardAtB, 3000);
      const outcome = await Promise.race([down, new Promise((r) => setTimeout(() => r("up"), 2500))]);
      expect(outcome).toBe("up");
    },
    10_000,
  );
});

/** argv: A's port (the quoted source), B's port (the quoted destination); 127.0.0.1 both. */
const FORGE = `
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b"\\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    s = (s >> 16) + (s & 0xffff); s += s >> 16
    return ~s & 0xffff
src, dst = int(sys.argv[1]), int(sys.argv[2])
lo = socket.inet_aton("127.0.0.1")
udp = struct.pack("!HHHH", src, dst, 8 + 17, 0) + bytes(17)
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, lo, lo)
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
icmp = struct.pack("!BBHI", 3, 3, 0, 0) + ip + udp
icmp = icmp[:2] + struct.pack("!H", csum(icmp)) + icmp[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.sendto(icmp, ("127.0.0.1", 0))
`;
