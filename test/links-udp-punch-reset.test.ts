// RESET on a hole-punched link (issue 9 gap b), in process on loopback through the LinkManager's
// punch path (punch.ts, udp-punch.ts): both ends of a punched link live on their listeners' sockets,
// so a peer that restarted (new LinkManager, same node key, same port, its goodbyes lost) gets the
// survivor's next datagram there and answers with a RESET. Either end may be the one that restarted:
// the side that answered the punch (its RESET carries the token its ACCEPT gave the dialer) or the
// side that dialled it (its CONFIRM committed to the token its RESET now reveals). The survivor's
// link closes on that RESET at the first datagram it sends (traffic, or the keepalive an idle link
// sends within a second or so), not after the 8 s of silence liveness waits, and punching again
// brings a direct link back.
import { afterEach, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { type LinkNode, collect, startLinkNode, stopLinkNodes } from "./support/links.js";
import { restartablePort } from "./support/ports.js";
import { until } from "./support/udp-pair.js";

afterEach(async () => {
  await stopLinkNodes();
});

const portOf = (uri: string) => Number(new URL(uri).port);

for (const restarted of ["answering", "dialing"] as const) {
  for (const idle of [false, true]) {
    it(`${idle ? "idle" : "busy"}: a punched link closes on the RESET of its restarted ${restarted} side ${idle ? "at its next keepalive" : "at once"}, and a new punch links again`, async () => {
      const idGone = Identity.generate();
      let crashed = false;
      // The node that restarts: its datagrams vanish once it "crashes" (no close reaches the peer).
      // Restarted on the same port below: one below the ephemeral range (support/ports.ts).
      const gone1 = await startLinkNode(
        {
          listen: [`udp://127.0.0.1:${await restartablePort()}`],
          udp: { hooks: { dropDatagram: () => crashed } },
        },
        idGone,
      );
      const survivor = await startLinkNode({ listen: ["udp://127.0.0.1:0"] });
      const portGone = portOf(gone1.mgr.listenAddresses()[0]!);
      const portSurvivor = portOf(survivor.mgr.listenAddresses()[0]!);
      const dialer = (gone: LinkNode) => (restarted === "dialing" ? gone : survivor);
      const answerer = (gone: LinkNode) => (restarted === "dialing" ? survivor : gone);
      // In NAT traversal the smaller key dials; here the test picks. Neither is behind a NAT.
      const punchPair = (gone: LinkNode) => {
        const punch = (near: LinkNode, far: LinkNode, dial: boolean) =>
          near.mgr.punch(
            far.id.publicKey,
            [{ ip: "127.0.0.1", port: far === survivor ? portSurvivor : portGone }],
            dial,
            5000,
            false,
          );
        return Promise.all([
          punch(dialer(gone), answerer(gone), true),
          punch(answerer(gone), dialer(gone), false),
        ]).then(([d, a]) => ({ atDialer: d, atAnswerer: a }));
      };
      const first = await punchPair(gone1);
      expect(first.atDialer?.punched && first.atAnswerer?.punched).toBe(true);
      expect(first.atDialer!.outbound).toBe(true);
      expect(first.atAnswerer!.outbound).toBe(false);
      const survivorLink = (restarted === "dialing" ? first.atAnswerer : first.atDialer) as UdpLink;
      const goneLink = (restarted === "dialing" ? first.atDialer : first.atAnswerer) as UdpLink;
      const closed = collect(survivorLink).closed;
      collect(goneLink).closed.catch(() => {});

      // Idle: once both size searches are over, nothing is in flight and the survivor's next
      // datagram is a keepalive, up to a second away.
      if (idle) await until(() => !survivorLink.pmtu.searching && !goneLink.pmtu.searching);
      crashed = true;
      await gone1.mgr.stop();
      const gone2 = await startLinkNode({ listen: [`udp://127.0.0.1:${portGone}`] }, idGone);
      // The survivor's next datagram (traffic here; a keepalive within a second when idle) meets the
      // new listener, which no longer knows the link and answers with the token only its node key
      // gives.
      const t0 = Date.now();
      if (!idle) survivorLink.send(Buffer.from([9, 1, 2, 3]));
      expect(await closed).toBe("reset by peer (it no longer knows this link)");
      const resetMs = Date.now() - t0;
      // Liveness alone would wait 8 s; keepalives leave every second of quiet.
      expect(resetMs).toBeLessThan(idle ? 2500 : 1000);
      expect(survivorLink.resetsRefused).toBe(0);

      // Punching again (the NAT driver would, once traffic wants a direct path) links the two anew.
      const again = await punchPair(gone2);
      expect(again.atDialer?.punched && again.atAnswerer?.punched).toBe(true);
      const atAnswerer = collect(again.atAnswerer!);
      again.atDialer!.send(Buffer.from([9, 4, 5, 6]));
      await atAnswerer.until((f) => f.length === 1);
      expect(atAnswerer.frames[0]).toEqual(Buffer.from([9, 4, 5, 6]));
      console.log(
        `${idle ? "idle" : "busy"} punched link closed by the ${restarted} side's RESET ${resetMs} ms after the restart`,
      );
    }, 20_000);
  }
}
