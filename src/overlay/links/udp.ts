// UDP links: planetd's own transport (an extension; Yggdrasil 0.4.7 has none). They carry exactly the
// ironwood frames of a TCP link, so the router cannot tell the two apart.
//
// URIs: udp://host:port in Listen and Peers, with key= and priority= as on TCP. A listener is one
// socket (udp4/udp6 by address family) serving many peers, demultiplexed by remote ip:port; a dialer
// uses its own connected socket. Every datagram starts with a type byte:
//
//   handshake (udp-handshake.ts has the layouts; udp-seal.ts the cryptography):
//     1 INIT       dialer → listener: its cookie, metadata and a fresh X25519 key; resent every 1 s
//     2 CHALLENGE  listener → dialer, echoes the dialer cookie; the listener cookie is
//                  HMAC(secret, source ip:port ‖ dialer cookie ‖ dialer key), so the listener keeps
//                  no state and signs nothing yet
//     3 CONFIRM    dialer → listener, both cookies, the dialer's priority for this link and an
//                  ed25519 signature over the transcript; resent every 1 s until ACCEPT
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
//   6 RESET      type ‖ the cookie a link datagram carried ‖ reset token (16): a listener's
//                stateless answer to one from an address it has no link with (it restarted), so
//                the dialer redials now instead of after seconds of silence. Never larger than the
//                datagram that caused it (none for one under 25 bytes). The token is RFC 9000
//                §10.3's stateless reset token: HMAC(reset secret, cookie), the secret derived
//                from the node's ed25519 private key so a restarted listener computes the same
//                one; the ACCEPT gave it to the dialer, which believes a RESET at once only when
//                the token matches (anything else is counted in resetsRefused and ignored). A
//                live link's cookie from a wrong address never gets a RESET (it could not open),
//                so the token is never handed to whoever merely read a cookie on the path.
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
// once nothing arrived for a second, close after about 8 s of silence (never over 9.5 s).
// Malformed datagrams from unknown addresses are ignored statelessly; malformed data on a link
// closes only it.
import { createHmac, randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { type LinkTimeouts, encodeMetadata } from "./stream.js";
import {
  CHALLENGE_BYTES,
  HS_BYTES,
  RESET_TOKEN_BYTES,
  type Signer,
  acceptKeys,
  acceptPacket,
  challengeKey,
  confirmPacket,
  confirmValid,
  handshakePacket,
  parseHandshake,
} from "./udp-handshake.js";
import {
  DATA_HEADER,
  MAX_DATAGRAM,
  PKT_ACCEPT,
  PKT_CHALLENGE,
  PKT_CLOSE,
  PKT_CONFIRM,
  PKT_INIT,
  PKT_OBSERVE,
  PKT_RESET,
  RESET_BYTES,
  type UdpHooks,
  UdpLink,
  isLinkPacket,
} from "./udp-link.js";
import { PUNCH_BYTES, PunchDial } from "./udp-punch.js";
import type { RekeyOptions } from "./udp-rekey.js";
import { EPHEMERAL_BYTES, derivedEphemeral, randomEphemeral } from "./udp-seal.js";
import { type RemoteInfo, type UdpErrorHandler, type UdpSocket, openUdpSocket } from "./udp-socket.js";

export { UdpLink, type UdpHooks } from "./udp-link.js";

const EPH_AT = 55;
const HELLO_RETRY_MS = 1000;
const DEFAULT_CONGESTION_BYTES = 1024 * 1024;
const ZERO_COOKIE = Buffer.alloc(8);
/** Hop limits: a punch that opens our NAT (the first router) and goes no further, and the default. */
const PUNCH_TTL = 2;
const DEFAULT_TTL = 64;

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

export interface UdpListenerOptions extends UdpCommonOptions {
  /** Literal IP address to bind. */
  host: string;
  port: number;
  /**
   * Keys the reset tokens (HMAC of a link's cookie): derived from the node's private key, so a
   * restarted listener sends the same token for its old links. Random when not given.
   */
  resetSecret?: Buffer;
  /** Admission for an inbound handshake that proved its address: a string is the reason to refuse. */
  check(remoteKey: Buffer, ip: string, port: number): string | undefined;
  onLink(link: UdpLink, ip: string, port: number): void;
  onSocketError(message: string): void;
}

function closePacket(cookie: Buffer): Buffer {
  const out = Buffer.allocUnsafe(DATA_HEADER);
  out[0] = PKT_CLOSE;
  cookie.copy(out, 1);
  return out;
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

export class UdpListener {
  readonly port: number;
  private readonly o: UdpListenerOptions;
  private readonly socket: UdpSocket;
  private readonly secret = randomBytes(32);
  private readonly resetSecret: Buffer;
  private readonly meta: Buffer;
  private readonly links = new Map<string, UdpLink>();
  /** The same links by their cookie (latin1), for datagrams from an address that moved. */
  private readonly byCookie = new Map<string, UdpLink>();
  /** Hole-punching dials from this socket, by the address they punch towards. */
  private readonly punches = new Map<string, PunchDial>();
  private closing = false;

  static async bind(o: UdpListenerOptions): Promise<UdpListener> {
    const family = isIP(o.host.split("%")[0]!);
    if (family === 0)
      throw new Error(`"${o.host}" is not an IP address (udp listeners bind literal addresses)`);
    const socket = await openUdpSocket({ family: family === 6 ? 6 : 4, address: o.host, port: o.port });
    return new UdpListener(o, socket);
  }

  private constructor(o: UdpListenerOptions, socket: UdpSocket) {
    this.o = o;
    this.socket = socket;
    this.resetSecret = o.resetSecret ?? randomBytes(32);
    this.port = socket.address().port;
    this.meta = encodeMetadata(o.localKey);
    socket.onMessage((msg, rinfo, opened) => this.onMessage(msg, rinfo, opened));
    socket.onError((e) => o.onSocketError(e.message));
  }

  /** Established inbound links on this socket. */
  get linkCount(): number {
    return this.links.size;
  }

  /** `opened`: the socket opened `msg` already (UdpMessageHandler); the link takes its verdict. */
  private onMessage(msg: Buffer, rinfo: RemoteInfo, opened?: number): void {
    if (msg.length < DATA_HEADER || this.closing) return;
    const type = msg[0];
    if (type === PKT_OBSERVE) {
      // May come from another socket of the peer than its link's: answered, never a reason to move.
      const at = this.links.get(rinfo.key);
      const link = at?.matches(msg) ? at : this.byCookie.get(msg.toString("latin1", 1, DATA_HEADER));
      link?.receive(msg, rinfo.address, rinfo.port, opened);
      return;
    }
    const punch = this.punches.size > 0 ? this.punches.get(rinfo.key) : undefined;
    if (punch && (type === PKT_CHALLENGE || type === PKT_ACCEPT || type === PKT_CLOSE)) {
      punch.onMessage(msg);
      return;
    }
    if (isLinkPacket(type)) {
      const link = this.links.get(rinfo.key);
      if (link?.matches(msg)) link.receive(msg, undefined, undefined, opened);
      else if (!link) {
        // Roaming: an authentic datagram of a link from a new address (NAT rebinding) moves it there.
        const moved = this.byCookie.get(msg.toString("latin1", 1, DATA_HEADER));
        if (moved) {
          if (moved.receive(msg, undefined, undefined, opened)) this.rebind(moved, rinfo);
          return;
        }
        // A link we do not know (we restarted): the authentic RESET, never larger than its cause.
        if (msg.length < RESET_BYTES) return;
        const reset = Buffer.allocUnsafe(RESET_BYTES);
        reset[0] = PKT_RESET;
        msg.copy(reset, 1, 1, DATA_HEADER);
        this.resetToken(msg.subarray(1, DATA_HEADER)).copy(reset, DATA_HEADER);
        this.send(reset, rinfo);
      }
      return;
    }
    if (type === PKT_RESET) {
      // For a link this socket dialled (hole punching).
      const link = this.links.get(rinfo.key);
      if (link?.outbound) link.receiveReset(msg);
      return;
    }
    if (type === PKT_CLOSE) {
      const link = this.links.get(rinfo.key);
      if (link?.matches(msg)) link.receiveClose(msg, opened);
      return;
    }
    if (msg.length !== HS_BYTES) return;
    if (type === PKT_INIT) {
      const dialer = msg.subarray(1, 9);
      const cookie = this.cookieFor(rinfo, dialer, msg.subarray(EPH_AT, EPH_AT + EPHEMERAL_BYTES));
      this.send(handshakePacket(PKT_CHALLENGE, dialer, cookie, this.meta), rinfo);
    } else if (type === PKT_CONFIRM) {
      this.onConfirm(msg, rinfo);
    }
  }

  private cookieFor(rinfo: RemoteInfo, dialer: Uint8Array, ephemeral: Uint8Array): Buffer {
    return createHmac("sha256", this.secret)
      .update(`${rinfo.address}|${rinfo.port}|`)
      .update(dialer)
      .update(ephemeral)
      .digest()
      .subarray(0, 8);
  }

  /** RFC 9000 §10.3's stateless reset token, for the link whose (listener) cookie is `cookie`. */
  private resetToken(cookie: Uint8Array): Buffer {
    return createHmac("sha256", this.resetSecret).update(cookie).digest().subarray(0, RESET_TOKEN_BYTES);
  }

  private onConfirm(msg: Buffer, rinfo: RemoteInfo): void {
    const f = parseHandshake(msg);
    if (!f) return;
    const dialer = f.dialerCookie;
    const cookie = this.cookieFor(rinfo, dialer, f.ephemeral);
    if (!cookie.equals(f.listenerCookie)) return; // spoofed or stale: no state, no answer
    const key = rinfo.key;
    const existing = this.links.get(key);
    if (existing?.hasLocalCookie(cookie)) {
      // Our ACCEPT was lost: say it again.
      if (existing.acceptPacket) this.send(existing.acceptPacket, rinfo);
      return;
    }
    // The dialer proves its key (and that it chose this ephemeral key for us) before we sign anything.
    if (!confirmValid(f, this.o.localKey)) return;
    existing?.close("peer restarted the handshake", false);
    const remoteKey = f.key;
    const refused = this.o.check(remoteKey, rinfo.address, rinfo.port);
    if (refused !== undefined) {
      this.send(closePacket(dialer), rinfo);
      return;
    }
    // A peer that redials after a flap comes from a new port, and its old link here would linger
    // until its own silence timeout: the newest link from the same key, host and dialer priority
    // replaces it at once (a peer may hold one link per priority to the same listener).
    for (const [at, old] of this.links) {
      if (
        at.startsWith(`${rinfo.address}|`) &&
        old.remoteKey.equals(remoteKey) &&
        old.dialPriority === f.priority &&
        !old.outbound
      ) {
        old.close("replaced by a newer link from the same peer");
      }
    }
    const eph = derivedEphemeral(this.secret, dialer, cookie, f.ephemeral);
    const accepted = acceptPacket(f, this.meta, this.o.localKey, eph, this.o.sign, this.resetToken(cookie));
    if (!accepted) return;
    const link = new UdpLink({
      socket: this.socket,
      address: rinfo.address,
      port: rinfo.port,
      connected: false,
      localCookie: cookie,
      remoteCookie: dialer,
      remoteKey,
      remote: `udp://${hostPort(rinfo.address, rinfo.port)}`,
      outbound: false,
      priority: this.o.priority,
      timeouts: this.o.timeouts,
      datagramBytes: this.o.datagramBytes ?? MAX_DATAGRAM,
      congestionBytes: this.o.congestionBytes ?? DEFAULT_CONGESTION_BYTES,
      hooks: this.o.hooks,
      rekey: this.o.rekey,
      keys: { tx: accepted.keys.l2d, rx: accepted.keys.d2l },
      acceptPacket: accepted.packet,
      dialPriority: f.priority,
      release: () => {
        const at = `${link.peerAddress}|${link.peerPort}`;
        if (this.links.get(at) === link) this.links.delete(at);
        this.byCookie.delete(cookie.toString("latin1"));
      },
    });
    this.links.set(key, link);
    this.byCookie.set(cookie.toString("latin1"), link);
    this.send(accepted.packet, rinfo);
    this.o.onLink(link, rinfo.address, rinfo.port);
  }

  private rebind(link: UdpLink, rinfo: RemoteInfo): void {
    const from = `${link.peerAddress}|${link.peerPort}`;
    const to = rinfo.key;
    if (this.links.get(to)) return; // another link lives there now; this one stays where it was
    if (this.links.get(from) === link) this.links.delete(from);
    this.links.set(to, link);
    link.moveTo(rinfo.address, rinfo.port);
  }

  private send(packet: Buffer, rinfo: RemoteInfo): void {
    this.socket.send(packet, rinfo.port, rinfo.address);
  }

  /** Sends from this socket (an OBSERVE sealed by another link, whose mapping is this socket's). */
  sendTo(packet: Buffer, address: string, port: number): void {
    if (!this.closing) this.socket.send(packet, port, address);
  }

  private lowTtlUsers = 0;

  /**
   * While a punch opens NAT mappings, this socket's datagrams leave with a hop limit that passes our
   * own NAT but dies before the peer's: a Linux NAT that receives a datagram for a port it has no
   * mapping for keeps a conntrack entry for it, and then gives the mapping the peer expects another
   * port. Counted, so overlapping punches restore the default only when the last one ends.
   */
  lowTtl(on: boolean): void {
    this.lowTtlUsers = Math.max(0, this.lowTtlUsers + (on ? 1 : -1));
    this.socket.setTTL(this.lowTtlUsers > 0 ? PUNCH_TTL : DEFAULT_TTL);
  }

  /** Opens this side's NAT towards a peer that will dial us from `address`: a datagram it drops. */
  punchOpen(address: string, port: number): void {
    this.sendTo(PUNCH_BYTES, address, port);
  }

  /**
   * Dials `address` from this very socket (hole punching; udp-punch.ts), resending the INIT every
   * `intervalMs` until `timeoutMs`; only `expectKey` may answer. The link lives on this socket.
   */
  punchDial(o: {
    address: string;
    port: number;
    expectKey: Buffer;
    intervalMs: number;
    timeoutMs: number;
  }): { link: Promise<UdpLink>; cancel(reason: string): void } {
    const at = `${o.address}|${o.port}`;
    if (this.closing) return { link: Promise.reject(new Error("stopping")), cancel: () => {} };
    if (this.punches.has(at) || this.links.has(at)) {
      return { link: Promise.reject(new Error("already punching or linked there")), cancel: () => {} };
    }
    let resolveLink: (l: UdpLink) => void = () => {};
    let rejectLink: (e: Error) => void = () => {};
    const link = new Promise<UdpLink>((resolve, reject) => {
      resolveLink = resolve;
      rejectLink = reject;
    });
    const dial = new PunchDial({
      localKey: this.o.localKey,
      sign: this.o.sign,
      expectKey: o.expectKey,
      intervalMs: o.intervalMs,
      timeoutMs: o.timeoutMs,
      send: (packet) => this.sendTo(packet, o.address, o.port),
      fail: (reason) => {
        if (this.punches.get(at) === dial) this.punches.delete(at);
        rejectLink(new Error(reason));
      },
      up: (keys, dialerCookie, listenerCookie) => {
        this.punches.delete(at);
        if (this.closing || this.links.has(at)) {
          rejectLink(new Error("stopping or already linked there"));
          return;
        }
        const created = new UdpLink({
          socket: this.socket,
          address: o.address,
          port: o.port,
          connected: false,
          localCookie: dialerCookie,
          remoteCookie: listenerCookie,
          remoteKey: o.expectKey,
          remote: `udp://${hostPort(o.address, o.port)}`,
          outbound: true,
          priority: this.o.priority,
          timeouts: this.o.timeouts,
          datagramBytes: this.o.datagramBytes ?? MAX_DATAGRAM,
          congestionBytes: this.o.congestionBytes ?? DEFAULT_CONGESTION_BYTES,
          hooks: this.o.hooks,
          rekey: this.o.rekey,
          keys: { tx: keys.d2l, rx: keys.l2d },
          dialPriority: this.o.priority,
          resetToken: keys.resetToken,
          release: () => {
            const now = `${created.peerAddress}|${created.peerPort}`;
            if (this.links.get(now) === created) this.links.delete(now);
            this.byCookie.delete(dialerCookie.toString("latin1"));
          },
        });
        this.links.set(at, created);
        this.byCookie.set(dialerCookie.toString("latin1"), created);
        resolveLink(created);
      },
    });
    this.punches.set(at, dial);
    return { link, cancel: (reason) => dial.cancel(reason) };
  }

  async close(): Promise<void> {
    if (this.closing) return;
    this.closing = true;
    for (const dial of [...this.punches.values()]) dial.cancel("stopping");
    for (const link of [...this.links.values()]) link.close("stopping");
    // Let the close datagrams leave (unconnected sends resolve the address on the next tick).
    await new Promise((r) => setImmediate(r));
    await this.socket.close();
  }
}

export interface UdpDialOptions extends UdpCommonOptions {
  /** Literal IP (with a zone for link-local IPv6). */
  address: string;
  port: number;
  localAddress?: string;
  /** Shown by getPeers: the dial URI without its query. */
  remote: string;
  /** Pins and the self-key check: a string is the reason to give up. */
  check(remoteKey: Buffer): string | undefined;
}

export interface UdpDial {
  link: Promise<UdpLink>;
  /** True once the peer answered (for the manager's handshake-failure count). */
  readonly answered: boolean;
  cancel(reason: string): void;
}

/** Dial a UDP listener; the returned promise settles when the link is up or the handshake failed. */
export function dialUdp(o: UdpDialOptions): UdpDial {
  const family = isIP(o.address.split("%")[0]!);
  let socket: UdpSocket | undefined;
  const dialerCookie = randomBytes(8);
  const meta = encodeMetadata(o.localKey);
  const eph = randomEphemeral();
  const init = handshakePacket(PKT_INIT, dialerCookie, ZERO_COOKIE, meta, eph.publicKey);
  let confirm: Buffer | undefined;
  let listenerCookie: Buffer | undefined;
  let remoteKey: Buffer | undefined;
  let settled = false;
  const state = { answered: false };
  let ready = false;
  const retry = setInterval(() => hello(), HELLO_RETRY_MS);
  const deadline = setTimeout(
    () => fail(state.answered ? "handshake timed out" : "no answer (handshake timed out)"),
    o.timeouts.handshakeMs,
  );
  let resolveLink: (l: UdpLink) => void = () => {};
  let rejectLink: (e: Error) => void = () => {};
  const link = new Promise<UdpLink>((resolve, reject) => {
    resolveLink = resolve;
    rejectLink = reject;
  });

  const stopTimers = (): void => {
    clearInterval(retry);
    clearTimeout(deadline);
  };
  const fail = (message: string): void => {
    if (settled) return;
    settled = true;
    stopTimers();
    socket?.onMessage(undefined);
    void socket?.close();
    rejectLink(new Error(message));
  };
  const hello = (): void => {
    if (!ready || settled) return;
    socket?.send(confirm ?? init);
  };
  const up = (keys: { d2l: Buffer; l2d: Buffer; resetToken: Buffer }): void => {
    settled = true;
    stopTimers();
    const linkSocket = socket!;
    const udpLink = new UdpLink({
      socket: linkSocket,
      address: o.address,
      port: o.port,
      connected: true,
      localCookie: dialerCookie,
      remoteCookie: listenerCookie!,
      remoteKey: remoteKey!,
      remote: o.remote,
      outbound: true,
      priority: o.priority,
      timeouts: o.timeouts,
      datagramBytes: o.datagramBytes ?? MAX_DATAGRAM,
      congestionBytes: o.congestionBytes ?? DEFAULT_CONGESTION_BYTES,
      hooks: o.hooks,
      rekey: o.rekey,
      keys: { tx: keys.d2l, rx: keys.l2d },
      dialPriority: o.priority,
      resetToken: keys.resetToken,
      release: () => {
        setImmediate(() => void linkSocket.close());
      },
    });
    // dgram reports only receive errors here. An ICMP port unreachable (ECONNREFUSED) means the
    // listener is gone; other errors (e.g. a transient ENOBUFS) do not end the link, silence does.
    linkSocket.onError((e) => {
      if (e.code === "ECONNREFUSED") udpLink.close("connection refused", false);
    });
    linkSocket.onMessage((msg, _from, opened) => {
      if (msg.length < DATA_HEADER) return;
      const type = msg[0];
      if (isLinkPacket(type)) {
        if (udpLink.matches(msg)) udpLink.receive(msg, undefined, undefined, opened);
      } else if (type === PKT_CLOSE && udpLink.matches(msg)) {
        udpLink.receiveClose(msg, opened);
      } else if (type === PKT_RESET) {
        udpLink.receiveReset(msg);
      }
    });
    resolveLink(udpLink);
  };
  const cookieIs = (msg: Buffer, at: number, cookie: Buffer): boolean =>
    msg.length >= at + 8 && cookie.equals(msg.subarray(at, at + 8));

  const handshakeError: UdpErrorHandler = (e) =>
    fail(e.code === "ECONNREFUSED" ? "connection refused" : `udp: ${e.message}`);
  const handshakeMessage = (msg: Buffer): void => {
    if (settled || msg.length < DATA_HEADER) return;
    const type = msg[0];
    if (type === PKT_CHALLENGE && msg.length === CHALLENGE_BYTES && cookieIs(msg, 1, dialerCookie)) {
      if (listenerCookie) return;
      state.answered = true;
      const key = challengeKey(msg);
      if (!key) {
        fail("malformed challenge metadata");
        return;
      }
      // Checked now to fail fast; the key is only proven by the ACCEPT's signature.
      const refused = o.check(key);
      if (refused !== undefined) {
        fail(refused);
        return;
      }
      remoteKey = key;
      listenerCookie = Buffer.from(msg.subarray(9, 17));
      confirm = confirmPacket(dialerCookie, listenerCookie, meta, o.localKey, key, eph, o.sign, o.priority);
      hello();
    } else if (type === PKT_ACCEPT && msg.length === HS_BYTES && listenerCookie) {
      if (!cookieIs(msg, 1, dialerCookie) || !cookieIs(msg, 9, listenerCookie)) return;
      const f = parseHandshake(msg);
      if (!f?.key.equals(remoteKey!)) return;
      const keys = acceptKeys(f, o.localKey, eph);
      if (keys) up(keys); // otherwise forged or corrupted: keep waiting for the real one
    } else if (type === PKT_CLOSE && msg.length === DATA_HEADER && cookieIs(msg, 1, dialerCookie)) {
      state.answered = true;
      fail("refused by the peer");
    }
  };

  const start = async (): Promise<void> => {
    const opened = await openUdpSocket({ family: family === 6 ? 6 : 4, address: o.localAddress, port: 0 });
    if (settled) {
      void opened.close();
      return;
    }
    socket = opened;
    opened.onError(handshakeError);
    opened.onMessage(handshakeMessage);
    await opened.connect(o.port, o.address);
    ready = true;
    hello();
  };
  start().catch(handshakeError);

  return {
    link,
    get answered() {
      return state.answered;
    },
    cancel: (reason: string) => fail(reason),
  };
}
