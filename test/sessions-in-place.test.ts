// Sessions.send's inPlace (issue 11): a message with room around it, as the TUN reads packets, is
// sealed where it lies instead of copied into the session's buffer, with both ciphers, and nothing
// outside SEAL_HEADROOM before it and SEAL_TAILROOM after it is touched.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import { loadBox } from "../src/crypto/box.js";
import { loadSessionAead } from "../src/crypto/session-aead.js";
import { SEAL_HEADROOM, SEAL_TAILROOM } from "../src/overlay/sessions.js";
import { Net, type Peer } from "./support/session-net.js";

const aead = loadSessionAead();
const GUARD = 64;
const CORE_IPV6 = 1;

/** Messages each way until both sides seal with what they will keep using. */
function warmUp(net: Net, a: Peer, b: Peer): void {
  for (let i = 0; i < 3; i++) {
    net.advance(1000);
    a.send(b, Buffer.from([CORE_IPV6, i]));
    net.run();
    b.send(a, Buffer.from([CORE_IPV6, i]));
    net.run();
  }
}

/** A sends `size` random bytes in place (core byte as the prefix); what B got and what went out. */
function sendInPlace(net: Net, a: Peer, b: Peer, size: number) {
  const buf = Buffer.alloc(GUARD + SEAL_HEADROOM + size + SEAL_TAILROOM + GUARD, 0xab);
  const messageAt = GUARD + SEAL_HEADROOM;
  const message = buf.subarray(messageAt, messageAt + size);
  randomBytes(size).copy(message);
  const original = Buffer.from(message);
  const logged = net.log.length;
  expect(a.sessions.send(b.key, message, net.now, CORE_IPV6, true)).toBe(true);
  // Copied before B handles them: B opens its copy in place.
  const sent = net.log.slice(logged).map((p) => Buffer.from(p.payload));
  net.run();
  return { buf, messageEnd: messageAt + size, original, sent, got: b.inbox.at(-1)!.message };
}

describe("sessions: sealing in place", () => {
  for (const cipher of ["chacha20-poly1305", "box"] as const) {
    it.skipIf(cipher !== "box" && aead === undefined)(
      `${cipher}: the packet is the message's own bytes sealed, the receiver opens it, nothing else is touched`,
      () => {
        const net = new Net();
        const a = net.add("A", loadBox(), { aead });
        const b = net.add("B", loadBox(), cipher === "box" ? {} : { aead });
        warmUp(net, a, b);
        for (const size of [1, 1300, 53_000]) {
          const { buf, messageEnd, original, sent, got } = sendInPlace(net, a, b, size);
          expect(got).toEqual(Buffer.concat([Buffer.of(CORE_IPV6), original]));
          expect(sent).toHaveLength(1);
          const packet = sent[0]!;
          // The packet ends at the message's end (box) or its tag (AEAD), inside the given room.
          const end = messageEnd + (cipher === "box" ? 0 : SEAL_TAILROOM);
          expect(packet.length).toBeLessThanOrEqual(SEAL_HEADROOM + size + SEAL_TAILROOM);
          expect(buf.subarray(end - packet.length, end).equals(packet)).toBe(true);
          expect(packet[0]).toBe(cipher === "box" ? 3 : 0x70);
          expect(buf.subarray(0, GUARD).every((x) => x === 0xab)).toBe(true);
          expect(buf.subarray(messageEnd + SEAL_TAILROOM).every((x) => x === 0xab)).toBe(true);
        }
        const stats = a.sessions.stats();
        expect(cipher === "box" ? stats.boxSealed : stats.aeadSealed).toBeGreaterThanOrEqual(3);
      },
    );
  }
});
