// UDP links: planetd's own transport (an extension; Yggdrasil 0.4.7 has none). They carry exactly the
// ironwood frames of a TCP link, so the router cannot tell the two apart.
//
// URIs: udp://host:port in Listen and Peers, with key= and priority= as on TCP. A listener is one
// socket (udp4/udp6 by address family) serving many peers, demultiplexed by remote ip:port; a dialer
// uses its own connected socket. Every datagram starts with a type byte:
//
//   handshake (udp-handshake.ts has the layouts; udp-seal.ts the cryptography):
//     1 INIT       dialer → listener: its cookie, metadata and a fresh X25519 key; resent every 1 s
//     2 CHALLENGE  listener → dialer, echoes the dialer cookie; the listener cookie is the
//                  socket's life tag (2) ‖ HMAC(secret, minute ‖ source ip:port ‖ dialer cookie ‖
//                  dialer key)[0:6], so the listener keeps no state and signs nothing yet; a CONFIRM
//                  is taken in that minute and the next, and never again once its link closed
//     3 CONFIRM    dialer → listener, both cookies, the dialer's priority for this link, the
//                  commitment to its reset token (a punch's dialer; RESET below) and an ed25519
//                  signature over the transcript; resent every 1 s until ACCEPT
//     4 ACCEPT     listener → dialer: its fresh X25519 key, the link's reset token (hidden under a
//                  pad from the key agreement) and its signature; the link exists (sent again on a
//                  repeated CONFIRM)
//   A blind spoofer never sees the CHALLENGE, so it cannot open a link for someone else's address;
//   replies are never larger than requests; an unauthenticated datagram costs at most one HMAC.
//   Both identities are proven by signature, so pins, the self-key check and AllowedPublicKeys
//   (the manager's, same code as TCP; asked on CONFIRM by the listener, on CHALLENGE and again on
//   ACCEPT by the dialer) mean what they mean on tls://. The handshake deadline covers the exchange.
//   Every link datagram below is sealed (udp-seal.ts: ChaCha20-Poly1305, counter nonce, replay
//   window); one that does not open is dropped and counted, so knowing the cookie is not enough to
//   inject or to close a link. The top bit of the counter is the key phase: the keys are renewed
//   every 2 minutes (each end jitters) or after 2^30 datagrams, whichever first, by REKEY/REKEY
//   ACK below (udp-rekey.ts); the old receive key stays for 5 s after the peer switched.
//   Roaming: a listener's link that receives an authentic datagram from a new address (NAT
//   rebinding) moves there; getPeers keeps showing the address it was opened from.
//   5 CLOSE      type ‖ receiver's cookie ‖ sealed nothing: the sender closed the link (unsealed
//                only as a listener's refusal of a CONFIRM, which ends nothing but that handshake).
//   6 RESET      type ‖ the cookie a link datagram carried ‖ reset token (16): a listener
//                socket's stateless answer to one from an address it has no link with (its node
//                restarted), so the peer drops the link now instead of after seconds of silence.
//                Never larger than the datagram that caused it (none for one under 25 bytes). The
//                token is RFC 9000 §10.3's stateless reset token: HMAC(reset secret, cookie), the
//                secret derived from the node's ed25519 private key so a restarted node computes
//                the same one. Either end can prove one: the ACCEPT gave the listener's token to
//                the dialer (hidden under a pad), and a dialer on a listener's socket (a punch)
//                committed to its own in the CONFIRM (udp-handshake.ts), so a RESET from a
//                restarted punching node is believed too. A link believes a RESET at once only
//                when the token matches (anything else is counted in resetsRefused and ignored).
//                A live link's cookie from a wrong address never gets a RESET (it could not
//                open), nor does a cookie the socket handed out in this life (its first two bytes
//                are the socket's life tag: its handshake may be under way), and each socket keys
//                its tokens with its own address (another socket of the node would answer the
//                cookie), so the token is never handed to whoever merely read a cookie on the path.
//   0x10 DATA / 0x11 DATA+ACK / 0x12 PING: type ‖ receiver's cookie (8) ‖ counter (8) ‖
//     sealed ([ack block] ‖ records…) ‖ tag (16); the types below have the same envelope
//     ack block (0x11, 0x12): next expected reliable seq (u32) ‖ bitmap of the 64 seqs after it (2 × u32)
//     PING asks for an ack at once: the liveness probe of a link that heard nothing for a second.
//     record:    0 ‖ len u16 ‖ frame                               (types 9, 10: traffic, unreliable)
//                2 ‖ len u16 ‖ id u32 ‖ index u8 ‖ count u8 ‖ offset u16 ‖ part  (traffic fragment)
//                1 ‖ len u16 ‖ seq u32 ‖ segment      (types 0–8: reliable, ordered; ends a frame)
//                3 ‖ len u16 ‖ seq u32 ‖ segment      (a reliable segment the next seq continues)
//   0x13 MTU PROBE: type ‖ cookie ‖ nonce u32 ‖ zero padding to the size probed
//   0x14 MTU ACK:   type ‖ cookie ‖ nonce u32 ‖ size received u32
//   0x15 NACK:      type ‖ cookie ‖ (frame id u32 ‖ fragment index u8)…: fragments to send again
//   0x16 OBSERVE / 0x17 OBSERVED: NAT traversal's reflexive address (udp-wire.ts)
//   0x18 REKEY:     type ‖ cookie ‖ counter ‖ sealed (generation u32 ‖ fresh X25519 key) ‖ tag, under
//                   the current keys; resent until answered (bounded, then retried later)
//   0x19 REKEY ACK: the same layout, the responder's fresh X25519 key; both derive the next keys
//                   as the handshake does, and the dialer's REKEY wins when both ends start at once
// No datagram is ever larger than the link's validated size (`budget`), so the kernel never
// fragments: it starts at 1,232 bytes (a 1,280-byte IPv6 packet) and a per-link search (udp-pmtu.ts,
// RFC 8899 in spirit) raises it towards the route's interface MTU, capped by `datagramBytes`
// (Planetd.UdpMaxDatagram). Traffic frames over it leave as fragments reassembled in bounded
// buffers (udp-frag.ts); the receiver asks for missing fragments a few times (NACK), then gives the
// frame up. Traffic is otherwise sent once and may overtake protocol frames waiting for window
// space (it is routed statelessly; a frame that arrives before the path it needs is forwarded by
// DHT or dropped, as on any lossy path). Protocol frames go through a small reliable channel
// (udp-reliable.ts) because the tree and the DHT assume a stream. Records sent in the same tick
// are coalesced into datagrams up to the budget. `congested` means the socket's send queue holds
// over 1 MiB. Liveness (udp-liveness.ts): a keepalive after 1 s without sending, PINGs every second
// once nothing arrived for a second, close after about 8 s of silence (never over 9.5 s); on the
// native socket an ICMP error for the peer's address (a stopped daemon's port unreachable) is a hint
// only: a probe at once and a deadline of about 1 s, which any authentic datagram ends
// (udp-icmp-hints.ts).
// Malformed datagrams from unknown addresses are ignored statelessly; malformed data on a link
// closes only it.
// This file is the front door: udp-listener.ts (UdpListener), udp-dial.ts (dialUdp), udp-link.ts
// (UdpLink: receive, liveness, close) over udp-link-send.ts (UdpLinkSender: what a link sends),
// udp-common.ts (what the first two share).

export { UdpLink, type UdpHooks } from "./udp-link.js";
export type { UdpCommonOptions } from "./udp-common.js";
export { UdpListener, type UdpListenerOptions } from "./udp-listener.js";
export { dialUdp, type UdpDial, type UdpDialOptions } from "./udp-dial.js";
