// What a config reload (SIGHUP, or the admin `reload` command) changes: a pure comparison of the
// running config with the new one. Keys the running daemon cannot change in place refuse the whole
// reload, so a half-applied config never runs.
import type { PlanetConfig } from "../config/config.js";
import type { FirewallConfig } from "../tun/firewall-config.js";

/** A reload the running daemon cannot apply; its message says why, in one line. */
export class ReloadRefused extends Error {
  override name = "ReloadRefused";
}

/** A static peer as the link manager keys it: URI and, for InterfacePeers, the interface. */
export interface PeerRef {
  uri: string;
  iface: string | undefined;
}

export interface ReloadPlan {
  /** Keys whose change needs a restart; when not empty, nothing is applied. */
  needsRestart: string[];
  peersRemoved: PeerRef[];
  peersAdded: PeerRef[];
  /** The new Listen list, when it differs from the running one. */
  listen: string[] | undefined;
  /** The new AllowedPublicKeys, when they differ (as a set). */
  allowedPublicKeys: string[] | undefined;
  multicast: PlanetConfig["MulticastInterfaces"] | undefined;
  nodeInfo: { nodeInfo: Record<string, unknown>; privacy: boolean } | undefined;
  logLevel: string | undefined;
  /** Planetd.Firewall when it changed; `config` undefined turns the firewall off. */
  firewall: { config: FirewallConfig | undefined } | undefined;
}

const RESTART_KEYS = ["PrivateKey", "IfName", "IfMTU", "AdminListen"] as const;
const RESTART_PLANETD_KEYS = ["MetricsListen", "UdpMaxDatagram", "NatTraversal", "MulticastUdp"] as const;

function peerRefs(config: PlanetConfig): Map<string, PeerRef> {
  const refs = new Map<string, PeerRef>();
  for (const uri of config.Peers) refs.set(`\n${uri}`, { uri, iface: undefined });
  for (const [iface, uris] of Object.entries(config.InterfacePeers))
    for (const uri of uris) refs.set(`${iface}\n${uri}`, { uri, iface });
  return refs;
}

/** Same members, in any order (Go's JSON decoding of a list keeps order; the meaning does not). */
function sameSet(a: string[], b: string[]): boolean {
  const sa = new Set(a);
  return sa.size === new Set(b).size && b.every((x) => sa.has(x));
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export function planReload(running: PlanetConfig, next: PlanetConfig): ReloadPlan {
  const needsRestart: string[] = [];
  for (const key of RESTART_KEYS) if (!sameJson(running[key], next[key])) needsRestart.push(key);
  for (const key of RESTART_PLANETD_KEYS)
    if (!sameJson(running.Planetd[key], next.Planetd[key])) needsRestart.push(`Planetd.${key}`);
  const fwBefore = running.Planetd.Firewall;
  const fwAfter = next.Planetd.Firewall;
  // The flow table is sized once; the rules change in place.
  if (fwBefore && fwAfter && fwBefore.MaxFlows !== fwAfter.MaxFlows)
    needsRestart.push("Planetd.Firewall.MaxFlows");
  const before = peerRefs(running);
  const after = peerRefs(next);
  return {
    needsRestart,
    peersRemoved: [...before].filter(([k]) => !after.has(k)).map(([, r]) => r),
    peersAdded: [...after].filter(([k]) => !before.has(k)).map(([, r]) => r),
    listen: sameSet(running.Listen, next.Listen) ? undefined : next.Listen,
    allowedPublicKeys: sameSet(
      running.AllowedPublicKeys.map((k) => k.toLowerCase()),
      next.AllowedPublicKeys.map((k) => k.toLowerCase()),
    )
      ? undefined
      : next.AllowedPublicKeys,
    multicast: sameJson(running.MulticastInterfaces, next.MulticastInterfaces)
      ? undefined
      : next.MulticastInterfaces,
    nodeInfo:
      sameJson(running.NodeInfo, next.NodeInfo) && running.NodeInfoPrivacy === next.NodeInfoPrivacy
        ? undefined
        : { nodeInfo: next.NodeInfo, privacy: next.NodeInfoPrivacy },
    logLevel: running.Planetd.LogLevel === next.Planetd.LogLevel ? undefined : next.Planetd.LogLevel,
    firewall: sameJson(fwBefore, fwAfter) ? undefined : { config: fwAfter },
  };
}

/** One line for the log: what the plan changes, e.g. "Peers +1 -0, AllowedPublicKeys". */
export function describePlan(plan: ReloadPlan): string {
  const parts: string[] = [];
  if (plan.peersAdded.length + plan.peersRemoved.length > 0)
    parts.push(`Peers +${plan.peersAdded.length} -${plan.peersRemoved.length}`);
  if (plan.listen) parts.push("Listen");
  if (plan.allowedPublicKeys) parts.push("AllowedPublicKeys");
  if (plan.multicast) parts.push("MulticastInterfaces");
  if (plan.nodeInfo) parts.push("NodeInfo");
  if (plan.logLevel) parts.push(`LogLevel ${plan.logLevel}`);
  if (plan.firewall) parts.push(plan.firewall.config ? "Firewall" : "Firewall off");
  return parts.length === 0 ? "nothing changed" : parts.join(", ");
}
