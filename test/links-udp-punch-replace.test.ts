// A node without a udp:// Listen punches from a socket bound on demand (issue 9 gap b). It binds
// the port derived from its key first (punch.ts punchPortFor), so after a restart it is back on
// that port and the peer's next datagram draws its RESET, as with a fixed Listen. When that port is
// taken it comes back on another one, where no RESET can come from: then one link per peer key and
// priority holds for punched links too, and the peer's old punched link is replaced the moment the
// restarted node's new punched link arrives, whichever side dials, instead of lingering until the
// 8 s of silence liveness waits.
import dgram from "node:dgram";
import { afterEach, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { punchPortFor } from "../src/overlay/links/punch.js";
import type { UdpLink } from "../src/overlay/links/udp.js";
import { type LinkNode, collect, startLinkNode, stopLinkNodes } from "./support/links.js";
import { ephemeralRange } from "./support/ports.js";

const squatters: dgram.Socket[] = [];
afterEach(async () => {
  for (const s of squatters.splice(0)) s.close();
  await stopLinkNodes();
});

/**
 * Takes `port` on 0.0.0.0 so that a restarted node cannot bind it again. Taken already is as good:
 * between the node's stop and this bind, another process's bind(0) may have been handed the port
 * (support/ports.ts), which then fails this one with EADDRINUSE.
 */
async function squat(port: number): Promise<void> {
  const s = dgram.createSocket("udp4");
  await new Promise<void>((resolve, reject) => {
    s.once("error", (e: NodeJS.ErrnoException) => {
      s.close();
      if (e.code === "EADDRINUSE") resolve();
      else reject(e);
    });
    s.bind(port, "0.0.0.0", () => {
      squatters.push(s);
      resolve();
    });
  });
}

const portOf = (uri: string) => Number(new URL(uri).port);

/**
 * A key whose punch port is free here (other processes on this machine hold some ports) and lies
 * outside the kernel's ephemeral range where any of 49152-65535 does (here 61000-65535): the test
 * stops the node and binds that port again, and in between any bind(0) or connect on the machine
 * may be handed an ephemeral port (support/ports.ts).
 */
async function keyWithFreePunchPort(): Promise<Identity> {
  const [low, high] = ephemeralRange();
  const someOutside = low > 49152 || high < 65535;
  for (let tries = 0; tries < 200; tries++) {
    const id = Identity.generate();
    const port = punchPortFor(id.publicKey);
    if (someOutside && port >= low && port <= high) continue;
    const probe = dgram.createSocket("udp4");
    const free = await new Promise<boolean>((resolve) => {
      probe.once("error", () => resolve(false));
      probe.bind(port, "0.0.0.0", () => resolve(true));
    });
    if (!free) {
      probe.close();
      continue;
    }
    await new Promise<void>((resolve) => probe.close(() => resolve()));
    return id;
  }
  throw new Error("no key with a free punch port in 200 tries");
}

it("a node without a Listen punches from the port its key gives, and is back on it after a restart: the peer's link closes on its RESET", async () => {
  const idGone = await keyWithFreePunchPort();
  let crashed = false;
  const gone1 = await startLinkNode({ udp: { hooks: { dropDatagram: () => crashed } } }, idGone);
  const survivor = await startLinkNode({ listen: ["udp://127.0.0.1:0"] });
  const portSurvivor = portOf(survivor.mgr.listenAddresses()[0]!);
  const goneSocket = await gone1.mgr.punchSocket(4);
  expect(goneSocket!.port).toBe(punchPortFor(idGone.publicKey));
  // The survivor (smaller key or not: the test picks) dials; the node without a Listen answers.
  const [atSurvivor] = await Promise.all([
    survivor.mgr.punch(idGone.publicKey, [{ ip: "127.0.0.1", port: goneSocket!.port }], true, 5000, false),
    gone1.mgr.punch(survivor.id.publicKey, [{ ip: "127.0.0.1", port: portSurvivor }], false, 5000, false),
  ]);
  const closed = collect(atSurvivor!).closed;
  crashed = true;
  await gone1.mgr.stop();
  const gone2 = await startLinkNode({}, idGone);
  expect((await gone2.mgr.punchSocket(4))!.port).toBe(goneSocket!.port);
  const t0 = Date.now();
  atSurvivor!.send(Buffer.from([9, 1, 2, 3]));
  expect(await closed).toBe("reset by peer (it no longer knows this link)");
  const resetMs = Date.now() - t0;
  expect(resetMs).toBeLessThan(1000);
  console.log(
    `restarted on its key's punch port: the peer's punched link closed by the RESET ${resetMs} ms after the restart`,
  );
});

for (const restarted of ["answering", "dialing"] as const) {
  it(`a restarted ${restarted} side without a udp:// Listen whose punch port is taken: its new punched link replaces the old one at once`, async () => {
    const idGone = Identity.generate();
    let crashed = false;
    // No Listen: the punch socket is bound on demand. Its datagrams vanish once it "crashes" (no
    // close reaches the peer).
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
    await squat(first.port); // another socket took the port meanwhile: the node binds any port
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
