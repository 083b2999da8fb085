// NAT traversal, the pure part (src/overlay/nat.ts): the signalling codec, the mapping verdict from
// reflexive answers, and the per-destination state: who punches when, backoff, and the bounds.
import { describe, expect, it } from "vitest";
import {
  type Candidate,
  MAPPING_DEPENDENT,
  MAPPING_INDEPENDENT,
  MAPPING_UNKNOWN,
  NatTraversal,
  Reflexive,
  SIG_ANSWER,
  SIG_OFFER,
  decodeSignal,
  encodeSignal,
} from "../src/overlay/nat.js";

const key = (b: number) => Buffer.alloc(32, b);
const LOCAL: Candidate[] = [
  { ip: "198.51.100.7", port: 4000 },
  { ip: "2001:db8::1", port: 4000 },
];

function harness(self: Buffer, o = {}) {
  const sent: Array<{ dest: Buffer; body: Buffer }> = [];
  const punches: Array<{ dest: Buffer; candidates: Candidate[]; dial: boolean }> = [];
  const nat = new NatTraversal(
    self,
    {
      sendSignal: (dest, body) => sent.push({ dest, body }),
      punch: (dest, candidates, dial) => punches.push({ dest, candidates, dial }),
    },
    { backoffMs: 1000, maxBackoffMs: 8000, offerTimeoutMs: 500, maxDestinations: 4, ...o },
  );
  return { nat, sent, punches };
}

describe("signal codec", () => {
  it("round-trips IPv4 and IPv6 candidates", () => {
    const body = encodeSignal({
      type: SIG_OFFER,
      nonce: 0xdeadbeef,
      mapping: MAPPING_DEPENDENT,
      candidates: LOCAL,
    });
    const s = decodeSignal(body)!;
    expect(s.type).toBe(SIG_OFFER);
    expect(s.nonce).toBe(0xdeadbeef);
    expect(s.mapping).toBe(MAPPING_DEPENDENT);
    expect(s.candidates).toEqual([
      { ip: "198.51.100.7", port: 4000 },
      { ip: "2001:db8:0:0:0:0:0:1", port: 4000 },
    ]);
  });

  it("rejects truncated, oversized, unknown and trailing input", () => {
    const good = encodeSignal({ type: SIG_ANSWER, nonce: 1, mapping: 0, candidates: LOCAL });
    for (let n = 0; n < good.length; n++) expect(decodeSignal(good.subarray(0, n))).toBeUndefined();
    expect(decodeSignal(Buffer.concat([good, Buffer.from([0])]))).toBeUndefined();
    const badType = Buffer.from(good);
    badType[0] = 9;
    expect(decodeSignal(badType)).toBeUndefined();
    const badCount = Buffer.from(good);
    badCount[6] = 200;
    expect(decodeSignal(badCount)).toBeUndefined();
    const badFamily = Buffer.from(good);
    badFamily[7] = 5;
    expect(decodeSignal(badFamily)).toBeUndefined();
    for (let i = 0; i < 2000; i++) {
      const junk = Buffer.from(
        Array.from({ length: Math.floor(Math.random() * 60) }, () => Math.random() * 256),
      );
      const s = decodeSignal(junk);
      if (s) expect(s.candidates.length).toBeLessThanOrEqual(8);
    }
  });
});

describe("reflexive mapping", () => {
  it("needs two observers at different addresses, then compares what they saw", () => {
    const r = new Reflexive();
    expect(r.mapping()).toBe(MAPPING_UNKNOWN);
    r.record(key(1), "192.0.2.1", "203.0.113.5", 5000, 1);
    expect(r.mapping()).toBe(MAPPING_UNKNOWN);
    r.record(key(2), "192.0.2.1", "203.0.113.5", 5000, 2); // same observer address: no new evidence
    expect(r.mapping()).toBe(MAPPING_UNKNOWN);
    r.record(key(3), "192.0.2.9", "203.0.113.5", 5000, 3);
    expect(r.mapping()).toBe(MAPPING_INDEPENDENT);
    expect(r.addresses()).toEqual([{ ip: "203.0.113.5", port: 5000 }]);
    r.record(key(4), "192.0.2.77", "203.0.113.5", 61234, 4);
    expect(r.mapping()).toBe(MAPPING_DEPENDENT);
    expect(r.addresses()[0]).toEqual({ ip: "203.0.113.5", port: 61234 });
    r.forget(key(4));
    expect(r.mapping()).toBe(MAPPING_INDEPENDENT);
  });

  it("keeps at most 64 observers", () => {
    const r = new Reflexive();
    for (let i = 0; i < 500; i++)
      r.record(
        Buffer.alloc(32, i % 256).fill(i >> 8, 0, 1),
        `10.0.${i >> 8}.${i & 255}`,
        "203.0.113.5",
        1000 + i,
        i,
      );
    expect(r.addresses().length).toBe(64);
  });
});

describe("per-destination state", () => {
  it("offer, answer, both punch; the smaller key dials", () => {
    const a = harness(key(1));
    const b = harness(key(2));
    a.nat.noteTraffic(key(2), 0, LOCAL);
    expect(a.sent.length).toBe(1);
    a.nat.noteTraffic(key(2), 10, LOCAL); // an offer is out: no second one
    expect(a.sent.length).toBe(1);
    b.nat.handleSignal(key(1), a.sent[0]!.body, 20, [{ ip: "192.0.2.2", port: 5 }]);
    expect(b.sent.length).toBe(1);
    expect(decodeSignal(b.sent[0]!.body)!.type).toBe(SIG_ANSWER);
    expect(b.punches).toEqual([
      { dest: key(1), candidates: decodeSignal(a.sent[0]!.body)!.candidates, dial: false },
    ]);
    a.nat.handleSignal(key(2), b.sent[0]!.body, 30, LOCAL);
    expect(a.punches).toEqual([{ dest: key(2), candidates: [{ ip: "192.0.2.2", port: 5 }], dial: true }]);
    a.nat.punchDone(key(2), true, 40);
    expect(a.nat.counters).toMatchObject({ offersSent: 1, attempts: 1, successes: 1, failures: 0 });
    a.nat.noteTraffic(key(2), 50, LOCAL); // direct now (the node stops calling, but even so)
    expect(a.sent.length).toBe(1);
  });

  it("does nothing without udp candidates, and answers no offer without them", () => {
    const a = harness(key(1));
    a.nat.noteTraffic(key(2), 0, []);
    expect(a.sent.length).toBe(0);
    const offer = encodeSignal({ type: SIG_OFFER, nonce: 7, mapping: 0, candidates: LOCAL });
    a.nat.handleSignal(key(2), offer, 0, []);
    expect(a.sent.length).toBe(0);
    expect(a.punches.length).toBe(0);
    expect(a.nat.counters.offersIgnored).toBe(1);
  });

  it("an answer with the wrong nonce or unasked starts nothing", () => {
    const a = harness(key(1));
    const answer = encodeSignal({ type: SIG_ANSWER, nonce: 7, mapping: 0, candidates: LOCAL });
    a.nat.handleSignal(key(2), answer, 0, LOCAL);
    a.nat.noteTraffic(key(3), 0, LOCAL);
    a.nat.handleSignal(key(3), answer, 1, LOCAL);
    expect(a.punches.length).toBe(0);
  });

  it("backs off after failures, doubling to the cap; an unanswered offer counts as a failure", () => {
    let nonce = 0;
    const a = harness(key(1));
    const offers = () => a.sent.length;
    const failOnce = (now: number) => {
      a.nat.noteTraffic(key(2), now, LOCAL);
      const sent = decodeSignal(a.sent.at(-1)!.body)!;
      nonce = sent.nonce;
      a.nat.handleSignal(
        key(2),
        encodeSignal({ type: SIG_ANSWER, nonce, mapping: 0, candidates: LOCAL }),
        now,
        LOCAL,
      );
      a.nat.punchDone(key(2), false, now);
    };
    failOnce(0);
    // Traffic every 10 ms for 20 s: offers only when each backoff ends (1, 2, 4, 8, 8 s).
    for (let t = 10; t <= 20_000; t += 10) {
      const before = offers();
      a.nat.noteTraffic(key(2), t, LOCAL);
      if (offers() > before) {
        const s = decodeSignal(a.sent.at(-1)!.body)!;
        a.nat.handleSignal(
          key(2),
          encodeSignal({ type: SIG_ANSWER, nonce: s.nonce, mapping: 0, candidates: LOCAL }),
          t,
          LOCAL,
        );
        a.nat.punchDone(key(2), false, t);
      }
    }
    const times = a.punches.map((_, i) => i);
    expect(times.length).toBe(5); // t=0, 1000, 3000, 7000, 15000
    expect(a.nat.counters.failures).toBe(5);
    // Offer without answer: after offerTimeoutMs the next traffic counts a failure and backs off.
    const b = harness(key(1));
    b.nat.noteTraffic(key(9), 0, LOCAL);
    b.nat.noteTraffic(key(9), 600, LOCAL);
    expect(b.sent.length).toBe(1);
    b.nat.noteTraffic(key(9), 1599, LOCAL);
    expect(b.sent.length).toBe(1);
    b.nat.noteTraffic(key(9), 1600, LOCAL);
    expect(b.sent.length).toBe(2);
  });

  it("holds at most maxDestinations; a full table of active entries turns new ones away", () => {
    const a = harness(key(0));
    for (let i = 1; i <= 4; i++) a.nat.noteTraffic(key(i), 0, LOCAL);
    expect(a.nat.size).toBe(4);
    a.nat.noteTraffic(key(5), 0, LOCAL);
    expect(a.nat.size).toBe(4);
    expect(a.nat.counters.tableFull).toBe(1);
    expect(a.sent.length).toBe(4);
    // Unanswered offers time out into backoff; once a backoff ended, that entry makes room.
    for (let i = 1; i <= 4; i++) a.nat.noteTraffic(key(i), 600, LOCAL);
    a.nat.noteTraffic(key(5), 700, LOCAL);
    expect(a.nat.counters.tableFull).toBe(2);
    a.nat.noteTraffic(key(5), 1600, LOCAL);
    expect(a.nat.size).toBe(4);
    expect(a.sent.at(-1)!.dest.equals(key(5))).toBe(true);
  });

  it("skips the punch when both mappings are endpoint-dependent, counts it and backs off", () => {
    const dependent = (self: Buffer) => {
      const h = harness(self);
      h.nat.reflexive.record(key(0xe1), "192.0.2.1", "203.0.113.5", 5000, 0);
      h.nat.reflexive.record(key(0xe2), "192.0.2.2", "203.0.113.5", 5001, 0);
      expect(h.nat.reflexive.mapping()).toBe(MAPPING_DEPENDENT);
      return h;
    };
    const a = dependent(key(1));
    const b = dependent(key(2));
    const exchange = (now: number) => {
      const offers = a.sent.length;
      a.nat.noteTraffic(key(2), now, LOCAL);
      if (a.sent.length === offers) return false;
      b.nat.handleSignal(key(1), a.sent.at(-1)!.body, now, LOCAL);
      a.nat.handleSignal(key(2), b.sent.at(-1)!.body, now, LOCAL);
      return true;
    };
    expect(exchange(0)).toBe(true);
    // The answer went out (so the offerer learns it too), and neither side punched.
    expect(decodeSignal(b.sent[0]!.body)!.mapping).toBe(MAPPING_DEPENDENT);
    expect(a.punches.length + b.punches.length).toBe(0);
    expect(a.nat.counters).toMatchObject({ skipped: 1, attempts: 0, failures: 0 });
    expect(b.nat.counters).toMatchObject({ skipped: 1, attempts: 0, failures: 0 });
    // Traffic every 10 ms for 20 s: offers only when the backoff ends (1, 2, 4, 8 s), never a punch.
    const offerTimes = [0];
    for (let t = 10; t <= 20_000; t += 10) if (exchange(t)) offerTimes.push(t);
    expect(offerTimes).toEqual([0, 1000, 3000, 7000, 15000]);
    expect(a.punches.length + b.punches.length).toBe(0);
    expect(a.nat.counters.skipped).toBe(5);
    // One side endpoint-independent (or unknown): it is worth a punch.
    const c = harness(key(3));
    const offer = encodeSignal({ type: SIG_OFFER, nonce: 9, mapping: MAPPING_DEPENDENT, candidates: LOCAL });
    c.nat.handleSignal(key(1), offer, 0, LOCAL);
    expect(c.punches.length).toBe(1);
    expect(c.nat.counters.skipped).toBe(0);
  });

  it("after a punched link closes, traffic offers again once offerTimeoutMs passed", () => {
    const a = harness(key(1));
    a.nat.noteTraffic(key(2), 0, LOCAL);
    const nonce = decodeSignal(a.sent[0]!.body)!.nonce;
    a.nat.handleSignal(
      key(2),
      encodeSignal({ type: SIG_ANSWER, nonce, mapping: 0, candidates: LOCAL }),
      0,
      LOCAL,
    );
    a.nat.punchDone(key(2), true, 10);
    a.nat.linkClosed(key(3), 20); // not punched: nothing to do
    a.nat.linkClosed(key(2), 1000);
    a.nat.noteTraffic(key(2), 1499, LOCAL);
    expect(a.sent.length).toBe(1);
    a.nat.noteTraffic(key(2), 1500, LOCAL);
    expect(a.sent.length).toBe(2);
    expect(a.nat.summary(1500)).toEqual({ offered: 1, punching: 0, direct: 0, backingOff: 0 });
  });

  it("a malformed signal is counted and changes nothing", () => {
    const a = harness(key(1));
    a.nat.noteTraffic(key(2), 0, LOCAL);
    const before = a.nat.summary(0);
    for (const body of [Buffer.alloc(0), Buffer.from([SIG_OFFER, 0, 0]), Buffer.alloc(7, 0xff)]) {
      a.nat.handleSignal(key(2), body, 1, LOCAL);
    }
    expect(a.nat.counters.signalsMalformed).toBe(3);
    expect(a.nat.summary(1)).toEqual(before);
    expect(a.sent.length + a.punches.length).toBe(1);
  });

  it("an offer from a peer it holds a punched link to (restarted) punches again, unless the link is new", () => {
    const b = harness(key(2));
    const offer = (n: number) => encodeSignal({ type: SIG_OFFER, nonce: n, mapping: 0, candidates: LOCAL });
    b.nat.handleSignal(key(1), offer(1), 0, LOCAL);
    b.nat.punchDone(key(1), true, 100);
    expect(b.nat.summary(100).direct).toBe(1);
    // Right after the punch (an offer that crossed it in flight): the new link stays.
    b.nat.handleSignal(key(1), offer(2), 599, LOCAL);
    expect(b.punches.length).toBe(1);
    expect(b.nat.counters.offersIgnored).toBe(1);
    // Later, the peer offers again: it has no direct link to us, so ours is stale.
    b.nat.handleSignal(key(1), offer(3), 600, LOCAL);
    expect(b.punches.length).toBe(2);
    expect(decodeSignal(b.sent.at(-1)!.body)).toMatchObject({ type: SIG_ANSWER, nonce: 3 });
    expect(b.nat.summary(600)).toMatchObject({ punching: 1, direct: 0 });
  });

  it("answers an offer in the pause after a punched link closed (only its own offers wait)", () => {
    const b = harness(key(2));
    const offer = (n: number) => encodeSignal({ type: SIG_OFFER, nonce: n, mapping: 0, candidates: LOCAL });
    b.nat.handleSignal(key(1), offer(1), 0, LOCAL);
    b.nat.punchDone(key(1), true, 100);
    b.nat.linkClosed(key(1), 1000);
    b.nat.noteTraffic(key(1), 1001, LOCAL); // its own offer waits for the pause
    expect(b.sent.length).toBe(1);
    b.nat.handleSignal(key(1), offer(2), 1002, LOCAL);
    expect(b.punches.length).toBe(2);
    expect(decodeSignal(b.sent.at(-1)!.body)).toMatchObject({ type: SIG_ANSWER, nonce: 2 });
    expect(b.nat.counters.offersIgnored).toBe(0);
  });

  it("answers the peer's offer while backing off only because its own offer went unanswered", () => {
    // A restarted node offers to a peer whose stale punched link to it is young: ignored. Without
    // this, each would then turn the other's offers away for its whole backoff.
    const a = harness(key(1));
    a.nat.noteTraffic(key(2), 0, LOCAL);
    a.nat.noteTraffic(key(2), 500, LOCAL); // unanswered: backs off (1000 ms)
    expect(a.sent.length).toBe(1);
    expect(a.nat.summary(500)).toMatchObject({ offered: 0, backingOff: 1 });
    const offer = encodeSignal({ type: SIG_OFFER, nonce: 9, mapping: 0, candidates: LOCAL });
    a.nat.handleSignal(key(2), offer, 600, LOCAL);
    expect(a.punches).toEqual([{ dest: key(2), candidates: decodeSignal(offer)!.candidates, dial: true }]);
    expect(decodeSignal(a.sent.at(-1)!.body)).toMatchObject({ type: SIG_ANSWER, nonce: 9 });
    // That punch fails: now the backoff is a failed punch's, and offers wait for it.
    a.nat.punchDone(key(2), false, 700);
    a.nat.handleSignal(key(2), offer, 800, LOCAL);
    expect(a.punches.length).toBe(1);
    expect(a.nat.counters.offersIgnored).toBe(1);
  });

  it("ignores offers while punching or backing off, so offers cannot make it punch in a loop", () => {
    const b = harness(key(2));
    const offer = (n: number) => encodeSignal({ type: SIG_OFFER, nonce: n, mapping: 0, candidates: LOCAL });
    b.nat.handleSignal(key(1), offer(1), 0, LOCAL);
    b.nat.handleSignal(key(1), offer(2), 1, LOCAL); // still punching
    b.nat.punchDone(key(1), false, 5000);
    for (let t = 5001; t < 6000; t += 100) b.nat.handleSignal(key(1), offer(t), t, LOCAL);
    expect(b.punches.length).toBe(1);
    expect(b.nat.counters.offersIgnored).toBe(11);
    b.nat.handleSignal(key(1), offer(3), 6000, LOCAL);
    expect(b.punches.length).toBe(2);
  });
});
