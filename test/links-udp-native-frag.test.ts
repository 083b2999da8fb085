// Traffic frames the native socket fragments itself (udp_queue_fragments in src/tun/native/udp_send.c,
// NativeUdpSocket.sendFragments): the datagrams are those udp-link-send.ts would build one by one,
// byte for byte, sealed on the send thread with consecutive counters (carried across the low
// word, phase bit kept) that sodium opens; a link sends its big frames that way and they arrive
// whole; loss injection takes the per-fragment path. On receipt the socket joins a read's fragment
// datagrams of one frame, all opened by it and in order, into one message (udp_recv.c join_runs)
// whose counters the link's replay window takes as a range; out of order, lossy, forged or
// repeated ones go to JS one by one and still reassemble there.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FRAG_HEADER } from "../src/overlay/links/udp-frag.js";
import { NativeUdpSocket, S_JOINED, loadNativeUdp } from "../src/overlay/links/udp-native.js";
import {
  OPEN_OK,
  OPEN_REPLAYED,
  Opener,
  SEAL_BODY_AT,
  SEAL_TAG,
  Sealer,
} from "../src/overlay/links/udp-seal.js";
import { OPENED_FAILED, openedCount } from "../src/overlay/links/udp-socket-types.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";
import {
  COOKIE,
  closeNativeSockets,
  collect as collectDatagrams,
  collectOpened,
  nativeSocket,
} from "./support/udp-datagrams.js";

afterEach(async () => {
  vi.restoreAllMocks();
  await closeNativeSockets();
  await stopLinkNodes();
});

/** Fragment i of `frame` in `count` as udp-link-send.ts's appendFragment lays it out, unsealed. */
function expectedFragment(
  frame: Buffer,
  id: number,
  i: number,
  count: number,
  hi: number,
  lo: number,
): Buffer {
  const size = Math.ceil(frame.length / count);
  return fragmentAt(frame, id, i, count, i * size, Math.min(frame.length, (i + 1) * size), hi, lo);
}

/** The fragment holding frame[at, end) as fragment i of count, unsealed. */
function fragmentAt(
  frame: Buffer,
  id: number,
  i: number,
  count: number,
  at: number,
  end: number,
  hi = 0,
  lo = 0,
) {
  const part = frame.subarray(at, end);
  const d = Buffer.alloc(SEAL_BODY_AT + 3 + FRAG_HEADER + part.length + SEAL_TAG);
  d[0] = 0x10;
  COOKIE.copy(d, 1);
  d.writeUInt32BE(hi, 9);
  d.writeUInt32BE(lo, 13);
  let p = SEAL_BODY_AT;
  d[p] = 2;
  d.writeUInt16BE(part.length, p + 1);
  d.writeUInt32BE(id, p + 3);
  d[p + 7] = i;
  d[p + 8] = count;
  d.writeUInt16BE(at, p + 9);
  p += 3 + FRAG_HEADER;
  part.copy(d, p);
  return d;
}

/** A sender sealing under a key and a receiver opening under it (cookie COOKIE, phase 0). */
async function sealedPair() {
  const a = await nativeSocket();
  const b = await nativeSocket();
  const key = randomBytes(32);
  return { a, b, tx: new Sealer(key, 0, a.sealing), rx: new Opener(key, b.sealing, COOKIE, 0) };
}

const native = loadNativeUdp() !== undefined;

describe.skipIf(!native)("fragments built by the native socket", () => {
  it("are the per-fragment datagrams byte for byte, sealed with consecutive counters sodium opens", async () => {
    const a = await nativeSocket();
    const b = await nativeSocket();
    const key = randomBytes(32);
    const tx = new Sealer(key, 1, a.sealing);
    // Two counters below 2^32: the run carries into the high word.
    tx.testOnlySkipTo(2 ** 32 - 2);
    const frame = randomBytes(7001);
    const count = 5;
    const run = { frame, count, id: 0xdead_beef, cookie: COOKIE, counterHi: 0, counterLo: 0, keySlot: -1 };
    expect(tx.reserve(run)).toBe(true);
    expect(run.counterHi).toBe(0x8000_0000); // phase 1, high word 0
    expect(run.counterLo).toBe(2 ** 32 - 2);
    const got = collectDatagrams(b, count);
    expect(a.sendFragments(run, b.address().port, "127.0.0.1")).toBe(true);
    const datagrams = await got;
    const opener = new Opener(key);
    const parts: Buffer[] = [];
    for (const [i, d] of datagrams.entries()) {
      const n = 2 ** 32 - 2 + i;
      const hi = (Math.floor(n / 2 ** 32) | 0x8000_0000) >>> 0;
      const want = expectedFragment(frame, 0xdead_beef, i, count, hi, n >>> 0);
      expect(d.length).toBe(want.length);
      expect(d.subarray(0, SEAL_BODY_AT).equals(want.subarray(0, SEAL_BODY_AT))).toBe(true);
      expect(opener.open(d)).toBe(OPEN_OK);
      expect(d.subarray(0, d.length - SEAL_TAG).equals(want.subarray(0, want.length - SEAL_TAG))).toBe(true);
      parts.push(d.subarray(SEAL_BODY_AT + 3 + FRAG_HEADER, d.length - SEAL_TAG));
    }
    expect(Buffer.concat(parts).equals(frame)).toBe(true);
    // The Sealer goes on after the run.
    expect(tx.sent).toBe(2 ** 32 - 2 + count);
  });

  it("refuses runs no link makes and queues nothing for them", async () => {
    const a = await nativeSocket();
    const b = await nativeSocket();
    const slot = a.sealing.addKey(randomBytes(32));
    const port = b.address().port;
    const send = (frame: Buffer, count: number, cookie = COOKIE) =>
      a.sendFragments(
        { frame, count, id: 1, cookie, counterHi: 0, counterLo: 0, keySlot: slot },
        port,
        "127.0.0.1",
      );
    expect(send(randomBytes(100), 1)).toBe(false); // one fragment is no run
    expect(send(randomBytes(100), 256)).toBe(false); // the header's count is a u8
    expect(send(randomBytes(3), 3 + 1)).toBe(false); // a fragment would be empty
    expect(send(Buffer.alloc(0), 2)).toBe(false);
    expect(send(randomBytes(100), 2, COOKIE.subarray(0, 7))).toBe(false);
    expect(a.state[0]).toBe(0); // S_QUEUED
  });

  it("a link sends its big traffic frames that way, and they arrive whole", async () => {
    const spy = vi.spyOn(NativeUdpSocket.prototype, "sendFragments");
    const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"] });
    const aLinkP = a.nextLink();
    const b = await startLinkNode({ peers: [a.mgr.listenAddresses()[0]!] });
    const aLink = (await aLinkP) as UdpLink;
    const bLink = (await b.nextLink()) as UdpLink;
    const atA = collect(aLink);
    const frames = Array.from({ length: 40 }, (_, n) => {
      const f = randomBytes(3000 + n * 1500);
      f[0] = 9;
      f.writeUInt32BE(n, 1);
      return f;
    });
    for (const f of frames) bLink.send(f);
    await atA.until((f) => f.length === frames.length);
    for (const f of atA.frames) expect(f.equals(frames[f.readUInt32BE(1)]!)).toBe(true);
    expect(bLink.fragmentedOut).toBe(frames.length);
    expect(spy.mock.results.filter((r) => r.value === true).length).toBe(frames.length);
    // Whole in one read: joined by the socket; any other way: reassembled here.
    expect(aLink.framesJoined + aLink.reassembly.completed).toBe(frames.length);
    expect(aLink.framesJoined).toBeGreaterThan(0);
    expect(aLink.forged + aLink.replayed).toBe(0);
  });

  it("with loss injection the link builds each fragment itself", async () => {
    const spy = vi.spyOn(NativeUdpSocket.prototype, "sendFragments");
    const udp = { hooks: { dropDatagram: () => false } };
    const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"], udp });
    const aLinkP = a.nextLink();
    const b = await startLinkNode({ peers: [a.mgr.listenAddresses()[0]!], udp });
    const aLink = (await aLinkP) as UdpLink;
    const bLink = (await b.nextLink()) as UdpLink;
    const atA = collect(aLink);
    const frame = randomBytes(20_000);
    frame[0] = 9;
    bLink.send(frame);
    await atA.until((f) => f.length === 1);
    expect(atA.frames[0]!.equals(frame)).toBe(true);
    expect(spy).not.toHaveBeenCalled();
  });

  it("a read holding all of a frame's fragments in order hands it over joined, once", async () => {
    const { a, b, tx, rx } = await sealedPair();
    const frame = randomBytes(9000);
    const run = { frame, count: 7, id: 42, cookie: COOKIE, counterHi: 0, counterLo: 0, keySlot: -1 };
    expect(tx.reserve(run)).toBe(true);
    const got = collectOpened(b, 1);
    expect(a.sendFragments(run, b.address().port, "127.0.0.1")).toBe(true);
    const { msg, opened } = (await got)[0]!;
    expect(b.state[S_JOINED]).toBe(1);
    expect(openedCount(opened)).toBe(7);
    expect(msg.subarray(SEAL_BODY_AT, msg.length - SEAL_TAG).equals(frame)).toBe(true);
    expect(rx.open(Buffer.from(msg), opened)).toBe(OPEN_OK);
    // The same frame again (a replayed read) is refused as a whole, and so is any of its counters.
    expect(rx.open(Buffer.from(msg), opened)).toBe(OPEN_REPLAYED);
    const third = expectedFragment(frame, 42, 3, 7, 0, 3);
    expect(rx.open(third, opened & 0xff)).toBe(OPEN_REPLAYED);
  });

  for (const [name, order, corrupt] of [
    ["out of order", [0, 2, 1, 3, 4], -1],
    ["with one lost", [0, 1, 3, 4], -1],
    ["with one forged", [0, 1, 2, 3, 4], 3],
  ] as const) {
    it(`fragments ${name} arrive one by one and reassemble as before`, async () => {
      const { a, b, tx, rx } = await sealedPair();
      const frame = randomBytes(5000);
      // Counters in fragment order, sent in `order`: the socket seals each one; the forged one is
      // sealed here under another key with its counter (the socket cannot open it, nor can JS).
      const forger = new Sealer(randomBytes(32));
      forger.testOnlySkipTo(corrupt < 0 ? 0 : corrupt);
      const sealed = [0, 1, 2, 3, 4].map((i) => {
        const d = expectedFragment(frame, 9, i, 5, 0, 0);
        const slot = tx.seal(d);
        if (i !== corrupt) return { d, slot };
        forger.sealHere(d);
        return { d, slot: -1 };
      });
      const got = collectOpened(b, order.length);
      for (const i of order) a.send(sealed[i]!.d, b.address().port, "127.0.0.1", sealed[i]!.slot);
      const arrived = await got;
      expect(b.state[S_JOINED]).toBe(0);
      expect(arrived.length).toBe(order.length);
      const parts = new Map<number, Buffer>();
      for (const { msg, opened } of arrived) {
        expect(openedCount(opened)).toBe(1);
        if (rx.open(msg, opened) !== OPEN_OK) continue;
        const body = msg.subarray(SEAL_BODY_AT + 3 + FRAG_HEADER, msg.length - SEAL_TAG);
        parts.set(msg[SEAL_BODY_AT + 7]!, Buffer.from(body));
      }
      expect(arrived.filter((x) => x.opened === OPENED_FAILED).length).toBe(corrupt < 0 ? 0 : 1);
      const want = order.filter((i) => i !== corrupt);
      expect([...parts.keys()].sort()).toEqual([...want].sort());
      if (want.length === 5)
        expect(Buffer.concat([0, 1, 2, 3, 4].map((i) => parts.get(i)!)).equals(frame)).toBe(true);
    });
  }

  it("a whole, in-order run off the honest layout (fragments of unequal sizes) is not joined", async () => {
    const { a, b, tx, rx } = await sealedPair();
    const frame = randomBytes(3000);
    // Contiguous and complete, but the last fragment is longer than the first: JS's reassembly
    // refuses that layout, so the socket leaves it to JS.
    const cuts = [0, 1000, 1900, 3000];
    const got = collectOpened(b, 3);
    for (let i = 0; i < 3; i++) {
      const d = fragmentAt(frame, 5, i, 3, cuts[i]!, cuts[i + 1]!);
      a.send(d, b.address().port, "127.0.0.1", tx.seal(d));
    }
    const arrived = await got;
    expect(b.state[S_JOINED]).toBe(0);
    for (const { msg, opened } of arrived) {
      expect(openedCount(opened)).toBe(1);
      expect(rx.open(msg, opened)).toBe(OPEN_OK);
    }
  });
});
