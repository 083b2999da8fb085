// udp:// keys (udp-rekey.ts, udp-seal.ts): the key phase bit in the nonce, and the keys at their
// real limits, reached without sealing 2^30 datagrams: a test-only hook
// (LinkKeys.testOnlySkipTo) starts the send counter just below them. The default count trigger
// (2^30 datagrams under one key) starts a rekey at the threshold, the key phase flips, nothing is
// lost or refused, and no counter repeats under one key. At the counter's hard limit (2^48, far
// below the 2^63 the nonce could hold and JavaScript's 2^53 exact integers) a link whose rekeys
// fail closes before sealing a datagram past it, and the receiver would refuse one anyway.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { udpSocketTotals } from "../src/overlay/links/udp-native.js";
import { DEFAULT_REKEY } from "../src/overlay/links/udp-rekey.js";
import {
  MAX_COUNTER,
  OPEN_FORGED,
  OPEN_OK,
  Opener,
  SEAL_BODY_AT,
  SEAL_TAG,
  Sealer,
} from "../src/overlay/links/udp-seal.js";
import { PKT_REKEY } from "../src/overlay/links/udp-wire.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { collect, stopLinkNodes } from "./support/links.js";
import { stream, udpPair, until } from "./support/udp-pair.js";

afterEach(async () => {
  await stopLinkNodes();
});

/** Only the count trigger: the timer would wait an hour. */
const BY_COUNT = { afterMs: 3_600_000, graceMs: 50 };

/**
 * Watches every datagram `link` seals: the counter it carries, under which key generation, and
 * whether its phase bit is the generation's. Counters repeated under one generation are counted.
 */
function watchCounters(link: UdpLink) {
  const byGeneration = new Map<number, Set<number>>();
  const w = { repeated: 0, wrongPhase: 0, highest: new Map<number, number>(), byGeneration };
  const keys = link.keys;
  const note = (d: Buffer): void => {
    const gen = keys.generation;
    const hi = d.readUInt32BE(9);
    if (hi >>> 31 !== (gen & 1)) w.wrongPhase++;
    const counter = (hi & 0x7fff_ffff) * 2 ** 32 + d.readUInt32BE(13);
    let seen = byGeneration.get(gen);
    if (!seen) {
      seen = new Set();
      byGeneration.set(gen, seen);
    }
    if (seen.has(counter)) w.repeated++;
    seen.add(counter);
    w.highest.set(gen, Math.max(w.highest.get(gen) ?? -1, counter));
  };
  const seal = keys.seal.bind(keys);
  const sealHere = keys.sealHere.bind(keys);
  keys.seal = (d) => {
    const slot = seal(d);
    note(d);
    return slot;
  };
  keys.sealHere = (d) => {
    sealHere(d);
    note(d);
  };
  return w;
}

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

describe("the datagram count trigger at its default, 2^30", () => {
  it("starts the rekey at the threshold; the phase flips, nothing is lost or refused, no counter repeats", async () => {
    const threshold = DEFAULT_REKEY.afterDatagrams;
    expect(threshold).toBe(2 ** 30);
    // B dials and sends; what B had sealed when each REKEY left (the hook runs before sealing).
    const rekeyAt: number[] = [];
    const sender: { link?: UdpLink } = {};
    const { aLink, bLink } = await udpPair(BY_COUNT, {
      b: (d) => {
        if (d[0] === PKT_REKEY && sender.link) rekeyAt.push(sender.link.keys.sealed);
        return false;
      },
    });
    sender.link = bLink;
    const before = udpSocketTotals();
    const atA = collect(aLink);
    const counters = watchCounters(bLink);
    const N = 3000;
    await stream(bLink, 100, 1);
    await atA.until((f) => f.length === 100);
    expect(bLink.keys.sealed).toBeLessThan(1000);
    bLink.keys.testOnlySkipTo(threshold - 20);
    await Promise.all([stream(bLink, N, 1, 100), stream(bLink, N, 9)]);
    await atA.until((f) => f.filter((x) => x[0] === 1).length === 100 + N);
    await until(() => aLink.keys.generation === 1 && bLink.keys.generation === 1);

    // The exchange started once the count reached the threshold, not before, and only once.
    expect(rekeyAt.length).toBe(1);
    expect(rekeyAt[0]).toBeGreaterThanOrEqual(threshold);
    expect(rekeyAt[0]).toBeLessThan(threshold + 64);
    expect(counters.highest.get(0)).toBeGreaterThanOrEqual(threshold);
    // Under the new key the counter starts again from 0 and its datagrams carry phase 1.
    expect(counters.byGeneration.get(1)?.has(0)).toBe(true);
    expect(bLink.keys.sealed).toBeLessThan(threshold);
    expect(counters.wrongPhase).toBe(0);
    expect(counters.repeated).toBe(0);

    const proto = atA.frames.filter((x) => x[0] === 1).map((x) => x.readUInt32BE(1));
    expect(proto).toEqual([...Array(100 + N).keys()]);
    await until(() => atA.frames.filter((x) => x[0] === 9).length === N);
    expect(aLink.forged + bLink.forged + aLink.replayed + bLink.replayed).toBe(0);
    const after = udpSocketTotals();
    expect(after.dropped).toEqual(before.dropped);
    expect(after.keysRefused).toEqual(before.keysRefused);
    expect(aLink.closed || bLink.closed).toBe(false);
  }, 30_000);
});

describe("the counter's hard limit, 2^48", () => {
  it("is far inside the nonce: the receiver refuses a counter past it even under the right key", () => {
    expect(MAX_COUNTER).toBe(2 ** 48);
    expect(MAX_COUNTER * 2 ** 5).toBeLessThanOrEqual(Number.MAX_SAFE_INTEGER + 1);
    const key = randomBytes(32);
    const sealer = new Sealer(key, 1);
    sealer.testOnlySkipTo(MAX_COUNTER - 1);
    const last = Buffer.alloc(SEAL_BODY_AT + 40 + SEAL_TAG);
    sealer.seal(last);
    expect([last.readUInt32BE(9), last.readUInt32BE(13)]).toEqual([0x8000_ffff, 0xffff_ffff]);
    expect(sealer.exhausted).toBe(true);
    const opener = new Opener(key);
    expect(opener.open(Buffer.from(last))).toBe(OPEN_OK);
    // Sealed anyway (a sender without the check): counter 2^48 carries the phase bit intact...
    const past = Buffer.alloc(SEAL_BODY_AT + 40 + SEAL_TAG);
    sealer.seal(past);
    expect(past.readUInt32BE(9)).toBe(0x8001_0000);
    // ...and still does not open.
    expect(opener.open(past)).toBe(OPEN_FORGED);
    expect(() => sealer.testOnlySkipTo(5)).toThrow(/only moves forward/);
  });

  it("a link whose rekeys fail closes at the limit without sealing past it, and the dialer redials", async () => {
    const { a, b, aLink, bLink } = await udpPair(BY_COUNT, { b: (d) => d[0] === PKT_REKEY });
    const atA = collect(aLink);
    const counters = watchCounters(bLink);
    const closed = collect(bLink).closed;
    bLink.keys.testOnlySkipTo(MAX_COUNTER - 30);
    let sent = 0;
    while (!bLink.closed && sent < 10_000) {
      await stream(bLink, 20, 1, sent);
      sent += 20;
    }
    expect(await closed).toMatch(/key is used up/);
    // The count trigger tried (its REKEYs were dropped), then the counter ran out.
    expect(bLink.keys.generation).toBe(0);
    expect(counters.highest.get(0)).toBe(MAX_COUNTER - 1);
    expect(counters.repeated).toBe(0);
    expect(aLink.forged).toBe(0);
    // Every protocol frame sealed before the limit arrived, in order.
    await until(() => atA.frames.length > 0);
    const got = atA.frames.map((x) => x.readUInt32BE(1));
    expect(got).toEqual([...Array(got.length).keys()]);
    // B redials at once (its configured peer), and the new link carries traffic.
    const again = (await b.nextLink()) as UdpLink;
    const atA2 = collect((await a.nextLink()) as UdpLink);
    expect(again.keys.sealed).toBeLessThan(1000);
    again.send(Buffer.from([1, 7]));
    await atA2.until((f) => f.length === 1);
    // No close datagram could be sealed under the used-up key: A's old link goes for the new one.
    await until(() => aLink.closed);
    expect(aLink.closeReason).toMatch(/replaced by a newer link/);
  }, 30_000);

  it("with rekeys working, a key near the limit is replaced before it runs out", async () => {
    const { aLink, bLink } = await udpPair(BY_COUNT);
    const atA = collect(aLink);
    const counters = watchCounters(bLink);
    bLink.keys.testOnlySkipTo(MAX_COUNTER - 2000);
    await stream(bLink, 500, 1);
    await atA.until((f) => f.length === 500);
    await until(() => aLink.keys.generation === 1 && bLink.keys.generation === 1);
    expect(counters.highest.get(0)).toBeLessThan(MAX_COUNTER - 1000);
    expect(counters.repeated + counters.wrongPhase).toBe(0);
    expect(bLink.closed).toBe(false);
  });
});
