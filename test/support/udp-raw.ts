// Hand-made udp:// peers for the handshake and RESET tests (links-udp-reset.test.ts,
// udp-refusal-metrics.test.ts): a bare listener, raw sockets that dial it step by step or send
// stray datagrams, and the datagrams they send. closeRawUdp() ends what these made.
import { randomBytes } from "node:crypto";
import dgram from "node:dgram";
import { expect } from "vitest";
import { Identity } from "../../src/crypto/identity.js";
import { DEFAULT_TIMEOUTS, encodeMetadata } from "../../src/overlay/links/stream.js";
import {
  acceptKeys,
  challengeKey,
  confirmPacket,
  handshakePacket,
  parseHandshake,
} from "../../src/overlay/links/udp-handshake.js";
import { randomEphemeral } from "../../src/overlay/links/udp-seal.js";
import { PKT_DATA, PKT_INIT, PKT_RESET, RESET_BYTES } from "../../src/overlay/links/udp-wire.js";
import { type UdpLink, UdpListener } from "../../src/overlay/links/udp.js";
import { until } from "./udp-pair.js";

const listeners: UdpListener[] = [];
const rawSockets: dgram.Socket[] = [];

/** Closes the raw sockets and listeners made here (afterEach). */
export async function closeRawUdp(): Promise<void> {
  for (const s of rawSockets.splice(0)) s.close();
  await Promise.all(listeners.splice(0).map((l) => l.close()));
}

/** A bare listener on loopback whose links arrive through `nextLink`. */
export async function bareListener(
  id: Identity,
  resetSecret: Buffer,
  port = 0,
  dropAll = () => false,
  spentCookieLimit?: number,
  check: (remoteKey: Buffer) => string | undefined = () => undefined,
) {
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
    spentCookieLimit,
    check,
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

/**
 * A hand-made dialer on its own socket: INIT, CHALLENGE, then the CONFIRM with `commitment` (none:
 * 0^16), answered by an ACCEPT. Returns the socket (the link's address at the listener), the
 * dialer cookie a RESET names, the listener cookie the link's datagrams carry and the link's keys.
 */
export async function rawDial(port: number, id: Identity, commitment?: Buffer) {
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
  const accept = await answer;
  expect(accept[0]).toBe(4); // ACCEPT
  const keys = acceptKeys(parseHandshake(accept)!, id.publicKey, eph)!;
  return { socket, dc, lc, confirm, keys };
}

export function resetFor(cookie: Buffer, token: Buffer): Buffer {
  const r = Buffer.alloc(RESET_BYTES);
  r[0] = PKT_RESET;
  cookie.copy(r, 1);
  token.copy(r, 9);
  return r;
}

/** A raw socket that keeps every datagram it receives. */
export async function rawSocket() {
  const socket = dgram.createSocket("udp4");
  rawSockets.push(socket);
  const got: Buffer[] = [];
  socket.on("message", (m) => got.push(m));
  await new Promise<void>((r) => socket.bind(0, "127.0.0.1", () => r()));
  return { socket, got, port: socket.address().port };
}

/** A link datagram naming `cookie`, as long as a RESET (so a socket that cannot place it answers one). */
export function strayFor(cookie: Buffer): Buffer {
  const d = randomBytes(RESET_BYTES + 16);
  d[0] = PKT_DATA;
  cookie.copy(d, 1);
  return d;
}

export const resetIn = (got: Buffer[]) => got.find((m) => m[0] === PKT_RESET && m.length === RESET_BYTES);

/**
 * Sends `stray` to `port`. `expected`: waits for the RESET. Otherwise sends an INIT that any
 * listener answers with a CHALLENGE and waits for that (the tests also await the listener's count).
 */
export async function askForReset(
  asker: Awaited<ReturnType<typeof rawSocket>>,
  port: number,
  stray: Buffer,
  expected = false,
) {
  const challenges = () => asker.got.filter((m) => m[0] === 2).length;
  const before = challenges();
  asker.socket.send(stray, port, "127.0.0.1");
  if (expected) {
    await until(() => resetIn(asker.got) !== undefined, 3000);
    return resetIn(asker.got);
  }
  const init = handshakePacket(
    PKT_INIT,
    randomBytes(8),
    Buffer.alloc(8),
    encodeMetadata(Identity.generate().publicKey),
    randomEphemeral().publicKey,
  );
  asker.socket.send(init, port, "127.0.0.1");
  await until(() => challenges() > before, 3000);
  return resetIn(asker.got);
}

/**
 * A hand-made dialer on a raw socket that stops after the CHALLENGE: `lc` is the listener cookie,
 * and confirm() finishes the handshake and returns the reset token the ACCEPT gave.
 */
export async function challenged(port: number) {
  const aId = Identity.generate();
  const dialer = await rawSocket();
  const eph = randomEphemeral();
  const dc = randomBytes(8);
  const meta = encodeMetadata(aId.publicKey);
  dialer.socket.send(handshakePacket(PKT_INIT, dc, Buffer.alloc(8), meta, eph.publicKey), port, "127.0.0.1");
  await until(() => dialer.got.some((m) => m[0] === 2), 3000);
  const challenge = dialer.got.find((m) => m[0] === 2)!;
  const lc = Buffer.from(challenge.subarray(9, 17));
  const confirm = async () => {
    const key = challengeKey(challenge)!;
    dialer.socket.send(
      confirmPacket(dc, lc, meta, aId.publicKey, key, eph, (m) => aId.sign(m)),
      port,
      "127.0.0.1",
    );
    await until(() => dialer.got.some((m) => m[0] === 4), 3000);
    const accept = parseHandshake(dialer.got.find((m) => m[0] === 4)!)!;
    return acceptKeys(accept, aId.publicKey, eph)!.resetToken;
  };
  return { dialer, lc, confirm };
}
