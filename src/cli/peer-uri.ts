// A local, syntax-only check of the link URIs a config may hold (spec 4.1), so a typo is refused at
// load time with a message naming the entry, not minutes later when the dial fails. It returns the
// problem as the tail of a sentence ("has no port (expected tcp://host:port)"), or undefined if fine.
import { isIPv4, isIPv6 } from "node:net";

export type UriRole = "peer" | "listen" | "admin";

const SCHEMES: Record<UriRole, string[]> = {
  peer: ["tcp", "tls", "unix", "socks"],
  listen: ["tcp", "tls", "unix"],
  admin: ["unix", "tcp"],
};

const HOSTNAME = /^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_.])?$/;

function expectedShape(scheme: string): string {
  switch (scheme) {
    case "unix":
      return "unix:///path/to.sock";
    case "socks":
      return "socks://proxyhost:port/host:port";
    default:
      return `${scheme}://host:port`;
  }
}

/** "host:port" with an IPv6 literal in brackets (optionally with a %zone). */
export function checkHostPort(text: string, allowPortZero: boolean, shape: string): string | undefined {
  let host: string;
  let portText: string;
  if (text.startsWith("[")) {
    const close = text.indexOf("]");
    if (close < 0) return `has an unclosed "[" (expected ${shape})`;
    host = text.slice(1, close);
    const rest = text.slice(close + 1);
    if (!rest.startsWith(":")) return `has no port (expected ${shape})`;
    portText = rest.slice(1);
    const bare = host.split("%")[0]!;
    if (!isIPv6(bare)) return `has "${host}" in brackets, which is not an IPv6 address (expected ${shape})`;
  } else {
    const colon = text.lastIndexOf(":");
    if (colon < 0) return `has no port (expected ${shape})`;
    host = text.slice(0, colon);
    portText = text.slice(colon + 1);
    if (host.includes(":"))
      return `has an IPv6 address without brackets (expected ${shape.replace("host", "[::1]")})`;
    if (host === "") return `has no host (expected ${shape})`;
    if (!isIPv4(host) && !HOSTNAME.test(host)) return `has an invalid host "${host}" (expected ${shape})`;
  }
  if (!/^\d{1,5}$/.test(portText)) return `has port "${portText}" (expected a number 1..65535)`;
  const port = Number(portText);
  if (port > 65535 || (port === 0 && !allowPortZero)) return `has port ${port} (expected a number 1..65535)`;
  return undefined;
}

export function checkLinkUri(uri: string, role: UriRole): string | undefined {
  const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/(.*)$/s.exec(uri);
  if (!m)
    return `is not a URI (expected ${role === "admin" ? "unix:///path/to.sock or tcp://host:port" : "tcp://host:port"})`;
  const scheme = m[1]!.toLowerCase();
  if (!SCHEMES[role].includes(scheme)) {
    const names = SCHEMES[role];
    const list = `${names.slice(0, -1).join(", ")} or ${names[names.length - 1]}`;
    return `has scheme "${m[1]}" (expected ${list})`;
  }
  const shape = expectedShape(scheme);
  let rest = m[2]!;
  const hash = rest.indexOf("#");
  if (hash >= 0) rest = rest.slice(0, hash);
  const q = rest.indexOf("?");
  const query = q >= 0 ? rest.slice(q + 1) : "";
  const main = q >= 0 ? rest.slice(0, q) : rest;

  if (scheme === "unix") {
    if (!main.startsWith("/") || main.length < 2) return `has no socket path (expected ${shape})`;
  } else {
    const slash = main.indexOf("/");
    let authority = slash >= 0 ? main.slice(0, slash) : main;
    const path = slash >= 0 ? main.slice(slash + 1) : "";
    if (scheme === "socks") {
      const at = authority.lastIndexOf("@");
      if (at >= 0) authority = authority.slice(at + 1);
      const proxyProblem = checkHostPort(authority, false, shape);
      if (proxyProblem) return proxyProblem;
      if (path === "") return `has no target after the proxy (expected ${shape})`;
      const targetProblem = checkHostPort(path, false, shape);
      if (targetProblem) return `target ${targetProblem}`;
    } else {
      const problem = checkHostPort(authority, role === "listen", shape);
      if (problem) return problem;
    }
  }

  if (query === "") return undefined;
  const params = new URLSearchParams(query);
  for (const key of params.getAll("key")) {
    if (!/^[0-9a-fA-F]{64}$/.test(key))
      return `has key=${key}, which is not 64 hex characters (an ed25519 public key)`;
  }
  for (const priority of params.getAll("priority")) {
    if (!/^\d{1,3}$/.test(priority) || Number(priority) > 255) {
      return `has priority=${priority} (expected a number 0..255)`;
    }
  }
  for (const sni of params.getAll("sni")) {
    if (scheme !== "tls")
      return `has sni=${sni}, which only applies to tls:// (expected tls://host:port?sni=name)`;
    if (sni === "") return "has an empty sni= (expected a host name)";
  }
  return undefined;
}
