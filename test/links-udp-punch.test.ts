// NAT traversal's link-level parts on loopback: OBSERVE sent from another socket (the punch socket)
// is answered over the link with that socket's source and never moves the link; a punch dial from a
// listener's socket opens a link only to the expected key.
import { afterEach, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { DEFAULT_TIMEOUTS } from "../src/overlay/links/stream.js";
import { type UdpLink, UdpListener, dialUdp } from "../src/overlay/links/udp.js";
import { until } from "./support/udp-pair.js";

const open: Array<{ close(): unknown }> = [];
afterEach(async () => {
  for (const x of open.splice(0)) await x.close();
});

async function listener(id: Identity, onLink: (l: UdpLink) => void = () => {}) {
  const l = await UdpListener.bind({
    host: "127.0.0.1",
    port: 0,
    localKey: id.publicKey,
    sign: (m) => id.sign(m),
    priority: 0,
    timeouts: DEFAULT_TIMEOUTS,
    check: () => undefined,
    onLink,
    onSocketError: () => {},
  });
  open.push(l);
  return l;
}

it("answers an OBSERVE from another socket with that socket's address, over the link", async () => {
  const [a, p] = [Identity.generate(), Identity.generate()];
  let pLink: UdpLink | undefined;
  const lp = await listener(p, (l) => {
    pLink = l;
  });
  const punchSocket = await listener(a);
  const dial = dialUdp({
    address: "127.0.0.1",
    port: lp.port,
    localKey: a.publicKey,
    sign: (m) => a.sign(m),
    priority: 0,
    timeouts: DEFAULT_TIMEOUTS,
    remote: `udp://127.0.0.1:${lp.port}`,
    check: () => undefined,
  });
  const link = await dial.link;
  open.push({ close: () => link.close("done") });
  const answer = new Promise<{ nonce: number; ip: string; port: number }>((resolve) => {
    link.onObserved = (nonce, ip, port) => resolve({ nonce, ip, port });
  });
  punchSocket.sendTo(link.observeDatagram(0xabcdef01)!, "127.0.0.1", lp.port);
  expect(await answer).toEqual({ nonce: 0xabcdef01, ip: "127.0.0.1", port: punchSocket.port });
  // The listener's link stays where the dialer's socket is: an OBSERVE is no reason to roam.
  expect(pLink!.peerPort).not.toBe(punchSocket.port);
  // A replayed OBSERVE is not answered again.
  const again = link.observeDatagram(7)!;
  let answers = 0;
  link.onObserved = () => answers++;
  punchSocket.sendTo(again, "127.0.0.1", lp.port);
  punchSocket.sendTo(again, "127.0.0.1", lp.port);
  // The first is answered over the link (a round trip through both sockets, later on a loaded
  // machine: wait for it), the second, read right behind it, never is.
  await until(
    () => answers >= 1,
    5000,
    () => "the first OBSERVE's answer never came",
  );
  await new Promise((r) => setTimeout(r, 200));
  expect(answers).toBe(1);
});

it("a punch dial from a listener's socket links to the expected key only", async () => {
  const [a, b, other] = [Identity.generate(), Identity.generate(), Identity.generate()];
  const inbound: UdpLink[] = [];
  const la = await listener(a);
  const lb = await listener(b, (l) => inbound.push(l));
  const wrong = la.punchDial({
    address: "127.0.0.1",
    port: lb.port,
    expectKey: other.publicKey,
    intervalMs: 50,
    timeoutMs: 400,
  });
  await expect(wrong.link).rejects.toThrow(/no answer/);
  expect(inbound.length).toBe(0);
  const right = la.punchDial({
    address: "127.0.0.1",
    port: lb.port,
    expectKey: b.publicKey,
    intervalMs: 50,
    timeoutMs: 2000,
  });
  const link = await right.link;
  expect(link.remoteKey.equals(b.publicKey)).toBe(true);
  expect(link.outbound).toBe(true);
  await new Promise((r) => setTimeout(r, 50));
  expect(inbound.length).toBe(1);
  expect(inbound[0]!.remoteKey.equals(a.publicKey)).toBe(true);
  expect(inbound[0]!.peerPort).toBe(la.port);
});
