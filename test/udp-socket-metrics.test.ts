// The native udp sockets' own counters where an operator sees them (udp-native.ts udpSocketTotals):
// a datagram that does not open under its link's key and a key the socket's table refuses show up
// in planetd_udp_socket_dropped_total / _keys_refused_total and in planetctl getUdp, and the totals
// keep what a socket counted after it closes.
import { randomBytes } from "node:crypto";
import { afterEach, expect, it } from "vitest";
import { COMMANDS } from "../src/admin/commands.js";
import { formatResponse } from "../src/admin/format.js";
import { createMetricsRegistry } from "../src/admin/metrics-registry.js";
import type { AdminView } from "../src/admin/view.js";
import {
  type NativeUdpSocket,
  S_OPEN_FAILED,
  loadNativeUdp,
  udpSocketTotals,
} from "../src/overlay/links/udp-native.js";
import { Sealer } from "../src/overlay/links/udp-seal.js";
import { type UdpSocket, openUdpSocket } from "../src/overlay/links/udp-socket.js";
import { type Sample, emptySnapshot, parsePrometheus } from "./support/prometheus.js";
import { COOKIE, body, shell } from "./support/udp-datagrams.js";

const open: UdpSocket[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

async function nativeSocket(): Promise<NativeUdpSocket> {
  const s = await openUdpSocket({ family: 4, address: "127.0.0.1", impl: "native" });
  open.push(s);
  return s as NativeUdpSocket;
}

const value = (samples: Sample[], name: string, labels: Record<string, string>) =>
  samples.find((s) => s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v))?.value;

async function scrape(): Promise<Sample[]> {
  const snapshot = emptySnapshot({ udpSockets: udpSocketTotals() });
  return parsePrometheus(await createMetricsRegistry(() => snapshot).metrics()).samples;
}

/** `count` datagrams from `a` to `b` sealed under a key other than the one `b` holds for COOKIE. */
async function sendForged(a: NativeUdpSocket, b: NativeUdpSocket, count: number): Promise<void> {
  let arrived = 0;
  const all = new Promise<void>((resolve) => {
    b.onMessage(() => {
      if (++arrived === count) resolve();
    });
  });
  const forger = new Sealer(randomBytes(32), 0, a.sealing);
  for (let i = 0; i < count; i++) {
    const d = shell(body(i, 40));
    a.send(d, b.address().port, "127.0.0.1", forger.seal(d));
  }
  await all;
}

it.skipIf(!loadNativeUdp())(
  "a datagram that does not open and a refused key show up in the metrics and getUdp",
  async () => {
    const before = udpSocketTotals();
    const a = await nativeSocket();
    const b = await nativeSocket();
    expect(udpSocketTotals().sockets).toBe(before.sockets + 2);
    b.sealing.addOpenKey(COOKIE, 0, randomBytes(32));
    await sendForged(a, b, 2);
    // A's send key table is full after 256 keys: the 257th is refused.
    for (let i = 0; i < 256; i++) a.sealing.addKey(randomBytes(32));

    const now = udpSocketTotals();
    expect(now.dropped.open_failed - before.dropped.open_failed).toBe(2);
    expect(now.keysRefused.send - before.keysRefused.send).toBe(1);
    expect(now.sent - before.sent).toBe(2);
    const samples = await scrape();
    expect(value(samples, "planetd_udp_socket_dropped_total", { reason: "open_failed" })).toBe(
      now.dropped.open_failed,
    );
    expect(value(samples, "planetd_udp_socket_keys_refused_total", { direction: "send" })).toBe(
      now.keysRefused.send,
    );
    expect(value(samples, "planetd_udp_socket_dropped_total", { reason: "send" })).toBe(now.dropped.send);
    expect(value(samples, "planetd_udp_sockets", {})).toBe(now.sockets);

    const view = { udpSockets: udpSocketTotals } as unknown as AdminView;
    const response = (await COMMANDS.getudp!.run({ view, remoteTimeoutMs: 0 }, {})) as {
      dropped: Record<string, number>;
      keys_refused: Record<string, number>;
    };
    expect(response.dropped.open_failed).toBe(now.dropped.open_failed);
    expect(response.keys_refused.send).toBe(now.keysRefused.send);
    const text = formatResponse("getudp", response);
    expect(text).toContain(`${now.dropped.open_failed} did not open`);
    expect(text).toMatch(new RegExp(`Keys refused: +${now.keysRefused.send} send`));

    // Closed sockets' counts stay in the totals: a counter never goes down.
    for (const s of open.splice(0)) await s.close();
    const after = udpSocketTotals();
    expect(after.sockets).toBe(before.sockets);
    expect(after.dropped.open_failed).toBe(now.dropped.open_failed);
    expect(after.keysRefused.send).toBe(now.keysRefused.send);
  },
);

it.skipIf(!loadNativeUdp())(
  "a socket's 32-bit counter that wraps still only adds to the totals",
  async () => {
    const a = await nativeSocket();
    const b = await nativeSocket();
    b.sealing.addOpenKey(COOKIE, 0, randomBytes(32));
    const before = udpSocketTotals().dropped.open_failed;
    // As if 2^32 - 2 datagrams had failed to open already (the receive job adds to this word).
    b.state[S_OPEN_FAILED] = -2;
    expect(udpSocketTotals().dropped.open_failed - before).toBe(2 ** 32 - 2);
    await sendForged(a, b, 3);
    expect(b.state[S_OPEN_FAILED]).toBe(1);
    expect(udpSocketTotals().dropped.open_failed - before).toBe(2 ** 32 + 1);
    await b.close();
    expect(udpSocketTotals().dropped.open_failed - before).toBe(2 ** 32 + 1);
  },
);

it("getUdp without the view's counters (another daemon build) answers sockets: 0", async () => {
  const response = await COMMANDS.getudp!.run({ view: {} as AdminView, remoteTimeoutMs: 0 }, {});
  expect(response).toEqual({ sockets: 0 });
});
