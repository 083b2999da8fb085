// The native udp sockets' own counters where an operator sees them (udp-native.ts udpSocketTotals):
// a datagram that does not open under its link's key and a key the socket's table refuses show up
// in planetd_udp_socket_dropped_total / _keys_refused_total and in planetctl getUdp, and the totals
// keep what a socket counted after it closes. Where the adaptive paths ran (udp_recv.c, udp_send.c):
// an idle ping-pong is read, opened, sealed and sent on the main thread, a burst goes to the
// threadpool jobs, and both show in planetd_udp_socket_{receive,send}_batches_total /
// _opened_total{path} and in getUdp.
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
import { OPEN_OK, Opener, Sealer } from "../src/overlay/links/udp-seal.js";
import { type UdpSocket, openUdpSocket } from "../src/overlay/links/udp-socket.js";
import { type Sample, emptySnapshot, parsePrometheus } from "./support/prometheus.js";
import { COOKIE, body, plain, shell } from "./support/udp-datagrams.js";

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

/** Totals minus the ones taken before: only this test's sockets are open, so only they move them. */
function pathsSince(before: ReturnType<typeof udpSocketTotals>) {
  const now = udpSocketTotals().paths;
  const minus = (a: { job: number; inline: number }, b: { job: number; inline: number }) => ({
    job: a.job - b.job,
    inline: a.inline - b.inline,
  });
  return {
    reads: minus(now.reads, before.paths.reads),
    opened: minus(now.opened, before.paths.opened),
    sends: minus(now.sends, before.paths.sends),
  };
}

/** Opens a socket with the adaptive paths (the addon reads both variables at open), then puts them back. */
async function withAdaptivePaths<T>(open: () => Promise<T>): Promise<T> {
  const saved = [process.env.PLANETD_UDP_RECV, process.env.PLANETD_UDP_SEND_INLINE];
  process.env.PLANETD_UDP_RECV = "adaptive";
  process.env.PLANETD_UDP_SEND_INLINE = "4";
  try {
    return await open();
  } finally {
    if (saved[0] === undefined) Reflect.deleteProperty(process.env, "PLANETD_UDP_RECV");
    else process.env.PLANETD_UDP_RECV = saved[0];
    if (saved[1] === undefined) Reflect.deleteProperty(process.env, "PLANETD_UDP_SEND_INLINE");
    else process.env.PLANETD_UDP_SEND_INLINE = saved[1];
  }
}

it.skipIf(!loadNativeUdp())(
  "an idle ping-pong counts inline reads, opens and sends; a burst counts threadpool jobs",
  async () => {
    // The adaptive paths, named: on two CPUs or fewer (CI's machine) the default is all inline.
    const a = await withAdaptivePaths(nativeSocket);
    const b = await withAdaptivePaths(nativeSocket);
    const aToB = randomBytes(32);
    const bToA = randomBytes(32);
    const sealAtA = new Sealer(aToB, 0, a.sealing);
    const sealAtB = new Sealer(bToA, 0, b.sealing);
    const openAtB = new Opener(aToB, b.sealing, COOKIE, 0);
    const openAtA = new Opener(bToA, a.sealing, COOKIE, 0);
    let n = 0;
    const sendOne = (from: NativeUdpSocket, to: NativeUdpSocket, sealer: Sealer, size = 60): Buffer => {
      const expected = body(n++, size);
      const d = shell(expected);
      from.send(d, to.address().port, "127.0.0.1", sealer.seal(d));
      return expected;
    };
    /** The next `count` datagrams `s` receives, each checked to open under `opener`. */
    const next = (s: NativeUdpSocket, opener: Opener, count: number) =>
      new Promise<Buffer[]>((resolve, reject) => {
        const got: Buffer[] = [];
        const timer = setTimeout(() => reject(new Error(`${got.length} of ${count} datagrams came`)), 10000);
        s.onMessage((msg, _from, opened) => {
          if (opener.open(msg, opened) !== OPEN_OK) reject(new Error("a datagram did not open"));
          got.push(Buffer.from(plain(msg)));
          if (got.length === count) {
            clearTimeout(timer);
            resolve(got);
          }
        });
      });

    const before = udpSocketTotals();
    // Ping-pong: one datagram in flight at a time, each way, 10 rounds.
    for (let round = 0; round < 10; round++) {
      const atB = next(b, openAtB, 1);
      const ping = sendOne(a, b, sealAtA);
      expect(await atB).toEqual([ping]);
      const atA = next(a, openAtA, 1);
      const pong = sendOne(b, a, sealAtB);
      expect(await atA).toEqual([pong]);
    }
    const idle = pathsSince(before);
    expect(idle.sends).toEqual({ job: 0, inline: 20 });
    expect(idle.opened).toEqual({ job: 0, inline: 20 });
    expect(idle.reads.job).toBe(0);
    expect(idle.reads.inline).toBeGreaterThanOrEqual(20);

    // A burst: 20 datagrams of growing sizes (no GSO run, so no GRO buffer) sealed and sent inline,
    // 4 a flush, all in b's socket before the loop polls again: b's first read fills its 16 slots,
    // so a receive job reads and opens the rest. Then 300 in one turn go to a send job.
    let atB = next(b, openAtB, 20);
    const expected: Buffer[] = [];
    for (let f = 0; f < 5; f++) {
      for (let i = 0; i < 4; i++) expected.push(sendOne(a, b, sealAtA, 40 + expected.length));
      await Promise.resolve(); // the flush microtask
    }
    expect(await atB).toEqual(expected);
    const burst = pathsSince(before);
    expect(burst.sends).toEqual({ job: 0, inline: 25 });
    expect(burst.reads.job).toBeGreaterThan(0);
    expect(burst.opened.job).toBeGreaterThan(0);
    expect(burst.opened.job + burst.opened.inline).toBe(40);
    atB = next(b, openAtB, 300);
    const many = Array.from({ length: 300 }, () => sendOne(a, b, sealAtA));
    expect(await atB).toEqual(many);
    const after = pathsSince(before);
    expect(after.sends.job).toBeGreaterThan(0);
    expect(after.sends.inline).toBe(25);
    expect(after.opened.job + after.opened.inline).toBe(340);

    const now = udpSocketTotals().paths;
    const samples = await scrape();
    for (const path of ["job", "inline"] as const) {
      expect(value(samples, "planetd_udp_socket_receive_batches_total", { path })).toBe(now.reads[path]);
      expect(value(samples, "planetd_udp_socket_opened_total", { path })).toBe(now.opened[path]);
      expect(value(samples, "planetd_udp_socket_send_batches_total", { path })).toBe(now.sends[path]);
    }
    const view = { udpSockets: udpSocketTotals } as unknown as AdminView;
    const response = (await COMMANDS.getudp!.run({ view, remoteTimeoutMs: 0 }, {})) as Record<
      string,
      unknown
    >;
    expect(response.send_batches).toEqual(now.sends);
    expect(response.receive_batches).toEqual(now.reads);
    expect(response.opened_by).toEqual(now.opened);
    const text = formatResponse("getudp", response);
    expect(text).toMatch(new RegExp(`Send batches: +${now.sends.job} by a job, ${now.sends.inline} inline`));
    expect(text).toMatch(
      new RegExp(
        `Receive batches: +${now.reads.job} by a job, ${now.reads.inline} inline \\(opened ${now.opened.job} by a job, ${now.opened.inline} inline\\)`,
      ),
    );
  },
);
