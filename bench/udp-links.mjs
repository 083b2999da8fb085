// Frames per second of 1,400-byte traffic frames (type 9) over loopback udp:// vs tcp:// links, both
// LinkManagers in this one process (sender and receiver share a core). Run:
//   npx vite-node bench/udp-links.mjs [seconds] [batch]
// The sender offers `batch` frames per event-loop turn while the link is not congested; the figure is
// frames delivered to the receiving handler per second (UDP may lose what the kernel queue drops).
import { randomBytes } from "node:crypto";
import pino from "pino";
import { Identity } from "../src/crypto/identity.js";
import { LinkManager } from "../src/overlay/links/manager.js";

const SECONDS = Number(process.argv[2] ?? 3);
const BATCH = Number(process.argv[3] ?? 32);
const FRAME = randomBytes(1400);
FRAME[0] = 9;

async function manager(cfg) {
  let resolveLink;
  const linkP = new Promise((r) => {
    resolveLink = r;
  });
  const mgr = new LinkManager(
    {
      identity: Identity.generate(),
      listen: [],
      peers: [],
      interfacePeers: {},
      allowedPublicKeys: [],
      multicast: [],
      logger: pino({ level: "silent" }),
      ...cfg,
    },
    { onLink: (l) => resolveLink(l) },
  );
  await mgr.start();
  return { mgr, link: linkP };
}

async function run(scheme, extra = {}, fromListener = false) {
  const a = await manager({ listen: [`${scheme}://127.0.0.1:0`], ...extra });
  const b = await manager({ peers: [a.mgr.listenAddresses()[0]], ...extra });
  const [rx, tx] = fromListener ? [await b.link, await a.link] : [await a.link, await b.link];
  let received = 0;
  rx.setHandler({ onFrame: () => received++, onClose() {} });
  tx.setHandler({ onFrame() {}, onClose() {} });
  let sent = 0;
  let running = true;
  const pump = () => {
    if (!running) return;
    if (!tx.congested) {
      for (let i = 0; i < BATCH; i++) tx.send(FRAME);
      sent += BATCH;
    }
    setImmediate(pump);
  };
  // Warm up for 300 ms, then count.
  pump();
  await new Promise((r) => setTimeout(r, 300));
  const [r0, s0, t0] = [received, sent, process.hrtime.bigint()];
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  const [r1, s1] = [received, sent];
  running = false;
  await b.mgr.stop();
  await a.mgr.stop();
  const fps = (r1 - r0) / secs;
  const offered = (s1 - s0) / secs;
  const label = `${scheme}${extra.udp ? ` datagram ${extra.udp.datagramBytes} B` : ""}${fromListener ? " (listener sends)" : ""}`;
  console.log(
    `${label.padEnd(26)} ${Math.round(fps).toString().padStart(9)} frames/s delivered` +
      ` (${((fps * 1400 * 8) / 1e9).toFixed(2)} Gbit/s), ${Math.round(offered)} offered, ` +
      `${(100 * (1 - fps / offered)).toFixed(1)} % lost`,
  );
  return fps;
}

const tcp = await run("tcp");
const udp = await run("udp");
const udpBig = await run("udp", { udp: { datagramBytes: 16384 } });
await run("tcp", {}, true);
await run("udp", {}, true);
console.log(`udp/tcp ratio: ${(udp / tcp).toFixed(2)} (coalescing to 16 KiB: ${(udpBig / tcp).toFixed(2)})`);
