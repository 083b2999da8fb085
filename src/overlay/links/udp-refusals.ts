// What the udp:// handshake and reset paths, the sockets' demultiplexing and the links' datagram
// checks refused, summed over every listener, dial and link this process made (one node per
// daemon), for /metrics and planetctl getUdp. Listeners and links keep some counts of their own too
// (a test looks at one socket); these are bumped beside them, so closing a listener or a link never
// takes anything away from a total. Only refusals count here: a stray, replayed, forged or
// malformed datagram, never one that is carried. Each is a plain number field: counting allocates
// nothing.

/** Cumulative refusals of the udp:// receive path (udp-listener.ts, udp-dial.ts, udp-link.ts, udp-frag.ts). */
export interface UdpRefusalTotals {
  /**
   * RESETs refused: `send`, withheld from a stray datagram naming a cookie of the socket's life
   * that may still be live (UdpListener.resetsWithheld); `receive`, a RESET naming a link without
   * its reset token, ignored (UdpLink.resetsRefused).
   */
  resetsRefused: { send: number; receive: number };
  /**
   * CONFIRMs a listener refused: `replayed`, its link here was made and closed
   * (UdpListener.confirmsReplayed); `stale`, its listener cookie is not one this socket made for
   * that address in this minute or the last (late, or made up); `signature`, the dialer's signature
   * does not verify (corrupted, or not made by the key it names); `not_allowed`, the key is refused
   * by admission (AllowedPublicKeys, the node's own key); `malformed`, its metadata does not parse
   * or its ephemeral key is degenerate.
   */
  confirmsRefused: {
    replayed: number;
    stale: number;
    signature: number;
    not_allowed: number;
    malformed: number;
  };
  /**
   * CHALLENGEs and ACCEPTs a dialer (udp-dial.ts, or a punch from a listener's socket) refused:
   * `unsolicited`, not naming its dial's cookie (or an ACCEPT before any CHALLENGE, a CLOSE naming
   * another cookie); `forged`, an ACCEPT naming its cookie that another listener cookie, another key
   * or a bad signature gives away; `not_allowed`, a CHALLENGE from a key the dial's `key=` pin (or a
   * punch's expected key) refuses; `malformed`, metadata that does not parse.
   */
  dialAnswersRefused: { unsolicited: number; forged: number; not_allowed: number; malformed: number };
  /**
   * Datagrams a udp:// socket could give to no one: `short`, shorter than a datagram header (a
   * hole punch's one-byte datagram is not counted); `type`, a type no udp:// datagram has (a late
   * repeat of an ACCEPT after its link is up counts here too); `size`, an INIT or CONFIRM of another
   * size than 168 bytes; `cookie`, a link datagram, CLOSE or RESET naming no link of the socket
   * (a RESET may still answer it: resetsRefused.send says when it does not).
   */
  strayDatagrams: { short: number; type: number; size: number; cookie: number };
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
  /**
   * The links' fragment reassembly (udp-frag.ts Reassembler): `fragment`, a fragment that repeated
   * one or contradicted its frame's others (refused); `evicted`, an incomplete frame pushed out by a
   * newer one (16 are held per link); `abandoned`, an incomplete frame given up after 4 repair
   * requests.
   */
  reassemblyRefused: { fragment: number; evicted: number; abandoned: number };
}

/** The process's counts; the listeners, dials and links add to them. */
export const udpRefusals: UdpRefusalTotals = {
  resetsRefused: { send: 0, receive: 0 },
  confirmsRefused: { replayed: 0, stale: 0, signature: 0, not_allowed: 0, malformed: 0 },
  dialAnswersRefused: { unsolicited: 0, forged: 0, not_allowed: 0, malformed: 0 },
  strayDatagrams: { short: 0, type: 0, size: 0, cookie: 0 },
  spentCookiesEvicted: 0,
  datagramsRefused: { forged: 0, replayed: 0 },
  reassemblyRefused: { fragment: 0, evicted: 0, abandoned: 0 },
};

/** A copy of the totals (admin, metrics). */
export function udpRefusalTotals(): UdpRefusalTotals {
  return {
    resetsRefused: { ...udpRefusals.resetsRefused },
    confirmsRefused: { ...udpRefusals.confirmsRefused },
    dialAnswersRefused: { ...udpRefusals.dialAnswersRefused },
    strayDatagrams: { ...udpRefusals.strayDatagrams },
    spentCookiesEvicted: udpRefusals.spentCookiesEvicted,
    datagramsRefused: { ...udpRefusals.datagramsRefused },
    reassemblyRefused: { ...udpRefusals.reassemblyRefused },
  };
}
