// Config reload without restart (SIGHUP and the planetd-only admin `reload`): a running node gets a
// new peer and a new AllowedPublicKeys list, its other link and a running ping keep going, and a
// broken config, or one that changes the key, is refused while the node keeps running.
import { readFileSync, writeFileSync } from "node:fs";
import { afterEach, beforeEach, expect, it } from "vitest";
import {
  type DaemonNode,
  Lab,
  describeNetns,
  identitiesByKey,
  planetctl,
  substitutePlanetd,
} from "./harness.js";

let lab: Lab;

function rewriteConfig(node: DaemonNode, text: string): void {
  writeFileSync(node.configPath, text);
}

function sighup(node: DaemonNode): void {
  const pid = node.proc?.child.pid;
  if (pid === undefined) throw new Error(`${node.name} is not running`);
  process.kill(pid, "SIGHUP");
}

/** Log lines after `from` (a length of the log read earlier). */
function logSince(node: DaemonNode, from: number): string {
  return readFileSync(node.logPath, "utf8").slice(from);
}

describeNetns("config reload", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    await lab.cleanup();
  });

  it.skipIf(substitutePlanetd)(
    "SIGHUP adds a peer and applies AllowedPublicKeys; the other link and a ping keep going; bad configs are refused",
    async () => {
      const [nsA, nsB, nsC, nsD] = [
        await lab.netns(),
        await lab.netns(),
        await lab.netns(),
        await lab.netns(),
      ];
      const ab = await lab.link(nsA, nsB);
      const ac = await lab.link(nsA, nsC);
      const ad = await lab.link(nsA, nsD);
      const b = await lab.startPlanetd(nsB, "b", { listen: [`tcp://[${ab.b.ipv6}]:7001`] });
      const c = await lab.startYggdrasil(nsC, "c", { listen: [`tcp://[${ac.b.ipv6}]:7002`] });
      const a = await lab.startPlanetd(nsA, "a", {
        peers: [`tcp://[${ab.b.ipv6}]:7001`],
        listen: [`tcp://[${ad.a.ipv6}]:7003`],
      });
      const d = await lab.startPlanetd(nsD, "d", { peers: [`tcp://[${ad.a.ipv6}]:7003`] });
      await lab.waitFor(
        async () => (await a.peerEntry(b)) && (await a.peerEntry(d)),
        20_000,
        "a linked to b and d",
      );
      await lab.waitFor(async () => (await a.ping(b.address)).received === 1, 20_000, "a reaches b");
      const bLinkBefore = await a.peerEntry(b);

      // A ping runs across both reloads; the a–b link must carry it without a gap.
      const pinging = a.ping(b.address, { count: 60, intervalS: 0.2 });

      let logAt = readFileSync(a.logPath, "utf8").length;
      a.config.Peers = [`tcp://[${ab.b.ipv6}]:7001`, `tcp://[${ac.b.ipv6}]:7002`];
      a.config.AllowedPublicKeys = [b.key, c.key];
      rewriteConfig(a, JSON.stringify(a.config, null, 2));
      sighup(a);
      await lab.waitFor(async () => a.peerEntry(c), 15_000, "a linked to c after SIGHUP");
      await lab.waitFor(
        async () => !(await a.peerEntry(d)),
        15_000,
        "d's inbound link closed (key no longer allowed)",
      );
      expect(logSince(a, logAt)).toMatch(/config reloaded: Peers \+1 -0, AllowedPublicKeys/);
      // d keeps redialling and is refused each time.
      await new Promise((r) => setTimeout(r, 3000));
      expect(await a.peerEntry(d)).toBeUndefined();
      await lab.waitFor(
        async () => (await a.ping(c.address)).received === 1,
        20_000,
        "a reaches the new peer c",
      );

      // A config that does not validate, then one with another key: both refused, nothing changes.
      logAt = readFileSync(a.logPath, "utf8").length;
      rewriteConfig(a, JSON.stringify({ ...a.config, Peers: ["tcp//x"] }));
      sighup(a);
      await lab.waitFor(() => /reload refused/.test(logSince(a, logAt)), 10_000, "the broken config refused");
      // The log is JSON: the config error's quotes arrive escaped.
      expect(logSince(a, logAt)).toMatch(/Peers\[0\] \\"tcp\/\/x\\" is not a URI/);
      logAt = readFileSync(a.logPath, "utf8").length;
      rewriteConfig(a, JSON.stringify({ ...a.config, PrivateKey: identitiesByKey(1)[0]!.privateKeyHex }));
      const viaAdmin = await planetctl(a.endpoint, "reload").then(
        () => "accepted",
        (e: Error) => e.message,
      );
      expect(viaAdmin).toMatch(/PrivateKey changed; restart planetd/);
      // The running config stays: the same peers, the process alive, the a–b link never replaced.
      rewriteConfig(a, JSON.stringify(a.config, null, 2));
      expect(await planetctl(a.endpoint, "reload")).toEqual({ reloaded: "nothing changed" });
      expect(a.proc?.running).toBe(true);
      const bLinkAfter = await a.peerEntry(b);
      expect(bLinkAfter?.port).toBe(bLinkBefore?.port);
      expect(Number(bLinkAfter?.uptime)).toBeGreaterThan(Number(bLinkBefore?.uptime));
      const ping = await pinging;
      console.log(`ping a→b across the reloads: ${ping.received}/${ping.transmitted}`);
      expect(ping.transmitted).toBeGreaterThanOrEqual(55);
      expect(ping.received).toBe(ping.transmitted);
    },
    120_000,
  );
});
