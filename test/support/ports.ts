// Ports for listeners that a test stops and binds again on the same port (a restart): udp://, and
// tcp:// (whose outgoing connections and bind(0) draw from the same ephemeral range).
//
// A port from bind(0) lies in the kernel's ephemeral range, and between the stop and the restart
// (1.5-24 ms measured here) any process's bind(0) may be handed it: Linux picks a random free port
// of the range's 28,232, so each bind in that moment takes it with a chance of 1 in ~28,000 and the
// restart fails with EADDRINUSE (the other vitest worker's sockets; a udp:// dialer binds a fresh one
// for every redial). Below the ephemeral range only explicit binds land, so a test that restarts a
// listener takes a port there.
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import net from "node:net";

/** How many ports below the ephemeral range to choose from. */
const SPAN = 8192;

/** The kernel's ephemeral port range, first and last (Linux's default when it cannot be read). */
export function ephemeralRange(): [number, number] {
  try {
    const [low, high] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8")
      .trim()
      .split(/\s+/)
      .map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!];
  } catch {}
  return [32768, 60999];
}

function ephemeralLow(): number {
  return ephemeralRange()[0];
}

function bindsFree(port: number, host: string, proto: "udp" | "tcp"): Promise<boolean> {
  if (proto === "tcp") {
    const server = net.createServer();
    return new Promise((resolve) => {
      server.once("error", () => resolve(false));
      server.listen(port, host, () => server.close(() => resolve(true)));
    });
  }
  const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
  return new Promise((resolve) => {
    socket.once("error", () => {
      socket.close();
      resolve(false);
    });
    socket.bind(port, host, () => socket.close(() => resolve(true)));
  });
}

/**
 * A UDP (or TCP) port on `host` (a literal address, no brackets) below the ephemeral range and free
 * right now, for a listener the test restarts. 0 (any port) when the range starts too low to leave
 * room below.
 */
export async function restartablePort(host = "127.0.0.1", proto: "udp" | "tcp" = "udp"): Promise<number> {
  const top = ephemeralLow();
  const bottom = Math.max(1024, top - SPAN);
  if (top - bottom < 256) return 0;
  // A random start, so that two workers asking at once try different ports.
  const start = Math.floor(Math.random() * (top - bottom));
  for (let i = 0; i < 64; i++) {
    const port = bottom + ((start + i) % (top - bottom));
    if (await bindsFree(port, host, proto)) return port;
  }
  throw new Error(`no free ${proto} port on ${host} in ${bottom}..${top - 1} after 64 tries`);
}
