// Peer and listen URIs (spec 4.1): tcp://host:port, tls://host:port, unix:///path and our own
// udp://host:port (udp.ts), with the query
// parameters key= (repeatable pin), priority= (0..255) and sni=. WHATWG URL refuses IPv6 zones
// (fe80::1%eth0), which multicast peers need, so this is a small hand parser with one-line errors.
import { isIP } from "node:net";

export type LinkScheme = "tcp" | "tls" | "udp" | "unix";

export interface PeerUri {
  scheme: LinkScheme;
  /** Host without brackets; may carry a zone (`fe80::1%eth0`). Empty for unix. */
  host: string;
  /** 0 only for listen URIs (kernel-chosen port). */
  port: number;
  /** Socket path for unix://. */
  path: string;
  /** Pinned remote keys (32 bytes each); empty = any key. */
  keys: Buffer[];
  priority: number;
  /** SNI to send (TLS): explicit sni=, else the host when it is a DNS name, else undefined. */
  sni: string | undefined;
  /** The URI without its query, as getPeers shows outbound links. */
  base: string;
}

const EXPECTED: Record<LinkScheme, string> = {
  tcp: "tcp://host:port",
  tls: "tls://host:port",
  udp: "udp://host:port",
  unix: "unix:///path",
};

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/;

/** Parse a Peers / InterfacePeers / addPeer URI. Throws Error with a one-line operator message. */
export function parsePeerUri(uri: string): PeerUri {
  return parse(uri, false);
}

/** Parse a Listen URI: like a peer URI, but port 0 (kernel-chosen) is allowed. */
export function parseListenUri(uri: string): PeerUri {
  return parse(uri, true);
}

function parse(uri: string, listen: boolean): PeerUri {
  const q = JSON.stringify(uri);
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(uri);
  if (!m) {
    const guess = /^(tcp|tls|udp|unix)/i.exec(uri)?.[1]?.toLowerCase() as LinkScheme | undefined;
    throw new Error(`${q} is not a URI (expected ${EXPECTED[guess ?? "tcp"]})`);
  }
  const schemeText = m[1]!.toLowerCase();
  if (schemeText === "socks")
    throw new Error(`${q}: socks:// peers are not supported (use tcp://, tls:// or unix://)`);
  if (!(schemeText in EXPECTED)) {
    throw new Error(`${q} has unknown scheme "${m[1]}" (expected tcp://, tls://, udp:// or unix://)`);
  }
  const scheme = schemeText as LinkScheme;
  const rest = m[2]!;
  const qi = rest.indexOf("?");
  const main = qi < 0 ? rest : rest.slice(0, qi);
  const query = qi < 0 ? "" : rest.slice(qi + 1);
  const out: PeerUri = {
    scheme,
    host: "",
    port: 0,
    path: "",
    keys: [],
    priority: 0,
    sni: undefined,
    base: `${scheme}://${main}`,
  };

  if (scheme === "unix") {
    if (!main.startsWith("/") || main.length < 2)
      throw new Error(`${q} is not a URI (expected unix:///path)`);
    out.path = decodeURIComponentSafe(main, q);
  } else {
    parseHostPort(main.replace(/\/$/, ""), out, q, listen);
  }

  for (const part of query.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    const name = decodeURIComponentSafe(eq < 0 ? part : part.slice(0, eq), q);
    const value = decodeURIComponentSafe(eq < 0 ? "" : part.slice(eq + 1), q);
    if (name === "key") {
      if (!/^[0-9a-fA-F]{64}$/.test(value))
        throw new Error(`${q}: key= must be 64 hex characters, got "${value}"`);
      out.keys.push(Buffer.from(value, "hex"));
    } else if (name === "priority") {
      if (!/^\d{1,3}$/.test(value) || Number(value) > 255) {
        throw new Error(`${q}: priority= must be an integer 0..255, got "${value}"`);
      }
      out.priority = Number(value);
    } else if (name === "sni") {
      if (value === "") throw new Error(`${q}: sni= must not be empty`);
      out.sni = value;
    }
    // Other parameters are ignored, as yggdrasil does.
  }
  return out;
}

function parseHostPort(authority: string, out: PeerUri, q: string, listen: boolean): void {
  const expected = EXPECTED[out.scheme];
  let host: string;
  let portText: string;
  if (authority.startsWith("[")) {
    const close = authority.indexOf("]");
    if (close < 0 || authority[close + 1] !== ":")
      throw new Error(`${q} is not a URI (expected ${expected})`);
    host = authority.slice(1, close).replace("%25", "%");
    portText = authority.slice(close + 2);
    const [addr, zone] = host.split("%", 2) as [string, string | undefined];
    if (isIP(addr) !== 6) throw new Error(`${q}: "${addr}" is not an IPv6 address`);
    if (zone !== undefined && !/^[A-Za-z0-9_.:-]{1,15}$/.test(zone)) {
      throw new Error(`${q}: "${zone}" is not an interface name`);
    }
  } else {
    const colon = authority.lastIndexOf(":");
    if (colon < 0) throw new Error(`${q} has no port (expected ${expected})`);
    host = authority.slice(0, colon);
    portText = authority.slice(colon + 1);
    if (host.includes(":"))
      throw new Error(`${q}: IPv6 addresses need brackets (expected ${out.scheme}://[addr]:port)`);
    if (isIP(host) === 0 && !HOSTNAME.test(host))
      throw new Error(`${q}: "${host}" is not a host name or IP address`);
  }
  if (!/^\d{1,5}$/.test(portText) || Number(portText) > 65535 || (!listen && Number(portText) === 0)) {
    throw new Error(`${q}: "${portText}" is not a valid port (expected ${listen ? "0" : "1"}..65535)`);
  }
  out.host = host;
  out.port = Number(portText);
  if (out.scheme === "tls" && isIP(host.split("%")[0]!) === 0) out.sni = host.replace(/\.$/, "");
}

function decodeURIComponentSafe(text: string, q: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    throw new Error(`${q} has a malformed %-escape`);
  }
}

/** `host:port` with brackets for IPv6, as net addresses print in URIs. */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/** True for fe80::/10 addresses (with or without a zone). */
export function isLinkLocal6(address: string): boolean {
  return /^fe[89ab][0-9a-f]:/i.test(address.replace(/^::ffff:/i, ""));
}
