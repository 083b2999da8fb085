// Two whole Nodes (router, sessions, IPv6 adapter, MemoryTun) peered over a real udp:// link on
// loopback: an IPv6 packet injected into one TUN comes out of the other byte for byte.
import { randomBytes } from "node:crypto";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { generateConfig } from "../src/cli/config.js";
import { Identity } from "../src/crypto/identity.js";
import { Node } from "../src/overlay/node.js";
import { MemoryTun } from "../src/tun/memory.js";

const running: Node[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((n) => n.stop()));
});

async function start(listen: string[], peers: string[]): Promise<{ node: Node; tun: MemoryTun }> {
  const identity = Identity.generate();
  const config = {
    ...generateConfig(),
    PrivateKey: identity.privateKeyHex,
    Listen: listen,
    Peers: peers,
    MulticastInterfaces: [],
    AdminListen: "none",
    IfName: "mem",
  };
  const tun = new MemoryTun("mem", 53049);
  const node = await Node.start({
    config,
    identity,
    logger: pino({ level: "silent" }),
    openTun: async () => tun,
  });
  running.push(node);
  return { node, tun };
}

function ipv6Packet(src: Buffer, dst: Buffer, payload: Buffer): Buffer {
  const p = Buffer.alloc(40 + payload.length);
  p[0] = 0x60;
  p.writeUInt16BE(payload.length, 4);
  p[6] = 59; // no next header
  p[7] = 64;
  src.copy(p, 8);
  dst.copy(p, 24);
  payload.copy(p, 40);
  return p;
}

describe("Nodes over a udp:// link", () => {
  it("carry an IPv6 packet from one MemoryTun to the other", async () => {
    const a = await start(["udp://127.0.0.1:0"], []);
    const b = await start([], [a.node.links.listenAddresses()[0]!]);
    const packet = ipv6Packet(b.node.identity.address, a.node.identity.address, randomBytes(1200));
    // Re-inject until the tree and the session are up; every wait is bounded.
    await new Promise<void>((resolve, reject) => {
      const retry = setInterval(() => b.tun.inject(packet), 200);
      const timer = setTimeout(() => {
        clearInterval(retry);
        reject(new Error("packet did not arrive within 10 s"));
      }, 10_000);
      a.tun.onWrite((got) => {
        if (!got.equals(packet)) return;
        clearInterval(retry);
        clearTimeout(timer);
        resolve();
      });
      b.tun.inject(packet);
    });
    const peers = a.node.router.peerInfos();
    expect(peers).toHaveLength(1);
    const link = a.node.linkForPort(peers[0]!.port)!;
    expect(link.remote).toMatch(/^udp:\/\/127\.0\.0\.1:\d+$/);
    expect(link.remoteKey.equals(b.node.publicKey)).toBe(true);
    expect(a.node.portCounters(peers[0]!.port)!.framesIn).toBeGreaterThan(0);
  });
});
