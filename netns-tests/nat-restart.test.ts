// A punched link whose far side restarts (issue 9 gap b), through real NATs (support/nat-lab.ts):
// A and B behind endpoint-independent masquerade routers and P as their only peer. Once A and B are
// punched, one of them is killed with SIGKILL (no goodbye) and started again with the same key. Its
// punch socket is back on the same port: a fixed udp:// Listen, or, without one, the socket bound on
// demand at the port its key gives (punch.ts punchPortFor). So its router's mapping still leads to
// it, and the survivor's punched link closes on the RESET its next datagram draws, within about a
// second instead of the 8 s of silence liveness waits, whether the restarted node answered the punch
// (its ACCEPT gave the dialer its token) or dialled it (its CONFIRM committed to its token); traffic
// goes on through P, then over a new punched link. (When that port is taken the node comes back on
// another one, where no RESET can come from, and its peer's routes to it lead over the stale link
// until that dies of silence; test/links-udp-punch-replace.test.ts covers the replacement once the
// new punched link arrives.)
import { readFileSync } from "node:fs";
import { afterEach, beforeEach, expect, it } from "vitest";
import { type DaemonNode, Lab, describeNetns, ping6 } from "./harness.js";
import { behindNat, directTo, internet, natStatus } from "./support/nat-lab.js";

let lab: Lab;

/** The time of the last line of `node`'s log matching `re` (its ISO timestamp), or undefined. */
function loggedAt(node: DaemonNode, re: RegExp): number | undefined {
  const line = readFileSync(node.logPath, "utf8")
    .split("\n")
    .filter((l) => re.test(l))
    .at(-1);
  const iso = line && /\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/.exec(line)?.[0];
  return iso ? Date.parse(iso) : undefined;
}

describeNetns("a punched link whose peer restarts", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  const cases = [
    { restarts: "answering", listen: true },
    { restarts: "dialing", listen: true },
    { restarts: "answering", listen: false },
    { restarts: "dialing", listen: false },
  ] as const;
  for (const { restarts, listen } of cases) {
    const socket = listen ? "its udp:// Listen" : "no Listen: its key's punch port";
    it(`the ${restarts} side restarts (${socket}): the old link closes on its RESET within a second; traffic goes through P, then over a new punched link`, async () => {
      const inet = await internet(lab);
      const nsA = await behindNat(lab, inet.r1, false);
      const nsB = await behindNat(lab, inet.r2, false);
      const p = await lab.startPlanetd(inet.nsP, "pdP", { listen: ["udp://0.0.0.0:12345"] });
      const a = await lab.startPlanetd(nsA, "pdA", {
        peers: [`udp://${inet.r1.p}:12345`],
        listen: listen ? ["udp://0.0.0.0:12350"] : [],
      });
      const b = await lab.startPlanetd(nsB, "pdB", {
        peers: [`udp://${inet.r2.p}:12345`],
        listen: listen ? ["udp://0.0.0.0:12351"] : [],
      });
      // The smaller key dials the punch: its link is the outbound one on its listener's socket.
      const [dialer, answerer] = a.key < b.key ? [a, b] : [b, a];
      const [gone, survivor] = restarts === "dialing" ? [dialer, answerer] : [answerer, dialer];
      const punched = async () => {
        await ping6(survivor.ns, gone.address, { count: 1 });
        return (await directTo(survivor, gone.key)) && (await directTo(gone, survivor.key));
      };
      await lab.waitFor(punched, 20_000, "A and B punched a direct link");

      await gone.stop("SIGKILL");
      await gone.start();
      const back = loggedAt(gone, /listening on udp:\/\/0\.0\.0\.0:\d+/)!;
      await lab.waitFor(
        async () => !(await directTo(survivor, gone.key)),
        10_000,
        "the punched link to close",
      );
      const closedAt = loggedAt(survivor, /link down: .*reset by peer/);
      expect(closedAt, "the survivor's link closed on a RESET").toBeDefined();
      const resetMs = closedAt! - back;
      expect(resetMs).toBeLessThan(1500);

      // Traffic through P while there is no direct link, then a punched link again.
      const relayedBefore = (await natStatus(p)).forwarded_frames;
      await lab.waitFor(
        async () => (await ping6(survivor.ns, gone.address, { count: 1 })).received === 1,
        10_000,
        "a ping through P",
      );
      const relayed = (await natStatus(p)).forwarded_frames - relayedBefore;
      const t0 = Date.now();
      await lab.waitFor(punched, 30_000, "a new punched link");
      console.log(
        `${restarts} side restarted (${socket}): the punched link closed by its RESET ${resetMs} ms after it listened ` +
          `again; P relayed ${relayed} frames meanwhile; punched again ${Date.now() - t0} ms after the first relayed ping`,
      );
      expect(relayed).toBeGreaterThan(0);
    });
  }
});
