// One link per peer key and priority holds for punched links too (issue 9 gap b): a node that
// punches from a socket bound on demand (no udp:// Listen) comes back from a restart on another
// port, so no RESET can reach its peer; the peer's old punched link to it is replaced the moment
// the restarted node's new punched link arrives, whichever side dials, instead of lingering until
// the 8 s of silence liveness waits.
import { afterEach, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { type LinkNode, collect, startLinkNode, stopLinkNodes } from "./support/links.js";

afterEach(async () => {
  await stopLinkNodes();
});

const portOf = (uri: string) => Number(new URL(uri).port);

for (const restarted of ["answering", "dialing"] as const) {
  it(`a restarted ${restarted} side without a udp:// Listen: its new punched link replaces the old one at once`, async () => {
    const idGone = Identity.generate();
    let crashed = false;
    // No Listen: the punch socket is bound on demand (an ephemeral port). Its datagrams vanish once
    // it "crashes" (no close reaches the peer).
    const gone1 = await startLinkNode({ udp: { hooks: { dropDatagram: () => crashed } } }, idGone);
    const survivor = await startLinkNode({ listen: ["udp://127.0.0.1:0"] });
    const portSurvivor = portOf(survivor.mgr.listenAddresses()[0]!);
    const punchPair = async (gone: LinkNode) => {
      const goneSocket = await gone.mgr.punchSocket(4);
      const goneDials = restarted === "dialing";
      const [atGone, atSurvivor] = await Promise.all([
        gone.mgr.punch(
          survivor.id.publicKey,
          [{ ip: "127.0.0.1", port: portSurvivor }],
          goneDials,
          5000,
          false,
        ),
        survivor.mgr.punch(
          idGone.publicKey,
          [{ ip: "127.0.0.1", port: goneSocket!.port }],
          !goneDials,
          5000,
          false,
        ),
      ]);
      expect(atGone?.punched && atSurvivor?.punched).toBe(true);
      expect(atSurvivor!.outbound).toBe(restarted === "answering");
      return { atGone: atGone as UdpLink, atSurvivor: atSurvivor as UdpLink, port: goneSocket!.port };
    };
    const first = await punchPair(gone1);
    const oldClosed = collect(first.atSurvivor).closed;
    collect(first.atGone).closed.catch(() => {});

    crashed = true;
    await gone1.mgr.stop();
    const gone2 = await startLinkNode({}, idGone);
    const t0 = Date.now();
    const again = await punchPair(gone2);
    expect(again.port).not.toBe(first.port);
    // The old link is gone by the time the new one is handed out (not 8 s of silence later).
    expect(first.atSurvivor.closed).toBe(true);
    expect(await oldClosed).toBe("replaced by a newer link from the same peer");
    const replacedMs = Date.now() - t0;
    const open = survivor.links.filter((l) => !(l as UdpLink).closed && l.remoteKey.equals(idGone.publicKey));
    expect(open).toEqual([again.atSurvivor]);
    const atSurvivor = collect(again.atSurvivor);
    again.atGone.send(Buffer.from([9, 4, 5, 6]));
    await atSurvivor.until((f) => f.length === 1);
    expect(atSurvivor.frames[0]).toEqual(Buffer.from([9, 4, 5, 6]));
    console.log(`restarted ${restarted} side: old punched link replaced ${replacedMs} ms after the restart`);
  }, 20_000);
}
