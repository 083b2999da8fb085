// RESET on a hole-punched link (issue 9 gap b), in process on loopback through the LinkManager's
// punch path (punch.ts, udp-punch.ts): the dialing side's punched link lives on its listener's
// socket, so the RESET of a peer that restarted (new LinkManager, same node key, same port, its
// goodbyes lost) must reach it there. The link closes on that RESET at the first datagram it sends
// (traffic, or the keepalive an idle link sends within a second or so), not after the 8 s of
// silence liveness waits, and punching again brings a direct link back.
import { afterEach, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { collect, startLinkNode, stopLinkNodes } from "./support/links.js";
import { until } from "./support/udp-pair.js";

afterEach(async () => {
  await stopLinkNodes();
});

const portOf = (uri: string) => Number(new URL(uri).port);

for (const idle of [false, true]) {
  it(`${idle ? "idle" : "busy"}: a punched link closes on its restarted peer's RESET ${idle ? "at its next keepalive" : "at once"}, and a new punch links again`, async () => {
    const idB = Identity.generate();
    let crashed = false;
    const a = await startLinkNode({ listen: ["udp://127.0.0.1:0"] });
    // B's datagrams vanish once it "crashes": its close datagrams never reach A.
    const b1 = await startLinkNode(
      { listen: ["udp://127.0.0.1:0"], udp: { hooks: { dropDatagram: () => crashed } } },
      idB,
    );
    const portA = portOf(a.mgr.listenAddresses()[0]!);
    const portB = portOf(b1.mgr.listenAddresses()[0]!);
    // A dials (in NAT traversal the smaller key does), B only opens; neither is behind a NAT here.
    const punch = (near: typeof a, far: Buffer, port: number, dial: boolean) =>
      near.mgr.punch(far, [{ ip: "127.0.0.1", port }], dial, 5000, false);
    const [aLink, bLink] = await Promise.all([
      punch(a, idB.publicKey, portB, true),
      punch(b1, a.id.publicKey, portA, false),
    ]);
    expect(aLink?.punched && bLink?.punched).toBe(true);
    expect(aLink!.outbound).toBe(true);
    const atA = collect(aLink!);
    const closed = atA.closed;
    collect(bLink!).closed.catch(() => {});

    // Idle: once both size searches are over, nothing is in flight and A's next datagram is a
    // keepalive, up to a second away.
    if (idle) await until(() => !aLink!.pmtu.searching && !bLink!.pmtu.searching);
    crashed = true;
    await b1.mgr.stop();
    const b2 = await startLinkNode({ listen: [`udp://127.0.0.1:${portB}`] }, idB);
    // The next datagram A sends (traffic here; a keepalive within a second when idle) meets B's new
    // listener, which no longer knows the link and answers with the token only B's node key gives.
    const t0 = Date.now();
    if (!idle) aLink!.send(Buffer.from([9, 1, 2, 3]));
    expect(await closed).toBe("reset by peer (it no longer knows this link)");
    const resetMs = Date.now() - t0;
    // Liveness alone would wait 8 s; keepalives leave every second of quiet.
    expect(resetMs).toBeLessThan(idle ? 2500 : 1000);
    expect((aLink as UdpLink).resetsRefused).toBe(0);

    // Punching again (the NAT driver would, once traffic wants a direct path) links the two anew.
    const [aAgain, bAgain] = await Promise.all([
      punch(a, idB.publicKey, portB, true),
      punch(b2, a.id.publicKey, portA, false),
    ]);
    expect(aAgain?.punched && bAgain?.punched).toBe(true);
    const atB = collect(bAgain!);
    aAgain!.send(Buffer.from([9, 4, 5, 6]));
    await atB.until((f) => f.length === 1);
    expect(atB.frames[0]).toEqual(Buffer.from([9, 4, 5, 6]));
    console.log(`${idle ? "idle" : "busy"} punched link closed by the RESET ${resetMs} ms after the restart`);
  }, 20_000);
}
