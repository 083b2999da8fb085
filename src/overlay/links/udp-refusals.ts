// What the udp:// handshake and reset paths and the links' datagram checks refused, summed over
// every listener and link this process made (one node per daemon), for /metrics and planetctl
// getUdp. Listeners and links keep their own counts too (a test looks at one socket); these are
// bumped beside them, so closing a listener or a link never takes anything away from a total. Only
// refusals count here: a stray, replayed or forged datagram, never one that is carried.

/** Cumulative refusals of the udp:// handshake and reset paths (udp-listener.ts, udp-link.ts). */
export interface UdpRefusalTotals {
  /**
   * RESETs refused: `send`, withheld from a stray datagram naming a cookie of the socket's life
   * that may still be live (UdpListener.resetsWithheld); `receive`, a RESET naming a link without
   * its reset token, ignored (UdpLink.resetsRefused).
   */
  resetsRefused: { send: number; receive: number };
  /** CONFIRMs refused: `replayed`, its link here was made and closed (UdpListener.confirmsReplayed). */
  confirmsRefused: { replayed: number };
  /**
   * Closed links' cookies forgotten before their two minutes because 4,096 were kept: a replayed
   * CONFIRM for one gets through (UdpListener.spentCookiesEvicted).
   */
  spentCookiesEvicted: number;
  /**
   * Datagrams naming a link that it dropped: `forged`, did not open under its key (corrupted, or
   * sent by whoever read the cookie: UdpLink.forged); `replayed`, seen before or older than the
   * replay window (UdpLink.replayed).
   */
  datagramsRefused: { forged: number; replayed: number };
}

/** The process's counts; the listeners and links add to them. */
export const udpRefusals: UdpRefusalTotals = {
  resetsRefused: { send: 0, receive: 0 },
  confirmsRefused: { replayed: 0 },
  spentCookiesEvicted: 0,
  datagramsRefused: { forged: 0, replayed: 0 },
};

/** A copy of the totals (admin, metrics). */
export function udpRefusalTotals(): UdpRefusalTotals {
  return {
    resetsRefused: { ...udpRefusals.resetsRefused },
    confirmsRefused: { ...udpRefusals.confirmsRefused },
    spentCookiesEvicted: udpRefusals.spentCookiesEvicted,
    datagramsRefused: { ...udpRefusals.datagramsRefused },
  };
}
