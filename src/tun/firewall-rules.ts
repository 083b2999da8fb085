// Firewall rules compiled for the packet path: keys and prefixes as bytes, and per protocol an index
// from destination port (or ICMPv6 type) to the rules that can match it, in config order. A packet
// then checks only those candidates' keys and addresses; the first that matches decides.
import {
  type FirewallAction,
  type FirewallRuleConfig,
  PROTOCOL_NUMBERS,
  parsePortRange,
  parsePrefix,
} from "./firewall-config.js";

export const ACTION_ACCEPT = 0;
export const ACTION_DROP = 1;
export const ACTION_REJECT = 2;
export const ACTION_NAMES: readonly FirewallAction[] = ["accept", "drop", "reject"];
const ACTION_CODES: Record<FirewallAction, number> = { accept: 0, drop: 1, reject: 2 };

const TCP = 6;
const UDP = 17;
const ICMPV6 = 58;

/** A rule that names a Local prefix outside the node's /64: one line, like a config error. */
export class FirewallRuleError extends Error {
  override name = "FirewallRuleError";
}

/** The node's own addresses, for Local "self" and "subnet". */
export interface LocalAddresses {
  address: Uint8Array;
  /** The /64: its first 8 bytes matter. */
  subnet: Uint8Array;
}

/**
 * Prefixes as four 32-bit words and masks each; an address to match comes as words too (big-endian,
 * as the flow key holds it), so a /64 is two masked compares.
 */
class PrefixList {
  private readonly words: Uint32Array;
  private readonly masks: Uint32Array;

  constructor(prefixes: { bytes: Uint8Array; length: number }[]) {
    this.words = new Uint32Array(prefixes.length * 4);
    this.masks = new Uint32Array(prefixes.length * 4);
    prefixes.forEach((p, i) => {
      const view = new DataView(p.bytes.buffer, p.bytes.byteOffset, 16);
      for (let w = 0; w < 4; w++) {
        const bits = Math.max(0, Math.min(32, p.length - w * 32));
        const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
        this.masks[i * 4 + w] = mask;
        this.words[i * 4 + w] = (view.getUint32(w * 4) & mask) >>> 0;
      }
    });
  }

  matches(addr: Uint32Array, off: number): boolean {
    const { words, masks } = this;
    for (let base = 0; base < words.length; base += 4) {
      let w = 0;
      while (w < 4 && (addr[off + w]! & masks[base + w]!) >>> 0 === words[base + w]) w++;
      if (w === 4) return true;
    }
    return false;
  }
}

export class CompiledRule {
  /** Packets this rule decided (new flows and stateless packets; established flows pass without rules). */
  hits = 0;
  readonly action: number;
  readonly protocol: number;
  private readonly keys: Uint8Array | undefined;
  private readonly remotes: PrefixList | undefined;
  private readonly locals: PrefixList | undefined;
  private readonly ranges: Uint16Array | undefined;
  private readonly icmpTypes: Uint8Array | undefined;

  constructor(
    readonly config: FirewallRuleConfig,
    readonly label: string,
    path: string,
    self: LocalAddresses,
  ) {
    this.action = ACTION_CODES[config.Action];
    const proto = config.Protocol ?? "any";
    this.protocol = typeof proto === "number" ? proto : proto === "any" ? -1 : PROTOCOL_NUMBERS[proto]!;
    if (config.PublicKeys) {
      this.keys = new Uint8Array(config.PublicKeys.length * 32);
      config.PublicKeys.forEach((k, i) => this.keys!.set(Buffer.from(k, "hex"), i * 32));
    }
    if (config.Remote) this.remotes = new PrefixList(config.Remote.map((r) => parsePrefix(r)!));
    if (config.Local) {
      this.locals = new PrefixList(
        config.Local.map((l, i) => {
          if (l === "self") return { bytes: self.address, length: 128 };
          if (l === "subnet") return { bytes: padded(self.subnet), length: 64 };
          const prefix = parsePrefix(l)!;
          if (Buffer.compare(prefix.bytes.subarray(0, 8), self.subnet.subarray(0, 8)) !== 0) {
            const own = formatSubnet(self.subnet);
            throw new FirewallRuleError(
              `config: ${path}.Local[${i}] ${JSON.stringify(l)} is not inside this node's /64 (expected "self", "subnet" or a prefix inside ${own})`,
            );
          }
          return prefix;
        }),
      );
    }
    if (config.Ports) {
      this.ranges = new Uint16Array(config.Ports.length * 2);
      config.Ports.forEach((p, i) => this.ranges!.set(parsePortRange(p)!, i * 2));
    }
    if (config.IcmpTypes) {
      this.icmpTypes = new Uint8Array(256);
      for (const t of config.IcmpTypes) this.icmpTypes[t] = 1;
    }
  }

  /** Protocol, port and ICMPv6 type: what the index decides (port/type -1 = not known). */
  appliesTo(protocol: number, port: number, icmpType: number): boolean {
    if (this.protocol !== -1 && this.protocol !== protocol) return false;
    if (this.ranges) {
      if (port < 0) return false;
      let inside = false;
      for (let i = 0; i < this.ranges.length; i += 2)
        if (port >= this.ranges[i]! && port <= this.ranges[i + 1]!) inside = true;
      if (!inside) return false;
    }
    if (this.icmpTypes && (icmpType < 0 || this.icmpTypes[icmpType] !== 1)) return false;
    return true;
  }

  /** Key and addresses (as words, see PrefixList): what the index cannot decide. */
  matchesEnds(
    peer: Uint8Array,
    peerOff: number,
    addresses: Uint32Array,
    remoteOff: number,
    localOff: number,
  ): boolean {
    const keys = this.keys;
    if (keys) {
      let found = false;
      for (let base = 0; base < keys.length && !found; base += 32) {
        let i = 0;
        while (i < 32 && keys[base + i] === peer[peerOff + i]) i++;
        found = i === 32;
      }
      if (!found) return false;
    }
    if (this.remotes && !this.remotes.matches(addresses, remoteOff)) return false;
    if (this.locals && !this.locals.matches(addresses, localOff)) return false;
    return true;
  }

  /** One line for planetctl: "tcp port 22 key 1f2e3d4c…" and so on. */
  describe(): string {
    const c = this.config;
    const parts: string[] = [String(c.Protocol ?? "any")];
    if (c.Ports) parts.push(`port ${c.Ports.join(",")}`);
    if (c.IcmpTypes) parts.push(`type ${c.IcmpTypes.join(",")}`);
    if (c.PublicKeys)
      parts.push(
        c.PublicKeys.length === 1 ? `key ${c.PublicKeys[0]!.slice(0, 16)}…` : `${c.PublicKeys.length} keys`,
      );
    if (c.Remote) parts.push(`remote ${c.Remote.join(",")}`);
    if (c.Local) parts.push(`local ${c.Local.join(",")}`);
    return parts.join(" ");
  }
}

function padded(subnet: Uint8Array): Uint8Array {
  const out = new Uint8Array(16);
  out.set(subnet.subarray(0, 8));
  return out;
}

function formatSubnet(subnet: Uint8Array): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push(((subnet[i]! << 8) | subnet[i + 1]!).toString(16));
  return `${groups.join(":")}::/64`;
}

const EMPTY = new Int32Array(0);

/** Port → candidate rules for one transport protocol: intervals where the candidate set is constant. */
class PortIndex {
  private readonly starts: Int32Array;
  private readonly lists: Int32Array[];
  readonly noPort: Int32Array;

  constructor(rules: CompiledRule[], protocol: number) {
    const bounds = new Set<number>([0]);
    for (const r of rules) {
      for (const p of r.config.Ports ?? []) {
        const [low, high] = parsePortRange(p)!;
        bounds.add(low);
        if (high < 65535) bounds.add(high + 1);
      }
    }
    this.starts = Int32Array.from([...bounds].sort((a, b) => a - b));
    this.lists = [...this.starts].map((port) => candidates(rules, (r) => r.appliesTo(protocol, port, -1)));
    this.noPort = candidates(rules, (r) => r.appliesTo(protocol, -1, -1));
  }

  lookup(port: number): Int32Array {
    if (port < 0) return this.noPort;
    const starts = this.starts;
    let lo = 0;
    let hi = starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (starts[mid]! <= port) lo = mid;
      else hi = mid - 1;
    }
    return this.lists[lo]!;
  }
}

function candidates(rules: CompiledRule[], applies: (r: CompiledRule) => boolean): Int32Array {
  const out: number[] = [];
  rules.forEach((r, i) => {
    if (applies(r)) out.push(i);
  });
  return out.length === 0 ? EMPTY : Int32Array.from(out);
}

/** The rules of one direction and its default action. */
export class RuleSet {
  readonly rules: CompiledRule[];
  readonly defaultAction: number;
  defaultHits = 0;
  private readonly tcp: PortIndex;
  private readonly udp: PortIndex;
  /** ICMPv6 type → candidates; index 256 for a message too short to have a type. */
  private readonly icmp: Int32Array[];
  /** Other next-header values → candidates. */
  private readonly other: Int32Array[];

  constructor(
    configs: FirewallRuleConfig[],
    defaultAction: FirewallAction,
    path: string,
    self: LocalAddresses,
  ) {
    this.rules = configs.map((c, i) => new CompiledRule(c, c.Name ?? String(i), `${path}[${i}]`, self));
    this.defaultAction = ACTION_CODES[defaultAction];
    this.tcp = new PortIndex(this.rules, TCP);
    this.udp = new PortIndex(this.rules, UDP);
    this.icmp = Array.from({ length: 257 }, (_, t) =>
      candidates(this.rules, (r) => r.appliesTo(ICMPV6, -1, t === 256 ? -1 : t)),
    );
    this.other = Array.from({ length: 256 }, (_, p) => candidates(this.rules, (r) => r.appliesTo(p, -1, -1)));
  }

  /**
   * The index of the first rule matching, or -1 for the default. `port` is the destination port
   * (tcp/udp) and `icmpType` the ICMPv6 type, -1 when the packet does not show them. The remote and
   * local addresses are four big-endian words each in `addresses`.
   */
  match(
    protocol: number,
    port: number,
    icmpType: number,
    peer: Uint8Array,
    peerOff: number,
    addresses: Uint32Array,
    remoteOff: number,
    localOff: number,
  ): number {
    let list: Int32Array;
    if (protocol === TCP) list = this.tcp.lookup(port);
    else if (protocol === UDP) list = this.udp.lookup(port);
    else if (protocol === ICMPV6) list = this.icmp[icmpType < 0 ? 256 : icmpType]!;
    else list = this.other[protocol]!;
    const rules = this.rules;
    for (let i = 0; i < list.length; i++) {
      const index = list[i]!;
      if (rules[index]!.matchesEnds(peer, peerOff, addresses, remoteOff, localOff)) return index;
    }
    return -1;
  }

  /** Counts a decision and returns its action. */
  decide(index: number): number {
    if (index < 0) {
      this.defaultHits++;
      return this.defaultAction;
    }
    const rule = this.rules[index]!;
    rule.hits++;
    return rule.action;
  }

  /** Carries hit counts over from `old` for rules that are unchanged (same config, same name). */
  inheritHits(old: RuleSet): void {
    const previous = new Map<string, CompiledRule[]>();
    for (const r of old.rules) {
      const id = JSON.stringify(r.config);
      previous.set(id, [...(previous.get(id) ?? []), r]);
    }
    for (const r of this.rules) {
      const same = previous.get(JSON.stringify(r.config))?.shift();
      if (same) r.hits = same.hits;
    }
    if (old.defaultAction === this.defaultAction) this.defaultHits = old.defaultHits;
  }
}
