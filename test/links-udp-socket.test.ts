// The UDP socket under udp:// links (udp-socket.ts, udp-native.ts, src/tun/native/udp.c): batches
// over loopback, GSO sends and GRO receives that give back the very datagrams sent, fallback to
// node:dgram, and the errors a link must hear.
import dgram from "node:dgram";
import { readdirSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import {
  F_GRO,
  F_GSO,
  type NativeUdpAddon,
  type NativeUdpSocket,
  S_DROPPED,
  S_FLAGS,
  S_GRO_BUFS,
  S_GSO_MSGS,
  S_SENT,
  loadNativeUdp,
} from "../src/overlay/links/udp-native.js";
import { type UdpSocket, type UdpSocketOptions, openUdpSocket } from "../src/overlay/links/udp-socket.js";

const open: UdpSocket[] = [];
async function socket(o: Partial<UdpSocketOptions> = {}): Promise<UdpSocket> {
  const s = await openUdpSocket({ family: 4, address: "127.0.0.1", ...o });
  open.push(s);
  return s;
}

afterEach(async () => {
  for (const s of open.splice(0)) await s.close();
});

interface Received {
  data: Buffer;
  address: string;
  port: number;
  key: string;
}

/** Collects datagrams (copied: the views are valid only during the call) until `count` arrived. */
function collect(s: UdpSocket, count: number, ms = 5000): Promise<Received[]> {
  const got: Received[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${got.length} of ${count} datagrams`)), ms);
    s.onMessage((msg, from) => {
      got.push({ data: Buffer.from(msg), address: from.address, port: from.port, key: from.key });
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

/** Runs of equal sizes (GSO material), a shorter one closing a run, and odd sizes between. */
function datagrams(): Buffer[] {
  const sizes: number[] = [];
  for (let i = 0; i < 40; i++) sizes.push(1452);
  sizes.push(700, 1452, 1452, 90, 1);
  for (let i = 0; i < 70; i++) sizes.push(1200); // longer than one GSO message may carry
  for (let i = 0; i < 30; i++) sizes.push(100 + i);
  return sizes.map((n, i) => {
    const d = Buffer.alloc(n);
    for (let j = 0; j < n; j++) d[j] = (i * 31 + j) & 0xff;
    return d;
  });
}

const native = loadNativeUdp() !== undefined;

describe.skipIf(!native)("native udp socket", () => {
  it("sends a tick's datagrams as GSO batches and a GRO receiver gets each one back, in order", async () => {
    const a = (await socket()) as NativeUdpSocket;
    const b = (await socket()) as NativeUdpSocket;
    expect(a.kind).toBe("native");
    const sent = datagrams();
    const done = collect(b, sent.length);
    for (const d of sent) a.send(d, b.address().port, "127.0.0.1");
    const got = await done;
    expect(got.map((g) => g.data)).toEqual(sent);
    const key = `127.0.0.1|${a.address().port}`;
    expect(got.every((g) => g.address === "127.0.0.1" && g.port === a.address().port && g.key === key)).toBe(
      true,
    );
    // The send job's counts reach state when it completes, which close() waits for.
    await a.close();
    expect(a.state[S_SENT]).toBe(sent.length);
    expect(a.state[S_DROPPED]).toBe(0);
    expect(a.state[S_FLAGS]! & F_GSO).toBe(F_GSO);
    // The runs above leave as a handful of GSO messages, which loopback hands a GRO socket whole.
    expect(a.state[S_GSO_MSGS]).toBeGreaterThanOrEqual(3);
    if (b.state[S_FLAGS]! & F_GRO) expect(b.state[S_GRO_BUFS]).toBeGreaterThan(0);
  });

  it("gives a plain (non-GRO) dgram receiver the same datagrams from GSO sends", async () => {
    const a = await socket();
    const b = dgram.createSocket("udp4");
    await new Promise<void>((r) => b.bind(0, "127.0.0.1", () => r()));
    // Room for the burst (each segment is its own buffer here): rmem_max allowing.
    b.setRecvBufferSize(4 * 1024 * 1024);
    const sent = datagrams();
    const got: Buffer[] = [];
    const done = new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`only ${got.length} of ${sent.length} datagrams`)),
        5000,
      );
      b.on("message", (m) => {
        got.push(m);
        if (got.length === sent.length) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
    for (const d of sent) a.send(d, b.address().port, "127.0.0.1");
    await done.finally(() => b.close());
    expect(got).toEqual(sent);
  });

  it("answers to the source it reports, over IPv6 and to several destinations in one batch", async () => {
    const a = await socket({ family: 6, address: "::1" });
    const b = await socket({ family: 6, address: "::1" });
    const c = await socket({ family: 6, address: "::1" });
    const atB = collect(b, 3);
    const atC = collect(c, 3);
    for (let i = 0; i < 3; i++) {
      a.send(Buffer.from([1, i]), b.address().port, "::1");
      a.send(Buffer.from([2, i]), c.address().port, "::1");
    }
    const fromB = await atB;
    expect(fromB.map((g) => [...g.data])).toEqual([
      [1, 0],
      [1, 1],
      [1, 2],
    ]);
    expect((await atC).map((g) => g.data[1])).toEqual([0, 1, 2]);
    expect(fromB[0]).toMatchObject({
      address: "::1",
      port: a.address().port,
      key: `::1|${a.address().port}`,
    });
    const back = collect(a, 1);
    b.send(Buffer.from("pong"), fromB[0]!.port, fromB[0]!.address);
    expect((await back)[0]!.data.toString()).toBe("pong");
  });

  it("reports ECONNREFUSED on a connected socket whose peer is gone, as dgram does", async () => {
    const gone = await socket();
    const port = gone.address().port;
    await gone.close();
    const a = await socket({ address: "" });
    await a.connect(port, "127.0.0.1");
    const refused = new Promise<string | undefined>((resolve) => a.onError((e) => resolve(e.code)));
    // The first send draws the ICMP error; the kernel reports it on the next receive or send.
    a.send(Buffer.from("hello"));
    const timer = setInterval(() => a.send(Buffer.from("again")), 20);
    try {
      expect(await refused).toBe("ECONNREFUSED");
    } finally {
      clearInterval(timer);
    }
  });

  it("refuses to bind an address in use with the errno's code", async () => {
    const a = await socket();
    await expect(
      openUdpSocket({ family: 4, address: "127.0.0.1", port: a.address().port }),
    ).rejects.toMatchObject({ code: "EADDRINUSE" });
    await expect(openUdpSocket({ family: 4, address: "192.0.2.1" })).rejects.toMatchObject({
      code: "EADDRNOTAVAIL",
    });
  });

  it("close releases the socket's fd (the poll handle is no resource Node lists)", async () => {
    const fds = () => readdirSync("/proc/self/fd").length;
    const before = fds();
    const sockets = await Promise.all(
      [1, 2, 3, 4, 5].map(() => openUdpSocket({ family: 6, address: "::1" })),
    );
    expect(fds()).toBe(before + 5);
    for (const s of sockets) await s.close();
    expect(fds()).toBe(before);
  });

  it("sets the hop limit the NAT punches use, and counts a datagram to another family as dropped", async () => {
    const a = (await socket()) as NativeUdpSocket;
    a.setTTL(2);
    a.setTTL(64);
    a.send(Buffer.from("x"), 9, "::1");
    expect(a.state[S_DROPPED]).toBe(1);
  });
});

describe("udp socket selection", () => {
  it("uses the native socket when the addon is built, dgram when asked or when it is missing", async () => {
    expect((await socket()).kind).toBe(native ? "native" : "dgram");
    expect((await socket({ impl: "dgram" })).kind).toBe("dgram");
    const saved = process.env.PLANETD_UDP_SOCKET;
    process.env.PLANETD_UDP_SOCKET = "dgram";
    try {
      expect((await socket()).kind).toBe("dgram");
    } finally {
      if (saved === undefined) Reflect.deleteProperty(process.env, "PLANETD_UDP_SOCKET");
      else process.env.PLANETD_UDP_SOCKET = saved;
    }
    const missing = await openUdpSocket({ family: 4, address: "127.0.0.1" }, null);
    open.push(missing);
    expect(missing.kind).toBe("dgram");
    await expect(openUdpSocket({ family: 4, address: "127.0.0.1", impl: "native" }, null)).rejects.toThrow(
      /planetd_udp addon is not built/,
    );
  });

  it("falls back to dgram when the kernel lacks recvmmsg/sendmmsg (ENOSYS), and only then", async () => {
    const failing = (code: string) =>
      ({
        open: () => {
          throw Object.assign(new Error(`recvmmsg ${code}`), { code });
        },
      }) as unknown as NativeUdpAddon;
    const fallback = await openUdpSocket({ family: 4, address: "127.0.0.1" }, failing("ENOSYS"));
    open.push(fallback);
    expect(fallback.kind).toBe("dgram");
    await expect(
      openUdpSocket({ family: 4, address: "127.0.0.1", impl: "native" }, failing("ENOSYS")),
    ).rejects.toMatchObject({ code: "ENOSYS" });
    await expect(
      openUdpSocket({ family: 4, address: "127.0.0.1" }, failing("EADDRINUSE")),
    ).rejects.toMatchObject({
      code: "EADDRINUSE",
    });
  });

  it("a dgram and a native socket talk to each other both ways", async () => {
    const d = await socket({ impl: "dgram" });
    const n = await socket();
    const atN = collect(n, 2);
    d.send(Buffer.from("a"), n.address().port, "127.0.0.1");
    d.send(Buffer.from("bb"), n.address().port, "127.0.0.1");
    const got = await atN;
    expect(got.map((g) => g.data.toString())).toEqual(["a", "bb"]);
    expect(got[0]!.key).toBe(`127.0.0.1|${d.address().port}`);
    const atD = collect(d, 1);
    n.send(Buffer.from("ccc"), got[0]!.port, got[0]!.address);
    const back = (await atD)[0]!;
    expect(back.data.toString()).toBe("ccc");
    expect(back.key).toBe(`127.0.0.1|${n.address().port}`);
  });
});
