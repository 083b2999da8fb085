// The router's own frames against the captures of spec 13.3 (ed25519 is deterministic, so a router
// started at the captured root seq must produce these bytes exactly).
import { expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { Sim } from "../src/routing/sim/sim.js";
import { FrameType } from "../src/routing/types.js";

const V3 =
  "013b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29000000006b05974479b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad04966401282722553f0221cc5f5cd5d206b44d13bce1c6ad7de8607bada2bbfa6397d55aa612ee688d3ada19f616f6be3ec65d788c7a40a548b3ca9779b311a70a58e10d";
const V4 = `${V3}3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da2901735f154a1ab3a7d8bfb3de602e6c1168ce05740e787484ec17dbcee4d09842c5321af6150c9d700036ce3b2d4d8bc72228cec8eb87c816656faa87ecf9521f09`;
const V5 =
  "02ae9fac9a739bb22d09e06f51e20fe6cb4cd731e8772d67046937a56e996a241913ac1265a43b064574d78858dd54b75a6d2003674c7f2e5b9045adb5556c000679b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad0496643b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29000000000000000001";
const V6 =
  "038901ae9fac9a739bb22d09e06f51e20fe6cb4cd731e8772d67046937a56e996a241913ac1265a43b064574d78858dd54b75a6d2003674c7f2e5b9045adb5556c000679b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad0496643b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da2900000000000000000199fc1e731394b9defc7118da07d04b3a345e9efe7223bf9f92d121969d6a9924fa89993404d4eeca323a38e8f28b3ecfd280a227bb7706f4e27923811f945d0479b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664b7a7d7eb68e59df78e50fd62bf33c202ece1fb566c9c675969d8a9f54668574b90757ba8351db14961e8d452d09178b68f1a2bf021fab6771ecf3b381c92cf0c3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da293b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29000000006b059744";
const TOKEN = V6.slice(2 + 4 + 137 * 2); // after type, uvarint 137 and the bootstrap

it("two routers A (root) and B, started at the captured seq, send the frames of spec 13.3", () => {
  const a = Identity.fromSeed(Buffer.alloc(32));
  const b = Identity.fromSeed(Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1)));
  const sim = new Sim({ start: 0x6b059744 * 1000 + 123 });
  const [na, nb] = [sim.addNode(a), sim.addNode(b)];
  const sent: Array<{ from: string; hex: string }> = [];
  sim.tap = (n, _port, frame) => sent.push({ from: n === na ? "A" : "B", hex: frame.toString("hex") });
  sim.connect(na, nb);
  expect(sim.runUntilTrue(() => sim.converged(), 10_000)).toBeDefined();
  const fromA = sent.filter((s) => s.from === "A").map((s) => s.hex);
  const fromB = sent.filter((s) => s.from === "B").map((s) => s.hex);
  expect(fromA).toContain(V3); // A's root announcement to B
  expect(fromB).toContain(V4); // B re-announcing A's tree back to A
  expect(fromB).toContain(V5); // B's bootstrap while it follows A's seq-0 hello
  expect(fromA).toContain(V6); // A's ack with its current label
  const setups = fromB.filter((h) => h.startsWith(FrameType.DhtSetup.toString(16).padStart(2, "0")));
  expect(setups.length).toBe(1); // exactly one setup for (A, 0x6b059744)
  expect(setups[0].endsWith(TOKEN)).toBe(true);
  expect(nb.router.dhtEntries()).toEqual([{ key: b.publicKey, port: 0, rest: 1 }]);
  expect(na.router.dhtEntries()).toEqual([{ key: b.publicKey, port: 1, rest: 0 }]);
});
