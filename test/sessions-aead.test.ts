// Sessions between planetd nodes switch from NaCl box to ChaCha20-Poly1305 (type 0x70) once the remote
// announced it (src/overlay/sessions/aead.ts); towards a node that never announces (Yggdrasil) they
// keep box. In-process: two Sessions over an in-memory FIFO with a virtual clock.
import { describe, expect, it } from "vitest";
import { loadBox } from "../src/crypto/box.js";
import { loadSessionAead } from "../src/crypto/session-aead.js";
import { putUvarint, readUvarint } from "../src/overlay/sessions/wire.js";
import { Net, type Peer, describePacket } from "./support/session-net.js";

const aead = loadSessionAead();
const TRAFFIC = 3;
const TRAFFIC_AEAD = 0x70;

function nodes(bAnnounces = true) {
  const net = new Net();
  const a = net.add("A", loadBox(), { aead });
  const b = net.add("B", loadBox(), bAnnounces ? { aead } : {});
  return { net, a, b };
}

/** The first byte of every traffic payload `from` sent to `to` since log index `since`. */
function trafficTypes(net: Net, from: Peer, to: Peer, since = 0): number[] {
  return net.log
    .slice(since)
    .filter(
      (p) => p.from === from && p.to === to && (p.payload[0] === TRAFFIC || p.payload[0] === TRAFFIC_AEAD),
    )
    .map((p) => p.payload[0]!);
}

/** One message each way, `ms` apart; returns what each side received in that round. */
function round(net: Net, a: Peer, b: Peer, tag: string, ms = 1000): void {
  net.advance(ms);
  a.send(b, Buffer.from(`a:${tag}`));
  net.run();
  b.send(a, Buffer.from(`b:${tag}`));
  net.run();
}

const texts = (p: Peer) => p.inbox.map((m) => m.message.toString());

describe.skipIf(aead === undefined)("sessions: ChaCha20-Poly1305 between planetd nodes", () => {
  it("starts on box and switches both ways once each side heard the other's announcement", () => {
    const { net, a, b } = nodes();
    round(net, a, b, "1");
    round(net, a, b, "2");
    round(net, a, b, "3");
    expect(texts(b)).toEqual(["a:1", "a:2", "a:3"]);
    expect(texts(a)).toEqual(["b:1", "b:2", "b:3"]);
    // A's first message leaves with its announcement, before A heard B's: box; then AEAD.
    const aToB = trafficTypes(net, a, b);
    expect(aToB.slice(0, 2)).toEqual([TRAFFIC, TRAFFIC]);
    expect(aToB.slice(-2)).toEqual([TRAFFIC_AEAD, TRAFFIC_AEAD]);
    expect(trafficTypes(net, b, a).slice(-2)).toEqual([TRAFFIC_AEAD, TRAFFIC_AEAD]);
    for (const p of [a, b]) {
      const s = p.sessions.stats();
      expect(s.announcesSent).toBe(1);
      expect(s.announcesHeard).toBe(1);
      expect(s.aeadSealed).toBeGreaterThanOrEqual(2);
      expect(s.aeadOpened).toBeGreaterThanOrEqual(2);
      expect(s.decryptFailures).toBe(0);
      expect(p.sessions.list().map((l) => [l.cipherOut, l.cipherIn])).toEqual([
        ["chacha20-poly1305", "chacha20-poly1305"],
      ]);
    }
    // The announcements are the session's own business: nothing but the messages was delivered.
    expect(a.inbox.length + b.inbox.length).toBe(6);
  });

  it("keeps working across key ratchets and repeats its announcement every 10 s", () => {
    const { net, a, b } = nodes();
    round(net, a, b, "warm-up");
    round(net, a, b, "warm-up 2");
    const since = net.log.length;
    const ratchetsBefore = a.sessions.stats().ratchets + b.sessions.stats().ratchets;
    for (let i = 0; i < 30; i++) round(net, a, b, `${i}`, 7_000); // 210 s of virtual time
    expect(a.sessions.stats().ratchets + b.sessions.stats().ratchets).toBeGreaterThan(ratchetsBefore);
    expect(texts(b).slice(2)).toEqual(Array.from({ length: 30 }, (_, i) => `a:${i}`));
    expect(texts(a).slice(2)).toEqual(Array.from({ length: 30 }, (_, i) => `b:${i}`));
    expect(trafficTypes(net, a, b, since).every((t) => t === TRAFFIC_AEAD)).toBe(true);
    expect(trafficTypes(net, b, a, since).every((t) => t === TRAFFIC_AEAD)).toBe(true);
    // 210 s at one announcement per 10 s at most, and at least one per 14 s (every second round).
    for (const p of [a, b]) {
      expect(p.sessions.stats().announcesSent).toBeGreaterThanOrEqual(15);
      expect(p.sessions.stats().announcesSent).toBeLessThanOrEqual(23);
      expect(p.sessions.stats().decryptFailures).toBe(0);
    }
    expect(
      net.log
        .slice(since)
        .map(describePacket)
        .filter((d) => d.endsWith("init")),
    ).toEqual([]);
  });

  for (const restarted of ["B", "A"] as const) {
    it(`after ${restarted} restarts, box until the new instance announces, then AEAD again`, () => {
      const { net, a, b } = nodes();
      for (let i = 0; i < 3; i++) round(net, a, b, `before ${i}`);
      expect(trafficTypes(net, a, b).at(-1)).toBe(TRAFFIC_AEAD);
      const fresh = restarted === "B" ? b : a;
      const other = restarted === "B" ? a : b;
      fresh.restart();
      fresh.inbox.length = 0;
      // The old session's AEAD traffic draws an init from the new instance; the other side takes it
      // and forgets the announcement it had heard, so its next messages (its announcement too) are box.
      other.send(fresh, Buffer.from("lost"));
      net.run();
      expect(other.sessions.list()[0]!.cipherOut).toBe("box");
      const since = net.log.length;
      other.send(fresh, Buffer.from("first"));
      net.run();
      expect(texts(fresh)).toEqual(["first"]);
      expect(trafficTypes(net, other, fresh, since)).toEqual([TRAFFIC, TRAFFIC]);
      expect(fresh.sessions.stats().boxOpened).toBe(2);
      // The new instance announced on receiving them; from here on AEAD both ways.
      for (let i = 0; i < 2; i++) round(net, a, b, `after ${i}`);
      expect(texts(fresh).slice(-2)).toEqual(
        restarted === "B" ? ["a:after 0", "a:after 1"] : ["b:after 0", "b:after 1"],
      );
      expect(trafficTypes(net, a, b).slice(-2)).toEqual([TRAFFIC_AEAD, TRAFFIC_AEAD]);
      expect(trafficTypes(net, b, a).slice(-2)).toEqual([TRAFFIC_AEAD, TRAFFIC_AEAD]);
      expect(fresh.sessions.stats().aeadOpened).toBe(2);
      expect(fresh.sessions.stats().decryptFailures).toBe(0);
    });
  }

  it("a remote back without the cipher (same key) is not left on AEAD it drops: box again once its announcements stop", () => {
    const { net, a, b } = nodes();
    for (let i = 0; i < 3; i++) round(net, a, b, `before ${i}`);
    expect(trafficTypes(net, a, b).at(-1)).toBe(TRAFFIC_AEAD);
    // B comes back as a build that does not open type 0x70 (PLANETD_SESSION_CIPHER=box, no OpenSSL,
    // or Yggdrasil 0.4.7 with this key): it drops that type without a word, as ironwood does.
    b.restart({});
    b.inbox.length = 0;
    // A only sends (a ping B's new instance never answers): one message a second, 60 s at most.
    let sent = 0;
    while (sent < 60 && b.inbox.length === 0) {
      net.advance(1000);
      a.send(b, Buffer.from(`a:${sent++}`));
      net.run();
    }
    expect(b.inbox.length).toBeGreaterThan(0);
    // B announced last in the third round; A trusts an announcement for 30 s (three of B's periods).
    expect(sent).toBeLessThanOrEqual(31);
    const since = net.log.length;
    a.send(b, Buffer.from("a:after"));
    net.run();
    expect(texts(b).at(-1)).toBe("a:after");
    expect(trafficTypes(net, a, b, since)).toEqual([TRAFFIC]);
    expect(a.sessions.list()[0]!.cipherOut).toBe("box");
  });

  it("a payload longer than any session packet (up to the 65535-byte frame) is counted as malformed, not thrown", () => {
    const { net, a, b } = nodes();
    for (let i = 0; i < 3; i++) round(net, a, b, `before ${i}`);
    // A's real key seqs and a fresh counter, so the packet reaches the cipher: anyone who read one
    // header (or guessed its small numbers) and names A as source can send this.
    const last = net.log.filter((p) => p.from === a && p.to === b).at(-1)!.payload;
    let off = readUvarint(last, 1);
    off = readUvarint(last, off);
    const header = Buffer.from(last.subarray(0, off));
    for (const type of [TRAFFIC, TRAFFIC_AEAD]) {
      const oversize = Buffer.alloc(60_000, 7);
      header.copy(oversize);
      oversize[0] = type;
      const end = putUvarint(oversize, off, 1_000_000 + type);
      expect(end).toBeLessThan(oversize.length);
      const before = b.sessions.stats().malformed;
      expect(() => b.sessions.handle(a.key, oversize, net.now)).not.toThrow();
      expect(b.sessions.stats().malformed).toBe(before + 1);
    }
    round(net, a, b, "after");
    expect(texts(b).at(-1)).toBe("a:after");
  });

  it("drops and counts a replayed and a forged AEAD packet; the genuine one still arrives", () => {
    const { net, a, b } = nodes();
    for (let i = 0; i < 3; i++) round(net, a, b, `${i}`);
    b.inbox.length = 0;

    a.send(b, Buffer.from("once"));
    const sent = net.queue.at(-1)!.payload;
    expect(sent[0]).toBe(TRAFFIC_AEAD);
    net.run();
    b.sessions.handle(a.key, Buffer.from(sent), net.now);
    expect(b.sessions.stats().replaysDropped).toBe(1);

    a.send(b, Buffer.from("genuine"));
    const genuine = net.queue.at(-1)!.payload;
    for (const at of [genuine.length - 1, genuine.length - 20]) {
      const forged = Buffer.from(genuine);
      forged[at]! ^= 0x80;
      b.sessions.handle(a.key, forged, net.now);
    }
    expect(b.sessions.stats().decryptFailures).toBe(2);
    net.run();
    expect(texts(b)).toEqual(["once", "genuine"]);
  });
});

describe("sessions: a planetd node and a peer that never announces (Yggdrasil 0.4.7)", () => {
  it.skipIf(aead === undefined)(
    "a node without the cipher ignores type 0x70 without an answer, as Go does",
    () => {
      const { net, a, b } = nodes();
      for (let i = 0; i < 3; i++) round(net, a, b, `${i}`);
      a.send(b, Buffer.from("to B"));
      const sealed = Buffer.from(net.queue.at(-1)!.payload);
      expect(sealed[0]).toBe(TRAFFIC_AEAD);
      net.run();
      // C has no session with A and no cipher: a Traffic packet would draw a throw-away init.
      const c = net.add("C", loadBox());
      const logged = net.log.length;
      c.sessions.handle(a.key, sealed, net.now);
      expect(net.log.length).toBe(logged);
      expect(c.sessions.stats().noSession).toBe(0);
      c.sessions.handle(a.key, Buffer.concat([Buffer.of(TRAFFIC), sealed.subarray(1)]), net.now);
      expect(c.sessions.stats().noSession).toBe(1);
    },
  );

  it("keeps NaCl box both ways; the peer drops the announcements it does not know", () => {
    const { net, a, b } = nodes(false);
    for (let i = 0; i < 10; i++) round(net, a, b, `${i}`, 3_000);
    expect(texts(b)).toEqual(Array.from({ length: 10 }, (_, i) => `a:${i}`));
    expect(texts(a)).toEqual(Array.from({ length: 10 }, (_, i) => `b:${i}`));
    expect(trafficTypes(net, a, b).every((t) => t === TRAFFIC)).toBe(true);
    expect(trafficTypes(net, b, a).every((t) => t === TRAFFIC)).toBe(true);
    expect(a.sessions.stats().aeadSealed).toBe(0);
    expect(a.sessions.stats().announcesHeard).toBe(0);
    // A did announce (then kept repeating it), so box here is B's choice, not A's silence.
    expect(b.sessions.stats().announcesHeard).toBeGreaterThanOrEqual(aead === undefined ? 0 : 3);
    expect(a.sessions.list()[0]!.cipherOut).toBe("box");
  });
});
