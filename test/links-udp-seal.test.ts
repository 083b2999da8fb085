// Sealed udp:// datagrams: the AEAD and key agreement without sockets (tampering, replays and
// datagrams older than the replay window refused; both ends derive the same keys), then a listener
// on loopback against a hand-made dialer: forged, replayed, injected and random datagrams are
// dropped and counted, and a CONFIRM signed by another key than the one it claims opens nothing.
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { encodeMetadata } from "../src/overlay/links/stream.js";
import {
  acceptKeys,
  challengeKey,
  confirmPacket,
  handshakePacket,
  parseHandshake,
} from "../src/overlay/links/udp-handshake.js";
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
import type { UdpLink } from "../src/overlay/links/udp.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";

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

afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  await stopLinkNodes();
});

const sockets: dgram.Socket[] = [];

async function rawSocket(port: number): Promise<dgram.Socket> {
  const s = dgram.createSocket("udp4");
  sockets.push(s);
  await new Promise<void>((r) => s.connect(port, "127.0.0.1", () => r()));
  return s;
}

const next = (s: dgram.Socket) => new Promise<Buffer>((r) => s.once("message", r));

/** A hand-made dialer: the real handshake from `id` on its own socket, then sealed datagrams. */
async function rawDialer(port: number, id: Identity) {
  const socket = await rawSocket(port);
  const eph = randomEphemeral();
  const dc = randomBytes(8);
  const meta = encodeMetadata(id.publicKey);
  const challengeP = next(socket);
  socket.send(handshakePacket(1, dc, Buffer.alloc(8), meta, eph.publicKey));
  const challenge = await challengeP;
  const lc = Buffer.from(challenge.subarray(9, 17));
  const confirm = confirmPacket(dc, lc, meta, id.publicKey, challengeKey(challenge)!, eph, (m) => id.sign(m));
  return { socket, eph, dc, lc, meta, challenge, confirm };
}

/** A sealed link datagram to the listener: type ‖ its cookie ‖ counter ‖ body ‖ tag. */
function sealed(sealer: Sealer, cookie: Buffer, body: Buffer, type = 0x10): Buffer {
  const d = Buffer.alloc(SEAL_BODY_AT + body.length + SEAL_TAG);
  d[0] = type;
  cookie.copy(d, 1);
  body.copy(d, SEAL_BODY_AT);
  sealer.seal(d);
  return d;
}

const traffic = (n: number) => Buffer.from([0, 0, 6, 9, n, 1, 2, 3, 4]); // record: kind 0, len 6, frame 9 ‖ n …

const until = async (cond: () => boolean) => {
  for (let i = 0; i < 200 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
};

describe("sealed udp links on loopback", () => {
  it("refuse a flipped bit, a replay, one older than the window and an unsealed injection; count them; stay up", async () => {
    const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"] });
    const port = a.mgr.listenAddresses()[0]!.split(":").pop()!;
    const id = Identity.generate();
    const d = await rawDialer(Number(port), id);
    // The CONFIRM from another address opens nothing (the cookie is bound to the address).
    (await rawSocket(Number(port))).send(d.confirm);
    const acceptP = next(d.socket);
    const linkP = a.nextLink();
    d.socket.send(d.confirm);
    const f = parseHandshake(await acceptP)!;
    expect(f.key.equals(a.id.publicKey)).toBe(true);
    const keys = acceptKeys(f, id.publicKey, d.eph)!;
    const link = (await linkP) as UdpLink;
    expect(a.links).toHaveLength(1);
    expect(link.remoteKey.equals(id.publicKey)).toBe(true);
    const at = collect(link);
    const tx = new Sealer(keys.d2l);

    const first = sealed(tx, d.lc, traffic(1));
    d.socket.send(first);
    await at.until((fr) => fr.length === 1);
    const flipped = sealed(tx, d.lc, traffic(2));
    flipped[SEAL_BODY_AT + 4]! ^= 0x20;
    d.socket.send(flipped);
    d.socket.send(first); // replay
    const unsealed = Buffer.concat([
      Buffer.from([0x10]),
      d.lc,
      Buffer.from([0, 0, 0, 0, 0, 0x10, 0, 0]), // a fresh counter, so only the tag can refuse it
      traffic(3),
      Buffer.alloc(16),
    ]);
    d.socket.send(unsealed); // an on-path host that knows the cookie
    d.socket.send(Buffer.concat([Buffer.from([5]), d.lc])); // an unsealed close
    const old = sealed(tx, d.lc, traffic(4));
    for (let i = 0; i < REPLAY_WINDOW + 10; i++) d.socket.send(sealed(tx, d.lc, Buffer.alloc(0)));
    await until(() => link.datagramsIn >= REPLAY_WINDOW + 11);
    d.socket.send(old); // never seen, but older than the window
    d.socket.send(sealed(tx, d.lc, traffic(5)));
    await at.until((fr) => fr.length === 2);
    expect(at.frames.map((x) => x[1])).toEqual([1, 5]);
    expect(link.forged).toBe(3);
    expect(link.replayed).toBe(2);
    expect(link.closed).toBe(false);

    // 100,000 random datagrams, from a stranger and (with the link's cookie) from the peer's address.
    const stranger = await rawSocket(Number(port));
    const memBefore = process.memoryUsage().rss;
    for (let i = 0; i < 100_000; i++) {
      const junk = randomBytes(1 + (i % 300));
      if (i % 2 === 0) {
        junk[0] = 0x10 + (i % 6);
        if (junk.length >= 9) d.lc.copy(junk, 1);
        d.socket.send(junk);
      } else stranger.send(junk);
      if (i % 100 === 0) await new Promise((r) => setTimeout(r, 1));
    }
    // The flood may overrun the socket's buffer: repeat a real datagram until one gets through.
    for (let i = 0; i < 600 && at.frames.length < 3; i++) {
      d.socket.send(sealed(tx, d.lc, traffic(6)));
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(at.frames.length).toBeGreaterThanOrEqual(3);
    expect(link.closed).toBe(false);
    // About 48,000 carried the cookie; most reach the link, each refused without a trace but a count.
    expect(link.forged + link.replayed).toBeGreaterThan(20_000);
    expect(process.memoryUsage().rss - memBefore).toBeLessThan(64 * 1024 * 1024);
    expect(a.links).toHaveLength(1);

    // An authentic datagram with malformed content closes that link.
    d.socket.send(sealed(tx, d.lc, Buffer.from([7, 0, 1, 9])));
    expect(await at.closed).toMatch(/malformed/);
  }, 60_000);

  it("moves a link to the new address of an authentic datagram (NAT rebinding), not of a forged one", async () => {
    const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"] });
    const port = Number(a.mgr.listenAddresses()[0]!.split(":").pop());
    const id = Identity.generate();
    const d = await rawDialer(port, id);
    const acceptP = next(d.socket);
    const linkP = a.nextLink();
    d.socket.send(d.confirm);
    const keys = acceptKeys(parseHandshake(await acceptP)!, id.publicKey, d.eph)!;
    const link = (await linkP) as UdpLink;
    const at = collect(link);
    const tx = new Sealer(keys.d2l);
    // A forged datagram with the cookie from elsewhere moves nothing and gets no answer.
    const forger = await rawSocket(port);
    let forgerHeard = false;
    forger.on("message", () => {
      forgerHeard = true;
    });
    forger.send(Buffer.concat([Buffer.from([0x10]), d.lc, Buffer.alloc(8), traffic(1), Buffer.alloc(16)]));
    await until(() => link.forged === 1);
    // The peer's NAT gave it a new port: its next authentic datagram comes from there.
    const rebound = await rawSocket(port);
    rebound.send(sealed(tx, d.lc, traffic(2)));
    await at.until((fr) => fr.length === 1);
    expect(at.frames[0]![1]).toBe(2);
    expect(link.peerPort).toBe(rebound.address().port);
    // What the link sends now goes to the new address.
    const heard = next(rebound);
    link.send(Buffer.from([1, 2, 3]));
    expect([0x10, 0x11]).toContain((await heard)[0]);
    expect(forgerHeard).toBe(false);
    expect(link.closed).toBe(false);
  });

  it("opens nothing for a CONFIRM whose signature is not the claimed key's (AllowedPublicKeys)", async () => {
    const allowed = Identity.generate();
    const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"], allowedPublicKeys: [allowed.publicKey] });
    const port = Number(a.mgr.listenAddresses()[0]!.split(":").pop());
    const impostor = Identity.generate();
    const d = await rawDialer(port, allowed);
    // The metadata claims the allowed key; the signature is the impostor's.
    const f = parseHandshake(d.confirm)!;
    const forged = confirmPacket(d.dc, d.lc, d.meta, allowed.publicKey, a.id.publicKey, d.eph, (m) =>
      impostor.sign(m),
    );
    expect(forged.subarray(0, 87).equals(d.confirm.subarray(0, 87))).toBe(true);
    expect(f.key.equals(allowed.publicKey)).toBe(true);
    let answered = false;
    d.socket.on("message", () => {
      answered = true;
    });
    d.socket.send(forged);
    await new Promise((r) => setTimeout(r, 300));
    expect(answered).toBe(false);
    expect(a.links).toHaveLength(0);
    // The real key holder gets in.
    const linkP = a.nextLink();
    d.socket.send(d.confirm);
    expect((await linkP).remoteKey.equals(allowed.publicKey)).toBe(true);
  });
});
