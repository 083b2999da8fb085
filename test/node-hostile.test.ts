// A peer that sends a frame the router must refuse loses its link; the node and its other links
// carry on.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import type { LinkEvents } from "../src/overlay/links/link.js";
import { appendTreeHop } from "../src/routing/wire.js";
import { encodeTree } from "../src/routing/wire.js";
import { memoryLinkPair } from "./support/memory-link.js";
import { connect, deliver, ipv6Packet, startMember, stopAll } from "./support/nodes.js";

afterEach(stopAll);

/** A raw link end we drive by hand, attached to `member`'s node; resolves `closed` when the node drops it. */
function rawPeer(nodeKey: Buffer, identity: Identity) {
  const { a, b } = memoryLinkPair(nodeKey, identity.publicKey);
  let resolveClosed!: (reason: string) => void;
  const closed = new Promise<string>((r) => {
    resolveClosed = r;
  });
  const events: LinkEvents = { onFrame: () => {}, onClose: (reason) => resolveClosed(reason) };
  a.setHandler(events);
  return { toNode: b, ours: a, closed };
}

describe("hostile peers", () => {
  for (const [name, frame] of [
    ["a tree frame with a forged hop signature", "forged"],
    ["a frame of an unknown type", "unknown"],
    ["a truncated DHT setup", "truncated"],
  ] as const) {
    it(`${name} closes that link only`, async () => {
      const a = await startMember();
      const b = await startMember();
      connect(a, b);
      const evil = Identity.generate();
      const peer = rawPeer(a.node.publicKey, evil);
      a.node.attachLink(peer.toNode);
      let bytes: Buffer;
      if (frame === "forged") {
        const hello = appendTreeHop(evil, { root: evil.publicKey, seq: 0n, hops: [] }, a.node.publicKey, 1);
        hello.hops[0]!.sig = Buffer.from(hello.hops[0]!.sig);
        hello.hops[0]!.sig[5]! ^= 1;
        bytes = encodeTree(hello);
      } else if (frame === "unknown") {
        bytes = Buffer.from([11, 1, 2, 3]);
      } else {
        bytes = Buffer.from([4, ...randomBytes(20)]);
      }
      peer.ours.send(bytes);
      await expect(peer.closed).resolves.toBeTypeOf("string");
      // The node still routes for its honest peer.
      await deliver(a, b, ipv6Packet(a.node.identity.address, b.node.identity.address, randomBytes(40)));
      expect(a.node.router.peerInfos().map((p) => p.key.toString("hex"))).not.toContain(
        evil.publicKey.toString("hex"),
      );
    });
  }
});
