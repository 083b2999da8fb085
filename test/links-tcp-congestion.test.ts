// tcp:// link sockets ask for a congestion control of their own (Yggdrasil asks for bbr, spec 4.1):
// set through the addon, read back from the kernel with `ss -ti`.
import { execFileSync } from "node:child_process";
import net from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { LinkManager } from "../src/overlay/links/manager.js";
import { requestTcpCongestion } from "../src/tun/native.js";
import { captureLogs } from "./support/links.js";

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** The congestion control the kernel reports for the established socket matching `filter`. */
function congestionOf(filter: string): string | undefined {
  const out = execFileSync("ss", ["-tinH", "state", "established", filter], { encoding: "utf8" });
  return /\n\s+([a-z0-9_]+) /.exec(out)?.[1];
}

/** A listening socket on loopback and the sockets it accepts. */
async function plainServer(): Promise<{ port: number; accepted: Promise<net.Socket> }> {
  const server = net.createServer();
  const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => {
    server.close();
    return accepted.then((s) => void s.destroy());
  });
  return { port: (server.address() as net.AddressInfo).port, accepted };
}

function manager(listen: string[], peers: string[]): LinkManager {
  const mgr = new LinkManager(
    {
      identity: Identity.fromSeed(Buffer.alloc(32, 7)),
      listen,
      peers,
      interfacePeers: {},
      allowedPublicKeys: [],
      multicast: [],
      logger: captureLogs().logger,
      timeouts: { handshakeMs: 5000 },
      // reno is built into every kernel and is nobody's default, so the socket shows whether we set it.
      tcpCongestion: "reno",
    },
    { onLink: () => {} },
  );
  cleanups.push(() => mgr.stop());
  return mgr;
}

/** The socket's algorithm once it is `want`, or what it still is after 2 s (set after connect). */
async function settled(filter: string, want: string): Promise<string | undefined> {
  let now = congestionOf(filter);
  for (let i = 0; i < 100 && now !== want; i++) {
    await new Promise((r) => setTimeout(r, 20));
    now = congestionOf(filter);
  }
  return now;
}

describe("tcp congestion control", () => {
  it("requestTcpCongestion sets an available algorithm and reports an unknown one", async () => {
    const { port, accepted } = await plainServer();
    const socket = net.connect({ host: "127.0.0.1", port });
    cleanups.push(() => void socket.destroy());
    await new Promise((r) => socket.once("connect", r));
    await accepted;
    const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
    expect(requestTcpCongestion(fd, "reno")).toBe(true);
    expect(congestionOf(`sport = :${socket.localPort}`)).toBe("reno");
    expect(requestTcpCongestion(fd, "no-such-algorithm")).toBe(false);
    expect(requestTcpCongestion(-1, "reno")).toBe(false);
  });

  it("a dialled tcp:// link socket asks for the configured algorithm", async () => {
    const { port, accepted } = await plainServer();
    await manager([], [`tcp://127.0.0.1:${port}`]).start();
    const remote = await accepted;
    expect(await settled(`sport = :${remote.remotePort}`, "reno")).toBe("reno");
  });

  it("an accepted tcp:// link socket asks for the configured algorithm", async () => {
    const mgr = manager(["tcp://127.0.0.1:0"], []);
    await mgr.start();
    const port = Number(mgr.listenAddresses()[0]!.split(":").pop());
    const socket = net.connect({ host: "127.0.0.1", port });
    socket.on("error", () => {});
    cleanups.push(() => void socket.destroy());
    await new Promise((r) => socket.once("connect", r));
    expect(await settled(`dport = :${socket.localPort}`, "reno")).toBe("reno");
  });
});
