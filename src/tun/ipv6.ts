// The IPv6 adapter (spec 8.1–8.3, yggdrasil's ipv6rwc): between the TUN and the overlay. It checks
// addresses, maps destinations to keys (learning them from traffic or by signed OOB key lookups) and
// answers oversize packets with ICMPv6 Packet Too Big. The firewall, when set, sees every packet
// after decryption on the way in and before encryption on the way out. Pure: time comes in as `now`, output goes to
// the CoreSender and tunWrite callbacks, synchronously.
import { partialKeyFor, subnetForKey } from "../crypto/address.js";
import { type Identity, verify } from "../crypto/identity.js";
import { type Firewall, VERDICT_PASS, VERDICT_REJECT } from "./firewall.js";
import {
  ACCEPT_PARTIAL_CHECKSUMS,
  PARTIAL_CHECKSUM,
  SIG_SUPER_ACCEPT,
  SIG_SUPER_TCP6,
  SUPER_ACCEPT_BODY,
  SUPER_ACCEPT_TTL_MS,
  SUPER_ANNOUNCE_MS,
  SUPER_HEADER_BYTES,
  superPacketSegmentBytes,
} from "./gso.js";
import { IPV6_HEADER_BYTES, buildAdminProhibited, buildPacketTooBig } from "./icmpv6.js";
import { type KeyEntry, KeyStore, bytesAt } from "./keystore.js";

export interface CoreSender {
  /**
   * Send one IPv6 packet to `dest` (the daemon prefixes the core byte 0x01 and encrypts). `packet`
   * is valid only during the call; `now` is the time given to the adapter call that sends it.
   * inPlace: as fromTun's, passed on; the packet is not read after this call.
   */
  sendIPv6(dest: Buffer, packet: Buffer, now: number, inPlace?: boolean): void;
  /** Kind-2 (unencrypted) traffic: key lookups and responses. `dest` may be a partial key. */
  sendOutOfBand(dest: Buffer, payload: Buffer): void;
  /**
   * A planetd-only core message (CORE_PLANETD): super-packets and their announcements (gso.ts).
   * inPlace: as sendIPv6's (a super-packet's header written into the TUN packet's headroom).
   */
  sendPlanetd?(dest: Buffer, body: Buffer, now: number, inPlace?: boolean): void;
  /**
   * A session with `dest` is up, so a message sent now leaves at once. Without one it waits for the
   * handshake, and only the latest message waits (spec 6): an ACCEPT sent just before a packet would
   * be displaced by it. Absent: assume one is.
   */
  hasSession?(dest: Buffer): boolean;
}

/** What the TUN does for super-packets (src/tun/gso.ts); without it the adapter neither takes nor sends them. */
export interface SuperPacketTun {
  /** Cuts a super-packet into ordinary segments (views valid until the next call). */
  segment(packet: Buffer, gsoSize: number): Buffer[];
  /** Completes a PARTIAL_CHECKSUM packet's TCP checksum in place; with the TUN handing such packets over. */
  completeChecksum?(packet: Buffer): boolean;
}

/** Spec 5.9: the largest IPv6 packet the core carries. */
export const CORE_IPV6_MTU = 53049;
export const MIN_IPV6_MTU = 1280;
export const OOB_KEY_LOOKUP = 0x01;
export const OOB_KEY_RESPONSE = 0x02;
const OOB_PAYLOAD_BYTES = 65;

export interface Ipv6Stats {
  [reason: string]: number;
  tunPackets: number;
  tunNotIPv6: number;
  tunTooShort: number;
  tunTooLarge: number;
  tunBadSource: number;
  tunBadDestination: number;
  sent: number;
  pendingStored: number;
  pendingFlushed: number;
  pendingExpired: number;
  lookupsSent: number;
  netPackets: number;
  netNotIPv6: number;
  netTooShort: number;
  packetTooBigSent: number;
  netBadDestination: number;
  netBadSource: number;
  delivered: number;
  oobBadLength: number;
  oobUnknownType: number;
  lookupsNotOurs: number;
  lookupsBadSignature: number;
  lookupsAnswered: number;
  responsesNotOurs: number;
  responsesBadSignature: number;
  responsesAccepted: number;
  keysExpired: number;
  firewallInDropped: number;
  firewallOutDropped: number;
  superPacketsSent: number;
  /** TCP packets read with partial checksums and completed here for a node that verifies them. */
  partialChecksumsCompleted: number;
  superPacketsCut: number;
  superPacketsDelivered: number;
  superPacketsMalformed: number;
  superPacketsRefused: number;
  superAcceptsSent: number;
  superAcceptsHeard: number;
}

export class Ipv6Adapter {
  readonly mtu: number;
  private readonly keys = new KeyStore();
  private readonly counters: Ipv6Stats = {
    tunPackets: 0,
    tunNotIPv6: 0,
    tunTooShort: 0,
    tunTooLarge: 0,
    tunBadSource: 0,
    tunBadDestination: 0,
    sent: 0,
    pendingStored: 0,
    pendingFlushed: 0,
    pendingExpired: 0,
    lookupsSent: 0,
    netPackets: 0,
    netNotIPv6: 0,
    netTooShort: 0,
    packetTooBigSent: 0,
    netBadDestination: 0,
    netBadSource: 0,
    delivered: 0,
    oobBadLength: 0,
    oobUnknownType: 0,
    lookupsNotOurs: 0,
    lookupsBadSignature: 0,
    lookupsAnswered: 0,
    responsesNotOurs: 0,
    responsesBadSignature: 0,
    responsesAccepted: 0,
    keysExpired: 0,
    firewallInDropped: 0,
    firewallOutDropped: 0,
    superPacketsSent: 0,
    partialChecksumsCompleted: 0,
    superPacketsCut: 0,
    superPacketsDelivered: 0,
    superPacketsMalformed: 0,
    superPacketsRefused: 0,
    superAcceptsSent: 0,
    superAcceptsHeard: 0,
  };
  /** The stateful firewall (src/tun/firewall.ts); undefined passes everything. */
  firewall: Firewall | undefined;
  /** Reused to collect the packets a newly learnt key releases. */
  private readonly flushed: Buffer[] = [];
  /** Reused for the one super-packet message being sent: its header, then the packet. */
  private superBody: Buffer | undefined;

  /**
   * `mtu` is the TUN MTU (clamped to [1280, 53049] like Go's SetMTU): larger packets from the network
   * are answered with Packet Too Big. `superPackets`: the TUN takes and cuts super-packets.
   */
  constructor(
    private readonly identity: Identity,
    private readonly core: CoreSender,
    private readonly tunWrite: (packet: Buffer, gsoSize: number) => void,
    mtu: number,
    private readonly superPackets?: SuperPacketTun,
  ) {
    this.mtu = Math.min(CORE_IPV6_MTU, Math.max(MIN_IPV6_MTU, Math.floor(mtu)));
  }

  /**
   * 8.1: a packet read from the TUN. `packet` is only read during the call (copied if held).
   * gsoSize > 0: a TCP super-packet, sent whole to a node that takes them, else cut here.
   * inPlace: the packet has room around it to be sealed where it lies (Sessions.send's inPlace),
   * and SUPER_HEADER_BYTES more before it for a super-packet's header.
   */
  fromTun(packet: Buffer, now: number, gsoSize = 0, inPlace = false): void {
    const c = this.counters;
    c.tunPackets++;
    if (packet.length < IPV6_HEADER_BYTES) {
      c.tunTooShort++;
      return;
    }
    if ((packet[0]! & 0xf0) !== 0x60) {
      c.tunNotIPv6++;
      return;
    }
    if (packet.length > CORE_IPV6_MTU) {
      c.tunTooLarge++;
      return;
    }
    const id = this.identity;
    // Source: our address, or anything in our /64 (workloads behind us).
    if (!bytesAt(packet, 8, id.address) && !bytesAt(packet, 8, id.subnet)) {
      c.tunBadSource++;
      return;
    }
    const kind = packet[24];
    let entry: KeyEntry | undefined;
    if (kind === 0x02) entry = this.keys.useAddress(packet, 24, now);
    else if (kind === 0x03) entry = this.keys.useSubnet(packet, 24, now);
    else {
      c.tunBadDestination++;
      return;
    }
    if (gsoSize === PARTIAL_CHECKSUM) {
      gsoSize = 0;
      if (!(entry && entry.partialChecksumsUntil > now)) {
        if (!this.superPackets?.completeChecksum?.(packet)) {
          c.superPacketsMalformed++;
          return;
        }
        c.partialChecksumsCompleted++;
      }
    }
    if (gsoSize > 0 && !(entry && entry.superPacketsUntil > now && this.core.sendPlanetd)) {
      this.cut(packet, gsoSize, now);
      return;
    }
    if (entry) {
      this.send(entry, packet, now, gsoSize, inPlace);
      return;
    }
    const isSubnet = kind === 0x03;
    const pending = this.keys.holdPending(packet, isSubnet, now);
    c.pendingStored++;
    if (pending.lookup.length === 0) {
      // Ed25519 is deterministic: one signature serves every lookup for this destination.
      pending.partialKey = partialKeyFor(packet.subarray(24, isSubnet ? 32 : 40));
      pending.lookup = Buffer.concat([Buffer.of(OOB_KEY_LOOKUP), this.identity.sign(pending.partialKey)]);
    }
    c.lookupsSent++;
    this.core.sendOutOfBand(pending.partialKey, pending.lookup);
  }

  /**
   * 8.3: an IPv6 packet (core byte 0x01 already removed) that arrived from `source`'s session; or
   * (gsoSize > 0) a super-packet, whose segments must fit our MTU.
   */
  fromNetwork(source: Buffer, packet: Buffer, now: number, gsoSize = 0): void {
    const c = this.counters;
    c.netPackets++;
    if (packet.length < IPV6_HEADER_BYTES) {
      c.netTooShort++;
      return;
    }
    if ((packet[0]! & 0xf0) !== 0x60) {
      c.netNotIPv6++;
      return;
    }
    const unitBytes = gsoSize > 0 ? superPacketSegmentBytes(packet, gsoSize) : packet.length;
    if (unitBytes === 0) {
      c.superPacketsMalformed++;
      return;
    }
    if (unitBytes > this.mtu) {
      c.packetTooBigSent++;
      this.fromTun(buildPacketTooBig(packet, this.mtu), now);
      return;
    }
    const id = this.identity;
    if (!bytesAt(packet, 24, id.address) && !bytesAt(packet, 24, id.subnet)) {
      c.netBadDestination++;
      return;
    }
    const entry = this.learn(source, now);
    if (!bytesAt(packet, 8, entry.address) && !bytesAt(packet, 8, entry.subnet)) {
      c.netBadSource++;
      return;
    }
    const firewall = this.firewall;
    if (firewall) {
      const verdict = firewall.filterInbound(source, packet, now);
      if (verdict !== VERDICT_PASS) {
        c.firewallInDropped++;
        // The answer comes from the address the packet was for, back through the same session.
        if (verdict === VERDICT_REJECT) this.core.sendIPv6(source, buildAdminProhibited(packet), now);
        return;
      }
    }
    c.delivered++;
    if (gsoSize > 0) c.superPacketsDelivered++;
    this.tunWrite(packet, gsoSize);
  }

  /** A planetd-only core message (body after CORE_PLANETD) of a type gso.ts defines. */
  handlePlanetd(source: Buffer, body: Buffer, now: number): void {
    const c = this.counters;
    if (!this.superPackets) {
      c.superPacketsRefused++; // we never announced: a peer that sends anyway is ignored
      return;
    }
    if (body[0] === SIG_SUPER_ACCEPT) {
      c.superAcceptsHeard++;
      const entry = this.learn(source, now);
      entry.superPacketsUntil = now + SUPER_ACCEPT_TTL_MS;
      // An older planetd sends no flags: it takes super-packets but verifies ordinary checksums.
      const partial = body.length > 1 && (body[1]! & ACCEPT_PARTIAL_CHECKSUMS) !== 0;
      entry.partialChecksumsUntil = partial ? now + SUPER_ACCEPT_TTL_MS : 0;
    } else if (body[0] === SIG_SUPER_TCP6 && body.length > SUPER_HEADER_BYTES) {
      this.fromNetwork(source, body.subarray(SUPER_HEADER_BYTES), now, body.readUInt16BE(1));
    } else {
      c.superPacketsMalformed++;
    }
  }

  /** 8.2: kind-2 traffic delivered to us: a key lookup to answer or a response to learn from. */
  handleOutOfBand(source: Buffer, dest: Buffer, payload: Buffer, now: number): void {
    const c = this.counters;
    if (payload.length !== OOB_PAYLOAD_BYTES || source.length !== 32 || dest.length !== 32) {
      c.oobBadLength++;
      return;
    }
    const sig = payload.subarray(1);
    switch (payload[0]) {
      case OOB_KEY_LOOKUP: {
        // The lookup names a partial key; it is for us if it covers our /64 (hence also our address).
        if (!subnetForKey(dest).equals(this.identity.subnet)) {
          c.lookupsNotOurs++;
          return;
        }
        if (!verify(source, dest, sig)) {
          c.lookupsBadSignature++;
          return;
        }
        c.lookupsAnswered++;
        const requester = Buffer.from(source);
        const response = Buffer.concat([Buffer.of(OOB_KEY_RESPONSE), this.identity.sign(requester)]);
        this.core.sendOutOfBand(requester, response);
        return;
      }
      case OOB_KEY_RESPONSE: {
        if (!dest.equals(this.identity.publicKey)) {
          c.responsesNotOurs++;
          return;
        }
        if (!verify(source, dest, sig)) {
          c.responsesBadSignature++;
          return;
        }
        c.responsesAccepted++;
        this.learn(source, now);
        return;
      }
      default:
        c.oobUnknownType++;
    }
  }

  /** When handleTimeout next has work (ms since the epoch), or undefined if nothing is stored. */
  nextTimeout(): number | undefined {
    const keys = this.keys.nextDeadline();
    const flows = this.firewall?.nextTimeout();
    if (flows === undefined) return keys;
    return keys === undefined ? flows : Math.min(keys, flows);
  }

  /** Expire key store entries and pending packets (120 s each). */
  handleTimeout(now: number): void {
    const gone = this.keys.expire(now);
    this.counters.keysExpired += gone.keys;
    this.counters.pendingExpired += gone.pending;
    this.firewall?.handleTimeout(now);
  }

  stats(): Ipv6Stats {
    return {
      ...this.counters,
      keysEvicted: this.keys.evicted.keys,
      pendingEvicted: this.keys.evicted.pending,
    };
  }

  /** Known keys (for getSessions-like admin views). */
  knownKeys(): { key: Buffer; address: Buffer; subnet: Buffer; expires: number }[] {
    return this.keys
      .entries()
      .map((e) => ({ key: e.key, address: e.address, subnet: e.subnet, expires: e.expires }));
  }

  /**
   * Out to `entry`'s session (whole if gsoSize > 0: the caller checked the node takes super-packets),
   * unless the firewall says otherwise (a reject is answered on the TUN).
   */
  private send(entry: KeyEntry, packet: Buffer, now: number, gsoSize = 0, inPlace = false): void {
    const firewall = this.firewall;
    if (firewall) {
      const verdict = firewall.filterOutbound(entry.key, packet, now);
      if (verdict !== VERDICT_PASS) {
        this.counters.firewallOutDropped++;
        if (verdict === VERDICT_REJECT) this.tunWrite(buildAdminProhibited(packet), 0);
        return;
      }
    }
    this.counters.sent++;
    const core = this.core;
    if (
      this.superPackets &&
      core.sendPlanetd &&
      now - entry.superPacketsAnnounced >= SUPER_ANNOUNCE_MS &&
      core.hasSession?.(entry.key) !== false
    ) {
      entry.superPacketsAnnounced = now;
      this.counters.superAcceptsSent++;
      core.sendPlanetd(entry.key, SUPER_ACCEPT_BODY, now);
    }
    if (gsoSize === 0 || !core.sendPlanetd) {
      this.core.sendIPv6(entry.key, packet, now, inPlace);
      return;
    }
    this.counters.superPacketsSent++;
    const length = SUPER_HEADER_BYTES + packet.length;
    // In place: the header goes into the packet's headroom, not the packet (up to 64 kB) into superBody.
    if (inPlace) {
      const body = Buffer.from(packet.buffer, packet.byteOffset - SUPER_HEADER_BYTES, length);
      body[0] = SIG_SUPER_TCP6;
      body.writeUInt16BE(gsoSize, 1);
      core.sendPlanetd(entry.key, body, now, true);
      return;
    }
    if (!this.superBody) this.superBody = Buffer.allocUnsafe(SUPER_HEADER_BYTES + CORE_IPV6_MTU);
    const body = this.superBody;
    body[0] = SIG_SUPER_TCP6;
    body.writeUInt16BE(gsoSize, 1);
    packet.copy(body, SUPER_HEADER_BYTES);
    core.sendPlanetd(entry.key, body.subarray(0, length), now);
  }

  /** A super-packet for a node that does not take them (or not yet known): its segments, one by one. */
  private cut(packet: Buffer, gsoSize: number, now: number): void {
    const segments = this.superPackets ? this.superPackets.segment(packet, gsoSize) : [];
    if (segments.length === 0) {
      this.counters.superPacketsMalformed++;
      return;
    }
    this.counters.superPacketsCut++;
    for (const segment of segments) this.fromTun(segment, now);
  }

  /** Record the key and send whatever was waiting for its address or subnet. */
  private learn(key: Buffer, now: number): KeyEntry {
    const flushed = this.flushed;
    const entry = this.keys.learn(key, now, flushed);
    if (flushed.length > 0) {
      for (const packet of flushed) {
        this.counters.pendingFlushed++;
        this.send(entry, packet, now);
      }
      flushed.length = 0;
    }
    return entry;
  }
}
