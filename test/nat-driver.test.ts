// NatDriver's idle rule: a punched udp:// link that carries no traffic for idleMs closes, so a busy
// node does not keep a link to every destination it ever talked to; links that carry traffic, and
// links that were not punched, stay.
import pino from "pino";
import { expect, it } from "vitest";
import { NatDriver } from "../src/daemon/nat-driver.js";
import type { LinkManager } from "../src/overlay/links/manager.js";
import { UdpLink } from "../src/overlay/links/udp-link.js";
import { SIG_OFFER, encodeSignal } from "../src/overlay/nat.js";

function fakeLink(punched: boolean, b: number) {
  const closers: Array<(reason: string) => void> = [];
  const link = Object.create(UdpLink.prototype) as UdpLink & { closedFor?: string };
  const fields: Record<string, unknown> = {
    punched,
    remoteKey: Buffer.alloc(32, b),
    remote: `udp://192.0.2.${b}:4000`,
    peerAddress: `192.0.2.${b}`,
    peerPort: 4000,
    outbound: false,
  };
  for (const [name, value] of Object.entries(fields))
    Object.defineProperty(link, name, { value, writable: true });
  Object.defineProperty(link, "closed", { get: () => link.closedFor !== undefined });
  link.onClosed = (fn: (reason: string) => void) => {
    closers.push(fn);
  };
  link.close = (reason: string) => {
    if (link.closedFor !== undefined) return;
    link.closedFor = reason;
    for (const fn of closers) fn(reason);
  };
  return link;
}

it("closes punched links idle for idleMs, keeps busy and unpunched ones", async () => {
  const traffic = new Map<UdpLink, number>();
  const driver = new NatDriver({
    selfKey: Buffer.alloc(32, 1),
    // No socket (no observe round) and punches that never end: the test settles them itself.
    links: {
      punchSocket: async () => undefined,
      punch: () => new Promise(() => {}),
    } as unknown as LinkManager,
    log: pino({ level: "silent" }),
    sendSignal: () => {},
    trafficOf: (link) => traffic.get(link as UdpLink) ?? 0,
    idleMs: 10_000,
  });
  const idle = fakeLink(true, 2);
  const busy = fakeLink(true, 3);
  const plain = fakeLink(false, 4);
  const t0 = Date.now();
  // key 2 was punched: its state is "direct" until the link closes.
  const offer = encodeSignal({
    type: SIG_OFFER,
    nonce: 1,
    mapping: 0,
    candidates: [{ ip: "192.0.2.2", port: 4000 }],
  });
  driver.nat.handleSignal(idle.remoteKey, offer, t0, [{ ip: "198.51.100.1", port: 4000 }]);
  driver.nat.punchDone(idle.remoteKey, true, t0);
  expect(driver.nat.summary(t0).direct).toBe(1);
  for (const link of [idle, busy, plain]) driver.onLink(link);
  expect(driver.punchedLinks).toBe(2);
  for (let t = 1000; t <= 20_000; t += 1000) {
    traffic.set(busy, t); // a frame every second
    driver.tick(t0 + t);
    if (t < 10_000) expect(idle.closedFor).toBeUndefined();
  }
  expect(idle.closedFor).toBe("punched link idle for 10 s");
  expect(busy.closedFor).toBeUndefined();
  expect(plain.closedFor).toBeUndefined();
  expect(driver.punchedLinks).toBe(1);
  // The destination may punch again once its link closed: the state left "direct".
  expect(driver.nat.summary(t0 + 20_000).direct).toBe(0);
  driver.stop();
});
