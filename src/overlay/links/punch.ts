// NAT traversal's side of the link manager: the socket each address family punches from, and the
// punch itself (src/daemon/nat-driver.ts decides when; src/overlay/nat.ts holds the decisions).
// The dialing side (the smaller key) resends INITs from the punch socket to every candidate; the
// other side sends datagrams that open its NAT and waits for the inbound link.
import { createHash } from "node:crypto";
import net from "node:net";
import type { UdpLink, UdpListener } from "./udp.js";

/** Hole punching: datagrams every 200 ms; the first 500 ms only open our own NAT (low hop limit). */
const PUNCH_INTERVAL_MS = 200;
const PUNCH_OPEN_MS = 500;

/**
 * The port a node without a udp:// Listen binds its punch socket to first (49152-65535, from its
 * key): a restarted node is then back on the same port, which its NAT's mapping (while the peer's
 * datagrams keep it alive) still leads to, so the peer's next datagram draws its RESET at once
 * instead of dying of silence there. Taken (another socket, another daemon): any port.
 */
export function punchPortFor(key: Buffer): number {
  return (
    49152 + (createHash("sha256").update("planetd punch port").update(key).digest().readUInt16BE(0) % 16384)
  );
}

/** What the punches need from the link manager. */
export interface PuncherHost {
  /** The first udp:// Listen of `family`, if any: its socket is the one to punch from. */
  configuredUdp(family: 4 | 6): UdpListener | undefined;
  /** Binds a socket for `family` on any address and `port` (0: any), admitting punched keys only. */
  bindPunchSocket(family: 4 | 6, port: number): Promise<{ udp?: UdpListener; close(): Promise<void> }>;
  /** The port to try first for a socket bound on demand (punchPortFor the node key), 0 for none. */
  readonly preferredPort: number;
  /** Why a link to `key` would be refused (ourselves, AllowedPublicKeys), or undefined. */
  refusal(key: Buffer): string | undefined;
  /** Hand a link that passed the handshake to the node. */
  admit(link: UdpLink): void;
  stopped(): boolean;
}

export class Puncher {
  /** Keys a punch is under way with (their inbound links are punched links). */
  private readonly waiters = new Map<string, (link: UdpLink) => void>();
  /**
   * The punched link to each key (open ones only): one link per peer key and priority holds for
   * punched links too, whichever side dialled (the listener replaces only inbound links from the
   * same host). A peer that restarted on a punch socket bound on demand is back on another port,
   * where no RESET of its can reach us: its new punched link is the only sign the old one is dead.
   */
  private readonly punchedLinks = new Map<string, UdpLink>();
  /** Punch sockets bound for NAT traversal when no udp:// Listen of the family exists. */
  private readonly sockets = new Map<number, Promise<{ udp?: UdpListener; close(): Promise<void> }>>();
  private readonly host: PuncherHost;

  constructor(host: PuncherHost) {
    this.host = host;
  }

  /** True while a punch with `keyHex` is under way. */
  punching(keyHex: string): boolean {
    return this.waiters.has(keyHex);
  }

  /** An inbound udp:// link: when a punch waits for its key it is a punched link, and the punch ends. */
  inbound(link: UdpLink): void {
    const waiter = this.waiters.get(link.remoteKey.toString("hex"));
    if (waiter) this.punched(link);
    this.host.admit(link);
    waiter?.(link);
  }

  /**
   * The socket NAT traversal punches from for `family`: the first udp:// Listen of that family, or
   * one bound on demand (any address, the preferred port or else an ephemeral one) that admits only
   * keys being punched with.
   */
  async socket(family: 4 | 6): Promise<UdpListener | undefined> {
    const configured = this.host.configuredUdp(family);
    if (configured) return configured;
    if (this.host.stopped()) return undefined;
    let bound = this.sockets.get(family);
    if (!bound) {
      const preferred = this.host.preferredPort;
      bound =
        preferred > 0
          ? this.host.bindPunchSocket(family, preferred).catch(() => this.host.bindPunchSocket(family, 0))
          : this.host.bindPunchSocket(family, 0);
      this.sockets.set(family, bound);
      bound.catch(() => this.sockets.delete(family));
    }
    return (await bound).udp;
  }

  /** Marks `link` punched; an older punched link to the same key is replaced by it. */
  private punched(link: UdpLink): void {
    link.punched = true;
    const hex = link.remoteKey.toString("hex");
    this.punchedLinks.get(hex)?.close("replaced by a newer link from the same peer");
    this.punchedLinks.set(hex, link);
    link.onClosed(() => {
      if (this.punchedLinks.get(hex) === link) this.punchedLinks.delete(hex);
    });
  }

  /** Closes the sockets bound on demand. */
  async close(): Promise<void> {
    const bound = [...this.sockets.values()];
    this.sockets.clear();
    await Promise.all(
      bound.map((p) =>
        p.then(
          (l) => l.close(),
          () => {},
        ),
      ),
    );
  }

  /**
   * Punches a udp:// link to `key` at `candidates`. Resolves with the link or undefined.
   * `behindNat` false (our reflexive address is one of our own): nothing to open here, and sending
   * before the peer opened its NAT would do harm. A Linux NAT that receives our datagram for its own
   * address first (the low hop limit does not stop a datagram addressed to the NAT itself) keeps a
   * conntrack entry that moves the peer's mapping to another port; so this side stays silent for
   * the opening phase.
   */
  async punch(
    key: Buffer,
    candidates: Array<{ ip: string; port: number }>,
    dial: boolean,
    timeoutMs: number,
    behindNat = true,
  ): Promise<UdpLink | undefined> {
    const hex = key.toString("hex");
    if (this.host.stopped() || this.waiters.has(hex) || this.host.refusal(key) !== undefined) {
      return undefined;
    }
    const targets: Array<{ ip: string; port: number; socket: UdpListener }> = [];
    for (const c of candidates) {
      const socket = await this.socket(net.isIPv4(c.ip) ? 4 : 6).catch(() => undefined);
      if (socket) targets.push({ ...c, socket });
    }
    if (targets.length === 0 || this.host.stopped()) return undefined;
    let settle: (link: UdpLink | undefined) => void = () => {};
    const result = new Promise<UdpLink | undefined>((resolve) => {
      settle = resolve;
    });
    this.waiters.set(hex, (link) => settle(link));
    // Both sides first open their own NAT with datagrams that die one hop later (UdpListener.lowTtl),
    // so neither NAT sees the other's datagrams before it has its own mapping; then the dialer
    // sends INITs at the normal hop limit and the other side keeps its mapping open.
    const sockets = [...new Set(targets.map((t) => t.socket))];
    let lowTtl = behindNat;
    if (lowTtl) for (const socket of sockets) socket.lowTtl(true);
    const restoreTtl = (): void => {
      if (!lowTtl) return;
      lowTtl = false;
      for (const socket of sockets) socket.lowTtl(false);
    };
    const open = (): void => {
      for (const t of targets) t.socket.punchOpen(t.ip, t.port);
    };
    let opener: NodeJS.Timeout | undefined;
    if (behindNat) {
      open();
      opener = setInterval(open, PUNCH_INTERVAL_MS);
    }
    const dials: Array<ReturnType<UdpListener["punchDial"]>> = [];
    let winner: UdpLink | undefined;
    let done = false;
    const startDials = setTimeout(() => {
      restoreTtl();
      if (done) return;
      if (!dial) {
        // The side that only opens: a public one starts now, at the normal hop limit.
        opener ??= setInterval(open, PUNCH_INTERVAL_MS);
        return;
      }
      clearInterval(opener);
      for (const t of targets) {
        const d = t.socket.punchDial({
          address: t.ip,
          port: t.port,
          expectKey: key,
          intervalMs: PUNCH_INTERVAL_MS,
          timeoutMs: timeoutMs - PUNCH_OPEN_MS,
        });
        dials.push(d);
        d.link.then(
          (link) => {
            if (winner || done || this.host.stopped()) link.close("another candidate linked first");
            else {
              winner = link;
              this.punched(link);
              this.host.admit(link);
              settle(link);
            }
          },
          () => {},
        );
      }
    }, PUNCH_OPEN_MS);
    const deadline = setTimeout(() => settle(undefined), timeoutMs + PUNCH_INTERVAL_MS);
    const link = await result;
    done = true;
    clearTimeout(deadline);
    clearTimeout(startDials);
    clearInterval(opener);
    restoreTtl();
    this.waiters.delete(hex);
    for (const d of dials) d.cancel(link ? "linked" : "punch timed out");
    return link;
  }
}
