// The admin socket's connection table: idle connections are dropped after idleTimeoutMs, and when the
// table is full the connection idle the longest makes room, so idle clients cannot lock out requests.
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { type AdminServer, type AdminServerOptions, startAdminServer } from "../src/admin/server.js";
import { FakeView, keyA, keyC, protoPair } from "./admin-fake.js";

const quiet = { info: () => {}, warn: () => {}, debug: () => {} };
const servers: AdminServer[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

/** Also returns what the node sent to remotes: a getNodeInfo request shows up there once it runs. */
async function start(options: AdminServerOptions): Promise<AdminServer & { sent: unknown[] }> {
  const pair = protoPair();
  const view = new FakeView(keyA, pair.a);
  const server = await startAdminServer("tcp://127.0.0.1:0", view, quiet, options);
  servers.push(server);
  return Object.assign(server, { sent: pair.sent });
}

/** Polls `pred` every 5 ms for at most 2 s. */
async function until(pred: () => boolean): Promise<void> {
  for (let waited = 0; !pred(); waited += 5) {
    if (waited > 2000) throw new Error("condition not reached in 2 s");
    await new Promise((r) => setTimeout(r, 5));
  }
}

interface Client {
  socket: net.Socket;
  text(): string;
  /** ms from connect to close. */
  closed: Promise<number>;
  /** Resolves once `n` replies (top-level JSON objects) arrived. */
  replies(n: number): Promise<void>;
}

async function connect(server: AdminServer): Promise<Client> {
  const socket = net.connect(Number(server.address.split(":").pop()), "127.0.0.1");
  sockets.push(socket);
  socket.on("error", () => {});
  let text = "";
  const waiters: Array<{ n: number; done: () => void }> = [];
  const count = () => text.split(/^}$/m).length - 1;
  socket.on("data", (d: Buffer) => {
    text += d;
    for (const w of waiters.filter((w) => count() >= w.n)) {
      waiters.splice(waiters.indexOf(w), 1);
      w.done();
    }
  });
  await new Promise((r) => socket.once("connect", r));
  const t0 = Date.now();
  const closed = new Promise<number>((r) => socket.once("close", () => r(Date.now() - t0)));
  return {
    socket,
    text: () => text,
    closed,
    replies: (n) => (count() >= n ? Promise.resolve() : new Promise((done) => waiters.push({ n, done }))),
  };
}

const request = (name: string, extra: object = {}) => JSON.stringify({ request: name, ...extra });

describe("admin connection table", () => {
  it("with the table full of idle connections, a new client is answered within 1 s", async () => {
    const server = await start({ maxConnections: 8, idleTimeoutMs: 30_000 });
    // Four that never send anything, then four keepalive clients that got an answer and went quiet
    // (their answers also prove the server accepted the first four).
    const idle: Client[] = [];
    for (let i = 0; i < 4; i++) idle.push(await connect(server));
    for (let i = 0; i < 4; i++) {
      const c = await connect(server);
      c.socket.write(request("gettun", { keepalive: true }));
      await c.replies(1);
      idle.push(c);
    }
    for (let round = 0; round < 6; round++) {
      const t0 = Date.now();
      const c = await connect(server);
      // Keepalive: it stays, idle after its answer, younger than every connection before it.
      c.socket.write(request("getself", { keepalive: true }));
      await c.replies(1);
      expect(Date.now() - t0).toBeLessThan(1000);
      expect(JSON.parse(c.text()).status).toBe("success");
    }
    // Each newcomer closed the connection idle the longest, in order: the six oldest are gone.
    await Promise.all(idle.slice(0, 6).map((c) => c.closed));
    expect(idle.slice(6).map((c) => c.socket.destroyed)).toEqual([false, false]);
    expect(server.stats()).toEqual({ idleClosed: 0, evicted: 6, refused: 0 });
  });

  it("closes a client that never completes a request after idleTimeoutMs, bytes trickling or not", async () => {
    const server = await start({ idleTimeoutMs: 300 });
    const [silent, trickle] = [await connect(server), await connect(server)];
    trickle.socket.write('{"request":');
    const drip = setInterval(() => trickle.socket.write(" "), 50);
    try {
      for (const c of [silent, trickle]) {
        const ms = await c.closed;
        expect(ms).toBeGreaterThanOrEqual(280);
        expect(ms).toBeLessThan(1500);
      }
    } finally {
      clearInterval(drip);
    }
    expect(trickle.text()).toBe("");
    expect(server.stats().idleClosed).toBe(2);
  });

  it("a keepalive client is dropped idleTimeoutMs after its last answer, not while a request runs", async () => {
    const server = await start({ idleTimeoutMs: 300, remoteTimeoutMs: 600 });
    const c = await connect(server);
    // getNodeInfo for an unreachable key runs for remoteTimeoutMs (600 ms), longer than the idle timeout.
    c.socket.write(request("getnodeinfo", { keepalive: true, arguments: { key: keyC.toString("hex") } }));
    await c.replies(1);
    expect(JSON.parse(c.text()).error).toBe("Timed out waiting for response");
    const answeredAt = Date.now();
    const total = await c.closed;
    expect(total).toBeGreaterThanOrEqual(600);
    expect(Date.now() - answeredAt).toBeGreaterThanOrEqual(250);
  });

  it("refuses a new connection only when every connection is running a request", async () => {
    const server = await start({ maxConnections: 2, remoteTimeoutMs: 800 });
    const busy = [await connect(server), await connect(server)];
    for (const c of busy)
      c.socket.write(request("getnodeinfo", { arguments: { key: keyC.toString("hex") } }));
    await until(() => server.sent.length >= 2); // both requests are running
    const late = await connect(server);
    late.socket.write(request("getself"));
    await late.closed;
    expect(late.text()).toBe("");
    expect(server.stats().refused).toBe(1);
    await Promise.all(busy.map((c) => c.closed));
    const next = await connect(server);
    next.socket.write(request("getself"));
    await next.replies(1);
    expect(JSON.parse(next.text()).status).toBe("success");
  });
});
