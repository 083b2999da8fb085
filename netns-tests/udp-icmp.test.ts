// ICMP errors as liveness hints between real daemons (src/tun/native/udp_err.c,
// src/overlay/links/udp-icmp-hints.ts): two planetd nodes peered over udp://, the dialer killed with
// SIGKILL (its process group, by PID: no goodbye), and the time until the listener logs the link
// down, with the hints (default) and without (PLANETD_UDP_RECVERR=0 in the listener's environment:
// it waits for silence). Both are printed; only the hinted one is bounded, far below the silence.
import { readFileSync } from "node:fs";
import { afterEach, beforeEach, expect, it } from "vitest";
import { Lab, delay, describeNetns } from "./harness.js";

let lab: Lab;

describeNetns("udp:// ICMP hints between daemons", () => {
  beforeEach(() => {
    lab = new Lab();
  });
  afterEach(async () => {
    Reflect.deleteProperty(process.env, "PLANETD_UDP_RECVERR");
    await lab.cleanup();
  });

  it("a killed peer's udp:// link goes down on the port unreachable, not after the silence", async () => {
    const [nsA, nsB] = [await lab.netns(), await lab.netns()];
    const veth = await lab.link(nsA, nsB);
    const took: Record<string, { ms: number; line: string }> = {};
    for (const [round, recverr] of [
      [0, "1"],
      [1, "0"],
    ] as const) {
      const uri = `udp://${veth.a.ipv4}:${12350 + round}`;
      process.env.PLANETD_UDP_RECVERR = recverr; // read by the listener's socket at open
      const a = await lab.startPlanetd(nsA, `pdA${round}`, { listen: [uri] });
      Reflect.deleteProperty(process.env, "PLANETD_UDP_RECVERR");
      const b = await lab.startPlanetd(nsB, `pdB${round}`, { peers: [uri] });
      await lab.waitFor(async () => (await a.peerEntry(b)) !== undefined, 30_000, "A lists B");
      await b.stop("SIGKILL");
      const t0 = Date.now();
      const downAt = (): string | undefined =>
        readFileSync(a.logPath, "utf8")
          .split("\n")
          .find((l) => l.includes("link down:") && l.includes(b.key));
      let line = downAt();
      while (!line && Date.now() - t0 < 15_000) {
        await delay(50);
        line = downAt();
      }
      expect(line, lab.logTails()).toBeDefined();
      const msg = (JSON.parse(line!) as { msg: string }).msg;
      took[recverr === "1" ? "hint" : "silence"] = { ms: Date.now() - t0, line: msg };
      await a.stop();
    }
    console.log(
      `link-down after the peer's SIGKILL: ${took.hint!.ms} ms with ICMP hints, ${took.silence!.ms} ms without\n  ${took.hint!.line}\n  ${took.silence!.line}`,
    );
    expect(took.hint!.line).toMatch(/after an ICMP error \(ECONNREFUSED\)/);
    expect(took.silence!.line).toMatch(/: no datagram received for \d+ ms$/);
    // The silence deadline is 8 to 9.5 s.
    expect(took.hint!.ms).toBeLessThan(4000);
  }, 90_000);
});
