// Socket helpers of the link manager: bind errors an operator can act on, bounded waits, stale unix
// socket files, and the outer TCP's congestion control.
import { once } from "node:events";
import { existsSync, unlinkSync } from "node:fs";
import net, { type Socket } from "node:net";
import { requestTcpCongestion } from "../../tun/native.js";
import { systemErrorText } from "../../util/system-error.js";

/** `Listen "tcp://192.0.2.1:1": cannot bind: address not available (EADDRNOTAVAIL)`; "listen" for multicast's. */
export function bindError(uri: string, iface: string | undefined, e: unknown): Error {
  const what = iface === undefined ? "Listen" : "listen";
  return new Error(`${what} ${JSON.stringify(uri)}: cannot bind: ${systemErrorText(e)}`);
}

export async function withTimeout<T>(p: Promise<T>, ms: number, socket: Socket, message: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const closed = once(socket, "close").then(() => {
    throw new Error("connection closed");
  });
  try {
    return await Promise.race([
      p,
      closed,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(message)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
    closed.catch(() => {});
  }
}

/** A socket file left by a crashed daemon would make listen fail; one that still answers stays. */
export async function clearStaleSocket(path: string): Promise<void> {
  if (!existsSync(path)) return;
  const probe = net.connect({ path });
  const live = await new Promise<boolean>((resolve) => {
    probe.once("connect", () => resolve(true));
    probe.once("error", () => resolve(false));
  });
  probe.destroy();
  if (!live) {
    try {
      unlinkSync(path);
    } catch {}
  }
}

/**
 * Spec 4.1: Yggdrasil asks for bbr on every link socket. Under random loss a loss-based default
 * (Debian's cubic, reno) holds the outer TCP, and all the traffic tunnelled through it, to a small
 * fraction of what bbr keeps (bench/lossy-tcp.sh). Where bbr is missing the system default stays.
 */
export function requestCongestion(socket: Socket, name = "bbr"): boolean {
  const fd = (socket as unknown as { _handle?: { fd?: unknown } })._handle?.fd;
  return typeof fd === "number" && fd >= 0 && requestTcpCongestion(fd, name);
}
