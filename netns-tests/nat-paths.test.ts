// NAT traversal (issue 13) on the other paths the issue names (labs in support/nat-lab.ts):
// - one side behind masquerade, the other public: a direct udp:// link too, whichever side dials (the
//   one with the smaller key);
// - Debian's yggdrasil 0.4.7 as P, the only path between A and B (tcp://), so the offer and answer
//   cross it inside the A↔B session; A and B each learn their reflexive address from a planetd
//   reflector that is a leaf (one udp:// link each). Pings work, the punch happens, and the
//   yggdrasil log has no failure or error line.
import { readFileSync } from "node:fs";
import { afterEach, beforeEach, expect, it } from "vitest";
import { type DaemonNode, Lab, describeNetns, identitiesByKey, ping6 } from "./harness.js";
import { behindNat, directTo, internet, natStatus, publicHost } from "./support/nat-lab.js";

let lab: Lab;

/**
 * Once A and B have `links` links each: A pings B until one answer (through `via`), then A and B must
 * list each other as udp:// peers within 10 s of that first ping. Returns how long it took (ms).
 */
async function punchedAfterFirstPing(
  a: DaemonNode,
  b: DaemonNode,
  links: number,
  via: string,
): Promise<number> {
  for (const n of [a, b])
    await lab.waitFor(async () => (await n.getPeers()).length === links, 30_000, `${n.name} linked`);
  const started = Date.now();
  await firstPing(a, b.address, `a first ping A→B through ${via}`);
  await lab.waitFor(
    async () => (await directTo(a, b.key)) !== undefined && (await directTo(b, a.key)) !== undefined,
    10_000 - (Date.now() - started),
    "A and B list each other as udp:// peers",
  );
  return Date.now() - started;
}

async function firstPing(from: { ns: Parameters<typeof ping6>[0] }, to: string, what: string): Promise<void> {
  await lab.waitFor(async () => (await ping6(from.ns, to, { count: 1 })).received === 1, 20_000, what);
}

describeNetns("NAT traversal: a public side, and yggdrasil 0.4.7 in the middle", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it.each([
    ["the public side dials", true],
    ["the NATed side dials", false],
  ])(
    "one side behind masquerade, one public (%s): a punched direct link within 10 s of the first ping",
    async (_, publicDials) => {
      const inet = await internet(lab);
      const nsA = await behindNat(lab, inet.r1, false);
      const pub = await publicHost(lab, inet);
      // The smaller key dials (src/overlay/nat.ts).
      const [small, large] = identitiesByKey(2);
      const [idA, idB] = publicDials ? [large, small] : [small, large];
      await lab.startPlanetd(inet.nsP, "pdP", { listen: ["udp://0.0.0.0:12345"] });
      const a = await lab.startPlanetd(nsA, "pdA", { peers: [`udp://${inet.r1.p}:12345`], identity: idA });
      const b = await lab.startPlanetd(pub.ns, "pdB", { peers: [`udp://${pub.p}:12345`], identity: idB });
      const took = await punchedAfterFirstPing(a, b, 1, "P");
      const r = await ping6(a.ns, b.address, { count: 20, intervalS: 0.05 });
      const [na, nb] = [await natStatus(a), await natStatus(b)];
      console.log(
        `public B, ${publicDials ? "B" : "A"} dials: direct link ${took} ms after the first ping; A sees B at ${(await directTo(a, b.key))!.remote}, ` +
          `B sees A at ${(await directTo(b, a.key))!.remote}; A mapping ${na.mapping}; ${r.output.split("\n").at(-2)}`,
      );
      expect(r.lossPercent, r.output).toBe(0);
      // A reaches B at its public address: no NAT on B's side.
      expect((await directTo(a, b.key))!.remote).toMatch(
        new RegExp(`^udp://${pub.ip.replaceAll(".", "\\.")}:`),
      );
      expect(na.punched_peers?.map((x) => x.key)).toEqual([b.key]);
      expect(nb.punched_peers?.map((x) => x.key)).toEqual([a.key]);
    },
  );

  it("yggdrasil 0.4.7 as P: A and B punch through the session it carries; pings and its log stay clean", async () => {
    const inet = await internet(lab);
    const nsA = await behindNat(lab, inet.r1, false);
    const nsB = await behindNat(lab, inet.r2, false);
    const ygg = await lab.startYggdrasil(inet.nsP, "ygg", { listen: ["tcp://0.0.0.0:12345"] });
    // Reflectors: each a leaf with one udp:// link, so the A↔B path is through yggdrasil only.
    await lab.startPlanetd(inet.nsP, "pdQA", { listen: [`udp://${inet.r1.p}:12346`], ifName: "none" });
    await lab.startPlanetd(inet.nsP, "pdQB", { listen: [`udp://${inet.r2.p}:12347`], ifName: "none" });
    const a = await lab.startPlanetd(nsA, "pdA", {
      peers: [`tcp://${inet.r1.p}:12345`, `udp://${inet.r1.p}:12346`],
    });
    const b = await lab.startPlanetd(nsB, "pdB", {
      peers: [`tcp://${inet.r2.p}:12345`, `udp://${inet.r2.p}:12347`],
    });
    const took = await punchedAfterFirstPing(a, b, 2, "yggdrasil");
    const ab = await ping6(a.ns, b.address, { count: 20, intervalS: 0.05 });
    await firstPing(a, ygg.address, "a first ping A→yggdrasil");
    const ay = await ping6(a.ns, ygg.address, { count: 20, intervalS: 0.05 });
    const yb = await ping6(ygg.ns, b.address, { count: 20, intervalS: 0.05 });
    const log = readFileSync(ygg.logPath, "utf8").split("\n");
    const complaints = log.filter((l) => /fail|error|panic/i.test(l));
    console.log(
      `yggdrasil as P: direct link ${took} ms after the first ping; A→B ${ab.output.split("\n").at(-2)}; ` +
        `A→ygg ${ay.lossPercent}% loss, ygg→B ${yb.lossPercent}% loss; yggdrasil log ${log.length} lines, ` +
        `failures/errors: ${JSON.stringify(complaints)}`,
    );
    for (const r of [ab, ay, yb]) expect(r.lossPercent, r.output).toBe(0);
    expect(complaints).toEqual([]);
    expect((await natStatus(a)).punched_peers?.map((x) => x.key)).toEqual([b.key]);
  });
});
