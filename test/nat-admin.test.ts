// getNat (planetctl and the admin socket): NAT traversal's counters, mapping, punched peers and the
// traffic this node relayed, from a NatTraversal driven through one skipped and one linked punch.
import { expect, it } from "vitest";
import { COMMANDS } from "../src/admin/commands.js";
import { formatResponse } from "../src/admin/format.js";
import type { AdminView, NatView } from "../src/admin/view.js";
import { addressForKey, formatIPv6 } from "../src/crypto/address.js";
import { MAPPING_DEPENDENT, NatTraversal, SIG_OFFER, encodeSignal, mappingName } from "../src/overlay/nat.js";

const key = (b: number) => Buffer.alloc(32, b);
const LOCAL = [{ ip: "198.51.100.7", port: 4000 }];

it("getNat shows the mapping, punch attempts, successes, skips, punched peers and relayed traffic", async () => {
  const nat = new NatTraversal(key(1), { sendSignal: () => {}, punch: () => {} });
  nat.reflexive.record(key(0xe1), "192.0.2.1", "203.0.113.5", 5000, 1);
  nat.reflexive.record(key(0xe2), "192.0.2.2", "203.0.113.5", 5001, 2);
  const offer = (mapping: number) =>
    encodeSignal({ type: SIG_OFFER, nonce: 1, mapping: mapping as 0, candidates: LOCAL });
  nat.handleSignal(key(2), offer(MAPPING_DEPENDENT), 0, LOCAL); // both dependent: skipped
  nat.handleSignal(key(3), offer(0), 0, LOCAL); // punched
  nat.punchDone(key(3), true, 10);
  const natView: NatView = {
    mapping: mappingName(nat.reflexive.mapping()),
    reflexive: nat.reflexive.addresses(),
    counters: { ...nat.counters },
    destinations: nat.summary(10),
    punchedPeers: [{ key: key(3), remote: "udp://203.0.113.9:4444" }],
  };
  const view = { nat: () => natView, forwarded: () => ({ frames: 12, bytes: 3456 }) } as unknown as AdminView;
  const response = (await COMMANDS.getnat!.run({ view, remoteTimeoutMs: 0 }, {})) as Record<string, unknown>;
  expect(response).toMatchObject({
    enabled: true,
    mapping: "dependent",
    reflexive: ["203.0.113.5:5001", "203.0.113.5:5000"],
    punch_attempts: 1,
    punch_successes: 1,
    punch_failures: 0,
    punch_skipped: 1,
    answers_sent: 2,
    destinations: { offered: 0, punching: 0, direct: 1, backing_off: 1 },
    punched_peers: [
      {
        address: formatIPv6(addressForKey(key(3))),
        key: key(3).toString("hex"),
        remote: "udp://203.0.113.9:4444",
      },
    ],
    forwarded_frames: 12,
    forwarded_bytes: 3456,
  });
  const text = formatResponse("getnat", response);
  expect(text).toMatch(/Mapping: +dependent\n/);
  expect(text).toMatch(/Punches: +1 attempted, 1 linked, 0 failed, 1 skipped/);
  expect(text).toMatch(/Punched peer +Remote\n/);
  expect(text).toContain("udp://203.0.113.9:4444");
  expect(text).toContain("Relayed for others: 12 frames, 3456 bytes");
  const off = await COMMANDS.getnat!.run(
    { view: { forwarded: () => ({ frames: 1, bytes: 2 }) } as unknown as AdminView, remoteTimeoutMs: 0 },
    {},
  );
  expect(off).toEqual({ enabled: false, forwarded_frames: 1, forwarded_bytes: 2 });
});
