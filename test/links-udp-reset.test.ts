// udp:// RESET with a stateless reset token (RFC 9000 §10.3 in spirit), and one link per peer key and
// priority: a dialer ignores (and counts) a RESET without the listener's token, closes at once on a
// real one from a restarted listener and redials; a listener's link believes only the token its
// dialer committed to in the signed CONFIRM (a dialer that punched from its listener's socket and
// restarted there); a peer holding two priorities to one listener keeps both links; no socket hands
// out the token of a cookie that may be live (see the last block).
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import {
  HS_BYTES,
  confirmValid,
  parseHandshake,
  resetCommitment,
} from "../src/overlay/links/udp-handshake.js";
import { PKT_INIT, PKT_RESET, RESET_BYTES } from "../src/overlay/links/udp-wire.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";
import { restartablePort } from "./support/ports.js";
import {
  askForReset,
  bareListener,
  challenged,
  closeRawUdp,
  rawDial,
  rawSocket,
  resetFor,
  strayFor,
} from "./support/udp-raw.js";

afterEach(async () => {
  await closeRawUdp();
  await stopLinkNodes();
});

const until = async (cond: () => boolean, ms = 3000) => {
  for (let t = 0; t < ms && !cond(); t += 10) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
};

describe("udp RESET", () => {
  it("ignores and counts a RESET without the token; a restarted listener's real one closes the link at once and the dialer redials", async () => {
    const bId = Identity.generate();
    const secret = randomBytes(32);
    let crashed = false;
    // Restarted on the same port below: one below the ephemeral range (support/ports.ts).
    const b1 = await bareListener(bId, secret, await restartablePort(), () => crashed);
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
    const b2 = await bareListener(bId, secret, port);
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
    const b1 = await bareListener(bId, randomBytes(32), await restartablePort(), () => crashed);
    const a = await startLinkNode({ peers: [`udp://127.0.0.1:${b1.l.port}`] });
    await b1.nextLink();
    const aLink = (await a.nextLink()) as UdpLink;
    crashed = true;
    const port = b1.l.port;
    await b1.l.close();
    await bareListener(bId, randomBytes(32), port);
    await until(() => aLink.resetsRefused >= 1);
    expect(aLink.closed).toBe(false);
  });
});

describe("udp RESET of a listener's link (the dialer's committed token)", () => {
  it("the CONFIRM's signature covers the commitment: one swapped on the path does not verify", async () => {
    const bId = Identity.generate();
    const b = await bareListener(bId, randomBytes(32));
    const token = randomBytes(16);
    const { confirm } = await rawDial(b.l.port, Identity.generate(), resetCommitment(token));
    expect(confirm).toHaveLength(HS_BYTES);
    expect(confirmValid(parseHandshake(confirm)!, bId.publicKey)).toBe(true);
    const swapped = Buffer.from(confirm);
    resetCommitment(randomBytes(16)).copy(swapped, HS_BYTES - 16);
    expect(confirmValid(parseHandshake(swapped)!, bId.publicKey)).toBe(false);
  });

  it("believes only the committed token: a wrong one, the commitment itself, or a dialer that committed to none are counted", async () => {
    const b = await bareListener(Identity.generate(), randomBytes(32));
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
  it("a CONFIRM replayed from the address it first came from does not displace the peer's current link", async () => {
    const { l: b, nextLink } = await bareListener(Identity.generate(), randomBytes(32));
    const peer = Identity.generate();
    const first = await rawDial(b.port, peer);
    (await nextLink()).close("the peer went away");
    // The peer redials from another port of the same host: its new link replaces nothing live.
    await rawDial(b.port, peer);
    const current = await nextLink();
    const closed = collect(current).closed;
    // An observer that read the first CONFIRM sends it again from the first address (spoofed, or
    // that port is its own now): it still carries the peer's valid signature and the cookie.
    first.socket.send(first.confirm);
    await until(() => current.closed || b.confirmsReplayed === 1);
    expect(current.closed).toBe(false);
    expect(b.linkCount).toBe(1);
    closed.catch(() => {});
  });

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

// The RESET token must stay secret while the link it names lives. A listener socket answers a link
// datagram it cannot place with HMAC(reset secret, cookie): an oracle for whoever names a cookie.
// These ask it the two ways an observer could, with a cookie it only read: another socket of the
// same node (a second Listen, the multicast or punch socket share the node's reset secret) while
// the link is up; the very socket while the cookie is still in its handshake (a listener's
// CHALLENGE cookie before the CONFIRM arrives, a punch dialer's INIT cookie before the ACCEPT).
// A token learnt either way lets a host that can send from the peer's address close the link.
describe("udp RESET tokens are not handed out for live cookies", () => {
  it("another socket of the same node does not reveal a live link's token", async () => {
    const bId = Identity.generate();
    const secret = randomBytes(32); // one node: every udp socket is keyed from its node key
    const { l: b1, nextLink } = await bareListener(bId, secret);
    const { l: b2 } = await bareListener(bId, secret);
    const cookie = Buffer.alloc(8);
    const sniff = {
      dropDatagram: (d: Buffer) => {
        d.copy(cookie, 0, 1, 9);
        return false;
      },
    };
    const a = await startLinkNode({ peers: [`udp://127.0.0.1:${b1.port}`], udp: { hooks: sniff } });
    const aLink = (await a.nextLink()) as UdpLink;
    const atB = await nextLink();
    const closed = collect(aLink).closed;
    aLink.send(Buffer.from([1, 2]));
    await until(() => cookie.some((x) => x !== 0));

    // The observer read the cookie off the wire and asks b's other socket about it.
    const observer = await rawSocket();
    const reset = await askForReset(observer, b2.port, strayFor(cookie), true);
    expect(reset?.subarray(1, 9).equals(cookie)).toBe(true); // b2 has no such link: it answers
    // The observer sends what it got from the listener's address (spoofed, or on the path): the
    // token was b2's for that cookie, not b1's, so the link counts it and stays.
    b1.sendTo(reset!, "127.0.0.1", atB.peerPort);
    await until(() => aLink.closed || aLink.resetsRefused === 1);
    expect(aLink.closed).toBe(false);
    expect(aLink.resetsRefused).toBe(1);
    closed.catch(() => {});
  });

  it("a listener does not reveal the token of a cookie it handed out in a CHALLENGE whose CONFIRM is still to come", async () => {
    const { l: b } = await bareListener(Identity.generate(), randomBytes(32));
    const { lc, confirm } = await challenged(b.port);
    // An observer saw the CHALLENGE go by and asks before the dialer's CONFIRM arrives.
    const observer = await rawSocket();
    const reset = await askForReset(observer, b.port, strayFor(lc));
    // The handshake completes: the ACCEPT hands the dialer the token a RESET must carry.
    const token = await confirm();
    expect(reset?.subarray(9).equals(token) ?? false).toBe(false);
    expect(reset).toBeUndefined();
    expect(b.resetsWithheld).toBe(1);
  });

  it("a punch dialer's socket does not reveal the token of the cookie in its INIT before the ACCEPT", async () => {
    const { l: a } = await bareListener(Identity.generate(), randomBytes(32));
    const far = await rawSocket(); // the address the punch goes to: it only listens
    const punch = a.punchDial({
      address: "127.0.0.1",
      port: far.port,
      expectKey: Identity.generate().publicKey,
      intervalMs: 50,
      timeoutMs: 3000,
    });
    punch.link.catch(() => {});
    await until(() => far.got.some((m) => m[0] === PKT_INIT));
    const dc = Buffer.from(far.got.find((m) => m[0] === PKT_INIT)!.subarray(1, 9));
    const observer = await rawSocket();
    const reset = await askForReset(observer, a.port, strayFor(dc));
    punch.cancel("test over");
    expect(reset).toBeUndefined();
    expect(a.resetsWithheld).toBe(1);
  });

  it("a link this socket closed (its CLOSE lost) still draws the RESET: its token guards nothing live here", async () => {
    const { l: b, nextLink } = await bareListener(Identity.generate(), randomBytes(32));
    const { dialer, lc, confirm } = await challenged(b.port);
    const token = await confirm();
    // The listener drops the link (the dialer's raw socket ignores the CLOSE, as if it were lost);
    // the dialer's next datagram names the gone link from its own address.
    (await nextLink()).close("closed here");
    const reset = await askForReset(dialer, b.port, strayFor(lc), true);
    expect(reset?.subarray(9).equals(token)).toBe(true);
    expect(b.resetsWithheld).toBe(0);
  });

  it("a restarted listener still resets the links of its previous life", async () => {
    const id = Identity.generate();
    const secret = randomBytes(32);
    const { l: b1 } = await bareListener(id, secret, await restartablePort());
    const { dialer, lc } = await challenged(b1.port);
    const port = b1.port;
    await b1.close();
    await bareListener(id, secret, port);
    const reset = await askForReset(dialer, port, strayFor(lc), true);
    expect(reset?.subarray(1, 9).equals(lc)).toBe(true);
  });
});
