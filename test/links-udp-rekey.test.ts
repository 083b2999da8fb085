// udp:// rekeying (udp-rekey.ts): the key phase bit, then LinkManagers on loopback renewing the keys
// of a busy link many times with nothing lost, by datagram count, with both ends starting at once,
// and with every kind of rekey datagram lost (the UdpHooks drop them before sealing).
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import type { Link } from "../src/overlay/links/link.js";
import type { LinkManagerConfig } from "../src/overlay/links/manager.js";
import {
  OPEN_FORGED,
  OPEN_OK,
  Opener,
  SEAL_BODY_AT,
  SEAL_TAG,
  Sealer,
} from "../src/overlay/links/udp-seal.js";
import { PKT_REKEY, PKT_REKEY_ACK } from "../src/overlay/links/udp-wire.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";

afterEach(async () => {
  await stopLinkNodes();
});

const FAST = { afterMs: 200, afterDatagrams: 2 ** 30, graceMs: 100 };

/** Two LinkManagers linked over udp:// on loopback; each end's outgoing datagrams pass `drop`. */
async function pair(
  rekey: Partial<typeof FAST>,
  drop: { a?: (d: Buffer) => boolean; b?: (d: Buffer) => boolean } = {},
) {
  const cfg = (f?: (d: Buffer) => boolean): Partial<LinkManagerConfig> => ({
    udp: { rekey, hooks: { dropDatagram: (d) => f?.(d) ?? false } },
  });
  const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"], ...cfg(drop.a) });
  const aLink = a.nextLink();
  const b = await startLinkNode({ peers: [a.mgr.listenAddresses()[0]!], ...cfg(drop.b) });
  return { a, b, aLink: (await aLink) as UdpLink, bLink: (await b.nextLink()) as UdpLink };
}

/** Sends protocol frames (type 1) and traffic frames (type 9) numbered from 0, in paced slices. */
async function stream(link: Link, count: number, type: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    const f = randomBytes(200);
    f[0] = type;
    f.writeUInt32BE(i, 1);
    link.send(f);
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 2));
  }
}

const until = async (cond: () => boolean, ms = 10_000) => {
  for (let t = 0; t < ms && !cond(); t += 10) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
};

describe("the key phase", () => {
  it("is sealed into the nonce: the same key with the other phase bit does not open", () => {
    const key = randomBytes(32);
    const d = Buffer.alloc(SEAL_BODY_AT + 40 + SEAL_TAG);
    d[0] = 0x10;
    new Sealer(key, 1).seal(d);
    expect(d[9]! >>> 7).toBe(1);
    expect(new Opener(key).open(Buffer.from(d))).toBe(OPEN_OK);
    const flipped = Buffer.from(d);
    flipped[9]! ^= 0x80;
    expect(new Opener(key).open(flipped)).toBe(OPEN_FORGED);
  });
});

describe("udp rekeying on loopback", () => {
  it("renews the keys of a busy link many times: every protocol and traffic frame arrives, nothing forged", async () => {
    const { aLink, bLink } = await pair(FAST);
    const atA = collect(aLink);
    const N = 6000;
    await Promise.all([stream(bLink, N, 1), stream(bLink, N, 9)]);
    await atA.until((f) => f.filter((x) => x[0] === 1).length === N);
    await until(() => bLink.keys.generation >= 5 && aLink.keys.generation >= 5);
    const proto = atA.frames.filter((x) => x[0] === 1).map((x) => x.readUInt32BE(1));
    expect(proto).toEqual([...Array(N).keys()]);
    // Traffic is best effort, but loopback loses none: a key switch must not either.
    await until(() => atA.frames.filter((x) => x[0] === 9).length === N);
    expect(aLink.forged + bLink.forged).toBe(0);
    expect(aLink.closed || bLink.closed).toBe(false);
  }, 30_000);

  it("starts a rekey by datagram count", async () => {
    const { aLink, bLink } = await pair({ afterMs: 3_600_000, afterDatagrams: 30, graceMs: 20 });
    const atA = collect(aLink);
    await stream(bLink, 2000, 1);
    await atA.until((f) => f.length === 2000);
    await until(() => bLink.keys.rekeys >= 2);
    expect(aLink.keys.generation).toBe(bLink.keys.generation);
  });

  it("both ends starting at once make one exchange (the dialer's)", async () => {
    const { aLink, bLink } = await pair({ afterMs: 3_600_000, afterDatagrams: 2 ** 30, graceMs: 50 });
    aLink.keys.start();
    bLink.keys.start();
    await until(() => aLink.keys.generation === 1 && bLink.keys.generation === 1);
    await new Promise((r) => setTimeout(r, 200));
    expect([aLink.keys.generation, bLink.keys.generation]).toEqual([1, 1]);
    const atA = collect(aLink);
    bLink.send(Buffer.from([1, 42]));
    await atA.until((f) => f.length === 1);
  });

  for (const lost of ["REKEY", "REKEY ACK", "first datagrams under the new key"] as const) {
    it(`survives the loss of the ${lost}`, async () => {
      // B (the dialer) initiates; A answers. Each rule drops the first 3 of its kind.
      let left = 3;
      let dropAfterAnswer = false;
      const dropB = (d: Buffer) => {
        if (lost === "REKEY" && d[0] === PKT_REKEY && left > 0) return left-- > 0;
        if (lost === "first datagrams under the new key" && dropAfterAnswer && left > 0) return left-- > 0;
        return false;
      };
      const dropA = (d: Buffer) => {
        if (d[0] === PKT_REKEY_ACK) dropAfterAnswer = true;
        if (lost === "REKEY ACK" && d[0] === PKT_REKEY_ACK && left > 0) return left-- > 0;
        return false;
      };
      const { aLink, bLink } = await pair(
        { afterMs: 3_600_000, afterDatagrams: 2 ** 30, graceMs: 50 },
        { a: dropA, b: dropB },
      );
      bLink.keys.start();
      await until(() => aLink.keys.generation === 1 && bLink.keys.generation === 1);
      expect(left).toBe(0);
      if (lost !== "first datagrams under the new key") expect(bLink.keys.rekeyResends).toBeGreaterThan(0);
      // Both ways work under the new keys, and nothing was refused.
      const atA = collect(aLink);
      const atB = collect(bLink);
      bLink.send(Buffer.from([1, 1]));
      aLink.send(Buffer.from([1, 2]));
      await atA.until((f) => f.length === 1);
      await atB.until((f) => f.length === 1);
      expect(aLink.forged + bLink.forged).toBe(0);
    });
  }

  it("keeps the link through rekeys at 20 % loss of every datagram each way, protocol frames in order", async () => {
    const lossy = () => Math.random() < 0.2;
    const { aLink, bLink } = await pair(FAST, { a: lossy, b: lossy });
    const atA = collect(aLink);
    await stream(bLink, 1000, 1);
    await atA.until((f) => f.length === 1000);
    await until(() => aLink.keys.generation >= 4 && bLink.keys.generation >= 4);
    expect(atA.frames.map((x) => x.readUInt32BE(1))).toEqual([...Array(1000).keys()]);
    expect(aLink.closed || bLink.closed).toBe(false);
    expect(aLink.forged + bLink.forged).toBe(0);
  }, 30_000);

  it("gives an exchange up after bounded tries, and the link stays up", async () => {
    const { aLink, bLink } = await pair(
      { afterMs: 3_600_000, afterDatagrams: 2 ** 30, graceMs: 50 },
      { b: (d) => d[0] === PKT_REKEY },
    );
    bLink.keys.start();
    await until(() => bLink.keys.rekeysAbandoned === 1);
    expect(bLink.keys.rekeyResends).toBe(7);
    expect([aLink.keys.generation, bLink.keys.generation]).toEqual([0, 0]);
    const atA = collect(aLink);
    bLink.send(Buffer.from([1, 3]));
    await atA.until((f) => f.length === 1);
    expect(aLink.closed).toBe(false);
  });
});
