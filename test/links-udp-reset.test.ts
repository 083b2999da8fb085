// udp:// RESET with a stateless reset token (RFC 9000 §10.3 in spirit), and one link per peer key and
// priority: a dialer ignores (and counts) a RESET without the listener's token, closes at once on a
// real one from a restarted listener and redials; a listener's link believes only the token its
// dialer committed to in the signed CONFIRM (a dialer that punched from its listener's socket and
// restarted there); a peer holding two priorities to one listener keeps both links.
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { DEFAULT_TIMEOUTS, encodeMetadata } from "../src/overlay/links/stream.js";
import {
  HS_BYTES,
  challengeKey,
  confirmPacket,
  confirmValid,
  handshakePacket,
  parseHandshake,
  resetCommitment,
} from "../src/overlay/links/udp-handshake.js";
import { randomEphemeral } from "../src/overlay/links/udp-seal.js";
import { PKT_RESET, RESET_BYTES } from "../src/overlay/links/udp-wire.js";
import { type UdpLink, UdpListener } from "../src/overlay/links/udp.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";

const listeners: UdpListener[] = [];

const rawSockets: dgram.Socket[] = [];

afterEach(async () => {
  for (const s of rawSockets.splice(0)) s.close();
  await Promise.all(listeners.splice(0).map((l) => l.close()));
  await stopLinkNodes();
});

/** A bare listener on loopback whose links arrive through `nextLink`. */
async function listener(id: Identity, resetSecret: Buffer, port = 0, dropAll = () => false) {
  const waiting: UdpLink[] = [];
  const waiters: Array<(l: UdpLink) => void> = [];
  const l = await UdpListener.bind({
    host: "127.0.0.1",
    port,
    localKey: id.publicKey,
    sign: (m) => id.sign(m),
    resetSecret,
    priority: 0,
    timeouts: DEFAULT_TIMEOUTS,
    hooks: { dropDatagram: dropAll },
    check: () => undefined,
    onLink: (link) => {
      const w = waiters.shift();
      if (w) w(link);
      else waiting.push(link);
    },
    onSocketError: () => {},
  });
  listeners.push(l);
  const nextLink = () => {
    const ready = waiting.shift();
    return ready ? Promise.resolve(ready) : new Promise<UdpLink>((r) => waiters.push(r));
  };
  return { l, nextLink };
}

const until = async (cond: () => boolean, ms = 3000) => {
  for (let t = 0; t < ms && !cond(); t += 10) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
};

describe("udp RESET", () => {
  it("ignores and counts a RESET without the token; a restarted listener's real one closes the link at once and the dialer redials", async () => {
    const bId = Identity.generate();
    const secret = randomBytes(32);
    let crashed = false;
    const b1 = await listener(bId, secret, 0, () => crashed);
    const port = b1.l.port;
    // RESETs name the listener's cookie, which every datagram A sends carries.
    const cookie = Buffer.alloc(8);
    const sniff = {
      dropDatagram: (d: Buffer) => {
        d.copy(cookie, 0, 1, 9);
        return false;
      },
    };
    const a = await startLinkNode({ peers: [`udp://127.0.0.1:${port}`], udp: { hooks: sniff } });
    const atB = await b1.nextLink();
    const aLink = (await a.nextLink()) as UdpLink;
    const closed = collect(aLink).closed;
    aLink.send(Buffer.from([1, 2]));
    await until(() => cookie.some((x) => x !== 0));

    // Forged, from the listener's very address (as an on-path host that read the cookie would):
    // the cookie with a wrong token, and the cookie alone (the old unsealed RESET).
    const wrong = Buffer.alloc(RESET_BYTES);
    wrong[0] = PKT_RESET;
    cookie.copy(wrong, 1);
    randomBytes(16).copy(wrong, 9);
    b1.l.sendTo(wrong, "127.0.0.1", atB.peerPort);
    b1.l.sendTo(wrong.subarray(0, 9), "127.0.0.1", atB.peerPort);
    await until(() => aLink.resetsRefused === 2);
    expect(aLink.closed).toBe(false);

    // The listener restarts without a word (its close datagrams are lost) on the same port and
    // with the same node key: the first datagram A sends gets the authentic RESET.
    crashed = true;
    await b1.l.close();
    const b2 = await listener(bId, secret, port);
    const t0 = Date.now();
    expect(await closed).toBe("reset by peer (it no longer knows this link)");
    const resetMs = Date.now() - t0;
    // Silence alone would take 8 s (liveness, default timeouts); keepalives leave every second.
    expect(resetMs).toBeLessThan(2500);
    const again = await b2.nextLink();
    expect(again.remoteKey.equals(a.id.publicKey)).toBe(true);
    expect(aLink.resetsRefused).toBe(2);
  }, 15_000);

  it("a listener restarted with another secret cannot reset the link: its RESET is counted, not believed", async () => {
    const bId = Identity.generate();
    let crashed = false;
    const b1 = await listener(bId, randomBytes(32), 0, () => crashed);
    const a = await startLinkNode({ peers: [`udp://127.0.0.1:${b1.l.port}`] });
    await b1.nextLink();
    const aLink = (await a.nextLink()) as UdpLink;
    crashed = true;
    const port = b1.l.port;
    await b1.l.close();
    await listener(bId, randomBytes(32), port);
    await until(() => aLink.resetsRefused >= 1);
    expect(aLink.closed).toBe(false);
  });
});

/**
 * A hand-made dialer on its own socket: INIT, CHALLENGE, then the CONFIRM with `commitment` (none:
 * 0^16), answered by an ACCEPT. Returns the socket (the link's address at the listener) and the
 * dialer cookie a RESET names.
 */
async function rawDial(port: number, id: Identity, commitment?: Buffer) {
  const socket = dgram.createSocket("udp4");
  rawSockets.push(socket);
  await new Promise<void>((r) => socket.connect(port, "127.0.0.1", () => r()));
  const next = () => new Promise<Buffer>((r) => socket.once("message", r));
  const eph = randomEphemeral();
  const dc = randomBytes(8);
  const meta = encodeMetadata(id.publicKey);
  let answer = next();
  socket.send(handshakePacket(1, dc, Buffer.alloc(8), meta, eph.publicKey));
  const challenge = await answer;
  const lc = Buffer.from(challenge.subarray(9, 17));
  const key = challengeKey(challenge)!;
  const sign = (m: Uint8Array) => id.sign(m);
  const confirm = confirmPacket(dc, lc, meta, id.publicKey, key, eph, sign, 0, commitment);
  answer = next();
  socket.send(confirm);
  expect((await answer)[0]).toBe(4); // ACCEPT
  return { socket, dc, confirm };
}

function resetFor(cookie: Buffer, token: Buffer): Buffer {
  const r = Buffer.alloc(RESET_BYTES);
  r[0] = PKT_RESET;
  cookie.copy(r, 1);
  token.copy(r, 9);
  return r;
}

describe("udp RESET of a listener's link (the dialer's committed token)", () => {
  it("the CONFIRM's signature covers the commitment: one swapped on the path does not verify", async () => {
    const bId = Identity.generate();
    const b = await listener(bId, randomBytes(32));
    const token = randomBytes(16);
    const { confirm } = await rawDial(b.l.port, Identity.generate(), resetCommitment(token));
    expect(confirm).toHaveLength(HS_BYTES);
    expect(confirmValid(parseHandshake(confirm)!, bId.publicKey)).toBe(true);
    const swapped = Buffer.from(confirm);
    resetCommitment(randomBytes(16)).copy(swapped, HS_BYTES - 16);
    expect(confirmValid(parseHandshake(swapped)!, bId.publicKey)).toBe(false);
  });

  it("believes only the committed token: a wrong one, the commitment itself, or a dialer that committed to none are counted", async () => {
    const b = await listener(Identity.generate(), randomBytes(32));
    const token = randomBytes(16);
    const committed = resetCommitment(token);
    const d = await rawDial(b.l.port, Identity.generate(), committed);
    const link = await b.nextLink();
    const closed = collect(link).closed;
    // From the link's own address (an on-path host that read the cookie could send these).
    d.socket.send(resetFor(d.dc, randomBytes(16)));
    d.socket.send(resetFor(d.dc, committed)); // the commitment travelled in clear in the CONFIRM
    d.socket.send(resetFor(randomBytes(8), token)); // another link's cookie: not this link's RESET
    await until(() => link.resetsRefused === 2);
    expect(link.closed).toBe(false);
    d.socket.send(resetFor(d.dc, token));
    expect(await closed).toBe("reset by peer (it no longer knows this link)");

    // A dialer on a socket of its own commits to nothing: no RESET closes its link here.
    const plain = await rawDial(b.l.port, Identity.generate());
    const plainLink = await b.nextLink();
    plain.socket.send(resetFor(plain.dc, token));
    plain.socket.send(resetFor(plain.dc, Buffer.alloc(16)));
    await until(() => plainLink.resetsRefused === 2);
    expect(plainLink.closed).toBe(false);
  });
});

describe("one udp link per peer key and priority", () => {
  it("two priorities to one listener: both links stay up, no flap", async () => {
    const b = await startLinkNode({ listen: ["udp://127.0.0.1:0"] });
    const uri = b.mgr.listenAddresses()[0]!;
    const a = await startLinkNode({ peers: [`${uri}?priority=1`, `${uri}?priority=2`] });
    const atA = [await a.nextLink(), await a.nextLink()];
    const atB = [await b.nextLink(), await b.nextLink()];
    expect(atA.map((l) => l.priority).sort()).toEqual([1, 2]);
    const watched = [...atA, ...atB].map((l) => collect(l));
    let closedEarly = "";
    for (const w of watched) {
      w.closed.then((r) => {
        closedEarly ||= r;
      });
    }
    await new Promise((r) => setTimeout(r, 3000));
    expect(closedEarly).toBe("");
    expect(a.links).toHaveLength(2);
    expect(b.links).toHaveLength(2);
    expect(a.logs.concat(b.logs).filter((l) => l.includes("link down"))).toEqual([]);
  }, 10_000);
});
