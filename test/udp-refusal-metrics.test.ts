// What the udp:// handshake and reset paths refuse, where an operator sees it (udp-refusals.ts):
// a replayed CONFIRM, a closed link's cookie evicted from the bounded spent set, a RESET without
// the link's token and a RESET withheld from a stray datagram naming a cookie that may be live,
// and a replayed and a forged datagram on a live link, each provoked on a real listener, read back
// from the Prometheus scrape and from planetctl getUdp, and still there after the listener closed.
// The last test reads a running Node's /metrics.
import { randomBytes } from "node:crypto";
import { afterEach, expect, it } from "vitest";
import { COMMANDS } from "../src/admin/commands.js";
import { formatResponse } from "../src/admin/format.js";
import type { AdminView } from "../src/admin/view.js";
import { Identity } from "../src/crypto/identity.js";
import { resetCommitment } from "../src/overlay/links/udp-handshake.js";
import { udpSocketTotals } from "../src/overlay/links/udp-native.js";
import { udpRefusalTotals } from "../src/overlay/links/udp-refusals.js";
import { Sealer } from "../src/overlay/links/udp-seal.js";
import { startMember, stopAll } from "./support/nodes.js";
import { parsePrometheus } from "./support/prometheus.js";
import { shell } from "./support/udp-datagrams.js";
import { until } from "./support/udp-pair.js";
import * as raw from "./support/udp-raw.js";
import { scrapeRefusals, value } from "./support/udp-refusals.js";

afterEach(async () => {
  await raw.closeRawUdp();
  await stopAll();
});

it("a replayed CONFIRM, an evicted spent cookie, a RESET without its token, a withheld RESET and a replayed and a forged datagram are counted in the metrics and getUdp", async () => {
  const before = udpRefusalTotals();
  // Two closed links' cookies kept (4096 in the daemon): the third closed link evicts the first's.
  const { l: b, nextLink } = await raw.bareListener(Identity.generate(), randomBytes(32), 0, () => false, 2);

  // The peer's link closes; the CONFIRM that made it comes again from its address: refused.
  const first = await raw.rawDial(b.port, Identity.generate());
  (await nextLink()).close("the peer went away");
  first.socket.send(first.confirm);
  await until(() => b.confirmsReplayed === 1, 3000);

  for (let i = 0; i < 2; i++) {
    await raw.rawDial(b.port, Identity.generate());
    (await nextLink()).close("done");
  }
  expect(b.spentCookiesEvicted).toBe(1);

  // From a live link's own address, a RESET naming it with a token other than the committed one.
  const live = await raw.rawDial(b.port, Identity.generate(), resetCommitment(randomBytes(16)));
  const liveLink = await nextLink();
  live.socket.send(raw.resetFor(live.dc, randomBytes(16)));
  await until(() => liveLink.resetsRefused === 1, 3000);
  expect(liveLink.closed).toBe(false);

  // On that link: a datagram sealed under its key, the same again (replayed), and the next one
  // with a bit of its tag flipped (forged: a fresh counter, so only the tag refuses it).
  const tx = new Sealer(live.keys.d2l);
  const [datagram, flipped] = [shell(Buffer.alloc(0), live.lc), shell(Buffer.alloc(0), live.lc)];
  tx.seal(datagram);
  tx.seal(flipped);
  flipped[flipped.length - 1]! ^= 1;
  live.socket.send(datagram);
  await until(() => liveLink.datagramsIn === 1, 3000);
  live.socket.send(datagram);
  live.socket.send(flipped);
  await until(() => liveLink.replayed === 1 && liveLink.forged === 1, 3000);

  // An observer names a CHALLENGE cookie whose CONFIRM is still to come: no RESET.
  const { lc } = await raw.challenged(b.port);
  expect(await raw.askForReset(await raw.rawSocket(), b.port, raw.strayFor(lc))).toBeUndefined();
  expect(b.resetsWithheld).toBe(1);

  const now = udpRefusalTotals();
  expect(now.confirmsRefused.replayed - before.confirmsRefused.replayed).toBe(1);
  expect(now.spentCookiesEvicted - before.spentCookiesEvicted).toBe(1);
  expect(now.resetsRefused.receive - before.resetsRefused.receive).toBe(1);
  expect(now.resetsRefused.send - before.resetsRefused.send).toBe(1);
  expect(now.datagramsRefused.forged - before.datagramsRefused.forged).toBe(1);
  expect(now.datagramsRefused.replayed - before.datagramsRefused.replayed).toBe(1);

  const samples = await scrapeRefusals();
  expect(value(samples, "planetd_udp_confirms_refused_total", { reason: "replayed" })).toBe(
    now.confirmsRefused.replayed,
  );
  expect(value(samples, "planetd_udp_spent_cookies_evicted_total")).toBe(now.spentCookiesEvicted);
  expect(value(samples, "planetd_udp_resets_refused_total", { direction: "receive" })).toBe(
    now.resetsRefused.receive,
  );
  expect(value(samples, "planetd_udp_resets_refused_total", { direction: "send" })).toBe(
    now.resetsRefused.send,
  );
  for (const reason of ["forged", "replayed"] as const) {
    expect(value(samples, "planetd_udp_link_datagrams_refused_total", { reason })).toBe(
      now.datagramsRefused[reason],
    );
  }

  // getUdp: with the native sockets' counters and without them (node:dgram only).
  for (const view of [
    { udpSockets: udpSocketTotals, udpRefusals: udpRefusalTotals },
    { udpRefusals: udpRefusalTotals },
  ]) {
    const response = (await COMMANDS.getudp!.run(
      { view: view as unknown as AdminView, remoteTimeoutMs: 0 },
      {},
    )) as {
      sockets: number;
      resets_refused: Record<string, number>;
      confirms_refused: Record<string, number>;
      spent_cookies_evicted: number;
      link_datagrams_refused: Record<string, number>;
    };
    expect(response.sockets).toBe(view.udpSockets ? udpSocketTotals().sockets : 0);
    expect(response.resets_refused).toEqual(now.resetsRefused);
    expect(response.confirms_refused.replayed).toBe(now.confirmsRefused.replayed);
    expect(response.spent_cookies_evicted).toBe(now.spentCookiesEvicted);
    expect(response.link_datagrams_refused).toEqual(now.datagramsRefused);
    const text = formatResponse("getudp", response);
    expect(text).toMatch(
      new RegExp(
        `RESETs refused: +${now.resetsRefused.send} withheld .*, ${now.resetsRefused.receive} received without`,
      ),
    );
    expect(text).toMatch(
      new RegExp(
        `CONFIRMs refused: +${now.confirmsRefused.replayed} replayed \\(${now.spentCookiesEvicted} closed`,
      ),
    );
    expect(text).toMatch(
      new RegExp(
        `Link datagrams refused: +${now.datagramsRefused.forged} forged .*, ${now.datagramsRefused.replayed} replayed`,
      ),
    );
  }

  // The listener and its links close: a total never goes down.
  await raw.closeRawUdp();
  expect(liveLink.closed).toBe(true);
  expect(udpRefusalTotals()).toEqual(now);
});

it("a running node's /metrics shows its udp listener's withheld RESET", async () => {
  const m = await startMember({
    Listen: ["udp://127.0.0.1:0"],
    Planetd: { MetricsListen: "127.0.0.1:0", LogLevel: "info" },
  });
  const port = Number(new URL(m.node.links.listenAddresses()[0]!).port);
  const read = async () => {
    const res = await fetch(m.node.metricsAddress);
    const samples = parsePrometheus(await res.text()).samples;
    return value(samples, "planetd_udp_resets_refused_total", { direction: "send" });
  };
  const before = await read();
  const { lc } = await raw.challenged(port);
  expect(await raw.askForReset(await raw.rawSocket(), port, raw.strayFor(lc))).toBeUndefined();
  expect(await read()).toBe((before ?? 0) + 1);
});
