// The udp:// listener: one socket serving many peers, demultiplexed by remote ip:port (and by
// cookie for a peer whose address moved). It answers the handshake statelessly until a CONFIRM
// proves the dialer's address and key, sends RESETs for links it does not know, and dials from its
// own socket for NAT traversal (punchDial). The wire format is described in udp.ts.
import { createHmac, randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { encodeMetadata } from "./stream.js";
import { type UdpCommonOptions, linkSettings } from "./udp-common.js";
import {
  HS_BYTES,
  RESET_TOKEN_BYTES,
  acceptPacket,
  confirmCommitment,
  confirmValid,
  handshakePacket,
  parseHandshake,
  resetCommitment,
} from "./udp-handshake.js";
import { udpIcmpHints } from "./udp-icmp-hints.js";
import { processLifeTags } from "./udp-life-tag.js";
import {
  DATA_HEADER,
  PKT_ACCEPT,
  PKT_CHALLENGE,
  PKT_CLOSE,
  PKT_CONFIRM,
  PKT_INIT,
  PKT_OBSERVE,
  PKT_RESET,
  RESET_BYTES,
  UdpLink,
  isLinkPacket,
} from "./udp-link.js";
import { PUNCH_BYTES, PunchDial } from "./udp-punch.js";
import { udpRefusals } from "./udp-refusals.js";
import { EPHEMERAL_BYTES, derivedEphemeral } from "./udp-seal.js";
import { type RemoteInfo, type UdpSocket, openUdpSocket } from "./udp-socket.js";

const EPH_AT = 55;
/**
 * A CHALLENGE cookie is good for the slot it was made in and the next one: a CONFIRM read on the
 * path cannot be sent again later than that.
 */
const COOKIE_SLOT_MS = 60_000;
/** Cookies of closed inbound links kept (for two slots) so their CONFIRMs are not taken again. */
const MAX_SPENT_COOKIES = 4096;
/** Hop limits: a punch that opens our NAT (the first router) and goes no further, and the default. */
const PUNCH_TTL = 2;
const DEFAULT_TTL = 64;

export interface UdpListenerOptions extends UdpCommonOptions {
  /** Literal IP address to bind. */
  host: string;
  port: number;
  /**
   * Keys the reset tokens (HMAC of a link's cookie): derived from the node's private key, so a
   * restarted listener sends the same token for its old links. Random when not given.
   */
  resetSecret?: Buffer;
  /** Closed links' cookies kept (MAX_SPENT_COOKIES unless given; tests reach the bound with a few). */
  spentCookieLimit?: number;
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
  /**
   * The first two bytes of every cookie this socket hands out in this process's life (CHALLENGE
   * cookies and punch dialer cookies). A stray datagram naming such a cookie gets no RESET: that
   * cookie's handshake may still be under way (the peer is about to be given, or to commit to, its
   * token), and a RESET would hand that token to whoever read the cookie on the path. A restarted
   * node, or the node's next socket, draws another tag (udp-life-tag.ts says when it could not).
   */
  private readonly lifeTag = processLifeTags.next();
  private readonly resetSecret: Buffer;
  /** Binds the reset tokens to this socket: see resetToken. */
  private readonly tokenLabel: string;
  /** Stray datagrams that named a cookie of this life (lifeTag), answered with no RESET. */
  resetsWithheld = 0;
  /**
   * Our cookies of links that closed, with when (latin1 -> ms). A CONFIRM is signed once and carries
   * no time, so one read on the path and sent again from its first address would make a link, and
   * that replaces the peer's live links from the same host (onConfirm); and a stray datagram naming
   * one may have its RESET although it is of this life (the peer missed our CLOSE).
   */
  private readonly spentCookies = new Map<string, number>();
  /** CONFIRMs refused because their link had been made and closed (replays). */
  confirmsReplayed = 0;
  /** Spent cookies forgotten early because spentCookieLimit were kept (their replays get through). */
  spentCookiesEvicted = 0;
  private readonly spentCookieLimit: number;
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
    this.spentCookieLimit = Math.max(1, o.spentCookieLimit ?? MAX_SPENT_COOKIES);
    this.port = socket.address().port;
    this.tokenLabel = `planetd udp reset ${o.host} ${this.port}|`;
    this.meta = encodeMetadata(o.localKey);
    socket.onMessage((msg, rinfo, opened) => this.onMessage(msg, rinfo, opened));
    socket.onError((e) => o.onSocketError(e.message));
    // An ICMP error for a peer's address: a hint for its link (udp-icmp-hints.ts), never a close.
    socket.onUnreachable?.((to, errno) => {
      const link = this.links.get(to.key);
      if (link) link.unreachable(errno);
      else udpIcmpHints.no_link++;
    });
  }

  /** Established inbound links on this socket. */
  get linkCount(): number {
    return this.links.size;
  }

  /** `opened`: the socket opened `msg` already (UdpMessageHandler); the link takes its verdict. */
  private onMessage(msg: Buffer, rinfo: RemoteInfo, opened?: number): void {
    if (this.closing) return;
    if (msg.length < DATA_HEADER) {
      if (msg.length !== 1 || msg[0] !== PUNCH_BYTES[0]) udpRefusals.strayDatagrams.short++;
      return;
    }
    const type = msg[0];
    if (type === PKT_OBSERVE) {
      // May come from another socket of the peer than its link's: answered, never a reason to move.
      const at = this.links.get(rinfo.key);
      const link = at?.matches(msg) ? at : this.byCookie.get(msg.toString("latin1", 1, DATA_HEADER));
      if (link) link.receive(msg, rinfo.address, rinfo.port, opened);
      else udpRefusals.strayDatagrams.cookie++;
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
      else if (link) udpRefusals.strayDatagrams.cookie++;
      else {
        // Roaming: an authentic datagram of a link from a new address (NAT rebinding) moves it there.
        const moved = this.byCookie.get(msg.toString("latin1", 1, DATA_HEADER));
        if (moved) {
          if (moved.receive(msg, undefined, undefined, opened)) this.rebind(moved, rinfo);
          return;
        }
        udpRefusals.strayDatagrams.cookie++;
        // A link we do not know (we restarted): the authentic RESET, never larger than its cause.
        if (msg.length < RESET_BYTES) return;
        // A cookie of this life whose link closed here lately (spent) may have its RESET: that token
        // guards nothing live any more.
        if (
          msg[1] === this.lifeTag[0] &&
          msg[2] === this.lifeTag[1] &&
          !this.spentCookies.has(msg.toString("latin1", 1, DATA_HEADER))
        ) {
          this.resetsWithheld++;
          udpRefusals.resetsRefused.send++;
          return;
        }
        const reset = Buffer.allocUnsafe(RESET_BYTES);
        reset[0] = PKT_RESET;
        msg.copy(reset, 1, 1, DATA_HEADER);
        this.resetToken(msg.subarray(1, DATA_HEADER)).copy(reset, DATA_HEADER);
        this.send(reset, rinfo);
      }
      return;
    }
    if (type === PKT_RESET) {
      // For a link this socket dialled (hole punching), or one whose dialer punched from the socket
      // it is back on after a restart (its CONFIRM committed to the token).
      const link = this.links.get(rinfo.key);
      if (link) link.receiveReset(msg);
      else udpRefusals.strayDatagrams.cookie++;
      return;
    }
    if (type === PKT_CLOSE) {
      const link = this.links.get(rinfo.key);
      if (link?.matches(msg)) link.receiveClose(msg, opened);
      else udpRefusals.strayDatagrams.cookie++;
      return;
    }
    if (type === PKT_CHALLENGE || type === PKT_ACCEPT) {
      // An answer to a dial, and no punch from this socket towards its sender.
      udpRefusals.dialAnswersRefused.unsolicited++;
      return;
    }
    if (type !== PKT_INIT && type !== PKT_CONFIRM) {
      udpRefusals.strayDatagrams.type++;
      return;
    }
    if (msg.length !== HS_BYTES) {
      udpRefusals.strayDatagrams.size++;
      return;
    }
    if (type === PKT_INIT) {
      const dialer = msg.subarray(1, 9);
      const slot = Math.floor(Date.now() / COOKIE_SLOT_MS);
      const cookie = this.cookieFor(rinfo, dialer, msg.subarray(EPH_AT, EPH_AT + EPHEMERAL_BYTES), slot);
      this.send(handshakePacket(PKT_CHALLENGE, dialer, cookie, this.meta), rinfo);
    } else {
      this.onConfirm(msg, rinfo);
    }
  }

  /** The life tag, then 48 bits of HMAC: the dialer proves it got this at its address. */
  private cookieFor(rinfo: RemoteInfo, dialer: Uint8Array, ephemeral: Uint8Array, slot: number): Buffer {
    const cookie = createHmac("sha256", this.secret)
      .update(`${slot}|${rinfo.address}|${rinfo.port}|`)
      .update(dialer)
      .update(ephemeral)
      .digest()
      .subarray(0, 8);
    this.lifeTag.copy(cookie, 0);
    return cookie;
  }

  /**
   * RFC 9000 §10.3's stateless reset token for the link whose cookie here is `cookie` (ours as its
   * listener, or as the dialer of a punch from this socket). The node's every udp socket shares the
   * reset secret, so the socket's own address goes in too: otherwise another socket of the node,
   * which has no link with that cookie, would answer a datagram naming it with its live token.
   */
  private resetToken(cookie: Uint8Array): Buffer {
    return createHmac("sha256", this.resetSecret)
      .update(this.tokenLabel)
      .update(cookie)
      .digest()
      .subarray(0, RESET_TOKEN_BYTES);
  }

  private onConfirm(msg: Buffer, rinfo: RemoteInfo): void {
    const refused = udpRefusals.confirmsRefused;
    const f = parseHandshake(msg);
    if (!f) {
      refused.malformed++;
      return;
    }
    const dialer = f.dialerCookie;
    const now = Date.now();
    const slot = Math.floor(now / COOKIE_SLOT_MS);
    let cookie = this.cookieFor(rinfo, dialer, f.ephemeral, slot);
    if (!cookie.equals(f.listenerCookie)) cookie = this.cookieFor(rinfo, dialer, f.ephemeral, slot - 1);
    if (!cookie.equals(f.listenerCookie)) {
      refused.stale++; // or made up: no state, no answer
      return;
    }
    const key = rinfo.key;
    const existing = this.links.get(key);
    if (existing?.hasLocalCookie(cookie)) {
      // Our ACCEPT was lost: say it again.
      if (existing.acceptPacket) this.send(existing.acceptPacket, rinfo);
      return;
    }
    const spentAt = this.spentCookies.get(cookie.toString("latin1"));
    if (spentAt !== undefined && now - spentAt < 2 * COOKIE_SLOT_MS) {
      this.confirmsReplayed++;
      refused.replayed++;
      return;
    }
    // The dialer proves its key (and that it chose this ephemeral key for us) before we sign anything.
    if (!confirmValid(f, this.o.localKey)) {
      refused.signature++;
      return;
    }
    existing?.close("peer restarted the handshake", false);
    const remoteKey = f.key;
    if (this.o.check(remoteKey, rinfo.address, rinfo.port) !== undefined) {
      refused.not_allowed++;
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
    if (!accepted) {
      refused.malformed++; // a degenerate ephemeral key
      return;
    }
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
      ...linkSettings(this.o),
      keys: { tx: accepted.keys.l2d, rx: accepted.keys.d2l },
      acceptPacket: accepted.packet,
      dialPriority: f.priority,
      resetCommitment: confirmCommitment(f),
      release: () => this.forget(link, cookie),
    });
    this.remember(key, link, cookie);
    this.send(accepted.packet, rinfo);
    this.o.onLink(link, rinfo.address, rinfo.port);
  }

  /** A new link on this socket: found by its address (`at`) and, once it moved, by its cookie here. */
  private remember(at: string, link: UdpLink, localCookie: Buffer): void {
    this.links.set(at, link);
    this.byCookie.set(localCookie.toString("latin1"), link);
  }

  /** A link closed: its address (where it lives now, unless another link took it) and cookie are free. */
  private forget(link: UdpLink, localCookie: Buffer): void {
    const at = `${link.peerAddress}|${link.peerPort}`;
    if (this.links.get(at) === link) this.links.delete(at);
    this.byCookie.delete(localCookie.toString("latin1"));
    // A closing socket takes no CONFIRM again: its links' cookies need no keeping (nor evictions).
    if (!this.closing) this.spend(localCookie.toString("latin1"));
  }

  /** Keeps a closed link's cookie for as long as a CONFIRM for it could still verify (two slots). */
  private spend(cookie: string): void {
    const now = Date.now();
    for (const [old, at] of this.spentCookies) {
      if (now - at < 2 * COOKIE_SLOT_MS && this.spentCookies.size < this.spentCookieLimit) break;
      this.spentCookies.delete(old);
      if (now - at < 2 * COOKIE_SLOT_MS) {
        this.spentCookiesEvicted++;
        udpRefusals.spentCookiesEvicted++;
      }
    }
    this.spentCookies.set(cookie, now);
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
      cookieTag: this.lifeTag,
      resetCommitment: (cookie) => resetCommitment(this.resetToken(cookie)),
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
          ...linkSettings(this.o),
          keys: { tx: keys.d2l, rx: keys.l2d },
          dialPriority: this.o.priority,
          resetCommitment: resetCommitment(keys.resetToken),
          release: () => this.forget(created, dialerCookie),
        });
        this.remember(at, created, dialerCookie);
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
