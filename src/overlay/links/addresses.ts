// Address helpers of the link manager: comparing, naming and routing peer addresses (spec 4.2's
// remote ids), and noticing interface changes.
import net from "node:net";
import os from "node:os";
import { formatIPv6 } from "../../crypto/address.js";
import { parseIPv6 } from "./multicast.js";
import { hostPort, isLinkLocal6 } from "./uri.js";

/** An address as the peers' comparison wants it: no zone, IPv4-mapped IPv6 as IPv4. */
export function plainIp(ip: string): string {
  const bare = ip.split("%")[0]!.toLowerCase();
  return bare.startsWith("::ffff:") && bare.includes(".") ? bare.slice(7) : bare;
}

/** The IP of a beacon's dial URI (`tls://[fe80::1%eth0]:port?…`), without zone. */
export function beaconHost(uri: string): string | undefined {
  const m = /^\w+:\/\/\[([^\]]+)\]/.exec(uri);
  return m?.[1] === undefined ? undefined : plainIp(m[1]);
}

/** Names and addresses of every interface, to notice a change between two polls. */
export function interfaceSignature(): string {
  const parts: string[] = [];
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) parts.push(`${name}/${a.address}`);
  }
  return parts.sort().join(",");
}

/** The address of an inbound link's `remote` (scheme://ip:port or scheme://[ip%zone]:port). */
export function remoteIp(remote: string): string {
  const m = /^[a-z]+:\/\/(?:\[([^\]]+)\]|([^:/]+))/.exec(remote);
  return m?.[1] ?? m?.[2] ?? "";
}

export function peerKey(uri: string, iface: string | undefined): string {
  return `${iface ?? ""}|${uri}`;
}

/** Spec 4.2: ip:port normally, only the IP for IPv6 link-local remotes. */
export function remoteId(scheme: string, iface: string | undefined, ip: string, port: number): string {
  const id = isLinkLocal6(ip) ? formatIPv6(parseIPv6(ip.split("%")[0]!)) : hostPort(ip, port);
  return `${scheme}|${iface ?? ""}|${id}`;
}

/** For InterfacePeers: add the zone to a link-local target and pick a source address on the interface. */
export function routeVia(host: string, iface: string | undefined): { host: string; localAddress?: string } {
  if (!iface) return { host };
  const addrs = os.networkInterfaces()[iface];
  if (!addrs) throw new Error(`interface ${iface} not found`);
  const family = net.isIP(host.split("%")[0]!);
  const linkLocal = isLinkLocal6(host);
  const target = linkLocal && !host.includes("%") ? `${host}%${iface}` : host;
  const source = addrs.find(
    (a) =>
      (family === 0 || a.family === (family === 6 ? "IPv6" : "IPv4")) &&
      isLinkLocal6(a.address) === linkLocal,
  );
  return { host: target, localAddress: source && !linkLocal ? source.address : undefined };
}
