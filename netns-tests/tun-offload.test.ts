// TUN offloads on a real kernel: sha256-checked TCP transfers over tcp://, at IfMTU 1420 and at the
// default (where offloads are off unless PLANETD_TUN_OFFLOAD=on). Between two planetd nodes the
// counters prove that the sender read super-packets and sent them whole and the receiver wrote them
// as GSO writes; towards Yggdrasil, or a planetd with a plain TUN, that the sender cut them into
// ordinary segments and sent none whole, and that what they send is coalesced.
//
// PD_TUN_OFFLOAD_MIB (default 20) sets the transfer size.
import { afterEach, beforeEach, expect, it } from "vitest";
import { type DaemonNode, Lab, describeNetns, ping6 } from "./harness.js";
import { checkedTransfer } from "./support/transfer.js";

const MIB = Number(process.env.PD_TUN_OFFLOAD_MIB ?? 20);

interface TunInfo {
  enabled: boolean;
  mtu: number;
  offload: boolean;
  counters: Record<string, number>;
}

let lab: Lab;

async function tunInfo(node: DaemonNode): Promise<TunInfo> {
  return (await node.ctl("getTun")) as unknown as TunInfo;
}

/** Moves MIB MiB from a to b through the overlay, sha256-checked (support/transfer.ts), and says how fast. */
async function transfer(a: DaemonNode, b: DaemonNode, label: string): Promise<void> {
  const { ms } = await checkedTransfer(a, b, MIB, { label, timeoutMs: 180_000 });
  console.log(`${label}: ${MIB} MiB in ${ms} ms (${((MIB * 8388.608) / ms).toFixed(0)} Mbit/s)`);
}

/** Runs `start` with PLANETD_TUN_OFFLOAD set (a spawned daemon inherits the environment). */
async function withOffloadKnob<T>(knob: string | undefined, start: () => Promise<T>): Promise<T> {
  if (knob === undefined) return start();
  process.env.PLANETD_TUN_OFFLOAD = knob;
  try {
    return await start();
  } finally {
    Reflect.deleteProperty(process.env, "PLANETD_TUN_OFFLOAD"); // `= undefined` would set "undefined"
  }
}

async function pair(
  ifMtu: number | undefined,
  peer: "planetd" | "yggdrasil" = "planetd",
  knob?: string,
): Promise<[DaemonNode, DaemonNode]> {
  const [nsA, nsB] = [await lab.netns(), await lab.netns()];
  const veth = await lab.link(nsA, nsB);
  const mtu = ifMtu === undefined ? {} : { ifMtu };
  const listen = { listen: [`tcp://${veth.b.ipv4}:12347`], ...mtu };
  const b = await withOffloadKnob(knob, () =>
    peer === "planetd" ? lab.startPlanetd(nsB, "pdB", listen) : lab.startYggdrasil(nsB, "ygB", listen),
  );
  const a = await withOffloadKnob(knob, () =>
    lab.startPlanetd(nsA, "pdA", { peers: [`tcp://${veth.b.ipv4}:12347`], ...mtu }),
  );
  await lab.waitFor(
    async () => (await ping6(a.ns, b.address, { count: 1 })).received === 1,
    60_000,
    "a ping from A to B through the overlay",
  );
  return [a, b];
}

describeNetns("TUN checksum and segmentation offloads", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  // At the default IfMTU offloads are off unless PLANETD_TUN_OFFLOAD=on (native.ts OFFLOAD_MAX_MTU).
  for (const [ifMtu, knob] of [
    [1420, undefined],
    [undefined, "on"],
  ] as const) {
    const label = `IfMTU ${ifMtu ?? "default"}${knob ? ` PLANETD_TUN_OFFLOAD=${knob}` : ""}`;
    it(`${label}: a ${MIB} MiB transfer arrives intact; super-packets travel whole where they hold several segments`, async () => {
      const [a, b] = await pair(ifMtu, "planetd", knob);
      const [tunA0, tunB0] = [await tunInfo(a), await tunInfo(b)];
      expect(tunA0.offload, JSON.stringify(tunA0)).toBe(true);
      expect(tunB0.offload).toBe(true);
      await transfer(a, b, `tcp:// ${label}`);
      const [tunA, tunB] = [await tunInfo(a), await tunInfo(b)];
      const delta = (t: TunInfo, t0: TunInfo, k: string) => (t.counters[k] ?? 0) - (t0.counters[k] ?? 0);
      const names = [
        "gsoReads",
        "segmentsProduced",
        "checksumsCompleted",
        "checksumsLeftPartial",
        "partialChecksumsCompleted",
        "superPiecesRead",
        "superPacketsSent",
        "superPacketsCut",
        "superPacketsDelivered",
        "superPacketsWritten",
        "coalescedWrites",
        "coalescedSegments",
        "writeBatches",
      ];
      const show = (t: TunInfo, t0: TunInfo) => names.map((k) => `${k} ${delta(t, t0, k)}`).join(", ");
      console.log(`${label} (MTU ${tunA.mtu}): sender ${show(tunA, tunA0)}; receiver ${show(tunB, tunB0)}`);
      expect(tunA.counters.offloadMalformed).toBe(0);
      if (ifMtu === 1420) {
        expect(delta(tunA, tunA0, "gsoReads")).toBeGreaterThan(0);
        // Whole from A's TUN to B's: A sends super-packets, B writes each as one GSO write.
        expect(delta(tunA, tunA0, "superPacketsSent")).toBeGreaterThan(0);
        expect(delta(tunB, tunB0, "superPacketsDelivered")).toBe(delta(tunA, tunA0, "superPacketsSent"));
        expect(delta(tunB, tunB0, "superPacketsWritten")).toBe(delta(tunB, tunB0, "superPacketsDelivered"));
        expect(tunB.counters.superPacketsMalformed).toBe(0);
      } else {
        // At 53049 the kernel's 64 KiB GSO limit leaves room for one segment and a part, so whether a
        // read is a super-packet at all depends on timing (a CI run saw none in 20 MiB). What always
        // happens with offloads on: the kernel hands over partial checksums, which travel as they are
        // to B (it said it rewrites them: src/tun/gso.ts) and which nobody completes, so that the
        // sha256 check above is also the proof that B's kernel took them as CHECKSUM_PARTIAL.
        // Any super-packet that does come is cut into single segments, sent as ordinary packets.
        expect(delta(tunA, tunA0, "checksumsLeftPartial")).toBeGreaterThan(0);
        expect(delta(tunA, tunA0, "partialChecksumsCompleted")).toBe(0);
        expect(delta(tunA, tunA0, "segmentsProduced")).toBeGreaterThanOrEqual(
          2 * delta(tunA, tunA0, "gsoReads"),
        );
        expect(delta(tunA, tunA0, "superPacketsSent")).toBe(0);
      }
      expect(tunB.counters.writeDrops).toBe(0);
    }, 300_000);
  }

  it(`IfMTU default: offloads stay off by default and a ${MIB} MiB transfer arrives intact`, async () => {
    const [a, b] = await pair(undefined);
    await transfer(a, b, "tcp:// IfMTU default, plain TUN");
    const [tunA, tunB] = [await tunInfo(a), await tunInfo(b)];
    expect([tunA.offload, tunB.offload]).toEqual([false, false]);
    expect(tunA.counters.gsoReads + tunB.counters.gsoReads).toBe(0);
  }, 300_000);

  it(`IfMTU 1420 with Yggdrasil 0.4.7: ${MIB} MiB each way arrive intact; towards it super-packets are cut, from it segments coalesce`, async () => {
    const [a, b] = await pair(1420, "yggdrasil");
    const t0 = await tunInfo(a);
    await transfer(a, b, "planetd -> yggdrasil, IfMTU 1420");
    const t1 = await tunInfo(a);
    await transfer(b, a, "yggdrasil -> planetd, IfMTU 1420");
    const t2 = await tunInfo(a);
    const delta = (t: TunInfo, from: TunInfo, k: string) => (t.counters[k] ?? 0) - (from.counters[k] ?? 0);
    console.log(
      `towards yggdrasil: gsoReads ${delta(t1, t0, "gsoReads")}, superPacketsCut ${delta(t1, t0, "superPacketsCut")}, ` +
        `superPacketsSent ${delta(t1, t0, "superPacketsSent")}; from yggdrasil: coalescedWrites ` +
        `${delta(t2, t1, "coalescedWrites")} carrying ${delta(t2, t1, "coalescedSegments")} segments`,
    );
    expect(delta(t1, t0, "superPacketsCut")).toBeGreaterThan(0);
    expect(t2.counters.superPacketsSent).toBe(0);
    expect(t2.counters.superAcceptsHeard).toBe(0);
    // What the kernel left with partial checksums (the ACKs of the second transfer at least) went
    // to Yggdrasil completed: it verifies them, and the transfers arrived.
    expect(t2.counters.partialChecksumsCompleted).toBeGreaterThan(0);
    // Runs form when several segments of the stream arrive in one turn of the event loop.
    expect(delta(t2, t1, "coalescedWrites")).toBeGreaterThan(0);
    expect(delta(t2, t1, "coalescedSegments")).toBeGreaterThan(delta(t2, t1, "coalescedWrites"));
    expect(t2.counters.writeDrops).toBe(0);
  }, 300_000);

  it(`IfMTU 1420, one planetd with a plain TUN (PLANETD_TUN_OFFLOAD=off): ${MIB} MiB each way arrive intact, no super-packet reaches it`, async () => {
    const [nsA, nsB] = [await lab.netns(), await lab.netns()];
    const veth = await lab.link(nsA, nsB);
    const b = await lab.startPlanetd(nsB, "pdB", { listen: [`tcp://${veth.b.ipv4}:12347`], ifMtu: 1420 });
    const a = await withOffloadKnob("off", () =>
      lab.startPlanetd(nsA, "pdA", { peers: [`tcp://${veth.b.ipv4}:12347`], ifMtu: 1420 }),
    );
    await lab.waitFor(
      async () => (await ping6(a.ns, b.address, { count: 1 })).received === 1,
      60_000,
      "a ping from A to B through the overlay",
    );
    await transfer(a, b, "plain -> offloaded, IfMTU 1420");
    await transfer(b, a, "offloaded -> plain, IfMTU 1420");
    const [tunA, tunB] = [await tunInfo(a), await tunInfo(b)];
    console.log(`plain A: ${JSON.stringify(tunA.counters)}\noffloaded B: ${JSON.stringify(tunB.counters)}`);
    expect(tunA.offload).toBe(false);
    expect(tunA.counters.gsoReads).toBe(0);
    expect(tunA.counters.superAcceptsSent).toBe(0);
    expect(tunB.offload).toBe(true);
    expect(tunB.counters.superPacketsSent).toBe(0);
    expect(tunB.counters.superPacketsCut).toBeGreaterThan(0);
    expect(tunA.counters.writeDrops).toBe(0);
  }, 300_000);
});
