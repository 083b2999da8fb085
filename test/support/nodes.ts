// Build Nodes in one process over in-memory links and TUNs, and move IPv6 packets between them.
import pino from "pino";
import { type PlanetConfig, generateConfig } from "../../src/config/config.js";
import { Identity } from "../../src/crypto/identity.js";
import { Node } from "../../src/daemon/node.js";
import { MemoryTun } from "../../src/tun/memory.js";
import { memoryLinkPair } from "./memory-link.js";

export { inSubnet, ipv6Packet } from "./packets.js";

export interface Member {
  node: Node;
  tun: MemoryTun;
}

/** Every Node started here, so a test's afterEach can stop them all. */
export const running: Node[] = [];

export async function stopAll(): Promise<void> {
  await Promise.all(running.splice(0).map((n) => n.stop()));
}

export async function startMember(
  overrides: Partial<PlanetConfig> = {},
  tun = new MemoryTun("mem", 53049),
): Promise<Member> {
  const identity = Identity.generate();
  const config = {
    ...generateConfig(),
    PrivateKey: identity.privateKeyHex,
    MulticastInterfaces: [],
    AdminListen: "none",
    IfName: "mem",
    ...overrides,
  };
  const node = await Node.start({
    config,
    identity,
    logger: pino({ level: "silent" }),
    openTun: async () => tun,
  });
  running.push(node);
  return { node, tun };
}

export function connect(a: Member, b: Member): void {
  const { a: linkA, b: linkB } = memoryLinkPair(a.node.publicKey, b.node.publicKey);
  a.node.attachLink(linkA);
  b.node.attachLink(linkB);
}

/**
 * Inject `packet` into `from`'s TUN until it comes out of `to`'s TUN byte for byte. Re-injection
 * covers the time the tree and DHT need to converge; the wait is bounded.
 */
export async function deliver(from: Member, to: Member, packet: Buffer, timeoutMs = 10_000): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    const retry = setInterval(() => from.tun.inject(packet), 200);
    const timer = setTimeout(() => {
      clearInterval(retry);
      reject(new Error(`packet did not arrive within ${timeoutMs} ms`));
    }, timeoutMs);
    to.tun.onWrite((got) => {
      if (!got.equals(packet)) return;
      clearInterval(retry);
      clearTimeout(timer);
      resolve();
    });
    from.tun.inject(packet);
  });
}
