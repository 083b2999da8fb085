// ICMP errors as liveness hints. The native socket turns IP_RECVERR / IPV6_RECVERR on and reads its
// error queue when the fd reports one (src/tun/native/udp_err.c): each entry names the destination
// of a datagram that drew an ICMP error (a port unreachable from a peer whose daemon stopped, a host
// or network unreachable) and its errno. Without it a listener's link to a stopped peer waited for
// silence (udp-liveness.ts: 8 to 10 s) while every datagram it sent there drew a port unreachable.
// An ICMP error is unauthenticated (anyone on the path, or a spoofer who guesses the ports, can
// send one), so it never closes a link by itself: the link at that address probes at once and
// gives the peer a short deadline (Liveness.hint), and any authentic datagram from the peer ends
// the hint. The node:dgram fallback reads no error queue: its links wait for silence as before.
import { constants } from "node:os";
import type { UdpUnreachableHandler } from "./udp-socket-types.js";

/** onEvent's slot for a batch of hints, and the entries' layout (udp.h ERR_EVENT, ERR_STRIDE). */
export const ERR_EVENT = -4;
const ERR_STRIDE = 7;
const ERR_SLOTS = 32;

/**
 * What became of the ICMP errors the native sockets read, summed over the process (getUdp,
 * planetd_udp_icmp_hints_total): `received` from an error queue; `no_link`, naming no link's
 * address; `probed`, a link probed and shortened its deadline; `repeated`, for a link already
 * probing on one; `cancelled`, an authentic datagram came in the short deadline (the peer lives:
 * a stray or forged error, or one from before its restart); `held_off`, for a link whose last hint
 * such a datagram ended less than its silence deadline ago (udp-liveness.ts: a forger gets one short
 * deadline per ~8 s); `closed`, the short deadline passed in silence and the link closed.
 */
export const udpIcmpHints = {
  received: 0,
  no_link: 0,
  probed: 0,
  repeated: 0,
  held_off: 0,
  cancelled: 0,
  closed: 0,
};

const errnoByNumber = new Map<number, string>(Object.entries(constants.errno).map(([name, n]) => [n, name]));
/** ECONNREFUSED for a port unreachable, EHOSTUNREACH, ...: for a close reason. */
export const errnoName = (errno: number): string => errnoByNumber.get(errno) ?? `errno ${errno}`;

export interface IcmpHintAddon<H> {
  /** Registers the entries udp_err.c fills; true when the socket has IP_RECVERR on. */
  errorHints(h: H, entries: Int32Array): boolean;
  errorSourceText(h: H, entry: number): string;
}

/** One native socket's hint entries, handed to its handler without allocating while the source stays. */
export class IcmpHintReader<H> {
  /** IP_RECVERR is on (not with PLANETD_UDP_RECVERR=0, nor with an addon built before it). */
  readonly enabled: boolean;
  handler: UdpUnreachableHandler | undefined;
  private readonly entries = new Int32Array(ERR_SLOTS * ERR_STRIDE);
  private readonly to = { address: "", port: 0, key: "" };
  /** The last entry's address and scope words, for which `to.address` holds the text. */
  private readonly words = new Int32Array(5);
  private known = false;

  constructor(
    private readonly lib: Partial<IcmpHintAddon<H>>,
    private readonly handle: H,
  ) {
    this.enabled = lib.errorHints?.(handle, this.entries) ?? false;
  }

  /** udp_err.c handed `count` entries (onEvent's ERR_EVENT). */
  deliver(count: number): void {
    const e = this.entries;
    const words = this.words;
    const to = this.to;
    for (let i = 0; i < count; i++) {
      const m = i * ERR_STRIDE;
      udpIcmpHints.received++;
      let same = this.known;
      for (let w = 0; w < 5 && same; w++) same = e[m + 1 + w] === words[w];
      if (!same) {
        to.address = this.lib.errorSourceText?.(this.handle, i) ?? "";
        for (let w = 0; w < 5; w++) words[w] = e[m + 1 + w]!;
        this.known = true;
        to.port = -1;
      }
      if (to.port !== e[m]) {
        to.port = e[m]!;
        to.key = `${to.address}|${to.port}`;
      }
      if (this.handler) this.handler(to, e[m + 6]!);
      else udpIcmpHints.no_link++;
    }
  }
}
