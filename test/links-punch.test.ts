// Puncher (src/overlay/links/punch.ts): what each side sends during a punch. A side behind a NAT
// opens it first with low-hop-limit datagrams; a public side (reflexive address = its own) stays
// silent for that phase, because its datagram to the peer's NAT address would reach that NAT (the
// hop limit only counts forwarding) and make it map the peer to another port.
import { afterEach, beforeEach, expect, it, vi } from "vitest";
import { Puncher } from "../src/overlay/links/punch.js";
import type { UdpListener } from "../src/overlay/links/udp.js";

function fakeSocket() {
  const events: Array<{ at: number; what: string }> = [];
  const socket = {
    lowTtl: (on: boolean) => events.push({ at: Date.now(), what: on ? "ttl-low" : "ttl-normal" }),
    punchOpen: (ip: string, port: number) => events.push({ at: Date.now(), what: `open ${ip}:${port}` }),
    punchDial: (o: { address: string; port: number }) => {
      events.push({ at: Date.now(), what: `dial ${o.address}:${o.port}` });
      return { link: new Promise(() => {}), cancel: () => {} };
    },
  } as unknown as UdpListener;
  return { socket, events };
}

function puncher(socket: UdpListener) {
  return new Puncher({
    configuredUdp: () => socket,
    bindPunchSocket: () => Promise.reject(new Error("not in this test")),
    preferredPort: 0,
    refusal: () => undefined,
    admit: () => {},
    stopped: () => false,
  });
}

const KEY = Buffer.alloc(32, 9);
const PEER = [{ ip: "192.0.2.7", port: 4000 }];

beforeEach(() => {
  vi.useFakeTimers({ now: 0 });
});
afterEach(() => {
  vi.useRealTimers();
});

it("behind a NAT: low hop limit opens from the start, then the dialer's INITs at the normal hop limit", async () => {
  const { socket, events } = fakeSocket();
  const done = puncher(socket).punch(KEY, PEER, true, 2000, true);
  await vi.advanceTimersByTimeAsync(2300);
  expect(await done).toBeUndefined();
  expect(events[0]).toEqual({ at: 0, what: "ttl-low" });
  expect(events.filter((e) => e.what.startsWith("open")).map((e) => e.at)).toEqual([0, 200, 400]);
  expect(events.find((e) => e.what === "ttl-normal")!.at).toBe(500);
  expect(events.find((e) => e.what.startsWith("dial"))!.at).toBe(500);
});

it("public: nothing during the opening phase; the side that only opens starts after it", async () => {
  for (const dial of [true, false]) {
    const { socket, events } = fakeSocket();
    const done = puncher(socket).punch(KEY, PEER, dial, 2000, false);
    await vi.advanceTimersByTimeAsync(2300);
    expect(await done).toBeUndefined();
    expect(events.some((e) => e.what.startsWith("ttl"))).toBe(false);
    expect(events.filter((e) => e.at < 500)).toEqual([]);
    if (dial) expect(events.map((e) => e.what)).toEqual(["dial 192.0.2.7:4000"]);
    else expect(events.filter((e) => e.what.startsWith("open")).length).toBeGreaterThanOrEqual(8);
  }
});
