// The native socket's opening on its receive thread (src/tun/native/udp_recv.c, OpenSSL's
// ChaCha20-Poly1305) against udp-seal.ts's sodium: what sodium sealed opens there and what the
// native send thread sealed too, byte for byte as sodium opens it, across a key change; forged,
// replayed and too-old datagrams are still refused and counted by the Opener's verdict; datagrams
// no registered key covers (another cookie or phase) reach JS sealed; a close with a receive job
// out waits for it. The adaptive paths (issue 11, PLANETD_UDP_RECV and PLANETD_UDP_SEND_INLINE
// unset): a lone datagram is sealed and sent on the loop thread (its counts are in state[] as soon
// as the flush returns) and read and opened there (no receive job); a flush of more than 4 goes to
// the send job, and a read that fills every receive slot hands the next read to a job; datagrams
// keep their order across the switches.
import { randomBytes } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import {
  type NativeUdpSocket,
  S_INFLIGHT,
  S_OPENED,
  S_OPEN_FAILED,
  S_OPEN_KEYS_REFUSED,
  S_RECV_JOBS,
  S_SENT,
  loadNativeUdp,
} from "../src/overlay/links/udp-native.js";
import {
  OPEN_FORGED,
  OPEN_OK,
  OPEN_REPLAYED,
  Opener,
  REPLAY_WINDOW,
  SEAL_BODY_AT,
  Sealer,
} from "../src/overlay/links/udp-seal.js";
import { OPENED_FAILED, OPENED_NONE, openUdpSocket } from "../src/overlay/links/udp-socket.js";
import { COOKIE, body, plain, shell } from "./support/udp-datagrams.js";

const open: NativeUdpSocket[] = [];
async function nativeSocket(): Promise<NativeUdpSocket> {
  const s = (await openUdpSocket({ family: 4, address: "127.0.0.1", impl: "native" })) as NativeUdpSocket;
  open.push(s);
  return s;
}

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

interface Got {
  d: Buffer;
  opened: number;
}

/** Copies of `count` datagrams with the socket's open status; rejects after `ms` with how many came. */
function collect(s: NativeUdpSocket, count: number, ms = 10000): Promise<Got[]> {
  const got: Got[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${count} datagrams`)), ms);
    s.onMessage((msg, _from, opened) => {
      got.push({ d: Buffer.from(msg), opened: opened ?? OPENED_NONE });
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

const native = loadNativeUdp() !== undefined;

/** Sets an environment variable the addon reads when a socket opens, for one describe block. */
function envFor(name: string, value: string | undefined): void {
  const before = process.env[name];
  const set = (v: string | undefined) => {
    if (v === undefined) Reflect.deleteProperty(process.env, name);
    else process.env[name] = v;
  };
  beforeAll(() => set(value));
  afterAll(() => set(before));
}

// Both fixed receive modes: PLANETD_UDP_RECV=job (a threadpool job per batch) and =inline (the loop
// thread reads and opens), which the addon reads when a socket opens; the default adapts (below).
// Each with both link AEADs: OpenSSL's primitives called directly (the default where Node exports
// them) and EVP (PLANETD_UDP_AEAD=evp, the fallback).
describe.skipIf(!native).each([
  ["job", "direct"],
  ["inline", "direct"],
  ["job", "evp"],
  ["inline", "evp"],
])("native opening, receive mode %s, AEAD %s", (mode, aead) => {
  envFor("PLANETD_UDP_RECV", mode);
  envFor("PLANETD_UDP_AEAD", aead === "evp" ? "evp" : undefined);

  it("opens what sodium and the send thread sealed, as sodium opens it, across a key change", async () => {
    const a = await nativeSocket();
    const b = await nativeSocket();
    const keys = [randomBytes(32), randomBytes(32)];
    const sizes = [0, 1, 15, 16, 17, 63, 64, 65, 1200, 1371, 8000];
    // b's receive keys: phase 0 then phase 1, as a rekey installs them.
    const rx = [new Opener(keys[0]!, b.sealing, COOKIE, 0), new Opener(keys[1]!, b.sealing, COOKIE, 1)];
    expect(rx.map(rxSlot).every((s) => s >= 0)).toBe(true);
    // The same datagrams sealed here with sodium: what each must open to, and what sodium opens.
    const ref = [new Sealer(keys[0]!, 0), new Sealer(keys[1]!, 1)];
    const check = [new Opener(keys[0]!), new Opener(keys[1]!)];
    const senders = [0, 1].map((phase) => {
      const byThread = new Sealer(keys[phase]!, phase, a.sealing);
      // It goes second: its counters continue where sodium's stop (a counter seen twice is a replay).
      for (const _ of sizes) byThread.seal(shell(Buffer.alloc(0)));
      return [new Sealer(keys[phase]!, phase), byThread];
    });
    const expected: Buffer[] = [];
    const total = sizes.length * 2 * 2;
    const got = collect(b, total);
    let n = 0;
    for (const phase of [0, 1]) {
      // Half sealed by sodium here, half by the send thread (the counters run as one sender's).
      for (const native of [0, 1]) {
        for (const size of sizes) {
          const d = shell(body(n, size));
          const slot = senders[phase]![native]!.seal(d);
          expect(slot >= 0).toBe(native === 1);
          const mine = shell(body(n, size));
          ref[phase]!.seal(mine);
          expect(check[phase]!.open(mine)).toBe(OPEN_OK); // sodium opens the reference copy
          expected.push(plain(mine));
          a.send(d, b.address().port, "127.0.0.1", slot);
          n++;
        }
        await Promise.resolve();
      }
    }
    const received = await got;
    const half = sizes.length * 2;
    expect(received.map((g) => g.opened)).toEqual(
      Array.from({ length: total }, (_, i) => rxSlot(rx[i < half ? 0 : 1]!)),
    );
    expect(received.map((g) => plain(g.d))).toEqual(expected);
    expect(received.map((g) => rx[g.d[9]! >>> 7]!.open(g.d, g.opened))).toEqual(Array(total).fill(OPEN_OK));
    expect(b.state[S_OPENED]).toBe(total);
    expect(b.state[S_OPEN_FAILED]).toBe(0);
    expect(b.state[S_RECV_JOBS]! > 0).toBe(mode === "job");
  });

  it("refuses and counts forged, replayed and too-old datagrams; leaves others' sealed", async () => {
    const a = await nativeSocket();
    const b = await nativeSocket();
    const key = randomBytes(32);
    const rx = new Opener(key, b.sealing, COOKIE, 0);
    const tx = new Sealer(key, 0);
    const port = b.address().port;
    const send = (d: Buffer) => a.send(d, port, "127.0.0.1");
    const sealed = (i: number, cookie = COOKIE) => {
      const d = shell(body(i, 40), cookie);
      tx.seal(d);
      return d;
    };
    const old = sealed(0); // held back: older than the window once the flood below is in
    const first = sealed(1);
    const flipped = sealed(2);
    flipped[SEAL_BODY_AT + 3]! ^= 0x20;
    const unsealed = shell(body(3, 40));
    unsealed.writeUInt32BE(5000, 13); // a fresh counter: only the tag refuses it
    const otherCookie = sealed(4, Buffer.from("another!"));
    const phase1 = shell(body(5, 40));
    new Sealer(key, 1).seal(phase1); // no phase-1 key registered here
    const flood = Array.from({ length: REPLAY_WINDOW + 10 }, (_, i) => sealed(6 + i));
    const outgoing = [first, flipped, first, unsealed, otherCookie, phase1, ...flood, old];
    const got = collect(b, outgoing.length, 20000);
    for (const [i, d] of outgoing.entries()) {
      send(d);
      if (i % 200 === 199) await new Promise((r) => setImmediate(r));
    }
    const received = await got;
    const statusOf = (g: Got) => g.opened;
    expect(received.slice(0, 6).map(statusOf)).toEqual([
      rxSlot(rx),
      OPENED_FAILED,
      rxSlot(rx),
      OPENED_FAILED,
      OPENED_NONE,
      OPENED_NONE,
    ]);
    // The ones no key here covers arrive as sent: still sealed.
    expect(received[4]!.d.equals(otherCookie)).toBe(true);
    expect(received[5]!.d.equals(phase1)).toBe(true);
    const verdicts = received.map((g) => (g.opened === OPENED_NONE ? undefined : rx.open(g.d, g.opened)));
    expect(verdicts.slice(0, 4)).toEqual([OPEN_OK, OPEN_FORGED, OPEN_REPLAYED, OPEN_FORGED]);
    expect(verdicts.slice(6, -1).every((v) => v === OPEN_OK)).toBe(true);
    expect(verdicts.at(-1)).toBe(OPEN_REPLAYED); // opened fine, but older than the window
    expect(plain(received[0]!.d)).toEqual(body(1, 40));
    expect(b.state[S_OPEN_FAILED]).toBe(2);
    expect(b.state[S_OPENED]).toBe(outgoing.length - 4);
  });

  it("keeps the receive key table bounded and frees a dropped key's slot", async () => {
    const b = await nativeSocket();
    const slots: number[] = [];
    for (let i = 0; i < 256; i++) slots.push(b.sealing.addOpenKey(randomBytes(8), i & 1, randomBytes(32)));
    expect(new Set(slots).size).toBe(256);
    expect(b.sealing.addOpenKey(COOKIE, 0, randomBytes(32))).toBe(-1);
    expect(b.state[S_OPEN_KEYS_REFUSED]).toBe(1);
    // An Opener without a slot opens with sodium, as on the dgram socket.
    const key = randomBytes(32);
    const rx = new Opener(key, b.sealing, COOKIE, 0);
    expect(rxSlot(rx)).toBe(-1);
    const d = shell(body(1, 40));
    new Sealer(key).seal(d);
    expect(rx.open(d)).toBe(OPEN_OK);
    b.sealing.dropOpenKey(slots[9]!);
    expect(b.sealing.addOpenKey(COOKIE, 1, randomBytes(32))).toBe(slots[9]);
    expect(() => b.sealing.addOpenKey(Buffer.alloc(7), 0, randomBytes(32))).toThrow(/8 bytes/);
  });

  it("closes from inside a batch (a job out on the other buffer): the port is free once close() resolves", async () => {
    const a = await nativeSocket();
    const b = await nativeSocket();
    const key = randomBytes(32);
    const rx = new Opener(key, b.sealing, COOKIE, 0);
    const tx = new Sealer(key, 0, a.sealing);
    const port = b.address().port;
    let seen = 0;
    let forged = 0;
    const closing = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`only ${seen} datagrams`)), 10000);
      b.onMessage((msg, _from, opened) => {
        if (rx.open(msg, opened) !== OPEN_OK) forged++;
        // Closed from inside a batch: the next job is already out on the other buffer.
        if (++seen === 50) {
          clearTimeout(timer);
          resolve(b.close());
        }
      });
    });
    for (let i = 0; i < 2000; i++) {
      const d = shell(body(i, 1000));
      a.send(d, port, "127.0.0.1", tx.seal(d));
      if (i % 100 === 99) await new Promise((r) => setImmediate(r));
    }
    await closing;
    expect(forged).toBe(0);
    expect(b.state[S_OPENED]).toBeGreaterThanOrEqual(50);
    const again = await openUdpSocket({ family: 4, address: "127.0.0.1", port, impl: "native" });
    open.push(again as NativeUdpSocket);
    expect(again.address().port).toBe(port);
  });
});

/** The Opener's socket slot (private): what the receive job reports for datagrams it opened. */
function rxSlot(o: Opener): number {
  return (o as unknown as { slot: number }).slot;
}

/** A pair with a native send key on a and the matching receive key on b. */
async function pair() {
  const a = await nativeSocket();
  const b = await nativeSocket();
  const key = randomBytes(32);
  const tx = new Sealer(key, 0, a.sealing);
  const rx = new Opener(key, b.sealing, COOKIE, 0);
  const port = b.address().port;
  let n = 0;
  /** Queues datagram n (size grows with n: no two in a row form a GSO run) sealed by a's socket. */
  const send = (): Buffer => {
    const d = shell(body(n, 40 + n));
    const expected = Buffer.from(body(n, 40 + n));
    n++;
    const slot = tx.seal(d);
    expect(slot).toBeGreaterThanOrEqual(0);
    a.send(d, port, "127.0.0.1", slot);
    return expected;
  };
  return { a, b, rx, send };
}

describe.skipIf(!native)("native udp socket, adaptive paths", () => {
  const modeVars = ["PLANETD_UDP_RECV", "PLANETD_UDP_SEND_INLINE"] as const;
  const saved = modeVars.map((v) => process.env[v]);
  // Named, not left to the default: on two CPUs or fewer (CI's machine) the default is all inline.
  beforeAll(() => {
    process.env.PLANETD_UDP_RECV = "adaptive";
    process.env.PLANETD_UDP_SEND_INLINE = "4";
  });
  afterAll(() => {
    modeVars.forEach((v, i) => {
      if (saved[i] === undefined) Reflect.deleteProperty(process.env, v);
      else process.env[v] = saved[i];
    });
  });

  it("seals, sends, reads and opens a lone datagram on the loop thread, ping after ping", async () => {
    const { a, b, rx, send } = await pair();
    for (let i = 1; i <= 5; i++) {
      const got = collect(b, 1);
      const expected = send();
      await Promise.resolve(); // the socket's flush microtask has run
      // Sent already: a job's counts would reach state[] only on its completion, a later loop turn.
      expect(a.state[S_SENT]).toBe(i);
      expect(a.state[S_INFLIGHT]).toBe(0);
      const [g] = await got;
      expect(plain(g!.d)).toEqual(expected);
      expect(rx.open(g!.d, g!.opened)).toBe(OPEN_OK);
      expect(b.state[S_OPENED]).toBe(i);
    }
    expect(b.state[S_RECV_JOBS]).toBe(0);
  });

  it("hands a larger flush to the send job and a full read's successor to a receive job, in order", async () => {
    const { a, b, rx, send } = await pair();
    // 20 datagrams, 4 a flush, all sent before the loop polls again: b's first read fills its 16
    // slots, so a job reads the rest.
    const expected: Buffer[] = [];
    let got = collect(b, 20);
    for (let f = 0; f < 5; f++) {
      for (let i = 0; i < 4; i++) expected.push(send());
      await Promise.resolve();
      expect(a.state[S_SENT]).toBe(expected.length);
    }
    let received = await got;
    expect(received.map((g) => plain(g.d))).toEqual(expected);
    expect(received.map((g) => rx.open(g.d, g.opened))).toEqual(Array(20).fill(OPEN_OK));
    expect(b.state[S_RECV_JOBS]).toBeGreaterThan(0);
    // 8 in one flush: the send job's, still out when the flush returns.
    got = collect(b, 8);
    const more: Buffer[] = [];
    for (let i = 0; i < 8; i++) more.push(send());
    await Promise.resolve();
    expect(a.state[S_SENT]).toBe(20);
    expect(a.state[S_INFLIGHT]).toBeGreaterThan(0);
    received = await got;
    expect(received.map((g) => plain(g.d))).toEqual(more);
    expect(b.state[S_OPENED]).toBe(28);
  });
});
