import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createTweetnaclBackend, loadBox } from "../src/crypto/box.js";
import { Identity } from "../src/crypto/identity.js";
import { SESSION_MTU, Sessions } from "../src/overlay/sessions.js";
import { type Packet, T0, describePacket, establish, pair, trafficMessage } from "./support/session-net.js";

describe("Sessions", () => {
  it("reproduces the handshake and key-sequence pattern of the 0.4.7 capture (spec 6.6)", () => {
    const { net, a, b } = pair();
    b.send(a, Buffer.from("ping 1"));
    net.run();
    expect(a.inbox.map((m) => m.message.toString())).toEqual(["ping 1"]);
    a.send(b, Buffer.from("pong 1"));
    net.run();
    b.send(a, Buffer.from("ping 2"));
    net.run();
    a.send(b, Buffer.from("pong 2"));
    net.run();
    b.send(a, Buffer.from("ping 3"));
    net.run();
    expect(net.log.map(describePacket)).toEqual([
      "B>A init",
      "A>B ack",
      "B>A ack",
      "B>A [1,1,1]",
      "A>B [2,1,1]",
      "B>A [2,2,1]",
      "A>B [2,1,2]",
      "B>A [2,2,2]",
    ]);
    expect(net.log[0].payload.length).toBe(193);
    // 1 + 3 one-byte uvarints + 16 tag + 32 next key + message
    expect(net.log[3].payload.length).toBe(52 + 6);
    expect(b.inbox.map((m) => m.message.toString())).toEqual(["pong 1", "pong 2"]);
    expect(a.inbox.map((m) => m.message.toString())).toEqual(["ping 1", "ping 2", "ping 3"]);
    expect(a.sessions.stats().ratchets).toBe(1);
    expect(b.sessions.stats().ratchets).toBe(1);
  });

  it("exchanges 1,000 messages each way byte for byte, across ratchets", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    const sentAB: Buffer[] = [];
    const sentBA: Buffer[] = [];
    for (let i = 0; i < 1000; i++) {
      const m1 = trafficMessage((i * 37) % 1500);
      const m2 = trafficMessage((i * 53) % 1500);
      a.send(b, m1);
      b.send(a, m2);
      sentAB.push(m1);
      sentBA.push(m2);
      if (i % 7 === 0) net.run();
      net.advance(150); // 150 s in total: two more ratchet windows
    }
    net.run();
    expect(b.inbox.length).toBe(1000);
    expect(a.inbox.length).toBe(1000);
    for (let i = 0; i < 1000; i++) {
      expect(b.inbox[i].message.equals(sentAB[i])).toBe(true);
      expect(a.inbox[i].message.equals(sentBA[i])).toBe(true);
    }
    expect(a.sessions.stats().ratchets + b.sessions.stats().ratchets).toBeGreaterThanOrEqual(4);
    for (const p of [a, b]) {
      const s = p.sessions.stats();
      expect(s.decryptFailures + s.replaysDropped + s.keySeqMismatches + s.malformed).toBe(0);
    }
    const [summary] = a.sessions.list();
    expect(summary.key.equals(b.key)).toBe(true);
    expect(summary.bytesOut).toBe(sentAB.reduce((n, m) => n + m.length, 0) + 5);
    expect(summary.bytesIn).toBe(sentBA.reduce((n, m) => n + m.length, 0) + 2);
  });

  it("drops a replayed packet whose nonce is not above the accepted one, and counts it", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    const firstAtoB = net.log.find((p) => p.from === a && p.payload[0] === 3) as Packet;
    b.sessions.handle(a.key, firstAtoB.payload, net.now);
    expect(b.inbox.length).toBe(0);
    expect(b.sessions.stats().replaysDropped).toBe(1);

    // After a minute the receiver records the nonce again; everything older is then refused.
    for (let i = 0; i < 5; i++) a.send(b, Buffer.from(`m${i}`));
    net.run();
    const older = net.log.filter((p) => p.from === a && p.payload[0] === 3).slice(-5);
    for (let i = 0; i < 7; i++) {
      net.advance(10_000); // B keeps the session alive; A's view of B does not change
      b.send(a, Buffer.from("keepalive"));
      net.run();
    }
    a.send(b, Buffer.from("checkpoint"));
    net.run();
    b.inbox.length = 0;
    for (const p of older) b.sessions.handle(a.key, p.payload, net.now);
    expect(b.inbox.length).toBe(0);
    expect(b.sessions.stats().replaysDropped).toBe(6);
    a.send(b, Buffer.from("still fine"));
    net.run();
    expect(b.inbox.map((m) => m.message.toString())).toEqual(["still fine"]);
  });

  it("drops a duplicate within the minute (0.4.7 delivers it again) and counts it", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    for (let i = 0; i < 3; i++) a.send(b, Buffer.from(`m${i}`));
    net.run();
    const sent = net.log.filter((p) => p.from === a && p.payload[0] === 3).slice(-3);
    b.inbox.length = 0;
    const before = b.sessions.stats().replaysDropped;
    for (const p of sent) b.sessions.handle(a.key, Buffer.from(p.payload), net.now);
    net.advance(30_000);
    b.sessions.handle(a.key, Buffer.from(sent[1].payload), net.now);
    expect(b.inbox.length).toBe(0);
    expect(b.sessions.stats().replaysDropped - before).toBe(4);
    a.send(b, Buffer.from("after"));
    net.run();
    expect(b.inbox.map((m) => m.message.toString())).toEqual(["after"]);
  });

  it("drops a tampered packet, counts it, answers with an init, and the session keeps working", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    net.advance(2000);
    let tamper = true;
    net.filter = (p) => {
      if (tamper && p.from === a && p.payload[0] === 3) {
        p.payload[p.payload.length - 1] ^= 1;
        tamper = false;
      }
      return true;
    };
    a.send(b, Buffer.from("tampered"));
    net.run();
    expect(b.inbox.length).toBe(0);
    expect(b.sessions.stats().decryptFailures).toBe(1);
    expect(b.sessions.stats().initsSent).toBeGreaterThanOrEqual(1);
    expect(b.sessions.stats().sessions).toBe(1);
    for (let i = 0; i < 10; i++) {
      a.send(b, Buffer.from(`a${i}`));
      b.send(a, Buffer.from(`b${i}`));
      net.run();
    }
    expect(b.inbox.map((m) => m.message.toString())).toEqual(Array.from({ length: 10 }, (_, i) => `a${i}`));
    expect(a.inbox.map((m) => m.message.toString())).toEqual(Array.from({ length: 10 }, (_, i) => `b${i}`));
  });

  it("tampering in the same second as the handshake also leaves the session working", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    a.send(b, Buffer.from("to be tampered"));
    const bad = (net.queue.pop() as Packet).payload;
    bad[10] ^= 0x80;
    b.sessions.handle(a.key, bad, net.now);
    net.run();
    expect(b.sessions.stats().decryptFailures).toBe(1);
    a.send(b, Buffer.from("after"));
    b.send(a, Buffer.from("after too"));
    net.run();
    expect(b.inbox.map((m) => m.message.toString())).toEqual(["after"]);
    expect(a.inbox.map((m) => m.message.toString())).toEqual(["after too"]);
  });

  it("recovers from a lost init: the next write re-sends it", () => {
    const { net, a, b } = pair();
    net.filter = (p) => !(p.from === a && p.payload[0] === 1);
    a.send(b, Buffer.from("lost"));
    net.run();
    expect(b.sessions.stats().sessions).toBe(0);
    net.filter = () => true;
    net.advance(1000);
    a.send(b, Buffer.from("second"));
    net.run();
    expect(b.inbox.map((m) => m.message.toString())).toEqual(["second"]);
    expect(a.sessions.stats().initsSent).toBe(2);
  });

  it("recovers from a lost ack once the remote writes back", () => {
    const { net, a, b } = pair();
    net.filter = (p) => !(p.from === b && p.payload[0] === 2);
    a.send(b, Buffer.from("one"));
    net.run();
    expect(b.sessions.stats().sessions).toBe(1);
    expect(a.sessions.stats().sessions).toBe(0);
    net.filter = () => true;
    net.advance(1000);
    b.send(a, Buffer.from("from b")); // A has no session: throw-away init, B acks, A builds a session
    net.run();
    net.advance(1000);
    for (let i = 0; i < 3; i++) {
      a.send(b, Buffer.from(`a${i}`));
      b.send(a, Buffer.from(`b${i}`));
      net.run();
      net.advance(1000);
    }
    expect(b.inbox.map((m) => m.message.toString()).slice(-2)).toEqual(["a1", "a2"]);
    expect(a.inbox.map((m) => m.message.toString()).slice(-2)).toEqual(["b1", "b2"]);
  });

  it("recovers from a lost ack by itself within about a minute when only the sender writes", () => {
    const { net, a, b } = pair();
    net.filter = (p) => !(p.from === b && p.payload[0] === 2);
    a.send(b, Buffer.from("one"));
    net.run();
    net.filter = () => true;
    let delivered = -1;
    for (let s = 1; s <= 90 && delivered < 0; s++) {
      net.advance(1000);
      a.send(b, Buffer.from(`t${s}`));
      net.run();
      if (b.inbox.some((m) => m.message.toString() === `t${s}`)) delivered = s;
    }
    expect(delivered).toBeGreaterThan(0);
    expect(delivered).toBeLessThanOrEqual(62);
  });

  it("ratchets after a minute and never more than once a minute", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    const ratchets = () => a.sessions.stats().ratchets + b.sessions.stats().ratchets;
    const before = ratchets();
    for (let i = 0; i < 20; i++) {
      a.send(b, Buffer.from("x"));
      b.send(a, Buffer.from("y"));
      net.run();
      net.advance(1000);
    }
    expect(ratchets()).toBe(before);
    net.advance(61_000);
    const headerBefore = describePacket(net.log[net.log.length - 1]);
    for (let i = 0; i < 4; i++) {
      a.send(b, Buffer.from("x"));
      b.send(a, Buffer.from("y"));
      net.run();
    }
    expect(ratchets()).toBeGreaterThan(before);
    expect(describePacket(net.log[net.log.length - 1])).not.toBe(headerBefore);
    expect(a.inbox.length).toBe(24);
    expect(b.inbox.length).toBe(24);
  });

  it("expires idle sessions and buffers after 60 s", () => {
    const { net, a, b } = pair();
    const c = net.add("C");
    establish(net, a, b);
    net.peers.splice(net.peers.indexOf(c), 1); // C unreachable: A's message stays buffered
    a.send(c, Buffer.from("nobody home"));
    expect(a.sessions.stats().buffers).toBe(1);
    const t = a.sessions.nextTimeout();
    expect(t).toBeDefined();
    expect(t as number).toBeLessThanOrEqual(net.now + 60_000);
    net.advance(59_000);
    expect(a.sessions.stats().sessions).toBe(1);
    expect(a.sessions.stats().buffers).toBe(1);
    net.advance(2000);
    expect(a.sessions.stats().sessions).toBe(0);
    expect(a.sessions.stats().buffers).toBe(0);
    expect(b.sessions.stats().sessions).toBe(0);
    expect(a.sessions.stats().sessionsExpired).toBe(1);
    expect(a.sessions.stats().buffersExpired).toBe(1);
    expect(a.sessions.nextTimeout()).toBeUndefined();
    // and a new handshake works afterwards
    a.send(b, Buffer.from("back"));
    net.run();
    expect(b.inbox.map((m) => m.message.toString())).toEqual(["back"]);
  });

  it("activity keeps a session alive past 60 s", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    for (let i = 0; i < 12; i++) {
      net.advance(10_000);
      a.send(b, Buffer.from("keep"));
      net.run();
    }
    expect(a.sessions.stats().sessions).toBe(1);
    expect(b.sessions.stats().sessions).toBe(1);
    expect(b.inbox.length).toBe(12);
  });

  it("keeps only the latest message while the handshake is pending", () => {
    const { net, a, b } = pair();
    a.send(b, Buffer.from("1"));
    a.send(b, Buffer.from("2"));
    a.send(b, Buffer.from("3"));
    expect(a.sessions.stats().initsSent).toBe(3);
    net.run();
    expect(b.inbox.map((m) => m.message.toString())).toEqual(["3"]);
  });

  it("answers traffic from an unknown sender with an init and keeps no state", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    const pkt = net.log.filter((p) => p.from === a && p.payload[0] === 3).pop() as Packet;
    const c = net.add("C");
    c.sessions.handle(a.key, pkt.payload, net.now);
    expect(c.sessions.stats()).toMatchObject({ noSession: 1, initsSent: 1, sessions: 0, buffers: 0 });
    const init = net.queue.pop() as Packet;
    expect(init.to).toBe(a);
    expect(init.payload.length).toBe(193);
    expect(init.payload[0]).toBe(1);
  });

  it("survives malformed input without throwing", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    const s = b.sessions;
    const bad = [
      Buffer.alloc(0),
      Buffer.from([0]),
      Buffer.from([9, 1, 2]),
      Buffer.from([1, 2, 3]),
      Buffer.alloc(193, 1),
      Buffer.concat([Buffer.from([2]), randomBytes(192)]),
      Buffer.from([3, 1, 1]),
      Buffer.concat([Buffer.from([3]), Buffer.alloc(60, 0xff)]),
      Buffer.concat([Buffer.from([3, 2, 1, 9]), randomBytes(48)]),
      Buffer.concat([
        Buffer.from([3, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x01, 0x82, 0x01, 0x05]),
        randomBytes(40),
      ]),
    ];
    for (const p of bad) s.handle(a.key, p, net.now);
    net.run();
    const st = s.stats();
    expect(st.handshakeFailures).toBe(3);
    expect(st.malformed).toBeGreaterThanOrEqual(2);
    expect(st.sessions).toBe(1);
    a.send(b, Buffer.from("ok"));
    net.run();
    expect(b.inbox.at(-1)?.message.toString()).toBe("ok");
  });

  it("accepts packets reordered within the minute, as a Go receiver does", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    for (let i = 0; i < 10; i++) a.send(b, Buffer.from(`r${i}`));
    net.queue.reverse();
    net.run();
    expect(b.inbox.map((m) => m.message.toString())).toEqual(
      Array.from({ length: 10 }, (_, i) => `r${9 - i}`),
    );
    expect(b.sessions.stats().replaysDropped).toBe(0);
  });

  it("survives reordering, loss and crossing ratchets, then converges (seeded chaos)", () => {
    let seed = 0x2545f491;
    const rand = () => {
      seed ^= seed << 13;
      seed ^= seed >>> 17;
      seed ^= seed << 5;
      return (seed >>> 0) / 2 ** 32;
    };
    const { net, a, b } = pair();
    const sent = new Set<string>();
    for (let step = 0; step < 400; step++) {
      const from = rand() < 0.5 ? a : b;
      const text = `${from.name}${step}`;
      sent.add(text);
      from.send(from === a ? b : a, Buffer.from(text));
      if (rand() < 0.3) {
        for (let i = net.queue.length - 1; i > 0; i--) {
          const j = Math.floor(rand() * (i + 1));
          [net.queue[i], net.queue[j]] = [net.queue[j], net.queue[i]];
        }
        net.filter = () => rand() > 0.1;
        net.run();
      }
      net.advance(Math.floor(rand() * 8000));
    }
    net.filter = () => true;
    net.run();
    for (const p of [a, b]) for (const m of p.inbox) expect(sent.has(m.message.toString())).toBe(true);
    expect(a.inbox.length + b.inbox.length).toBeGreaterThan(200);
    const tail: string[] = [];
    for (let round = 0; round < 6; round++) {
      net.advance(2000);
      a.send(b, Buffer.from(`final-a${round}`));
      b.send(a, Buffer.from(`final-b${round}`));
      net.run();
    }
    for (const p of [a, b]) tail.push(...p.inbox.slice(-2).map((m) => m.message.toString()));
    expect(tail).toEqual(["final-b4", "final-b5", "final-a4", "final-a5"]);
  });

  it("carries an empty message in the minimal 52-byte traffic packet", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    a.send(b, new Uint8Array(0));
    net.run();
    expect(net.log.at(-1)?.payload.length).toBe(52);
    expect(b.inbox.map((m) => m.message.length)).toEqual([0]);
  });

  it("refuses messages above the MTU and carries one of exactly the MTU", () => {
    const { net, a, b } = pair();
    establish(net, a, b);
    expect(a.sessions.mtu).toBe(53050);
    expect(a.send(b, Buffer.alloc(SESSION_MTU + 1))).toBe(false);
    expect(a.sessions.stats().oversizeDropped).toBe(1);
    const big = trafficMessage(SESSION_MTU);
    expect(a.send(b, big)).toBe(true);
    net.run();
    expect(b.inbox.at(-1)?.message.equals(big)).toBe(true);
  });

  it("sends a prefix byte in front of the message, buffered or not, as if it were part of it", () => {
    const { net, a, b } = pair();
    const body = randomBytes(100);
    // No session yet: the prefixed message waits in the buffer, then goes out after the ack.
    expect(a.sessions.send(b.key, body, net.now, 0x01)).toBe(true);
    net.run();
    expect(b.inbox.map((m) => m.message.toString("hex"))).toEqual([`01${body.toString("hex")}`]);
    a.sessions.send(b.key, body, net.now, 0xff);
    net.run();
    const prefixed = net.log.at(-1)?.payload.length;
    a.send(b, Buffer.concat([Buffer.of(0xff), body]));
    net.run();
    expect(net.log.at(-1)?.payload.length).toBe(prefixed);
    expect(b.inbox.slice(1).map((m) => m.message.toString("hex"))).toEqual([
      `ff${body.toString("hex")}`,
      `ff${body.toString("hex")}`,
    ]);
    expect(a.sessions.list()[0]?.bytesOut).toBe(3 * 101);
    // The prefix counts against the MTU.
    expect(a.sessions.send(b.key, Buffer.alloc(SESSION_MTU), net.now, 0x01)).toBe(false);
    expect(a.sessions.send(b.key, Buffer.alloc(SESSION_MTU - 1), net.now, 0x01)).toBe(true);
    net.run();
    expect(b.inbox.at(-1)?.message.length).toBe(SESSION_MTU);
  });

  it("interoperates between the sodium-native and tweetnacl backends", () => {
    const { net, a, b } = pair(loadBox(), createTweetnaclBackend());
    establish(net, a, b);
    for (let i = 0; i < 50; i++) {
      a.send(b, Buffer.from(`a${i}`));
      b.send(a, Buffer.from(`b${i}`));
      net.run();
      net.advance(3000);
    }
    expect(b.inbox.map((m) => m.message.toString())).toEqual(Array.from({ length: 50 }, (_, i) => `a${i}`));
    expect(a.inbox.map((m) => m.message.toString())).toEqual(Array.from({ length: 50 }, (_, i) => `b${i}`));
  });

  it("hands the caller's now to sendTraffic and deliver, so the daemon reads the clock once per event", () => {
    const box = loadBox();
    const ids = [Identity.generate(), Identity.generate()];
    const seen: string[] = [];
    const nodes: Sessions[] = [];
    for (let i = 0; i < 2; i++) {
      const j = 1 - i;
      nodes.push(
        new Sessions(
          ids[i],
          {
            sendTraffic: (_dest, payload, now) => {
              seen.push(`send${i}@${now - T0}`);
              nodes[j].handle(ids[i].publicKey, payload, now + 1);
            },
            deliver: (_source, _message, now) => seen.push(`deliver${i}@${now - T0}`),
          },
          box,
        ),
      );
    }
    nodes[0].send(ids[1].publicKey, Buffer.from("x"), T0);
    // init from 0, ack from 1 (at the init's time + 1), 0's ack back, then the buffered message
    expect(seen).toEqual(["send0@0", "send1@1", "send0@2", "send0@2", "deliver1@3"]);
    seen.length = 0;
    nodes[1].send(ids[0].publicKey, Buffer.from("y"), T0 + 10);
    expect(seen).toEqual(["send1@10", "deliver0@11"]);
  });

  it("handles re-entrant calls: a reply sent from inside deliver, synchronously wired", () => {
    const box = loadBox();
    const ids = [Identity.generate(), Identity.generate()];
    const got: string[][] = [[], []];
    const now = T0;
    const nodes: Sessions[] = [];
    for (let i = 0; i < 2; i++) {
      const j = 1 - i;
      nodes.push(
        new Sessions(
          ids[i],
          {
            sendTraffic: (_dest, payload) => nodes[j].handle(ids[i].publicKey, payload, now),
            deliver: (_source, message) => {
              const text = message.toString();
              if (i === 1 && !text.startsWith("echo"))
                nodes[1].send(ids[0].publicKey, Buffer.from(`echo ${text}`), now);
              got[i].push(message.toString());
            },
          },
          box,
        ),
      );
    }
    for (let k = 0; k < 5; k++) nodes[0].send(ids[1].publicKey, Buffer.from(`msg${k}`), now);
    expect(got[1]).toEqual(["msg0", "msg1", "msg2", "msg3", "msg4"]);
    expect(got[0]).toEqual(["echo msg0", "echo msg1", "echo msg2", "echo msg3", "echo msg4"]);
  });
});
