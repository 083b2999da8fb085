// Two counters an operator reads to see where udp:// traffic went: frames the native socket joined
// from one read's fragment datagrams (udp_recv.c join_runs, S_JOINED) in
// planetd_udp_socket_frames_joined_total and getUdp's frames_joined, and flushes that found the
// end-of-input list full (src/util/end-of-input.ts) in planetd_end_of_input_overflows_total and
// getUdp's end_of_input_overflows. Each is moved for real and read back from a running node's
// /metrics and from getUdp (JSON and text).
import { randomBytes } from "node:crypto";
import { afterEach, expect, it } from "vitest";
import { COMMANDS } from "../src/admin/commands.js";
import { formatResponse } from "../src/admin/format.js";
import type { AdminView } from "../src/admin/view.js";
import { loadNativeUdp, udpSocketTotals } from "../src/overlay/links/udp-native.js";
import { OPEN_OK, Opener, Sealer } from "../src/overlay/links/udp-seal.js";
import { openedCount } from "../src/overlay/links/udp-socket-types.js";
import { beginInput, endInput, endOfInputOverflows, flushAtEndOfInput } from "../src/util/end-of-input.js";
import { startMember, stopAll } from "./support/nodes.js";
import { parsePrometheus } from "./support/prometheus.js";
import { COOKIE, closeNativeSockets, collectOpened, nativeSocket } from "./support/udp-datagrams.js";
import { value } from "./support/udp-refusals.js";

afterEach(async () => {
  await closeNativeSockets();
  await stopAll();
});

async function runningNode() {
  const m = await startMember({ Planetd: { MetricsListen: "127.0.0.1:0", LogLevel: "info" } });
  return async (name: string) => {
    const res = await fetch(m.node.metricsAddress);
    return value(parsePrometheus(await res.text()).samples, name, {});
  };
}

async function getUdp(): Promise<{ json: Record<string, unknown>; text: string }> {
  const view = { udpSockets: udpSocketTotals, endOfInputOverflows } as unknown as AdminView;
  const json = (await COMMANDS.getudp!.run({ view, remoteTimeoutMs: 0 }, {})) as Record<string, unknown>;
  return { json, text: formatResponse("getudp", json) };
}

it.skipIf(!loadNativeUdp())("a frame the socket joined from one read moves frames_joined", async () => {
  const read = await runningNode();
  const before = udpSocketTotals().framesJoined;
  expect(await read("planetd_udp_socket_frames_joined_total")).toBe(before);

  const a = await nativeSocket();
  const b = await nativeSocket();
  const key = randomBytes(32);
  const tx = new Sealer(key, 0, a.sealing);
  const rx = new Opener(key, b.sealing, COOKIE, 0);
  // Two frames, each sent as one run the socket seals and receives in one read: joined there.
  for (const id of [1, 2]) {
    const frame = randomBytes(6000 + id);
    const fragments = { frame, count: 5, id, cookie: COOKIE, counterHi: 0, counterLo: 0, keySlot: -1 };
    const arrived = collectOpened(b, 1);
    expect(tx.reserve(fragments) && a.sendFragments(fragments, b.address().port, "127.0.0.1")).toBe(true);
    const [whole] = await arrived;
    expect(openedCount(whole!.opened)).toBe(5);
    expect(rx.open(whole!.msg, whole!.opened)).toBe(OPEN_OK);
  }

  const now = udpSocketTotals().framesJoined;
  expect(now - before).toBe(2);
  expect(await read("planetd_udp_socket_frames_joined_total")).toBe(now);
  const { json, text } = await getUdp();
  expect(json.frames_joined).toBe(now);
  expect(text).toMatch(new RegExp(`Frames joined: +${now} `));
  // A closed socket's joins stay in the total.
  await closeNativeSockets();
  expect(udpSocketTotals().framesJoined).toBe(now);
});

it("flushes past the end-of-input list's 1024 move end_of_input_overflows, and all still run", async () => {
  const read = await runningNode();
  const before = endOfInputOverflows();
  expect(await read("planetd_end_of_input_overflows_total")).toBe(before);

  let ran = 0;
  const flushes = Array.from({ length: 1030 }, () => () => void ran++);
  const tick = new Promise<void>((resolve) => process.nextTick(resolve));
  beginInput();
  try {
    for (const f of flushes) flushAtEndOfInput(f);
  } finally {
    endInput();
  }
  // The list's 1024 ran at the end of the input; the 6 it had no room for run on the next tick.
  expect(ran).toBe(1024);
  await tick;
  expect(ran).toBe(1030);

  const now = endOfInputOverflows();
  expect(now - before).toBe(6);
  expect(await read("planetd_end_of_input_overflows_total")).toBe(now);
  const { json, text } = await getUdp();
  expect(json.end_of_input_overflows).toBe(now);
  expect(text).toMatch(new RegExp(`Flushes deferred: +${now} `));
});
