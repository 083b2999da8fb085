// The AEAD and key agreement of sealed udp:// datagrams, without sockets: tampering, replays and
// datagrams older than the replay window are refused; both ends derive the same keys.
import { randomBytes } from "node:crypto";
import { describe, expect, it } from "vitest";
import {
  OPEN_FORGED,
  OPEN_OK,
  OPEN_REPLAYED,
  Opener,
  REPLAY_WINDOW,
  SEAL_BODY_AT,
  SEAL_TAG,
  Sealer,
  derivedEphemeral,
  randomEphemeral,
  sessionKeys,
} from "../src/overlay/links/udp-seal.js";

function datagram(payload: Buffer): Buffer {
  const d = Buffer.alloc(SEAL_BODY_AT + payload.length + SEAL_TAG);
  d[0] = 0x10;
  randomBytes(8).copy(d, 1);
  payload.copy(d, SEAL_BODY_AT);
  return d;
}

describe("sealed udp datagrams", () => {
  it("open what was sealed, and refuse every single flipped bit", () => {
    const key = randomBytes(32);
    const tx = new Sealer(key);
    const payload = randomBytes(100);
    const sealed = datagram(payload);
    tx.seal(sealed);
    expect(sealed.subarray(SEAL_BODY_AT, SEAL_BODY_AT + 100).equals(payload)).toBe(false);
    for (let bit = 0; bit < sealed.length * 8; bit += 7) {
      const d = Buffer.from(sealed);
      d[bit >> 3]! ^= 1 << (bit & 7);
      expect(new Opener(key).open(d), `bit ${bit}`).not.toBe(OPEN_OK);
    }
    const rx = new Opener(key);
    const d = Buffer.from(sealed);
    expect(rx.open(d)).toBe(OPEN_OK);
    expect(d.subarray(SEAL_BODY_AT, SEAL_BODY_AT + 100).equals(payload)).toBe(true);
    expect(new Opener(randomBytes(32)).open(Buffer.from(sealed))).toBe(OPEN_FORGED);
  });

  it("accept reordering within the window; refuse replays and anything older than the window", () => {
    const key = randomBytes(32);
    const tx = new Sealer(key);
    const sent = Array.from({ length: REPLAY_WINDOW + 100 }, () => {
      const d = datagram(randomBytes(8));
      tx.seal(d);
      return d;
    });
    const rx = new Opener(key);
    const open = (i: number) => rx.open(Buffer.from(sent[i]!));
    expect(open(5)).toBe(OPEN_OK);
    expect(open(3)).toBe(OPEN_OK); // reordered
    expect(open(5)).toBe(OPEN_REPLAYED);
    expect(open(3)).toBe(OPEN_REPLAYED);
    expect(open(4)).toBe(OPEN_OK);
    expect(open(REPLAY_WINDOW + 50)).toBe(OPEN_OK);
    expect(open(49)).toBe(OPEN_REPLAYED); // older than the window, never seen
    expect(open(51)).toBe(OPEN_OK); // inside the window, never seen
    expect(open(51)).toBe(OPEN_REPLAYED);
    for (let i = REPLAY_WINDOW + 51; i < sent.length; i++) expect(open(i)).toBe(OPEN_OK);
    expect(open(REPLAY_WINDOW + 60)).toBe(OPEN_REPLAYED);
  });

  it("both ends derive the same keys; a low-order share is refused", () => {
    const dialer = randomEphemeral();
    const listener = derivedEphemeral(randomBytes(32), dialer.publicKey);
    const context = randomBytes(64);
    const atDialer = sessionKeys(dialer, listener.publicKey, context)!;
    const atListener = sessionKeys(listener, dialer.publicKey, context)!;
    expect(atDialer.d2l.equals(atListener.d2l)).toBe(true);
    expect(atDialer.l2d.equals(atListener.l2d)).toBe(true);
    expect(atDialer.d2l.equals(atDialer.l2d)).toBe(false);
    expect(sessionKeys(dialer, listener.publicKey, randomBytes(64))!.d2l.equals(atDialer.d2l)).toBe(false);
    expect(sessionKeys(dialer, Buffer.alloc(32), context)).toBeUndefined();
  });
});
