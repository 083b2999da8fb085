// Each refusal of outside input on the udp:// receive path is counted where an operator sees it
// (udp-refusals.ts): CONFIRMs a listener refuses (stale, bad signature, malformed, key not allowed),
// answers a dialer refuses (unsolicited, forged, malformed, a key its pin refuses), stray datagrams
// a socket gives to no one, and the fragment reassembler's refused fragments and evicted and
// abandoned frames. All provoked on real sockets on loopback, counted as deltas of the process's
// totals, and read back from the Prometheus scrape and planetctl getUdp (JSON and text).
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { afterEach, expect, it, vi } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { DEFAULT_TIMEOUTS, encodeMetadata } from "../src/overlay/links/stream.js";
import { MAX_ASSEMBLIES, MAX_NACKS } from "../src/overlay/links/udp-frag.js";
import {
  CHALLENGE_BYTES,
  HS_BYTES,
  acceptPacket,
  challengeKey,
  confirmPacket,
  handshakePacket,
  parseHandshake,
} from "../src/overlay/links/udp-handshake.js";
import { type UdpRefusalTotals, udpRefusalTotals } from "../src/overlay/links/udp-refusals.js";
import { Sealer, randomEphemeral } from "../src/overlay/links/udp-seal.js";
import {
  DATA_HEADER,
  PKT_ACCEPT,
  PKT_CHALLENGE,
  PKT_CLOSE,
  PKT_CONFIRM,
  PKT_DATA,
  PKT_INIT,
  PKT_NACK,
  PKT_OBSERVE,
  PKT_REKEY_ACK,
  PKT_RESET,
  REC_FRAGMENT,
  RESET_BYTES,
} from "../src/overlay/links/udp-wire.js";
import { type UdpLink, dialUdp } from "../src/overlay/links/udp.js";
import { shell } from "./support/udp-datagrams.js";
import { until } from "./support/udp-pair.js";
import * as raw from "./support/udp-raw.js";
import { expectShown } from "./support/udp-refusals.js";

const sockets: dgram.Socket[] = [];
const links: UdpLink[] = [];
afterEach(async () => {
  vi.useRealTimers();
  for (const l of links.splice(0)) l.close("done");
  for (const s of sockets.splice(0)) s.close();
  await raw.closeRawUdp();
});

/** A raw socket on loopback that keeps what it receives and where from. */
async function peer() {
  const socket = dgram.createSocket("udp4");
  sockets.push(socket);
  const got: Array<{ msg: Buffer; port: number }> = [];
  socket.on("message", (msg, rinfo) => got.push({ msg, port: rinfo.port }));
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
  const port = socket.address().port;
  const send = (d: Buffer, to: number) => socket.send(d, to, "127.0.0.1");
  const next = async (type: number) => {
    await until(() => got.some((g) => g.msg[0] === type), 3000);
    return got.find((g) => g.msg[0] === type)!;
  };
  return { socket, got, port, send, next };
}

/** What moved in the totals since `before`, stage by stage. */
function moved(before: UdpRefusalTotals): UdpRefusalTotals {
  const now = udpRefusalTotals() as unknown as Record<string, unknown>;
  const was = before as unknown as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [stage, counts] of Object.entries(now)) {
    if (typeof counts === "number") out[stage] = counts - (was[stage] as number);
    else {
      const w = was[stage] as Record<string, number>;
      out[stage] = Object.fromEntries(Object.entries(counts as object).map(([k, n]) => [k, n - w[k]!]));
    }
  }
  return out as unknown as UdpRefusalTotals;
}

/** A hand-made dialer that got its CHALLENGE: what it needs to write any CONFIRM. */
async function challengedBy(port: number, id: Identity) {
  const p = await peer();
  const eph = randomEphemeral();
  const dc = randomBytes(8);
  const meta = encodeMetadata(id.publicKey);
  p.send(handshakePacket(PKT_INIT, dc, Buffer.alloc(8), meta, eph.publicKey), port);
  const challenge = (await p.next(PKT_CHALLENGE)).msg;
  const lc = Buffer.from(challenge.subarray(9, 17));
  const confirm = () =>
    confirmPacket(dc, lc, meta, id.publicKey, challengeKey(challenge)!, eph, (m) => id.sign(m));
  return { ...p, dc, lc, confirm };
}

it("a listener counts stale, badly signed, malformed and not-allowed CONFIRMs and the datagrams it gives to no one", async () => {
  const banned = Identity.generate();
  const notAllowed = (key: Buffer) => (key.equals(banned.publicKey) ? "not in AllowedPublicKeys" : undefined);
  const { l } = await raw.bareListener(
    Identity.generate(),
    randomBytes(32),
    0,
    () => false,
    undefined,
    notAllowed,
  );
  const before = udpRefusalTotals();
  const dialer = Identity.generate();

  // A CONFIRM sent two minutes after its CHALLENGE: its cookie's minute and the next are over.
  const late = await challengedBy(l.port, dialer);
  vi.useFakeTimers({ toFake: ["Date"], now: Date.now() + 121_000 });
  late.send(late.confirm(), l.port);
  await until(() => moved(before).confirmsRefused.stale === 1, 3000);
  vi.useRealTimers();

  // In time, but its signature has a bit flipped; then one whose metadata does not parse.
  const flipped = await challengedBy(l.port, dialer);
  const badSig = flipped.confirm();
  badSig[HS_BYTES - 40]! ^= 1;
  flipped.send(badSig, l.port);
  const garbled = flipped.confirm();
  randomBytes(38).copy(garbled, 17);
  flipped.send(garbled, l.port);
  await until(() => moved(before).confirmsRefused.malformed === 1, 3000);
  expect(moved(before).confirmsRefused.signature).toBe(1);

  // A key admission refuses: a CLOSE, no link.
  const refused = await challengedBy(l.port, banned);
  refused.send(refused.confirm(), l.port);
  expect((await refused.next(PKT_CLOSE)).msg.length).toBe(DATA_HEADER);
  expect(l.linkCount).toBe(0);

  // Datagrams for no one. A hole punch's one byte is not counted, a 5-byte runt is; a type no
  // datagram has; a 100-byte INIT; a link datagram (too short to be answered), a CLOSE and a RESET
  // naming no link; a CHALLENGE and an ACCEPT with no dial from this socket.
  const stray = await peer();
  const sent = [
    Buffer.from([0]),
    randomBytes(5),
    Buffer.concat([Buffer.from([0x7e]), randomBytes(20)]),
    Buffer.concat([Buffer.from([PKT_INIT]), randomBytes(99)]),
    Buffer.concat([Buffer.from([PKT_DATA]), randomBytes(RESET_BYTES - 2)]),
    Buffer.concat([Buffer.from([PKT_CLOSE]), randomBytes(DATA_HEADER - 1)]),
    Buffer.concat([Buffer.from([PKT_RESET]), randomBytes(RESET_BYTES - 1)]),
    Buffer.concat([Buffer.from([PKT_CHALLENGE]), randomBytes(CHALLENGE_BYTES - 1)]),
    Buffer.concat([Buffer.from([PKT_ACCEPT]), randomBytes(HS_BYTES - 1)]),
  ];
  sent[1]![0] = PKT_DATA;
  for (const d of sent) stray.send(d, l.port);
  await until(() => moved(before).dialAnswersRefused.unsolicited === 2, 3000);
  // An OBSERVE naming no link; from a live link's own address, a datagram and a RESET naming
  // another cookie than that link's.
  stray.send(Buffer.concat([Buffer.from([PKT_OBSERVE]), randomBytes(40)]), l.port);
  const live = await raw.rawDial(l.port, Identity.generate());
  live.socket.send(Buffer.concat([Buffer.from([PKT_DATA]), randomBytes(40)]));
  live.socket.send(raw.resetFor(randomBytes(8), randomBytes(16)));
  await until(() => moved(before).strayDatagrams.cookie === 6, 3000);

  const m = moved(before);
  expect(m.confirmsRefused).toEqual({ replayed: 0, stale: 1, signature: 1, not_allowed: 1, malformed: 1 });
  expect(m.strayDatagrams).toEqual({ short: 1, type: 1, size: 1, cookie: 6 });
  expect(m.dialAnswersRefused).toEqual({ unsolicited: 2, forged: 0, not_allowed: 0, malformed: 0 });
  // None of these answered with a RESET or a CHALLENGE.
  expect(stray.got).toEqual([]);

  const text = await expectShown(udpRefusalTotals());
  const now = udpRefusalTotals();
  expect(text).toContain(
    `${now.confirmsRefused.stale} stale, ${now.confirmsRefused.signature} bad signature, ${now.confirmsRefused.not_allowed} key not allowed, ${now.confirmsRefused.malformed} malformed`,
  );
  expect(text).toMatch(
    new RegExp(
      `Stray datagrams: +${now.strayDatagrams.short} short, ${now.strayDatagrams.type} unknown type, ${now.strayDatagrams.size} wrong size, ${now.strayDatagrams.cookie} naming no link`,
    ),
  );
});

it("a dialer counts unsolicited, forged and malformed answers and a CHALLENGE from a key its pin refuses, and keeps waiting for the real ACCEPT", async () => {
  const [me, them, impostor] = [Identity.generate(), Identity.generate(), Identity.generate()];
  const listener = await peer();
  const dial = (pin: Buffer) =>
    dialUdp({
      address: "127.0.0.1",
      port: listener.port,
      localKey: me.publicKey,
      sign: (m) => me.sign(m),
      priority: 0,
      timeouts: DEFAULT_TIMEOUTS,
      remote: `udp://127.0.0.1:${listener.port}`,
      check: (key) => (key.equals(pin) ? undefined : "not the pinned key"),
    });
  // The INIT of a dial whose socket sent none before (each dial has its own).
  const dialPorts = new Set<number>();
  const initOfNextDial = async () => {
    const isNew = (g: { msg: Buffer; port: number }) => g.msg[0] === PKT_INIT && !dialPorts.has(g.port);
    await until(() => listener.got.some(isNew), 3000);
    const init = listener.got.find(isNew)!;
    dialPorts.add(init.port);
    return init;
  };
  const before = udpRefusalTotals();
  const meta = encodeMetadata(them.publicKey);

  const d = dial(them.publicKey);
  const init = await initOfNextDial();
  const dc = Buffer.from(init.msg.subarray(1, 9));
  const lc = randomBytes(8);
  const to = init.port;
  // Not for this dial, or not yet: a CHALLENGE naming another cookie, an ACCEPT before any
  // CHALLENGE, a runt and an unknown type.
  listener.send(handshakePacket(PKT_CHALLENGE, randomBytes(8), lc, meta), to);
  listener.send(handshakePacket(PKT_ACCEPT, dc, lc, meta, randomBytes(32)), to);
  listener.send(randomBytes(4), to);
  listener.send(Buffer.concat([Buffer.from([0x7e]), randomBytes(30)]), to);
  listener.send(handshakePacket(PKT_CHALLENGE, dc, lc, meta), to);
  const f = parseHandshake((await listener.next(PKT_CONFIRM)).msg)!;
  const eph = randomEphemeral();
  const token = randomBytes(16);
  // ACCEPTs naming the dial: signed by another key, for another listener cookie, then the real one.
  listener.send(acceptPacket(f, meta, them.publicKey, eph, (m) => impostor.sign(m), token)!.packet, to);
  const otherCookie = { ...f, listenerCookie: randomBytes(8) };
  listener.send(acceptPacket(otherCookie, meta, them.publicKey, eph, (m) => them.sign(m), token)!.packet, to);
  listener.send(acceptPacket(f, meta, them.publicKey, eph, (m) => them.sign(m), token)!.packet, to);
  const link = await d.link;
  links.push(link);
  expect(link.remoteKey.equals(them.publicKey)).toBe(true);

  // The link's own socket: a runt, a datagram naming another cookie, a late handshake answer.
  listener.send(randomBytes(3), to);
  listener.send(Buffer.concat([Buffer.from([PKT_DATA]), randomBytes(40)]), to);
  listener.send(handshakePacket(PKT_CHALLENGE, dc, lc, meta), to);
  await until(() => moved(before).strayDatagrams.type === 2, 3000);

  // A CHALLENGE from a key the pin refuses ends that dial; so does one whose metadata is garbage.
  const pinned = dial(impostor.publicKey);
  const init2 = await initOfNextDial();
  listener.send(handshakePacket(PKT_CHALLENGE, init2.msg.subarray(1, 9), lc, meta), init2.port);
  await expect(pinned.link).rejects.toThrow("not the pinned key");
  const garbled = dial(them.publicKey);
  const init3 = await initOfNextDial();
  listener.send(handshakePacket(PKT_CHALLENGE, init3.msg.subarray(1, 9), lc, randomBytes(38)), init3.port);
  await expect(garbled.link).rejects.toThrow("malformed challenge metadata");

  const m = moved(before);
  expect(m.dialAnswersRefused).toEqual({ unsolicited: 2, forged: 2, not_allowed: 1, malformed: 1 });
  expect(m.strayDatagrams).toEqual({ short: 2, type: 2, size: 0, cookie: 1 });

  const text = await expectShown(udpRefusalTotals());
  const a = udpRefusalTotals().dialAnswersRefused;
  expect(text).toMatch(
    new RegExp(
      `Dial answers refused: +${a.unsolicited} unsolicited, ${a.forged} forged, ${a.not_allowed} key not allowed, ${a.malformed} malformed`,
    ),
  );
});

it("a link's reassembler counts a repeated fragment, the frame evicted for a newer one and the frames given up after their repair requests", async () => {
  const { l, nextLink } = await raw.bareListener(Identity.generate(), randomBytes(32));
  const live = await raw.rawDial(l.port, Identity.generate());
  const link = await nextLink();
  const before = udpRefusalTotals();
  const tx = new Sealer(live.keys.d2l);
  let nacks = 0;
  live.socket.on("message", (m: Buffer) => {
    if (m[0] === PKT_NACK) nacks++;
  });
  // The first of three fragments of frame `id`, sealed under the link's key as its peer would.
  const firstFragment = (id: number) => {
    const record = Buffer.alloc(3 + 8 + 100, 9);
    record[0] = REC_FRAGMENT;
    record.writeUInt16BE(100, 1);
    record.writeUInt32BE(id, 3);
    record[7] = 0; // index
    record[8] = 3; // count
    record.writeUInt16BE(0, 9); // offset
    const d = shell(record, live.lc);
    tx.seal(d);
    return d;
  };
  // Frame 1's first fragment twice (two datagrams, so the replay window passes both), then the
  // first fragments of MAX_ASSEMBLIES more frames: frame 1, the oldest, is evicted.
  live.socket.send(firstFragment(1));
  live.socket.send(firstFragment(1));
  for (let id = 2; id <= MAX_ASSEMBLIES + 1; id++) live.socket.send(firstFragment(id));
  await until(() => link.datagramsIn === MAX_ASSEMBLIES + 2, 3000);
  // Nothing more arrives: each held frame is asked for MAX_NACKS times, then given up.
  await until(() => link.reassembly.pending === 0, 5000);

  const m = moved(before).reassemblyRefused;
  expect(m).toEqual({ fragment: 1, evicted: 1, abandoned: MAX_ASSEMBLIES });
  expect([link.reassembly.refused, link.reassembly.evicted, link.reassembly.abandoned]).toEqual([
    1,
    1,
    MAX_ASSEMBLIES,
  ]);
  // Given up only after asking: MAX_NACKS rounds of repair requests reached the peer.
  expect(nacks).toBeGreaterThanOrEqual(MAX_NACKS);
  const text = await expectShown(udpRefusalTotals());
  const r = udpRefusalTotals().reassemblyRefused;
  expect(text).toMatch(
    new RegExp(`Fragments: +${r.fragment} refused, ${r.evicted} frames evicted, ${r.abandoned} abandoned`),
  );
});

it("a punch from a listener's socket counts a CHALLENGE from another key than the one it expects and keeps punching", async () => {
  const [expected, other] = [Identity.generate(), Identity.generate()];
  const { l } = await raw.bareListener(Identity.generate(), randomBytes(32));
  const target = await peer();
  const before = udpRefusalTotals();
  const punch = l.punchDial({
    address: "127.0.0.1",
    port: target.port,
    expectKey: expected.publicKey,
    intervalMs: 200,
    timeoutMs: 5000,
  });
  const failed = punch.link.catch((e: Error) => e.message);
  const dc = (await target.next(PKT_INIT)).msg.subarray(1, 9);
  const lc = randomBytes(8);
  target.send(
    handshakePacket(PKT_ACCEPT, dc, lc, encodeMetadata(expected.publicKey), randomBytes(32)),
    l.port,
  );
  target.send(handshakePacket(PKT_CHALLENGE, dc, lc, encodeMetadata(other.publicKey)), l.port);
  target.send(handshakePacket(PKT_CHALLENGE, dc, lc, randomBytes(38)), l.port);
  // The expected key's CHALLENGE still gets the CONFIRM.
  target.send(handshakePacket(PKT_CHALLENGE, dc, lc, encodeMetadata(expected.publicKey)), l.port);
  await target.next(PKT_CONFIRM);
  punch.cancel("done");
  expect(await failed).toBe("done");
  expect(moved(before).dialAnswersRefused).toEqual({
    unsolicited: 1,
    forged: 0,
    not_allowed: 1,
    malformed: 1,
  });
  await expectShown(udpRefusalTotals());
});

it("100,000 random datagrams from a stranger: each refused and counted once (an INIT is answered), the listener stays up, memory stays bounded", async () => {
  const { l, nextLink } = await raw.bareListener(Identity.generate(), randomBytes(32));
  const stranger = await peer();
  const sum = (t: UdpRefusalTotals) =>
    [t.strayDatagrams, t.confirmsRefused, t.dialAnswersRefused]
      .flatMap((counts) => Object.values(counts))
      .reduce((a, b) => a + b, 0);
  const before = udpRefusalTotals();
  const rssBefore = process.memoryUsage().rss;
  let refused = 0;
  let answered = 0;
  // Small batches, each awaited until counted, so the socket's buffer never overflows: every datagram
  // sent is one the listener read.
  for (let batch = 0; batch < 500; batch++) {
    for (let i = 0; i < 200; i++) {
      const n = batch * 200 + i;
      const d = randomBytes(1 + (n % 300));
      // Every type a datagram can have, and as many more that none has.
      d[0] = n % 2 === 0 ? (n >> 1) % (PKT_REKEY_ACK + 1) : d[0]!;
      if (d.length === 1 && d[0] === 0)
        answered++; // a hole punch: dropped uncounted by design
      else if (d[0] === PKT_INIT && d.length === HS_BYTES)
        answered++; // anyone's INIT gets a CHALLENGE
      else refused++;
      stranger.send(d, l.port);
    }
    await until(() => sum(udpRefusalTotals()) - sum(before) === refused, 3000);
  }
  expect(refused + answered).toBe(100_000);
  expect(refused).toBeGreaterThan(99_000);
  // The listener still makes links, and the flood left nothing behind.
  await raw.rawDial(l.port, Identity.generate());
  expect((await nextLink()).closed).toBe(false);
  expect(l.linkCount).toBe(1);
  expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024);
  const m = moved(before);
  console.log(
    `100,000 random datagrams: stray ${JSON.stringify(m.strayDatagrams)}, CONFIRMs ${JSON.stringify(m.confirmsRefused)}, dial answers ${JSON.stringify(m.dialAnswersRefused)}, ${answered} answered or punches`,
  );
}, 60_000);
