// The native socket's sealing on its send thread (src/tun/native/udp_send.c, OpenSSL's
// ChaCha20-Poly1305) against udp-seal.ts's sodium one: byte-identical datagrams that sodium opens,
// across a key change, in order over many send jobs, and a close while a job is out.
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type NativeUdpSocket,
  S_DROPPED,
  S_INFLIGHT,
  S_KEYS_REFUSED,
  S_SEAL_FAILED,
  S_SENT,
  loadNativeUdp,
} from "../src/overlay/links/udp-native.js";
import { OPEN_OK, Opener, SEAL_BODY_AT, SEAL_TAG, Sealer } from "../src/overlay/links/udp-seal.js";
import type { UdpSocket } from "../src/overlay/links/udp-socket.js";
import {
  COOKIE,
  body,
  closeNativeSockets,
  collect,
  collectOpened,
  nativeSocket,
  shell,
} from "./support/udp-datagrams.js";

afterEach(async () => {
  await closeNativeSockets();
});

/** Opens a copy with sodium by the phase bit; the plaintext, or undefined when it does not open. */
function openWith(openers: Opener[], d: Buffer): Buffer | undefined {
  const copy = Buffer.from(d);
  if (openers[copy[9]! >>> 7]!.open(copy) !== OPEN_OK) return undefined;
  return copy.subarray(SEAL_BODY_AT, copy.length - SEAL_TAG);
}

/** Queues datagram `i` (its number first in the body) from a to b, the socket sealing it. */
function sendNumbered(a: NativeUdpSocket, b: UdpSocket, tx: Sealer, i: number, size: number): void {
  const d = shell(body(i, size));
  a.send(d, b.address().port, "127.0.0.1", tx.seal(d));
}

/** The numbers of the datagrams, opened with sodium (undefined for one that does not open). */
function numbers(key: Buffer, got: Buffer[]): Array<number | undefined> {
  const opener = new Opener(key);
  return got.map((d) => openWith([opener], d)?.readUInt32BE(0));
}

/** A sender with a registered key and a receiver. */
async function sealedPair() {
  const a = await nativeSocket();
  const b = await nativeSocket();
  const key = randomBytes(32);
  return { a, b, key, tx: new Sealer(key, 0, a.sealing) };
}

const upTo = (n: number) => Array.from({ length: n }, (_, i) => i);

const native = loadNativeUdp() !== undefined;

// Both link AEADs: OpenSSL's primitives called directly (the default where Node exports them) and
// EVP (PLANETD_UDP_AEAD=evp, the fallback); the addon reads the choice when a socket opens.
describe.skipIf(!native).each(["direct", "evp"])("native sealing on the send thread, AEAD %s", (aead) => {
  const before = process.env.PLANETD_UDP_AEAD;
  beforeAll(() => {
    if (aead === "evp") process.env.PLANETD_UDP_AEAD = "evp";
    else Reflect.deleteProperty(process.env, "PLANETD_UDP_AEAD");
  });
  afterAll(() => {
    if (before === undefined) Reflect.deleteProperty(process.env, "PLANETD_UDP_AEAD");
    else process.env.PLANETD_UDP_AEAD = before;
  });
  it("seals byte for byte as sodium does, and sodium opens it, across a key change", async () => {
    const a = await nativeSocket();
    const b = await nativeSocket();
    const keys = [randomBytes(32), randomBytes(32)];
    const sizes = [0, 1, 15, 16, 17, 63, 64, 65, 1200, 1200, 1200, 1371, 8000];
    const nativeTx = new Sealer(keys[0]!, 0, a.sealing);
    const sodiumTx = new Sealer(keys[0]!, 0);
    const expected: Buffer[] = [];
    const send = (tx: Sealer, ref: Sealer, i: number, size: number) => {
      const d = shell(body(i, size));
      const slot = tx.seal(d);
      expect(slot).toBeGreaterThanOrEqual(0);
      const mine = shell(body(i, size));
      expect(ref.seal(mine)).toBe(-1);
      expected.push(mine);
      a.send(d, b.address().port, "127.0.0.1", slot);
    };
    const total = sizes.length * 2;
    const got = collect(b, total);
    sizes.forEach((n, i) => send(nativeTx, sodiumTx, i, n));
    // The rekey: the next key, phase 1; the old one is dropped with datagrams still queued under it.
    nativeTx.release();
    const nativeTx2 = new Sealer(keys[1]!, 1, a.sealing);
    const sodiumTx2 = new Sealer(keys[1]!, 1);
    await Promise.resolve(); // one send job out, the rest in the next one
    sizes.forEach((n, i) => send(nativeTx2, sodiumTx2, 100 + i, n));
    const received = await got;
    expect(received).toEqual(expected);
    const openers = [new Opener(keys[0]!), new Opener(keys[1]!)];
    const opened = received.map((d) => openWith(openers, d));
    expect(opened).toEqual([...sizes.map((n, i) => body(i, n)), ...sizes.map((n, i) => body(100 + i, n))]);
    // A wrong key or a flipped bit does not open: the check above is not vacuous.
    const forged = Buffer.from(received[3]!);
    forged[SEAL_BODY_AT] ^= 1;
    expect(openWith(openers, forged)).toBeUndefined();
    await a.close();
    expect(a.state[S_SENT]).toBe(total);
    expect(a.state[S_SEAL_FAILED]).toBe(0);
    expect(a.state[S_DROPPED]).toBe(0);
  });

  it("keeps the key table bounded: a full table refuses (counted), a dropped key's slot is reused", async () => {
    const a = await nativeSocket();
    const slots: number[] = [];
    for (let i = 0; i < 256; i++) slots.push(a.sealing.addKey(randomBytes(32)));
    expect(new Set(slots).size).toBe(256);
    expect(a.sealing.addKey(randomBytes(32))).toBe(-1);
    expect(a.state[S_KEYS_REFUSED]).toBe(1);
    // A Sealer without a slot seals itself, as on the dgram socket.
    const key = randomBytes(32);
    const d = shell(body(1, 40));
    expect(new Sealer(key, 0, a.sealing).seal(d)).toBe(-1);
    expect(openWith([new Opener(key)], d)).toEqual(body(1, 40));
    a.sealing.dropKey(slots[7]!);
    expect(a.sealing.addKey(randomBytes(32))).toBe(slots[7]);
    expect(() => a.sealing.addKey(Buffer.alloc(31))).toThrow(/32 bytes/);
  });

  it("keeps order across many send jobs, and a datagram naming no key is never sent unsealed", async () => {
    const { a, b, key, tx } = await sealedPair();
    const rounds = 60;
    const perRound = 100;
    const got = collect(b, rounds * perRound, 20000);
    for (let r = 0; r < rounds; r++) {
      for (let i = 0; i < perRound; i++) sendNumbered(a, b, tx, r * perRound + i, 200 + (i % 3) * 100);
      // A turn of the event loop between rounds: each round is its own buffer, jobs overlap.
      await new Promise((resolve) => setImmediate(resolve));
    }
    expect(numbers(key, await got)).toEqual(upTo(rounds * perRound));
    const bad = shell(body(0, 10));
    const atB = collect(b, 1, 2000);
    a.send(bad, b.address().port, "127.0.0.1", 200); // a slot never registered
    a.send(Buffer.from("plain"), b.address().port, "127.0.0.1");
    expect((await atB)[0]!.toString()).toBe("plain");
    await a.close();
    expect(a.state[S_SEAL_FAILED]).toBe(1);
  });

  it("closes with a send job out: the queued datagrams still leave, then the port is free", async () => {
    const { a, b, key, tx } = await sealedPair();
    const count = 400;
    const got = collect(b, count);
    for (let i = 0; i < count; i++) sendNumbered(a, b, tx, i, 1000);
    await Promise.resolve(); // the flush microtask has handed the buffer to a job
    const port = a.address().port;
    // Queued after the job left: these go in the next one, which close() still lets out.
    const last = shell(body(count, 20));
    const closing = a.close();
    a.send(last, b.address().port, "127.0.0.1", tx.seal(last)); // closed: not sent
    await closing;
    await nativeSocket(port); // the port is free again
    expect(numbers(key, await got)).toEqual(upTo(count));
  });

  it("waits for the send thread rather than drop when one turn queues more than a buffer holds", async () => {
    const { a, b, tx } = await sealedPair();
    // 3 MiB in one synchronous run: three buffers' worth, so send() must wait for jobs to finish.
    const count = 3000;
    for (let i = 0; i < count; i++) sendNumbered(a, b, tx, i, 1024);
    await a.close();
    expect(a.state[S_DROPPED]).toBe(0);
    expect(a.state[S_SENT]).toBe(count);
  });

  it("keeps each link's key in its own slot: datagrams alternating between keys, and a slot reused for a new key", async () => {
    // Two links on one socket each way (listener sockets carry many): every datagram switches key.
    const a = await nativeSocket();
    const b = await nativeSocket();
    const cookies = [COOKIE, Buffer.from("second!!")];
    const keys = [randomBytes(32), randomBytes(32), randomBytes(32)];
    const txs = [new Sealer(keys[0]!, 0, a.sealing), new Sealer(keys[1]!, 0, a.sealing)];
    const rxs = [
      new Opener(keys[0]!, b.sealing, cookies[0], 0),
      new Opener(keys[1]!, b.sealing, cookies[1], 0),
    ];
    const received = collectOpened(b, 40);
    for (let i = 0; i < 40; i++) {
      const d = shell(body(i, 300 + i), cookies[i & 1]);
      a.send(d, b.address().port, "127.0.0.1", txs[i & 1]!.seal(d));
    }
    for (const [i, { msg, opened }] of (await received).entries()) {
      expect(opened).toBeGreaterThanOrEqual(0); // opened by b's receive path, under its cookie's key
      expect(rxs[i & 1]!.open(msg, opened)).toBe(OPEN_OK);
      expect(msg.subarray(SEAL_BODY_AT, msg.length - SEAL_TAG)).toEqual(body(i, 300 + i));
    }
    // The first link's send key is dropped and a third takes a free slot (the dropped one once its
    // datagrams left): what it seals opens under the third key only.
    txs[0]!.release();
    // Its datagrams have arrived; the job that sent them completes on a later turn.
    for (let i = 0; i < 1000 && a.state[S_INFLIGHT] !== 0; i++) await new Promise((r) => setImmediate(r));
    const third = new Sealer(keys[2]!, 0, a.sealing);
    const got = collect(b, 1);
    const d = shell(body(7, 500), Buffer.from("thirdone"));
    const slot = third.seal(d);
    expect(slot).toBe(0); // the first key's slot, its context keyed anew
    a.send(d, b.address().port, "127.0.0.1", slot);
    const [sealed] = await got;
    expect(new Opener(keys[0]!).open(Buffer.from(sealed!))).not.toBe(OPEN_OK);
    const opener = new Opener(keys[2]!);
    expect(opener.open(sealed!)).toBe(OPEN_OK);
    expect(sealed!.subarray(SEAL_BODY_AT, sealed!.length - SEAL_TAG)).toEqual(body(7, 500));
  });
});
