// The stream link against a hand-driven raw socket: exact bytes, bad input, timeouts.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import type { Link } from "../src/overlay/links/link.js";
import { LinkManager } from "../src/overlay/links/manager.js";
import { encodeMetadata, handshake } from "../src/overlay/links/stream.js";
import { captureLogs } from "./support/links.js";

const A = Identity.fromSeed(Buffer.alloc(32));
const META_A = "6d65746100043b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";
const T = { handshakeMs: 300, keepaliveMs: 100, idleMs: 300 };

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Server {
  port: number;
  links: Link[];
  frames: Buffer[];
  priorities: number[];
  closes: string[];
  nextLog(re: RegExp): Promise<string>;
  nextFrame(): Promise<Buffer>;
}

async function server(listenQuery = ""): Promise<Server> {
  const { logger, nextLog } = captureLogs();
  const frameWaiters: Array<(f: Buffer) => void> = [];
  const s: Server = {
    port: 0,
    links: [],
    frames: [],
    priorities: [],
    closes: [],
    nextLog,
    nextFrame() {
      const f = s.frames.shift();
      return f ? Promise.resolve(f) : new Promise((r) => frameWaiters.push(r));
    },
  };
  const mgr = new LinkManager(
    {
      identity: A,
      listen: [`tcp://127.0.0.1:0${listenQuery}`],
      peers: [],
      interfacePeers: {},
      allowedPublicKeys: [],
      multicast: [],
      logger,
      timeouts: T,
    },
    {
      onLink(link) {
        s.links.push(link);
        link.setHandler({
          onFrame(f) {
            const copy = Buffer.from(f);
            const w = frameWaiters.shift();
            if (w) w(copy);
            else s.frames.push(copy);
          },
          onPriority: (p) => s.priorities.push(p),
          onClose: (r) => s.closes.push(r),
        });
      },
    },
  );
  await mgr.start();
  cleanups.push(() => mgr.stop());
  s.port = Number(mgr.listenAddresses()[0]!.split(":").pop());
  return s;
}

interface Client {
  socket: net.Socket;
  received(): Buffer;
  closed: Promise<number>;
  /** Resolves once at least n bytes arrived. */
  bytes(n: number): Promise<Buffer>;
}

async function client(port: number): Promise<Client> {
  const socket = net.connect({ host: "127.0.0.1", port });
  cleanups.push(() => {
    socket.destroy();
  });
  const chunks: Buffer[] = [];
  let waiting: { n: number; done: (b: Buffer) => void } | undefined;
  const t0 = Date.now();
  socket.on("data", (c: Buffer) => {
    chunks.push(c);
    const all = Buffer.concat(chunks);
    if (waiting && all.length >= waiting.n) waiting.done(all);
  });
  socket.on("error", () => {});
  const closed = new Promise<number>((r) => socket.on("close", () => r(Date.now() - t0)));
  await new Promise((r) => socket.once("connect", r));
  return {
    socket,
    received: () => Buffer.concat(chunks),
    closed,
    bytes: (n) => {
      const all = Buffer.concat(chunks);
      if (all.length >= n) return Promise.resolve(all);
      return new Promise((done) => {
        waiting = { n, done };
      });
    },
  };
}

/** A raw client that has sent its metadata, and the server's link to it. */
async function linkedClient(): Promise<{ c: Client; link: Link }> {
  const s = await server();
  const c = await client(s.port);
  c.socket.write(encodeMetadata(Identity.generate().publicKey));
  await c.bytes(38);
  await new Promise<void>((r) => {
    const check = () => (s.links.length > 0 ? r() : setTimeout(check, 5));
    check();
  });
  return { c, link: s.links[0]! };
}

const frame = (...bytes: number[]): Buffer => {
  const out = Buffer.alloc(2 + bytes.length);
  out.writeUInt16BE(bytes.length, 0);
  Buffer.from(bytes).copy(out, 2);
  return out;
};

describe("stream link on the wire", () => {
  it("sends the spec's metadata immediately and closes a silent client at the handshake deadline", async () => {
    const s = await server();
    const c = await client(s.port);
    expect((await c.bytes(38)).toString("hex")).toBe(META_A);
    expect(await s.nextLog(/handshake timed out/)).toBeTruthy();
    const elapsed = await c.closed;
    expect(elapsed).toBeGreaterThanOrEqual(T.handshakeMs - 20);
    expect(c.received().length).toBe(38);
  });

  it("closes on garbage instead of metadata", async () => {
    const s = await server();
    const c = await client(s.port);
    c.socket.write(Buffer.alloc(40, 0x41));
    expect(await s.nextLog(/bad metadata/)).toMatch(/inbound link from tcp:\/\/127\.0\.0\.1:\d+ failed/);
    await c.closed;
    expect(s.links).toHaveLength(0);
  });

  it("closes on a wrong protocol version", async () => {
    const s = await server();
    const c = await client(s.port);
    const meta = encodeMetadata(Identity.generate().publicKey);
    meta[5] = 5;
    c.socket.write(meta);
    expect(await s.nextLog(/incompatible version \(local 0\.4, remote 0\.5\)/)).toBeTruthy();
    await c.closed;
  });

  it("keeps alive with 00 01 00 and closes a peer that goes silent after the handshake", async () => {
    const s = await server();
    const c = await client(s.port);
    c.socket.write(encodeMetadata(Identity.generate().publicKey));
    expect((await c.bytes(41)).subarray(38, 41).toString("hex")).toBe("000100");
    expect(await s.nextLog(/link down: .*no frame received for 300 ms/)).toBeTruthy();
    await c.closed;
    expect(s.closes).toEqual(["no frame received for 300 ms"]);
  });

  it("keeps a link whose peer keeps sending, with a keepalive each keepaliveMs, and closes it once the peer stops", async () => {
    const s = await server();
    const c = await client(s.port);
    c.socket.write(encodeMetadata(Identity.generate().publicKey));
    await c.bytes(38);
    // 15 keepalives 30 ms apart: 450 ms, half as long again as the 300 ms idle timeout.
    for (let i = 0; i < 15; i++) {
      c.socket.write(frame(0));
      await new Promise((r) => setTimeout(r, 30));
    }
    expect(s.closes).toEqual([]);
    const received = c.received();
    let keepalives = 0;
    for (let at = 38; at + 2 <= received.length; at += 2 + received.readUInt16BE(at)) {
      if (received.readUInt16BE(at) === 1 && received[at + 2] === 0) keepalives++;
    }
    // One each 100 ms of the ~450 without traffic of its own; two leaves room for a loaded machine.
    expect(keepalives).toBeGreaterThanOrEqual(2);
    expect(await s.nextLog(/link down: .*no frame received for 300 ms/)).toBeTruthy();
    expect(s.closes).toEqual(["no frame received for 300 ms"]);
  });

  it("announces its priority right after the metadata", async () => {
    const s = await server("?priority=3");
    const c = await client(s.port);
    c.socket.write(encodeMetadata(Identity.generate().publicKey));
    expect((await c.bytes(43)).subarray(38, 43).toString("hex")).toBe("0003007003");
  });

  it("reassembles frames from byte-sized writes and splits many frames from one chunk", async () => {
    const s = await server();
    const c = await client(s.port);
    const big = Buffer.alloc(65535, 7);
    big[0] = 9;
    const bigFrame = Buffer.concat([Buffer.from([0xff, 0xff]), big]);
    const stream = Buffer.concat([
      encodeMetadata(Identity.generate().publicKey),
      frame(1, 2, 3),
      frame(0), // keepalive: consumed by the link
      frame(0, 0x70, 5), // priority 5
      frame(4),
      bigFrame,
      frame(2, 9),
    ]);
    // First half one byte per write, the rest in one write.
    const half = 60;
    for (let i = 0; i < half; i++) {
      c.socket.write(stream.subarray(i, i + 1));
      await new Promise((r) => setImmediate(r));
    }
    c.socket.write(stream.subarray(half));
    expect(await s.nextFrame()).toEqual(Buffer.from([1, 2, 3]));
    expect(await s.nextFrame()).toEqual(Buffer.from([4]));
    expect((await s.nextFrame()).equals(big)).toBe(true);
    expect(await s.nextFrame()).toEqual(Buffer.from([2, 9]));
    expect(s.priorities).toEqual([5]);
    expect(s.links[0]!.priority).toBe(5);
    expect(s.links[0]!.bytesIn).toBe(stream.length);
  });

  it("closes on a zero-length frame, and other links carry on", async () => {
    const s = await server();
    const good = await client(s.port);
    good.socket.write(encodeMetadata(Identity.generate().publicKey));
    const bad = await client(s.port);
    bad.socket.write(
      Buffer.concat([encodeMetadata(Identity.generate().publicKey), frame(1), Buffer.from([0, 0])]),
    );
    expect(await s.nextLog(/link down: .*zero-length frame/)).toBeTruthy();
    await bad.closed;
    good.socket.write(frame(3, 3));
    expect(await s.nextFrame()).toEqual(Buffer.from([1]));
    expect(await s.nextFrame()).toEqual(Buffer.from([3, 3]));
    expect(s.links[0]!.remoteKey.equals(s.links[1]!.remoteKey)).toBe(false);
  });

  it("closes a link whose frame never completes", async () => {
    const s = await server();
    const c = await client(s.port);
    c.socket.write(
      Buffer.concat([encodeMetadata(Identity.generate().publicKey), Buffer.from([0x10, 0x00, 1, 2])]),
    );
    expect(await s.nextLog(/link down: .*no frame received/)).toBeTruthy();
    expect(s.frames).toHaveLength(0);
  });

  it("drops frames over 65535 bytes on send and frames each send with its length", async () => {
    const { c, link } = await linkedClient();
    link.send(Buffer.alloc(65536, 1));
    link.send(Buffer.from([6, 6, 6]));
    expect((await c.bytes(43)).subarray(38, 43).toString("hex")).toBe("0003060606");
    expect(link.bytesOut).toBe(43);
  });

  it("sendJoined frames head ‖ tail as one frame, in order with send, copied before it returns", async () => {
    const { c, link } = await linkedClient();
    const head = Buffer.from([9, 1, 2]);
    const tail = Buffer.from([3, 4]);
    link.send(Buffer.from([6]));
    link.sendJoined!(head, tail);
    // The router reuses both at once.
    head.fill(0);
    tail.fill(0);
    link.sendJoined!(Buffer.alloc(65535, 1), Buffer.from([1]));
    link.send(Buffer.from([7, 7]));
    const got = await c.bytes(38 + 3 + 7 + 4);
    expect(got.subarray(38).toString("hex")).toBe("000106" + "00050901020304" + "00020707");
    expect(link.bytesOut).toBe(38 + 14);
  });
});

describe("congestion", () => {
  it("reports congested when the peer stops reading", async () => {
    const srv = net.createServer();
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
    cleanups.push(() => new Promise<void>((r) => srv.close(() => r())));
    const port = (srv.address() as net.AddressInfo).port;
    const accepted = new Promise<net.Socket>((r) => srv.once("connection", r));
    const out = net.connect({ host: "127.0.0.1", port });
    const inbound = await accepted;
    cleanups.push(() => {
      out.destroy();
      inbound.destroy();
    });
    inbound.write(encodeMetadata(Identity.generate().publicKey));
    const link = await handshake(out, {
      localKey: A.publicKey,
      outbound: true,
      remote: "tcp://test",
      priority: 0,
      congestionBytes: 64 * 1024,
      timeouts: T,
    });
    link.setHandler({ onFrame() {}, onClose() {} });
    inbound.pause(); // never read: the kernel buffers fill, then Node's
    const chunk = Buffer.alloc(60000, 1);
    for (let i = 0; i < 200 && !link.congested; i++) {
      link.send(chunk);
      await new Promise((r) => setImmediate(r));
    }
    expect(link.congested).toBe(true);
    link.close("test done");
  });
});
