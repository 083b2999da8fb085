// `Planetd.Firewall` in the config file: shape, defaults and validation. Pure: every problem is one
// line naming the rule and the field, in the "config: <path> <got> <problem> (expected …)" form of
// src/config/config.ts. What depends on the node's identity (Local prefixes inside its /64) is checked
// when the rules are compiled (firewall-rules.ts), with the same kind of line.
import { isIP } from "node:net";
import { showValue as show } from "../util/show-value.js";

export type FirewallAction = "accept" | "drop" | "reject";
export const FIREWALL_ACTIONS: readonly FirewallAction[] = ["accept", "drop", "reject"];

export interface FirewallRuleConfig {
  /** A label for planetctl and the metrics; the rule's index when missing. */
  Name?: string;
  Action: FirewallAction;
  /** The remote node's public key (hex); any key when missing. */
  PublicKeys?: string[];
  /** The remote address: addresses or prefixes in 200::/7 (node addresses) or 300::/8 (subnets). */
  Remote?: string[];
  /** This side: "self" (the node's address), "subnet" (its /64) or prefixes inside its /64. */
  Local?: string[];
  /** "tcp", "udp", "icmpv6", "any" or an IPv6 next-header number; "any" when missing. */
  Protocol?: string | number;
  /** Destination ports ("22", "8000-8099") for tcp and udp. */
  Ports?: string[];
  /** ICMPv6 types (numbers, or names such as "echo-request") for icmpv6. */
  IcmpTypes?: number[];
}

export interface FirewallConfig {
  InboundDefault: FirewallAction;
  OutboundDefault: FirewallAction;
  /** Bound of the connection-tracking table. */
  MaxFlows: number;
  Inbound: FirewallRuleConfig[];
  Outbound: FirewallRuleConfig[];
}

export const DEFAULT_MAX_FLOWS = 16384;
export const MIN_MAX_FLOWS = 64;
export const MAX_MAX_FLOWS = 1 << 20;

export const ICMPV6_TYPE_NAMES: Record<string, number> = {
  "destination-unreachable": 1,
  "packet-too-big": 2,
  "time-exceeded": 3,
  "parameter-problem": 4,
  "echo-request": 128,
  "echo-reply": 129,
};

export const PROTOCOL_NUMBERS: Record<string, number> = { tcp: 6, udp: 17, icmpv6: 58 };

const TOP_FIELDS = ["InboundDefault", "OutboundDefault", "MaxFlows", "Inbound", "Outbound"] as const;
const RULE_FIELDS = [
  "Name",
  "Action",
  "PublicKeys",
  "Remote",
  "Local",
  "Protocol",
  "Ports",
  "IcmpTypes",
] as const;

export function defaultFirewallConfig(): FirewallConfig {
  return {
    InboundDefault: "accept",
    OutboundDefault: "accept",
    MaxFlows: DEFAULT_MAX_FLOWS,
    Inbound: [],
    Outbound: [],
  };
}

/** Collects problems instead of stopping at the first, so one pass reports every bad field. */
class Problems {
  readonly errors: string[] = [];
  add(path: string, got: unknown, problem: string, expected: string): undefined {
    this.errors.push(`config: ${path} ${show(got)} ${problem} (expected ${expected})`);
    return undefined;
  }
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** Fields matched exactly or case-insensitively; an unknown field in a rule is an error, not a warning,
 * because a misspelt matcher would silently widen the rule. */
function fields<K extends string>(
  p: Problems,
  path: string,
  obj: Record<string, unknown>,
  known: readonly K[],
): Map<K, unknown> {
  const out = new Map<K, unknown>();
  for (const key of Object.keys(obj)) {
    const match = known.find((k) => k === key) ?? known.find((k) => k.toLowerCase() === key.toLowerCase());
    if (match === undefined) p.add(`${path}.${key}`, obj[key], "is not a field here", known.join(", "));
    else out.set(match, obj[key]);
  }
  return out;
}

/** A single value or a list of them, each checked by `item` (which reports its own problems). */
function listOf<T>(
  p: Problems,
  path: string,
  value: unknown,
  expected: string,
  item: (path: string, v: unknown) => T | undefined,
): T[] | undefined {
  if (value === null || value === undefined) return undefined;
  if (!Array.isArray(value)) {
    if (typeof value === "string" || typeof value === "number") {
      const one = item(path, value);
      return one === undefined ? undefined : [one];
    }
    return p.add(path, value, "is not a list", expected);
  }
  const out: T[] = [];
  value.forEach((v, i) => {
    const one = item(`${path}[${i}]`, v);
    if (one !== undefined) out.push(one);
  });
  return out.length === value.length ? out : undefined;
}

function action(p: Problems, path: string, value: unknown): FirewallAction | undefined {
  const text = typeof value === "string" ? value.toLowerCase() : undefined;
  if (text !== undefined && (FIREWALL_ACTIONS as readonly string[]).includes(text))
    return text as FirewallAction;
  return p.add(path, value, "is not an action", '"accept", "drop" or "reject"');
}

/** "a:b::/n" or an address (/128), inside `within` (first byte pattern). */
export function parsePrefix(text: string): { bytes: Buffer; length: number } | undefined {
  const slash = text.indexOf("/");
  const addr = slash < 0 ? text : text.slice(0, slash);
  const lenText = slash < 0 ? "128" : text.slice(slash + 1);
  if (isIP(addr) !== 6 || !/^\d{1,3}$/.test(lenText)) return undefined;
  const length = Number(lenText);
  if (length > 128) return undefined;
  const bytes = Buffer.alloc(16);
  const [head, tail] = addr.includes("::") ? addr.split("::") : [addr, undefined];
  const groups = (s: string | undefined) => (s ? s.split(":") : []);
  const front = groups(head);
  const back = groups(tail);
  const all =
    tail === undefined ? front : [...front, ...Array(8 - front.length - back.length).fill("0"), ...back];
  if (all.some((g) => g.includes("."))) return undefined; // no IPv4-embedded forms in the overlay
  all.forEach((g, i) => bytes.writeUInt16BE(Number.parseInt(g, 16), i * 2));
  // Host bits set below the prefix length are cleared, as ip(8) does.
  for (let bit = length; bit < 128; bit++) bytes[bit >> 3]! &= ~(0x80 >> (bit & 7));
  return { bytes, length };
}

function remote(p: Problems, path: string, value: unknown): string | undefined {
  const expected = "an address or prefix in 200::/7, e.g. 201:abcd::/32 or 300:1234:5678:9abc::/64";
  if (typeof value !== "string") return p.add(path, value, "is not an address", expected);
  const parsed = parsePrefix(value);
  if (!parsed) return p.add(path, value, "is not an IPv6 address or prefix", expected);
  if (parsed.length < 7 || (parsed.bytes[0]! & 0xfe) !== 0x02)
    return p.add(path, value, "is not inside 200::/7", expected);
  return value;
}

function local(p: Problems, path: string, value: unknown): string | undefined {
  const expected = '"self", "subnet" or a prefix inside this node\'s /64 (300::/8)';
  if (typeof value !== "string") return p.add(path, value, "is not a local destination", expected);
  const lower = value.toLowerCase();
  if (lower === "self" || lower === "subnet") return lower;
  const parsed = parsePrefix(value);
  if (!parsed) return p.add(path, value, "is not a local destination", expected);
  if (parsed.length < 64 || parsed.bytes[0] !== 0x03)
    return p.add(path, value, "is not a prefix of /64 or longer in 300::/8", expected);
  return value;
}

function publicKey(p: Problems, path: string, value: unknown): string | undefined {
  if (typeof value === "string" && /^[0-9a-fA-F]{64}$/.test(value)) return value.toLowerCase();
  return p.add(path, value, "is not a public key", "64 hex characters (an ed25519 public key)");
}

function protocol(p: Problems, path: string, value: unknown): string | number | undefined {
  const expected = '"tcp", "udp", "icmpv6", "any" or a next-header number 0..255';
  if (typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 255) return value;
  const text = typeof value === "string" ? value.toLowerCase() : "";
  if (text === "any" || text in PROTOCOL_NUMBERS) return text;
  return p.add(path, value, "is not a protocol", expected);
}

/** "80", "80-90" or 80 → [low, high]; undefined when it is not a range. */
export function parsePortRange(value: string | number): [number, number] | undefined {
  const match = /^\s*(\d{1,5})\s*(?:-\s*(\d{1,5})\s*)?$/.exec(String(value));
  if (!match) return undefined;
  const low = Number(match[1]);
  const high = match[2] === undefined ? low : Number(match[2]);
  return low <= high && high <= 65535 ? [low, high] : undefined;
}

function ports(p: Problems, path: string, value: unknown): string | undefined {
  if ((typeof value === "string" || typeof value === "number") && parsePortRange(value)) return String(value);
  return p.add(path, value, "is not a port range", "80 or 80-90");
}

function icmpType(p: Problems, path: string, value: unknown): number | undefined {
  const expected = `a number 0..255 or one of ${Object.keys(ICMPV6_TYPE_NAMES).join(", ")}`;
  if (typeof value === "number" && Number.isInteger(value) && value >= 0 && value <= 255) return value;
  if (typeof value === "string" && value.toLowerCase() in ICMPV6_TYPE_NAMES)
    return ICMPV6_TYPE_NAMES[value.toLowerCase()];
  return p.add(path, value, "is not an ICMPv6 type", expected);
}

function rule(p: Problems, path: string, value: unknown): FirewallRuleConfig | undefined {
  if (!isObject(value))
    return p.add(path, value, "is not a rule", '{ Action: "accept", Protocol: "tcp", Ports: "22", ... }');
  const before = p.errors.length;
  const f = fields(p, path, value, RULE_FIELDS);
  const out: FirewallRuleConfig = { Action: "drop" };
  if (!f.has("Action"))
    p.errors.push(`config: ${path}.Action is missing (expected "accept", "drop" or "reject")`);
  else out.Action = action(p, `${path}.Action`, f.get("Action")) ?? "drop";
  if (f.has("Name")) {
    const name = f.get("Name");
    if (typeof name === "string" && name.length <= 64) out.Name = name;
    else p.add(`${path}.Name`, name, "is not a name", "a string of at most 64 characters");
  }
  const keys = "64-hex-character public keys";
  if (f.has("PublicKeys"))
    out.PublicKeys = listOf(p, `${path}.PublicKeys`, f.get("PublicKeys"), keys, (q, v) => publicKey(p, q, v));
  if (f.has("Remote"))
    out.Remote = listOf(p, `${path}.Remote`, f.get("Remote"), "addresses or prefixes", (q, v) =>
      remote(p, q, v),
    );
  if (f.has("Local"))
    out.Local = listOf(p, `${path}.Local`, f.get("Local"), '"self", "subnet" or prefixes', (q, v) =>
      local(p, q, v),
    );
  if (f.has("Protocol")) out.Protocol = protocol(p, `${path}.Protocol`, f.get("Protocol"));
  const proto = out.Protocol;
  if (f.has("Ports")) {
    out.Ports = listOf(p, `${path}.Ports`, f.get("Ports"), "80 or 80-90, or a list of them", (q, v) =>
      ports(p, q, v),
    );
    if (proto !== "tcp" && proto !== "udp" && proto !== 6 && proto !== 17)
      p.add(`${path}.Ports`, f.get("Ports"), "needs a Protocol of tcp or udp", 'Protocol: "tcp" or "udp"');
  }
  if (f.has("IcmpTypes")) {
    out.IcmpTypes = listOf(p, `${path}.IcmpTypes`, f.get("IcmpTypes"), "ICMPv6 types", (q, v) =>
      icmpType(p, q, v),
    );
    if (proto !== "icmpv6" && proto !== 58)
      p.add(`${path}.IcmpTypes`, f.get("IcmpTypes"), "needs a Protocol of icmpv6", 'Protocol: "icmpv6"');
  }
  return p.errors.length === before ? out : undefined;
}

function rules(p: Problems, path: string, value: unknown): FirewallRuleConfig[] {
  if (value === null || value === undefined) return [];
  if (!Array.isArray(value)) {
    p.add(path, value, "is not a list", '[{ Action: "accept", Protocol: "tcp", Ports: "22" }]');
    return [];
  }
  const out: FirewallRuleConfig[] = [];
  value.forEach((v, i) => {
    const r = rule(p, `${path}[${i}]`, v);
    if (r) out.push(r);
  });
  return out;
}

/**
 * Reads `Planetd.Firewall`. Returns every problem found (one line each); the config is usable only
 * when `errors` is empty.
 */
export function readFirewallConfig(
  value: unknown,
  path = "Planetd.Firewall",
): { firewall: FirewallConfig | undefined; errors: string[] } {
  const p = new Problems();
  if (value === null || value === undefined) return { firewall: undefined, errors: [] };
  if (!isObject(value)) {
    p.add(path, value, "is not an object", '{ InboundDefault: "drop", Inbound: [ ... ] }');
    return { firewall: undefined, errors: p.errors };
  }
  const f = fields(p, path, value, TOP_FIELDS);
  const out = defaultFirewallConfig();
  if (f.has("InboundDefault"))
    out.InboundDefault = action(p, `${path}.InboundDefault`, f.get("InboundDefault")) ?? "drop";
  if (f.has("OutboundDefault"))
    out.OutboundDefault = action(p, `${path}.OutboundDefault`, f.get("OutboundDefault")) ?? "drop";
  if (f.has("MaxFlows")) {
    const n = f.get("MaxFlows");
    if (typeof n === "number" && Number.isInteger(n) && n >= MIN_MAX_FLOWS && n <= MAX_MAX_FLOWS)
      out.MaxFlows = n;
    else p.add(`${path}.MaxFlows`, n, "is out of range", `a whole number ${MIN_MAX_FLOWS}..${MAX_MAX_FLOWS}`);
  }
  out.Inbound = rules(p, `${path}.Inbound`, f.get("Inbound"));
  out.Outbound = rules(p, `${path}.Outbound`, f.get("Outbound"));
  return { firewall: p.errors.length === 0 ? out : undefined, errors: p.errors };
}
