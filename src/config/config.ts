// The config file: Yggdrasil 0.4.7's schema (spec 10) in HJSON or JSON, plus planetd's own keys in
// one nested `Planetd` object that Yggdrasil ignores. Like Yggdrasil, a fresh default config (with a
// new random key) is generated first and the file's values are laid over it, so every key is optional.
// Unlike Yggdrasil, a value of the wrong type or shape is refused with one line naming it; the whole
// file is checked first, so every problem is reported at once.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname } from "node:path";
import type HjsonModule from "hjson";
import { Identity } from "../crypto/identity.js";
import type { MulticastInterfaceConfig } from "../overlay/links/multicast.js";
import { parseListenUri, parsePeerUri } from "../overlay/links/uri.js";
import { type FirewallConfig, readFirewallConfig } from "../tun/firewall-config.js";
import { showValue as show } from "../util/show-value.js";
import { defaultAdminListen } from "./paths.js";

// An ES import of CommonJS costs idle memory (src/crypto/box.ts says how much).
const Hjson = createRequire(import.meta.url)("hjson") as typeof HjsonModule;

export type { MulticastInterfaceConfig };

export interface PlanetdSettings {
  /** "none", or host:port for the Prometheus endpoint, e.g. "127.0.0.1:9464". */
  MetricsListen: string;
  LogLevel: string;
  /** Largest UDP payload a udp:// link's datagram size search may settle on (1232..65507; unset: 65507). */
  UdpMaxDatagram?: number;
  /** The TUN firewall (src/tun/firewall-config.ts); none when unset. */
  Firewall?: FirewallConfig;
  /** Hole-punch direct udp:// links to session peers behind NATs (default true; false turns it off). */
  NatTraversal?: boolean;
  /** Multicast Beacon interfaces also announce a udp:// listener; planetd peers then link over udp:// (default false). */
  MulticastUdp?: boolean;
}

export interface PlanetConfig {
  Peers: string[];
  InterfacePeers: Record<string, string[]>;
  Listen: string[];
  AdminListen: string;
  MulticastInterfaces: MulticastInterfaceConfig[];
  AllowedPublicKeys: string[];
  PrivateKey: string;
  IfName: string;
  IfMTU: number;
  NodeInfoPrivacy: boolean;
  NodeInfo: Record<string, unknown>;
  Planetd: PlanetdSettings;
}

export class ConfigError extends Error {
  override name = "ConfigError";
}

export const LOG_LEVELS = ["error", "warn", "info", "debug", "trace"] as const;
/** Yggdrasil refuses larger NodeInfo at start (spec 10). */
export const MAX_NODEINFO_BYTES = 16384;

const TOP_KEYS = [
  "Peers",
  "InterfacePeers",
  "Listen",
  "AdminListen",
  "MulticastInterfaces",
  "AllowedPublicKeys",
  "PublicKey",
  "PrivateKey",
  "IfName",
  "IfMTU",
  "NodeInfoPrivacy",
  "NodeInfo",
  "Planetd",
] as const;
type TopKey = (typeof TOP_KEYS)[number];

/** Keys of Yggdrasil 0.3 configs that 0.4 silently drops; naming them saves the operator a search. */
const LEGACY_KEYS = new Set([
  "EncryptionPublicKey",
  "EncryptionPrivateKey",
  "SigningPublicKey",
  "SigningPrivateKey",
  "LinkLocalTCPPort",
  "SessionFirewall",
  "TunnelRouting",
  "SwitchOptions",
  "IfTAPMode",
]);

const MULTICAST_KEYS = ["Regex", "Beacon", "Listen", "Port", "Priority"] as const;
const PLANETD_KEYS = [
  "MetricsListen",
  "LogLevel",
  "UdpMaxDatagram",
  "Firewall",
  "NatTraversal",
  "MulticastUdp",
] as const;

export function defaultMulticastInterfaces(): MulticastInterfaceConfig[] {
  return [{ Regex: ".*", Beacon: true, Listen: true, Port: 0, Priority: 0 }];
}

export function generateConfig(): PlanetConfig {
  return {
    Peers: [],
    InterfacePeers: {},
    Listen: [],
    AdminListen: defaultAdminListen(),
    MulticastInterfaces: defaultMulticastInterfaces(),
    AllowedPublicKeys: [],
    PrivateKey: Identity.generate().privateKeyHex,
    IfName: "auto",
    IfMTU: 65535,
    NodeInfoPrivacy: false,
    NodeInfo: {},
    Planetd: { MetricsListen: "none", LogLevel: "info" },
  };
}

// ---------------------------------------------------------------------------------------------
// Validation helpers: each throws a ConfigError "config: <path> <got> <problem> (expected …)".

function fail(path: string, got: unknown, problem: string, expected: string): never {
  throw new ConfigError(`config: ${path} ${show(got)} ${problem} (expected ${expected})`);
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function typeName(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "a list";
  if (typeof value === "object") return "an object";
  if (typeof value === "number") return "a number";
  if (typeof value === "boolean") return "a boolean";
  return "a string";
}

function asString(path: string, value: unknown, expected: string): string {
  if (typeof value !== "string") fail(path, value, `is ${typeName(value)}`, expected);
  return value;
}

function asBool(path: string, value: unknown): boolean {
  if (typeof value !== "boolean") fail(path, value, `is ${typeName(value)}`, "true or false");
  return value;
}

function asInteger(path: string, value: unknown, min: number, max: number, expected: string): number {
  if (typeof value !== "number") fail(path, value, "is not a number", expected);
  if (!Number.isInteger(value)) fail(path, value, "is not a whole number", expected);
  if (value < min || value > max) fail(path, value, "is out of range", expected);
  return value;
}

function asList(path: string, value: unknown, expected: string): unknown[] {
  if (value === null) return [];
  if (!Array.isArray(value)) fail(path, value, `is ${typeName(value)}`, expected);
  return value;
}

type UriRole = "peer" | "listen" | "admin";

/** Checked with the link layer's own parser, so whatever loads here is what the links can dial. */
function linkUri(path: string, value: unknown, role: UriRole): string {
  const uri = asString(
    path,
    value,
    role === "listen" ? "a URI like tls://[::]:0" : "a URI like tls://host:port",
  );
  try {
    const parsed = role === "listen" ? parseListenUri(uri) : parsePeerUri(uri);
    if (role === "admin" && parsed.scheme === "tls") {
      fail(path, uri, "uses tls://", "unix:///path/to.sock or tcp://127.0.0.1:9001");
    }
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    const message = (err as Error).message;
    // The parser's messages start with the quoted URI; keep that and put the key in front.
    const quoted = JSON.stringify(uri);
    throw new ConfigError(
      `config: ${path} ${message.startsWith(quoted) ? message : `${quoted}: ${message}`}`,
    );
  }
  return uri;
}

function hexKey(path: string, value: unknown): string {
  const key = asString(path, value, "64 hex characters (an ed25519 public key)");
  if (!/^[0-9a-fA-F]{64}$/.test(key)) {
    fail(path, key, "is not a public key", "64 hex characters (an ed25519 public key)");
  }
  return key.toLowerCase();
}

// ---------------------------------------------------------------------------------------------

interface Reader {
  warnings: string[];
  /** One line per problem, in file order: a config is checked to the end so all of them show at once. */
  errors: string[];
}

/** At most this many problem lines; a file of 500 bad peers needs the first few, not a screenful. */
const MAX_ERROR_LINES = 20;

/** Runs one check; a ConfigError becomes lines in r.errors and the value is left out (undefined). */
function check<T>(r: Reader, read: () => T): T | undefined {
  try {
    return read();
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    r.errors.push(...err.message.split("\n"));
    return undefined;
  }
}

/** Checks every element of a list, so that three bad peers give three lines. */
function checkEach<T>(r: Reader, list: unknown[], read: (item: unknown, i: number) => T | undefined): T[] {
  const out: T[] = [];
  list.forEach((item, i) => {
    const value = check(r, () => read(item, i));
    if (value !== undefined) out.push(value);
  });
  return out;
}

/** Known keys in `obj` matched exactly or, as Go's encoding/json does, case-insensitively (with a warning). */
function pickKeys<K extends string>(
  r: Reader,
  prefix: string,
  obj: Record<string, unknown>,
  known: readonly K[],
  unknownHint: (key: string) => string,
): Map<K, unknown> {
  const picked = new Map<K, unknown>();
  for (const key of Object.keys(obj)) {
    const exact = known.find((k) => k === key);
    const loose = exact ?? known.find((k) => k.toLowerCase() === key.toLowerCase());
    if (loose === undefined) {
      r.warnings.push(`config: unknown key ${prefix}${key} ignored${unknownHint(key)}`);
      continue;
    }
    if (exact === undefined) r.warnings.push(`config: key ${prefix}${key} read as ${prefix}${loose}`);
    picked.set(loose, obj[key]);
  }
  return picked;
}

function readMulticast(r: Reader, value: unknown): MulticastInterfaceConfig[] {
  const expected = 'a list like [{ Regex: ".*", Beacon: true, Listen: true, Port: 0, Priority: 0 }]';
  return checkEach(r, asList("MulticastInterfaces", value, expected), (entry, i) => {
    const path = `MulticastInterfaces[${i}]`;
    if (!isPlainObject(entry))
      fail(path, entry, `is ${typeName(entry)}`, "an object { Regex, Beacon, Listen, Port, Priority }");
    const keys = pickKeys(r, `${path}.`, entry, MULTICAST_KEYS, () => "");
    // Go starts each list element from its zero value, so a missing field is "", false or 0.
    const out: MulticastInterfaceConfig = { Regex: "", Beacon: false, Listen: false, Port: 0, Priority: 0 };
    const before = r.errors.length;
    const field = <K extends keyof MulticastInterfaceConfig>(
      name: K,
      read: (field: string, value: unknown) => MulticastInterfaceConfig[K],
    ) =>
      check(r, () => {
        if (keys.has(name)) out[name] = read(`${path}.${name}`, keys.get(name));
      });
    field("Regex", (field, value) => {
      const regex = asString(field, value, 'a regular expression such as ".*"');
      try {
        new RegExp(regex);
      } catch {
        fail(field, regex, "is not a valid regular expression", 'a regular expression such as "^eth"');
      }
      return regex;
    });
    field("Beacon", asBool);
    field("Listen", asBool);
    field("Port", (field, value) => asInteger(field, value, 0, 65535, "a port 0..65535 (0 = random)"));
    field("Priority", (field, value) => asInteger(field, value, 0, 255, "a number 0..255"));
    return r.errors.length === before ? out : undefined;
  });
}

function readPlanetd(r: Reader, value: unknown, base: PlanetdSettings): PlanetdSettings {
  const out = { ...base };
  if (value === null) return out;
  if (!isPlainObject(value))
    fail("Planetd", value, `is ${typeName(value)}`, "an object { MetricsListen, LogLevel }");
  const keys = pickKeys(r, "Planetd.", value, PLANETD_KEYS, () => "");
  check(r, () => {
    if (!keys.has("MetricsListen")) return;
    const expected = '"none" or host:port, e.g. "127.0.0.1:9464"';
    const listen = asString("Planetd.MetricsListen", keys.get("MetricsListen"), expected);
    if (listen !== "none") {
      try {
        parseListenUri(`tcp://${listen}`);
      } catch {
        fail("Planetd.MetricsListen", listen, "is not host:port", expected);
      }
    }
    out.MetricsListen = listen;
  });
  check(r, () => {
    if (!keys.has("LogLevel")) return;
    const expected = LOG_LEVELS.join(", ");
    const level = asString("Planetd.LogLevel", keys.get("LogLevel"), expected);
    if (!(LOG_LEVELS as readonly string[]).includes(level))
      fail("Planetd.LogLevel", level, "is not a log level", expected);
    out.LogLevel = level;
  });
  check(r, () => {
    if (!keys.has("UdpMaxDatagram")) return;
    const expected = "a datagram size in bytes, 1232..65507";
    out.UdpMaxDatagram = asInteger(
      "Planetd.UdpMaxDatagram",
      keys.get("UdpMaxDatagram"),
      1232,
      65507,
      expected,
    );
  });
  check(r, () => {
    if (keys.has("NatTraversal")) out.NatTraversal = asBool("Planetd.NatTraversal", keys.get("NatTraversal"));
  });
  check(r, () => {
    if (keys.has("MulticastUdp")) out.MulticastUdp = asBool("Planetd.MulticastUdp", keys.get("MulticastUdp"));
  });
  if (keys.has("Firewall")) {
    // Every bad rule field is its own line.
    const { firewall, errors } = readFirewallConfig(keys.get("Firewall"));
    r.errors.push(...errors);
    if (errors.length === 0) out.Firewall = firewall;
  }
  return out;
}

function readInterfacePeers(r: Reader, value: unknown): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  if (value === null) return out;
  const expected = 'an object like { "eth0": ["tls://host:port"] }';
  if (!isPlainObject(value)) fail("InterfacePeers", value, `is ${typeName(value)}`, expected);
  for (const [iface, peers] of Object.entries(value)) {
    const path = `InterfacePeers[${JSON.stringify(iface)}]`;
    check(r, () => {
      out[iface] = checkEach(r, asList(path, peers, 'a list like ["tls://host:port"]'), (p, i) =>
        linkUri(`${path}[${i}]`, p, "peer"),
      );
    });
  }
  return out;
}

function readNodeInfo(value: unknown): Record<string, unknown> {
  if (value === null) return {};
  if (!isPlainObject(value))
    fail("NodeInfo", value, `is ${typeName(value)}`, 'an object like { "name": "alpha" }, or null');
  const size = Buffer.byteLength(JSON.stringify(value));
  if (size > MAX_NODEINFO_BYTES) {
    throw new ConfigError(
      `config: NodeInfo is ${size} bytes as JSON (expected at most ${MAX_NODEINFO_BYTES})`,
    );
  }
  return value;
}

function readIfName(value: unknown): string {
  const expected = '"auto", "none" or an interface name of at most 15 characters';
  const name = asString("IfName", value, expected);
  if (name === "" || name.length > 15 || /[\s/:]/.test(name))
    fail("IfName", name, "is not an interface name", expected);
  return name;
}

function parseText(text: string, source: string): Record<string, unknown> {
  const body = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
  let raw: unknown;
  try {
    raw = Hjson.parse(body);
  } catch (err) {
    const detail = (err instanceof Error ? err.message : String(err))
      .split("\n")[0]!
      .split(" >>>")[0]!
      .trim();
    throw new ConfigError(`config: ${source} is not valid HJSON or JSON: ${detail}`);
  }
  if (raw === null || raw === undefined) return {};
  if (!isPlainObject(raw)) {
    throw new ConfigError(
      `config: ${source} holds ${typeName(raw)} at the top level (expected an object { ... })`,
    );
  }
  return raw;
}

export function parseConfig(text: string, source: string): { config: PlanetConfig; warnings: string[] } {
  const raw = parseText(text, source);
  const r: Reader = { warnings: [], errors: [] };
  const keys = pickKeys<TopKey>(r, "", raw, TOP_KEYS, (key) =>
    LEGACY_KEYS.has(key) ? " (a Yggdrasil 0.3 setting; 0.4 ignores it too)" : "",
  );
  const config = generateConfig();
  for (const [key, value] of keys) check(r, () => readTopKey(r, config, key, value));
  if (!keys.has("PrivateKey") || keys.get("PrivateKey") === null) {
    r.warnings.push("config: no PrivateKey, so this run uses a new random identity (and a new address)");
  }
  const identity = r.errors.some((e) => e.startsWith("config: PrivateKey"))
    ? undefined
    : check(r, () => identityFromConfig(config));
  if (r.errors.length > 0) {
    const shown = r.errors.slice(0, MAX_ERROR_LINES);
    if (r.errors.length > shown.length)
      shown.push(
        `config: ${r.errors.length - shown.length} more problems not shown; fix the ones above first`,
      );
    throw new ConfigError(shown.join("\n"));
  }
  const stated = keys.get("PublicKey");
  if (typeof stated === "string" && stated.toLowerCase() !== identity!.publicKey.toString("hex")) {
    r.warnings.push("config: PublicKey does not match PrivateKey; it is informational and ignored");
  }
  if (config.IfMTU < 1280)
    r.warnings.push(`config: IfMTU ${config.IfMTU} is below 1280 and is raised to 1280`);
  return { config, warnings: r.warnings };
}

/** Reads one top-level key into `config`; list elements are checked one by one into r.errors. */
function readTopKey(r: Reader, config: PlanetConfig, key: TopKey, value: unknown): void {
  const keyList = "a list of 64-hex-character public keys";
  switch (key) {
    case "Peers":
      config.Peers = checkEach(r, asList(key, value, 'a list like ["tls://host:port"]'), (p, i) =>
        linkUri(`Peers[${i}]`, p, "peer"),
      );
      break;
    case "InterfacePeers":
      config.InterfacePeers = readInterfacePeers(r, value);
      break;
    case "Listen": {
      // Configs from before 0.4 held one string; Yggdrasil still accepts that.
      const list = typeof value === "string" ? [value] : asList(key, value, 'a list like ["tls://[::]:0"]');
      config.Listen = checkEach(r, list, (l, i) => linkUri(`Listen[${i}]`, l, "listen"));
      break;
    }
    case "AdminListen": {
      if (value === null) break;
      const admin = asString(key, value, '"none", unix:///path/to.sock or tcp://127.0.0.1:9001');
      config.AdminListen = admin === "none" ? admin : linkUri(key, admin, "admin");
      break;
    }
    case "MulticastInterfaces":
      config.MulticastInterfaces = readMulticast(r, value);
      break;
    case "AllowedPublicKeys":
      config.AllowedPublicKeys = checkEach(r, asList(key, value, keyList), (k, i) =>
        hexKey(`AllowedPublicKeys[${i}]`, k),
      );
      break;
    case "PublicKey":
      break; // informational; checked against PrivateKey below
    case "PrivateKey":
      if (value !== null) config.PrivateKey = asString(key, value, "128 hex characters (seed ‖ public key)");
      break;
    case "IfName":
      if (value !== null) config.IfName = readIfName(value);
      break;
    case "IfMTU":
      if (value !== null)
        config.IfMTU = asInteger(key, value, 0, Number.MAX_SAFE_INTEGER, "a whole number, e.g. 65535");
      break;
    case "NodeInfoPrivacy":
      if (value !== null) config.NodeInfoPrivacy = asBool(key, value);
      break;
    case "NodeInfo":
      config.NodeInfo = readNodeInfo(value);
      break;
    case "Planetd":
      config.Planetd = readPlanetd(r, value, config.Planetd);
      break;
  }
}

/** Text of a config file: UTF-8 (optionally with a BOM) or UTF-16 with a BOM, as Windows editors write it. */
export function decodeConfigBytes(bytes: Buffer): string {
  if (bytes.length >= 2 && bytes[0] === 0xff && bytes[1] === 0xfe)
    return bytes.subarray(2).toString("utf16le");
  if (bytes.length >= 2 && bytes[0] === 0xfe && bytes[1] === 0xff) {
    const swapped = Buffer.from(bytes.subarray(2, 2 + ((bytes.length - 2) & ~1)));
    return swapped.swap16().toString("utf16le");
  }
  return bytes.toString("utf8");
}

const READ_ERRORS: Record<string, string> = {
  ENOENT: "no such file",
  EACCES: "permission denied",
  EISDIR: "is a directory",
  ENOTDIR: "a part of the path is not a directory",
};

export function loadConfigFile(path: string): { config: PlanetConfig; warnings: string[] } {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code ?? "";
    throw new ConfigError(`config: cannot read ${path}: ${READ_ERRORS[code] ?? (err as Error).message}`);
  }
  return parseConfig(decodeConfigBytes(bytes), path);
}

/**
 * The config at `path`, generated (with a fresh key, mode 0600 in a 0700 directory) if the file does
 * not exist yet, so a node started without --config keeps its key and address across restarts.
 */
export function loadOrCreateConfigFile(path: string): {
  config: PlanetConfig;
  warnings: string[];
  created: boolean;
} {
  const config = generateConfig();
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    // "wx": never overwrite a key that another process wrote meanwhile.
    writeFileSync(path, formatConfig(config, false), { flag: "wx", mode: 0o600 });
    return { config, warnings: [], created: true };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "EEXIST") return { ...loadConfigFile(path), created: false };
    throw new ConfigError(
      `config: cannot write ${path}: ${READ_ERRORS[code ?? ""] ?? (err as Error).message}`,
    );
  }
}

export function identityFromConfig(config: PlanetConfig): Identity {
  try {
    return Identity.fromPrivateKeyHex(config.PrivateKey);
  } catch (err) {
    // Never echo the key itself: the message may end up in logs.
    throw new ConfigError(`config: PrivateKey ${(err as Error).message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Output: the order and the comments follow genconf's layout so the two look alike; values are
// written as JSON, which is valid HJSON and avoids HJSON's quoteless-string traps.

const COMMENTS: Record<string, string[]> = {
  Peers: [
    "Outbound peers as URIs: tcp://host:port, tls://host:port, unix:///path, or udp://host:port",
    "(planetd only; Yggdrasil has no udp://). Optional ?key=<hex public key> pins the remote key",
    "(repeatable), ?priority=N (0..255) ranks parallel links, ?sni=NAME sets the TLS server name.",
  ],
  InterfacePeers: ['Outbound peers bound to a source interface, e.g. { "eth0": ["tls://host:port"] }.'],
  Listen: [
    "Listeners for inbound peerings, e.g. tls://[::]:0, tcp://0.0.0.0:12345, udp://[::]:12345",
    "(planetd only) or unix:///path; port 0 lets the kernel pick. Multicast discovery on the",
    "local network works without any listener here.",
  ],
  AdminListen: [
    "Admin socket for planetctl (and yggdrasilctl -endpoint=...): unix:///path or",
    'tcp://127.0.0.1:9001, or "none" to disable it.',
  ],
  MulticastInterfaces: [
    "Local peer discovery. The first entry whose Regex matches an interface name applies:",
    "Beacon advertises this node (and listens on Port, 0 = random), Listen dials nodes heard,",
    "Priority (0..255) is given to the links found that way.",
  ],
  AllowedPublicKeys: [
    "If not empty, only these public keys may peer with this node inbound. Outbound peerings",
    "and inbound ones from link-local addresses (multicast discovery) are not affected.",
  ],
  PublicKey: [
    "This node's public key, for peers' AllowedPublicKeys. Derived from PrivateKey; ignored on load.",
  ],
  PrivateKey: ["This node's private key (seed followed by public key). Keep it secret."],
  IfName: ['TUN interface name, "auto" to let the kernel pick one, or "none" to run router-only.'],
  IfMTU: ["TUN MTU. Values outside 1280..53049 are clamped."],
  NodeInfoPrivacy: [
    "If true, nodeinfo carries only NodeInfo below, not the build name, version and platform.",
  ],
  NodeInfo: ['Optional information any node may request, e.g. { "name": "alpha" }. At most 16 KiB.'],
  Planetd: [
    'planetd\'s own settings (Yggdrasil ignores this object). MetricsListen: "none" or',
    "host:port for Prometheus metrics. LogLevel: error, warn, info, debug or trace.",
    "UdpMaxDatagram: the largest UDP payload udp:// links probe up to (1232..65507).",
    "Firewall: rules for traffic to and from this node and its /64 (see the README, Firewall).",
    "NatTraversal: false stops punching direct udp:// links to session peers behind NATs.",
    "MulticastUdp: true makes Beacon interfaces also announce a udp:// listener, so planetd nodes",
    "on a LAN link over udp:// (Yggdrasil ignores that beacon and keeps using TLS).",
  ],
};

function orderedForOutput(config: PlanetConfig): Record<string, unknown> {
  let publicKey: string | undefined;
  try {
    publicKey = identityFromConfig(config).publicKey.toString("hex");
  } catch {
    publicKey = undefined;
  }
  const out: Record<string, unknown> = {
    Peers: config.Peers,
    InterfacePeers: config.InterfacePeers,
    Listen: config.Listen,
    AdminListen: config.AdminListen,
    MulticastInterfaces: config.MulticastInterfaces,
    AllowedPublicKeys: config.AllowedPublicKeys,
  };
  if (publicKey !== undefined) out.PublicKey = publicKey;
  Object.assign(out, {
    PrivateKey: config.PrivateKey,
    IfName: config.IfName,
    IfMTU: config.IfMTU,
    NodeInfoPrivacy: config.NodeInfoPrivacy,
    NodeInfo: config.NodeInfo,
    Planetd: config.Planetd,
  });
  return out;
}

export function formatConfig(config: PlanetConfig, json: boolean): string {
  const ordered = orderedForOutput(config);
  if (json) return `${JSON.stringify(ordered, null, 2)}\n`;
  const lines = ["{"];
  for (const [key, value] of Object.entries(ordered)) {
    if (lines.length > 1) lines.push("");
    for (const c of COMMENTS[key] ?? []) lines.push(`  # ${c}`);
    const body = JSON.stringify(value, null, 2).split("\n").join("\n  ");
    lines.push(`  ${key}: ${body}`);
  }
  lines.push("}");
  return `${lines.join("\n")}\n`;
}
