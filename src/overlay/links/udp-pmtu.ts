// Datagram size search for one udp:// link, in the spirit of RFC 8899 (DPLPMTUD): start from a size
// every IPv6 path carries (1,280-byte packets: 1,232 bytes of UDP payload; used for IPv4 as well),
// probe larger padded datagrams the peer acknowledges, and use a size only once a probe of it arrived.
//
// Node cannot set IP_MTU_DISCOVER / IPV6_DONTFRAG, and Linux fragments an oversized datagram locally
// (IPv6 always, IPv4 as soon as it knows a smaller path MTU), so a probe could arrive as fragments
// and "validate" a size that fragments. The search therefore never probes above the ceiling of the
// interface the kernel routes the peer through (its MTU minus the IP and UDP headers, learnt from a
// connected socket's source address and /sys/class/net/<if>/mtu). A probe lost three times shrinks
// the search range; a confirmation probe of the size in use every CONFIRM_MS finds a path whose MTU
// dropped (three losses: back to the base size, then search again).
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import os from "node:os";

export const BASE_DATAGRAM = 1232;
/** Largest UDP payload over IPv4 (65535 − 8 UDP − 20 IP); the configured maximum's upper bound. */
export const MAX_DATAGRAM = 65507;
const PROBE_TRIES = 3;
/** Stop searching when the range is this narrow. */
const GRANULARITY = 16;
const CONFIRM_MS = 30_000;
const FALLBACK_MTU = 1500;

export interface PmtuHost {
  sendProbe(size: number, nonce: number): void;
  /** The prober settled on a new datagram size. */
  setBudget(size: number): void;
  /** Smoothed RTT in ms (0 = no sample yet). */
  rtt(): number;
}

export class PmtuSearch {
  budget = BASE_DATAGRAM;
  probesSent = 0;
  private readonly host: PmtuHost;
  private ceiling = BASE_DATAGRAM;
  private lo = BASE_DATAGRAM;
  private hi = BASE_DATAGRAM;
  private candidate = 0;
  private tries = 0;
  private nonce = 0;
  private confirming = false;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(host: PmtuHost) {
    this.host = host;
  }

  /** True while probing for a larger size (not while confirming the one in use). */
  get searching(): boolean {
    return this.candidate !== 0 && !this.confirming;
  }

  /** Begins (or restarts) the search below `ceiling`. */
  start(ceiling: number): void {
    if (this.stopped) return;
    this.ceiling = Math.max(BASE_DATAGRAM, ceiling);
    if (this.budget > this.ceiling) this.apply(this.ceiling);
    this.lo = this.budget;
    this.hi = this.ceiling;
    this.confirming = false;
    // Optimistic first: most paths carry their first hop's MTU.
    this.next(this.hi);
  }

  /** The peer acknowledged a probe. */
  onAck(nonce: number, size: number): void {
    if (this.stopped || nonce !== this.nonce || this.candidate === 0 || size !== this.candidate) return;
    clearTimeout(this.timer);
    const size0 = this.candidate;
    this.candidate = 0;
    if (this.confirming) {
      this.idle();
      return;
    }
    this.lo = size0;
    if (size0 > this.budget) this.apply(size0);
    this.step();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private step(): void {
    if (this.hi - this.lo < GRANULARITY) {
      this.idle();
      return;
    }
    this.next(this.lo + Math.ceil((this.hi - this.lo) / 2));
  }

  private next(size: number): void {
    if (size <= this.budget) {
      this.idle();
      return;
    }
    this.candidate = size;
    this.tries = 0;
    this.probe();
  }

  private probe(): void {
    this.tries++;
    this.nonce = (this.nonce + 1) >>> 0;
    this.probesSent++;
    this.host.sendProbe(this.candidate, this.nonce);
    const rtt = this.host.rtt();
    const wait = rtt > 0 ? Math.min(2000, Math.max(200, 3 * rtt)) : 500;
    this.timer = setTimeout(() => this.onTimeout(), wait);
  }

  private onTimeout(): void {
    if (this.stopped || this.candidate === 0) return;
    if (this.tries < PROBE_TRIES) {
      this.probe();
      return;
    }
    const failed = this.candidate;
    this.candidate = 0;
    if (this.confirming) {
      // The size in use no longer gets through: fall back and search below it.
      this.confirming = false;
      this.apply(BASE_DATAGRAM);
      this.lo = BASE_DATAGRAM;
      this.hi = failed - 1;
    } else {
      this.hi = failed - 1;
    }
    this.step();
  }

  /** Search done: confirm the size in use now and then. */
  private idle(): void {
    this.timer = setTimeout(() => {
      if (this.stopped || this.budget <= BASE_DATAGRAM) return;
      this.confirming = true;
      this.candidate = this.budget;
      this.tries = 0;
      this.probe();
    }, CONFIRM_MS);
    this.timer.unref();
  }

  private apply(size: number): void {
    this.budget = size;
    this.host.setBudget(size);
  }
}

/**
 * The largest UDP payload that leaves through the interface the kernel uses for ip:port without
 * local fragmentation, capped by `max`. Asks the kernel for the route with a connected socket (no
 * packet is sent); falls back to an Ethernet-sized MTU where /sys is unavailable.
 */
export async function routeCeiling(ip: string, port: number, max: number): Promise<number> {
  const family = isIP(ip.split("%")[0]!);
  const mapped = ip.startsWith("::ffff:") && isIP(ip.slice(7)) === 4;
  const overhead = (family === 4 || mapped ? 20 : 40) + 8;
  let mtu = FALLBACK_MTU;
  const socket = dgram.createSocket(family === 4 ? "udp4" : "udp6");
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.connect(port, ip, () => resolve());
    });
    const local = socket.address().address.split("%")[0]!;
    const plain = local.startsWith("::ffff:") && isIP(local.slice(7)) === 4 ? local.slice(7) : local;
    mtu = interfaceMtu(plain) ?? FALLBACK_MTU;
  } catch {
    // No route: the link will not carry much either; keep the fallback.
  } finally {
    try {
      socket.close();
    } catch {}
  }
  return Math.max(BASE_DATAGRAM, Math.min(max, MAX_DATAGRAM, mtu - overhead));
}

function interfaceMtu(localAddress: string): number | undefined {
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    if (!addrs?.some((a) => a.address.split("%")[0] === localAddress)) continue;
    try {
      const mtu = Number.parseInt(readFileSync(`/sys/class/net/${name}/mtu`, "utf8"), 10);
      return Number.isFinite(mtu) && mtu > 0 ? mtu : undefined;
    } catch {
      return undefined;
    }
  }
  return undefined;
}
