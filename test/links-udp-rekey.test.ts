// udp:// rekeying (udp-rekey.ts): LinkManagers on loopback renewing the keys of a busy link many
// times with nothing lost, by datagram count, with both ends starting at once, and with every kind
// of rekey datagram lost (the UdpHooks drop them before sealing). The key phase bit and the keys'
// limits: links-udp-rekey-limits.test.ts.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { PKT_REKEY, PKT_REKEY_ACK } from "../src/overlay/links/udp-wire.js";
import { collect, stopLinkNodes } from "./support/links.js";
import { stream, udpPair, until } from "./support/udp-pair.js";

afterEach(async () => {
  await stopLinkNodes();
});

const FAST = { afterMs: 200, afterDatagrams: 2 ** 30, graceMs: 100 };

describe("udp rekeying on loopback", () => {
  it("renews the keys of a busy link many times: every protocol and traffic frame arrives, nothing forged", async () => {
    const { aLink, bLink } = await udpPair(FAST);
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
    const { aLink, bLink } = await udpPair({ afterMs: 3_600_000, afterDatagrams: 30, graceMs: 20 });
    const atA = collect(aLink);
    await stream(bLink, 2000, 1);
    await atA.until((f) => f.length === 2000);
    await until(() => bLink.keys.rekeys >= 2);
    // B (the initiator) switches when A's REKEY ACK arrives, A only when B's first datagram under
    // the new key does: if the stream's last rekey is in flight, A is one generation behind until
    // then. Wait (bounded) for the two to agree.
    await until(
      () => aLink.keys.generation === bLink.keys.generation,
      10_000,
      () => `A's key generation ${aLink.keys.generation} never reached B's ${bLink.keys.generation}`,
    );
  });

  it("both ends starting at once make one exchange (the dialer's)", async () => {
    const { aLink, bLink } = await udpPair({ afterMs: 3_600_000, afterDatagrams: 2 ** 30, graceMs: 50 });
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
      const { aLink, bLink } = await udpPair(
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
    const { aLink, bLink } = await udpPair(FAST, { a: lossy, b: lossy });
    const atA = collect(aLink);
    await stream(bLink, 1000, 1);
    await atA.until((f) => f.length === 1000);
    await until(() => aLink.keys.generation >= 4 && bLink.keys.generation >= 4);
    expect(atA.frames.map((x) => x.readUInt32BE(1))).toEqual([...Array(1000).keys()]);
    expect(aLink.closed || bLink.closed).toBe(false);
    expect(aLink.forged + bLink.forged).toBe(0);
  }, 30_000);

  it("gives an exchange up after bounded tries, and the link stays up", async () => {
    const { aLink, bLink } = await udpPair(
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
