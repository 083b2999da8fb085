// What the udp:// listener (udp-listener.ts) and dialer (udp-dial.ts) share: the options both take
// and the link settings every UdpLink they create derives from them.
import type { LinkTimeouts } from "./stream.js";
import type { Signer } from "./udp-handshake.js";
import { MAX_DATAGRAM, type UdpHooks, type UdpLinkOptions } from "./udp-link.js";
import type { RekeyOptions } from "./udp-rekey.js";

const DEFAULT_CONGESTION_BYTES = 1024 * 1024;

export interface UdpCommonOptions {
  localKey: Buffer;
  /** Signs with the node's ed25519 identity (whose public key is localKey). */
  sign: Signer;
  priority: number;
  timeouts: LinkTimeouts;
  datagramBytes?: number;
  congestionBytes?: number;
  hooks?: UdpHooks;
  /** When link keys are renewed (udp-rekey.ts; tests shorten it). */
  rekey?: Partial<RekeyOptions>;
}

/** The settings of a UdpLink that come from its listener's or dialer's options. */
export function linkSettings(
  o: UdpCommonOptions,
): Pick<UdpLinkOptions, "priority" | "timeouts" | "datagramBytes" | "congestionBytes" | "hooks" | "rekey"> {
  return {
    priority: o.priority,
    timeouts: o.timeouts,
    datagramBytes: o.datagramBytes ?? MAX_DATAGRAM,
    congestionBytes: o.congestionBytes ?? DEFAULT_CONGESTION_BYTES,
    hooks: o.hooks,
    rekey: o.rekey,
  };
}
