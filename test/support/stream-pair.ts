// Two stream links joined over loopback, as the tcp:// and tls:// endpoints make them (TLS 1.3 with a
// self-signed certificate), and a reader that checks the frames one link receives.
import net from "node:net";
import tls from "node:tls";
import { selfSignedCertificate } from "../../src/crypto/cert.js";
import { Identity } from "../../src/crypto/identity.js";
import { type StreamLink, handshake } from "../../src/overlay/links/stream.js";

/** Linked [outbound, inbound] links; their close and the listener's go to `cleanups`. */
export async function linkedStreamPair(
  scheme: "tcp" | "tls",
  cleanups: Array<() => void>,
): Promise<[StreamLink, StreamLink]> {
  const [a, b] = [Identity.generate(), Identity.generate()];
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  cleanups.push(() => server.close());
  const port = (server.address() as net.AddressInfo).port;
  const accepted = new Promise<net.Socket>((r) => server.once("connection", r));
  let client: net.Socket = net.connect(port, "127.0.0.1");
  let served = await accepted;
  if (scheme === "tls") {
    const { cert, key } = selfSignedCertificate(b);
    const secureContext = tls.createSecureContext({ cert, key, minVersion: "TLSv1.3" });
    const inbound = new tls.TLSSocket(served, { isServer: true, secureContext, requestCert: false });
    const outbound = tls.connect({ socket: client, rejectUnauthorized: false, minVersion: "TLSv1.3" });
    await Promise.all([
      new Promise((r) => inbound.once("secure", r)),
      new Promise((r) => outbound.once("secureConnect", r)),
    ]);
    client = outbound;
    served = inbound;
  }
  const opts = { priority: 0, remote: `${scheme}://127.0.0.1` };
  const links = await Promise.all([
    handshake(client, { ...opts, localKey: a.publicKey, outbound: true }),
    handshake(served, { ...opts, localKey: b.publicKey, outbound: false }),
  ]);
  cleanups.push(() => {
    for (const link of links) link.close("done");
  });
  return links;
}

/** Reads `count` frames on `link` (within 20 s) and counts those that fail `intact(frame, index)`. */
export function framesNotAsExpected(
  link: StreamLink,
  count: number,
  intact: (frame: Buffer, index: number) => boolean,
): Promise<number> {
  let received = 0;
  let bad = 0;
  return new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`only ${received} of ${count} frames`)), 20_000);
    link.setHandler({
      onFrame(f) {
        if (!intact(f, received)) bad++;
        if (++received === count) {
          clearTimeout(timer);
          resolve(bad);
        }
      },
      onClose() {},
    });
  });
}

/**
 * Sends 60 kB protocol frames (type 1, never dropped for congestion), 20 a turn, until `link` closes
 * or `maxFrames` went (within 20 s): the close reason ("" if none) and the frames sent.
 */
export async function sendUntilClosed(
  link: StreamLink,
  maxFrames: number,
): Promise<{ closedWith: string; sent: number }> {
  let closedWith = "";
  link.setHandler({
    onFrame() {},
    onClose(reason) {
      closedWith = reason;
    },
  });
  const tree = Buffer.alloc(60_000, 1);
  const deadline = Date.now() + 20_000;
  let sent = 0;
  while (closedWith === "" && Date.now() < deadline && sent < maxFrames) {
    for (let i = 0; i < 20; i++) link.send(tree);
    sent += 20;
    await new Promise((r) => setImmediate(r));
  }
  return { closedWith, sent };
}

/** Traffic frame i of a run (type 9), `size` bytes: i in bytes 1-2 where it fits, the rest from i. */
export function numberedFrame(i: number, size: number): Buffer {
  const f = Buffer.alloc(size, (i * 31) & 0xff);
  f[0] = 9;
  if (size >= 3) f.writeUInt16BE(i, 1);
  return f;
}
