// Bounds of the sessions layer under a hostile peer: the replay window, the session table's cap and
// eviction order, the per-link and global budgets for state-creating handshakes, the pending bytes.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { loadBox } from "../src/crypto/box.js";
import { Identity } from "../src/crypto/identity.js";
import { type SessionOptions, Sessions, newSessionBudget } from "../src/overlay/sessions.js";
import { REPLAY_WINDOW, ReplayVerdict, ReplayWindow } from "../src/overlay/sessions/replay.js";
import { TokenBucket } from "../src/util/token-bucket.js";

const T0 = 1_800_000_000_000;
const box = loadBox();

/** A Sessions whose output is captured: `sent` holds [dest hex, payload] in order. */
function endpoint(options: SessionOptions = {}, id = Identity.generate()) {
  const sent: Array<{ dest: Buffer; payload: Buffer }> = [];
  const inbox: string[] = [];
  const sessions = new Sessions(
    id,
    {
      sendTraffic: (dest, payload) => sent.push({ dest: Buffer.from(dest), payload: Buffer.from(payload) }),
      deliver: (_source, message) => inbox.push(message.toString()),
    },
    box,
    options,
  );
  return { id, key: id.publicKey, sessions, sent, inbox };
}
type Endpoint = ReturnType<typeof endpoint>;

/** Runs a and b against each other until quiet, as a loss-free network would. */
function exchange(a: Endpoint, b: Endpoint, now: number): void {
  for (let i = 0; i < 100 && (a.sent.length > 0 || b.sent.length > 0); i++) {
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      for (const p of from.sent.splice(0))
        if (p.dest.equals(to.key)) to.sessions.handle(from.key, p.payload, now);
    }
  }
}

/** A valid init from a fresh key to `victim` (what a key-minting attacker sends). */
function strangerInit(victim: Buffer, now: number): { key: Buffer; init: Buffer } {
  const s = endpoint();
  s.sessions.send(victim, Buffer.from("x"), now);
  return { key: s.key, init: s.sent[0]!.payload };
}

describe("replay window", () => {
  it("accepts in order and reordered within the window, refuses duplicates, the too old and the floor", () => {
    const w = new ReplayWindow();
    w.reset(5);
    expect(w.check(5)).toBe(ReplayVerdict.TooOld);
    expect(w.check(3)).toBe(ReplayVerdict.TooOld);
    for (const n of [6, 7, 10, 9, 8]) {
      expect(w.check(n)).toBe(ReplayVerdict.Fresh);
      w.accept(n);
    }
    for (const n of [6, 7, 8, 9, 10]) expect(w.check(n)).toBe(ReplayVerdict.Duplicate);
    w.accept(10 + REPLAY_WINDOW); // slides: 10 falls out, 11..(10+W-1) are still unseen
    expect(w.check(10)).toBe(ReplayVerdict.TooOld);
    expect(w.check(11)).toBe(ReplayVerdict.Fresh);
    expect(w.check(10 + REPLAY_WINDOW)).toBe(ReplayVerdict.Duplicate);
    // A counter whose slot was used by an older one is fresh again once the window moved past it.
    w.accept(11 + REPLAY_WINDOW);
    expect(w.check(11)).toBe(ReplayVerdict.TooOld);
    expect(w.check(12)).toBe(ReplayVerdict.Fresh);
  });

  it("a long jump forgets everything behind the window; bigint counters only move forward", () => {
    const w = new ReplayWindow();
    w.reset(0);
    for (let n = 1; n <= 100; n++) w.accept(n);
    w.accept(100 + 10 * REPLAY_WINDOW);
    expect(w.check(100 + 10 * REPLAY_WINDOW - 1)).toBe(ReplayVerdict.Fresh);
    expect(w.check(100)).toBe(ReplayVerdict.TooOld);
    const big = 1n << 60n;
    expect(w.check(big)).toBe(ReplayVerdict.Fresh);
    w.accept(big);
    expect(w.check(big)).toBe(ReplayVerdict.TooOld);
    expect(w.check(big + 1n)).toBe(ReplayVerdict.Fresh);
    expect(w.check(5)).toBe(ReplayVerdict.TooOld);
  });
});

describe("session table bounds", () => {
  it("a flood of valid inits from fresh keys never displaces sessions that carry traffic", () => {
    const victim = endpoint({ maxSessions: 8, newSessionsPerSecond: 1e6 });
    const honest = [endpoint(), endpoint()];
    for (const h of honest) {
      h.sessions.send(victim.key, Buffer.from("hi"), T0);
      exchange(h, victim, T0);
      victim.sessions.send(h.key, Buffer.from("back"), T0);
      exchange(h, victim, T0);
      expect(h.inbox).toEqual(["back"]);
    }
    let now = T0;
    for (let i = 0; i < 40; i++) {
      const { key, init } = strangerInit(victim.key, now);
      now += 1000; // well inside every budget: only the table's cap acts
      victim.sessions.handle(key, init, now);
    }
    const st = victim.sessions.stats();
    expect(st.sessions).toBe(8);
    expect(st.sessionsEvicted).toBe(40 - 6);
    for (const h of honest) expect(victim.sessions.has(h.key)).toBe(true);
    // The honest sessions still work both ways.
    honest[0]!.sessions.send(victim.key, Buffer.from("still"), now);
    exchange(honest[0]!, victim, now);
    expect(victim.inbox.at(-1)).toBe("still");
  });

  it("a table full of proven sessions refuses strangers and counts them; a local send still gets a session", () => {
    const victim = endpoint({ maxSessions: 3, newSessionsPerSecond: 1e6 });
    const honest = [endpoint(), endpoint(), endpoint()];
    for (const h of honest) {
      h.sessions.send(victim.key, Buffer.from("hi"), T0);
      exchange(h, victim, T0);
    }
    expect(victim.sessions.stats().unproven).toBe(0);
    const { key, init } = strangerInit(victim.key, T0 + 1000);
    victim.sessions.handle(key, init, T0 + 1000);
    expect(victim.sessions.stats().sessionsRefused).toBe(1);
    expect(victim.sessions.has(key)).toBe(false);
    // We ourselves want a fourth: the session idle longest makes room.
    const wanted = endpoint();
    honest[1]!.sessions.send(victim.key, Buffer.from("busy"), T0 + 2000);
    honest[2]!.sessions.send(victim.key, Buffer.from("busy"), T0 + 2000);
    exchange(honest[1]!, victim, T0 + 2000);
    exchange(honest[2]!, victim, T0 + 2000);
    victim.sessions.send(wanted.key, Buffer.from("to you"), T0 + 3000);
    exchange(victim, wanted, T0 + 3000);
    expect(wanted.inbox).toEqual(["to you"]);
    expect(victim.sessions.has(honest[0]!.key)).toBe(false);
    expect(victim.sessions.has(honest[1]!.key)).toBe(true);
    expect(victim.sessions.stats().sessions).toBe(3);
  });

  it("a link's budget refuses a burst of new-session inits before any crypto; another link is unaffected", () => {
    const victim = endpoint();
    const flooding = newSessionBudget();
    const other = newSessionBudget();
    const inits = Array.from({ length: 200 }, () => strangerInit(victim.key, T0));
    for (const { key, init } of inits) victim.sessions.handle(key, init, T0, flooding);
    const st = victim.sessions.stats();
    expect(st.sessions).toBe(100); // the burst
    expect(st.initsRateLimited).toBe(100);
    expect(flooding.refused).toBe(100);
    const honest = strangerInit(victim.key, T0);
    victim.sessions.handle(honest.key, honest.init, T0, other);
    expect(victim.sessions.has(honest.key)).toBe(true);
    // One second later the flooding link may create 50 more.
    for (const { key, init } of Array.from({ length: 80 }, () => strangerInit(victim.key, T0 + 1000)))
      victim.sessions.handle(key, init, T0 + 1000, flooding);
    expect(victim.sessions.stats().sessions).toBe(151);
  });

  it("the global budget bounds new sessions over all links together", () => {
    const victim = endpoint({ newSessionsPerSecond: 25 }); // burst 50
    for (let i = 0; i < 20; i++) {
      const link = newSessionBudget();
      for (const { key, init } of Array.from({ length: 5 }, () => strangerInit(victim.key, T0)))
        victim.sessions.handle(key, init, T0, link);
    }
    expect(victim.sessions.stats().sessions).toBe(50);
    expect(victim.sessions.stats().initsRateLimited).toBe(50);
  });

  it("stray traffic for unknown sessions is answered only within the link's budget", () => {
    const victim = endpoint();
    const link = new TokenBucket(10, 10);
    for (let i = 0; i < 100; i++) {
      const junk = Buffer.concat([Buffer.from([3, 1, 1, 1]), randomBytes(60)]);
      victim.sessions.handle(Identity.generate().publicKey, junk, T0, link);
    }
    const st = victim.sessions.stats();
    expect(st.noSession).toBe(100);
    expect(st.initsSent).toBe(10);
    expect(st.answersRateLimited).toBe(90);
    expect(st.sessions + st.buffers).toBe(0);
  });

  it("forged traffic on a live session is answered at most twice a second", () => {
    const a = endpoint();
    const b = endpoint();
    a.sessions.send(b.key, Buffer.from("hi"), T0);
    exchange(a, b, T0);
    b.sessions.send(a.key, Buffer.from("hi"), T0);
    exchange(a, b, T0);
    a.sessions.send(b.key, Buffer.from("real"), T0);
    const real = a.sent.pop()!.payload;
    const initsBefore = b.sessions.stats().initsSent;
    for (let i = 0; i < 200; i++) {
      const forged = Buffer.from(real);
      forged[forged.length - 1] ^= 1 + (i % 255);
      b.sessions.handle(a.key, forged, T0 + i * 5); // one second of forgeries
    }
    expect(b.sessions.stats().decryptFailures).toBe(200);
    expect(b.sessions.stats().initsSent - initsBefore).toBe(2);
  });

  it("packets waiting for handshakes are capped in bytes, oldest dropped first", () => {
    const local = endpoint({ maxPendingBytes: 200_000 });
    const big = randomBytes(50_000);
    const dests = Array.from({ length: 10 }, () => Identity.generate().publicKey);
    for (const d of dests) local.sessions.send(d, big, T0);
    const st = local.sessions.stats();
    expect(st.pendingBytes).toBeLessThanOrEqual(200_000);
    expect(st.buffersEvicted).toBe(6);
    expect(st.buffers).toBe(4);
    // A rewrite of the oldest survivor makes it the newest, so the next eviction takes another.
    local.sessions.send(dests[6]!, big, T0);
    local.sessions.send(Identity.generate().publicKey, big, T0);
    expect(local.sessions.stats().buffersEvicted).toBe(7);
  });
});
