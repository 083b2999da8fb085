// The stateful firewall of the IPv6 adapter. Inbound packets are checked after decryption (the
// remote key is the session's), outbound ones before encryption (the remote key is the one the
// packet is sent to). A packet of a tracked flow passes at once; otherwise the first matching rule
// of its direction, or the default, decides, and an accepted TCP, UDP or ICMPv6 echo packet opens a
// flow so the replies pass without a rule. ICMPv6 errors quoting a tracked flow pass as related;
// Packet Too Big and neighbour discovery always pass. Pure and allocation-free per packet.
import { TokenBucket } from "../util/token-bucket.js";
import {
  Conntrack,
  FLOW_CLOSING,
  FLOW_KEY_WORDS,
  FLOW_REPLIED,
  ORIGIN_INBOUND,
  ORIGIN_OUTBOUND,
} from "./conntrack.js";
import type { FirewallConfig } from "./firewall-config.js";
import {
  ACTION_ACCEPT,
  ACTION_NAMES,
  ACTION_REJECT,
  type LocalAddresses,
  RuleSet,
} from "./firewall-rules.js";

export const VERDICT_PASS = 0;
export const VERDICT_DROP = 1;
/** Drop and answer with ICMPv6 administratively prohibited (the rate limit allowed one). */
export const VERDICT_REJECT = 2;

const TCP = 6;
const UDP = 17;
const ICMPV6 = 58;
const ECHO_REQUEST = 128;
const ECHO_REPLY = 129;
const TCP_FIN = 0x01;
const TCP_RST = 0x04;

/** Flow timeouts (ms), after Linux's conntrack and RFC 5382 / RFC 4787. */
export const FLOW_TIMEOUTS = {
  tcpUnreplied: 60_000,
  tcpEstablished: 7_440_000,
  tcpClosing: 10_000,
  udpUnreplied: 30_000,
  udpReplied: 180_000,
  icmp: 30_000,
};
/** Rejections answered per second (burst 20); beyond that a rejected packet is only dropped. */
const REJECTS_PER_SECOND = 10;
const SWEEP_INTERVAL_MS = 1000;

export interface FirewallRuleView {
  index: number;
  name: string;
  action: string;
  match: string;
  hits: number;
}

export interface FirewallDirectionView {
  default: string;
  defaultHits: number;
  /** Packets of tracked flows (and related ICMPv6 errors) passed without the rules. */
  established: number;
  rules: FirewallRuleView[];
}

export interface FirewallView {
  inbound: FirewallDirectionView;
  outbound: FirewallDirectionView;
  flows: number;
  maxFlows: number;
  flowsEvicted: number;
  flowsExpired: number;
  /** Flows a reload removed because the new rules no longer allow them. */
  flowsRevoked: number;
  rejectsSent: number;
  rejectsRateLimited: number;
}

export interface CompiledFirewall {
  config: FirewallConfig;
  inbound: RuleSet;
  outbound: RuleSet;
}

/** Where the transport header of a packet starts and what it says; -1 for what it does not show. */
interface Parsed {
  protocol: number;
  offset: number;
  srcPort: number;
  dstPort: number;
  icmpType: number;
  tcpFlags: number;
}

function directionView(set: RuleSet, established: number): FirewallDirectionView {
  return {
    default: ACTION_NAMES[set.defaultAction]!,
    defaultHits: set.defaultHits,
    established,
    rules: set.rules.map((r, index) => ({
      index,
      name: r.label,
      action: ACTION_NAMES[r.action]!,
      match: r.describe(),
      hits: r.hits,
    })),
  };
}

export class Firewall {
  private inbound: RuleSet;
  private outbound: RuleSet;
  private readonly flows: Conntrack;
  private readonly rejects = new TokenBucket(REJECTS_PER_SECOND, 20);
  private readonly parsed = newParsed();
  private readonly inner = newParsed();
  private nextSweep = 0;
  private establishedIn = 0;
  private establishedOut = 0;
  private revoked = 0;
  private rejectsSent = 0;

  /** Throws FirewallRuleError (one line) for a Local prefix outside the node's /64. */
  constructor(
    config: FirewallConfig,
    private readonly self: LocalAddresses,
    private readonly path = "Planetd.Firewall",
  ) {
    ({ inbound: this.inbound, outbound: this.outbound } = this.compile(config));
    this.flows = new Conntrack(config.MaxFlows);
  }

  /** A packet from `peer` (the session's key) for this node or its /64, after the adapter's checks. */
  filterInbound(peer: Uint8Array, packet: Uint8Array, now: number): number {
    return this.filter(ORIGIN_INBOUND, peer, packet, now);
  }

  /** A packet from this node or its /64 about to be encrypted to `peer`. */
  filterOutbound(peer: Uint8Array, packet: Uint8Array, now: number): number {
    return this.filter(ORIGIN_OUTBOUND, peer, packet, now);
  }

  /** The rules of `config`, compiled; throws FirewallRuleError (one line) and changes nothing. */
  compile(config: FirewallConfig): CompiledFirewall {
    return {
      config,
      inbound: new RuleSet(config.Inbound, config.InboundDefault, `${this.path}.Inbound`, this.self),
      outbound: new RuleSet(config.Outbound, config.OutboundDefault, `${this.path}.Outbound`, this.self),
    };
  }

  /**
   * New rules (a reload). Flows the new rules would not accept as they were opened are removed;
   * the others keep passing. Hit counts stay with unchanged rules. MaxFlows does not change here.
   */
  replace(compiled: CompiledFirewall): void {
    const { inbound, outbound } = compiled;
    inbound.inheritHits(this.inbound);
    outbound.inheritHits(this.outbound);
    this.inbound = inbound;
    this.outbound = outbound;
    const keys = this.flows.flowKeys;
    const peers = this.flows.peerKeys;
    this.revoked += this.flows.retain((slot) => {
      const base = slot * FLOW_KEY_WORDS;
      const origin = this.flows.stateOf(slot) & (ORIGIN_INBOUND | ORIGIN_OUTBOUND);
      const protocol = keys[base + 8]!;
      const localPort = keys[base + 9]! >>> 16;
      const remotePort = keys[base + 9]! & 0xffff;
      const set = origin === ORIGIN_INBOUND ? inbound : outbound;
      const port = protocol === ICMPV6 ? -1 : origin === ORIGIN_INBOUND ? localPort : remotePort;
      const type = protocol === ICMPV6 ? ECHO_REQUEST : -1;
      const index = set.match(protocol, port, type, peers, slot * 32, keys, base, base + 4);
      const action = index < 0 ? set.defaultAction : set.rules[index]!.action;
      return action === ACTION_ACCEPT;
    });
  }

  /** When handleTimeout next has work: a slice of the table is swept every second while it holds flows. */
  nextTimeout(): number | undefined {
    return this.flows.size > 0 ? this.nextSweep : undefined;
  }

  handleTimeout(now: number): void {
    if (now < this.nextSweep) return;
    this.nextSweep = now + SWEEP_INTERVAL_MS;
    // The whole table in about 16 s.
    this.flows.sweep(now, Math.max(64, this.flows.slots >> 4));
  }

  view(): FirewallView {
    return {
      inbound: directionView(this.inbound, this.establishedIn),
      outbound: directionView(this.outbound, this.establishedOut),
      flows: this.flows.size,
      maxFlows: this.flows.maxFlows,
      flowsEvicted: this.flows.evicted,
      flowsExpired: this.flows.expired,
      flowsRevoked: this.revoked,
      rejectsSent: this.rejectsSent,
      rejectsRateLimited: this.rejects.refused,
    };
  }

  private filter(direction: number, peer: Uint8Array, packet: Uint8Array, now: number): number {
    const p = this.parsed;
    if (!parseTransport(packet, 0, packet.length, p)) return VERDICT_DROP;
    const remoteOff = direction === ORIGIN_INBOUND ? 8 : 24;
    const localOff = direction === ORIGIN_INBOUND ? 24 : 8;
    const localPort = direction === ORIGIN_INBOUND ? p.dstPort : p.srcPort;
    const remotePort = direction === ORIGIN_INBOUND ? p.srcPort : p.dstPort;
    const protocol = p.protocol;
    if (protocol === ICMPV6) {
      const type = p.icmpType;
      // Packet Too Big and neighbour discovery (router/neighbour solicitation and advertisement,
      // redirect) are never filtered: path MTU discovery and the link must keep working.
      if (type === 2 || (type >= 133 && type <= 137)) return VERDICT_PASS;
      if (type >= 1 && type <= 4 && this.isRelated(direction, packet, p.offset + 8, now)) {
        this.countEstablished(direction);
        return VERDICT_PASS;
      }
    }
    const tracked =
      ((protocol === TCP || protocol === UDP) && p.srcPort >= 0) ||
      (protocol === ICMPV6 && (p.icmpType === ECHO_REQUEST || p.icmpType === ECHO_REPLY) && p.srcPort >= 0);
    // The flow key's first eight words are the addresses the rules match, tracked or not.
    const key = this.flows.key;
    addressWords(key, packet, remoteOff, localOff);
    if (tracked) {
      // ICMPv6 echo: the identifier is the local port; the remote port holds the direction the
      // request went, so a reply matches its request and a request from the other side does not.
      const echoOrigin =
        p.icmpType === ECHO_REQUEST ? direction : ORIGIN_INBOUND + ORIGIN_OUTBOUND - direction;
      key[8] = protocol;
      key[9] = protocol === ICMPV6 ? (p.srcPort << 16) | echoOrigin : (localPort << 16) | remotePort;
      const slot = this.flows.find(now);
      if (slot >= 0) {
        this.refresh(slot, direction, protocol, p.tcpFlags, now);
        this.countEstablished(direction);
        return VERDICT_PASS;
      }
    }
    const set = direction === ORIGIN_INBOUND ? this.inbound : this.outbound;
    const port = protocol === TCP || protocol === UDP ? p.dstPort : -1;
    const action = set.decide(set.match(protocol, port, p.icmpType, peer, 0, key, 0, 4));
    if (action === ACTION_ACCEPT) {
      if (tracked && (protocol !== ICMPV6 || p.icmpType === ECHO_REQUEST)) {
        const expires = now + initialTimeout(protocol, p.tcpFlags);
        const closing = protocol === TCP && (p.tcpFlags & (TCP_FIN | TCP_RST)) !== 0 ? FLOW_CLOSING : 0;
        this.flows.insert(peer, 0, direction | closing, expires, now);
      }
      return VERDICT_PASS;
    }
    if (action !== ACTION_REJECT) return VERDICT_DROP;
    // Never an error about an ICMPv6 error (RFC 4443 2.4 e).
    if (protocol === ICMPV6 && p.icmpType >= 0 && p.icmpType < 128) return VERDICT_DROP;
    if (!this.rejects.take(now)) return VERDICT_DROP;
    this.rejectsSent++;
    return VERDICT_REJECT;
  }

  private countEstablished(direction: number): void {
    if (direction === ORIGIN_INBOUND) this.establishedIn++;
    else this.establishedOut++;
  }

  private refresh(slot: number, direction: number, protocol: number, tcpFlags: number, now: number): void {
    let state = this.flows.stateOf(slot);
    if ((state & direction) === 0) state |= FLOW_REPLIED;
    if (protocol === TCP && (tcpFlags & (TCP_FIN | TCP_RST)) !== 0) state |= FLOW_CLOSING;
    let timeout: number;
    if (protocol === TCP)
      timeout =
        (state & FLOW_CLOSING) !== 0
          ? FLOW_TIMEOUTS.tcpClosing
          : (state & FLOW_REPLIED) !== 0
            ? FLOW_TIMEOUTS.tcpEstablished
            : FLOW_TIMEOUTS.tcpUnreplied;
    else if (protocol === UDP)
      timeout = (state & FLOW_REPLIED) !== 0 ? FLOW_TIMEOUTS.udpReplied : FLOW_TIMEOUTS.udpUnreplied;
    else timeout = FLOW_TIMEOUTS.icmp;
    // A closing flow's deadline only comes closer.
    const expires =
      (state & FLOW_CLOSING) !== 0 ? Math.min(this.flows.expiresAt(slot), now + timeout) : now + timeout;
    this.flows.update(slot, state, expires);
  }

  /**
   * An ICMPv6 error (travelling in `direction`) whose quoted packet belongs to a tracked flow: the
   * quoted packet went the other way, so its destination is the remote end for an inbound error.
   */
  private isRelated(direction: number, packet: Uint8Array, innerOff: number, now: number): boolean {
    const q = this.inner;
    if (innerOff + 40 > packet.length || !parseTransport(packet, innerOff, packet.length, q)) return false;
    const innerInbound = direction !== ORIGIN_INBOUND;
    const remoteOff = innerOff + (innerInbound ? 8 : 24);
    const localOff = innerOff + (innerInbound ? 24 : 8);
    let localPort: number;
    let remotePort: number;
    if (q.protocol === TCP || q.protocol === UDP) {
      if (q.srcPort < 0) return false;
      localPort = innerInbound ? q.dstPort : q.srcPort;
      remotePort = innerInbound ? q.srcPort : q.dstPort;
    } else if (q.protocol === ICMPV6 && q.icmpType === ECHO_REQUEST && q.srcPort >= 0) {
      localPort = q.srcPort;
      remotePort = innerInbound ? ORIGIN_INBOUND : ORIGIN_OUTBOUND;
    } else return false;
    const key = this.flows.key;
    addressWords(key, packet, remoteOff, localOff);
    key[8] = q.protocol;
    key[9] = (localPort << 16) | remotePort;
    return this.flows.find(now) >= 0;
  }
}

/** Words 0..3 of `key`: the remote address, 4..7: the local one, read big-endian from `packet`. */
function addressWords(key: Uint32Array, packet: Uint8Array, remoteOff: number, localOff: number): void {
  for (let w = 0; w < 4; w++) {
    const r = remoteOff + w * 4;
    const l = localOff + w * 4;
    key[w] = (packet[r]! << 24) | (packet[r + 1]! << 16) | (packet[r + 2]! << 8) | packet[r + 3]!;
    key[4 + w] = (packet[l]! << 24) | (packet[l + 1]! << 16) | (packet[l + 2]! << 8) | packet[l + 3]!;
  }
}

function newParsed(): Parsed {
  return { protocol: 0, offset: 0, srcPort: -1, dstPort: -1, icmpType: -1, tcpFlags: 0 };
}

function initialTimeout(protocol: number, tcpFlags: number): number {
  if (protocol === TCP)
    return (tcpFlags & (TCP_FIN | TCP_RST)) !== 0 ? FLOW_TIMEOUTS.tcpClosing : FLOW_TIMEOUTS.tcpUnreplied;
  return protocol === UDP ? FLOW_TIMEOUTS.udpUnreplied : FLOW_TIMEOUTS.icmp;
}

/**
 * Walks the extension headers of the IPv6 packet at `start` to the transport header. Ports are -1 in
 * a non-first fragment or a truncated header; for ICMPv6 echo the identifier is in srcPort. False if
 * the extension headers run past the packet.
 */
export function parseTransport(packet: Uint8Array, start: number, end: number, out: Parsed): boolean {
  let protocol = packet[start + 6]!;
  let off = start + 40;
  let firstFragment = true;
  for (let n = 0; n < 8; n++) {
    if (protocol === 0 || protocol === 43 || protocol === 60 || protocol === 51) {
      if (off + 8 > end) return false;
      const next = packet[off]!;
      off += protocol === 51 ? (packet[off + 1]! + 2) * 4 : (packet[off + 1]! + 1) * 8;
      protocol = next;
    } else if (protocol === 44) {
      if (off + 8 > end) return false;
      const next = packet[off]!;
      firstFragment = (((packet[off + 2]! << 8) | packet[off + 3]!) & 0xfff8) === 0;
      off += 8;
      protocol = next;
      if (!firstFragment) break;
    } else break;
  }
  if (off > end) return false;
  out.protocol = protocol;
  out.offset = off;
  out.srcPort = -1;
  out.dstPort = -1;
  out.icmpType = -1;
  out.tcpFlags = 0;
  if (!firstFragment) return true;
  if ((protocol === TCP || protocol === UDP) && off + 4 <= end) {
    out.srcPort = (packet[off]! << 8) | packet[off + 1]!;
    out.dstPort = (packet[off + 2]! << 8) | packet[off + 3]!;
    if (protocol === TCP && off + 14 <= end) out.tcpFlags = packet[off + 13]!;
  } else if (protocol === ICMPV6 && off + 1 <= end) {
    out.icmpType = packet[off]!;
    if ((out.icmpType === ECHO_REQUEST || out.icmpType === ECHO_REPLY) && off + 6 <= end)
      out.srcPort = (packet[off + 4]! << 8) | packet[off + 5]!;
  }
  return true;
}
