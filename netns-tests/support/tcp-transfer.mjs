// One TCP transfer through the overlay, for the udp-loss test and bench/lossy-tcp.sh:
// `server <addr> <port>` prints the received byte count and sha256 when the client closes;
// `client <addr> <port> <MiB> [KiB per 10 ms]` sends random data (retrying the connect while routes
// settle; paced when the last argument is given) and prints its byte count, sha256 and duration, as
// one JSON line each.
import { createHash, randomBytes } from "node:crypto";
import net from "node:net";
const [role, addr, port, mib, paceKiB] = process.argv.slice(2);
const hash = createHash("sha256");
if (role === "server") {
  let bytes = 0;
  const server = net.createServer((s) => {
    s.on("data", (d) => {
      bytes += d.length;
      hash.update(d);
    });
    s.on("end", () => {
      console.log(JSON.stringify({ bytes, sha: hash.digest("hex") }));
      s.end();
      server.close();
    });
  });
  server.listen(Number(port), addr);
} else {
  const total = Number(mib) * 1048576;
  const connect = () =>
    new Promise((resolve, reject) => {
      const s = net.connect({ host: addr, port: Number(port) });
      // A SYN lost while the overlay sets up its session would wait for the kernel's 1 s resend.
      const slow = setTimeout(() => s.destroy(new Error("connect timed out")), 300);
      s.once("connect", () => {
        clearTimeout(slow);
        resolve(s);
      });
      s.once("error", (e) => {
        clearTimeout(slow);
        reject(e);
      });
    });
  let sock;
  for (let i = 0; ; i++) {
    try {
      sock = await connect();
      break;
    } catch (e) {
      if (i > 40) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const t0 = Date.now();
  let sent = 0;
  const paced = paceKiB === undefined ? 0 : Number(paceKiB) * 1024;
  const pump = () => {
    while (sent < total) {
      const chunk = randomBytes(Math.min(paced || 65536, total - sent));
      hash.update(chunk);
      sent += chunk.length;
      if (!sock.write(chunk)) {
        sock.once("drain", paced ? () => setTimeout(pump, 10) : pump);
        return;
      }
      if (paced && sent < total) {
        setTimeout(pump, 10);
        return;
      }
    }
    sock.end();
  };
  sock.on("close", () =>
    console.log(JSON.stringify({ bytes: sent, sha: hash.digest("hex"), ms: Date.now() - t0 })),
  );
  pump();
}
