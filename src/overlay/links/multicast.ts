// Multicast peer discovery (spec 4.8): beacons on [ff02::114]:9001 announce a link-local TLS listener;
// a beacon from another key on a Listen interface makes us dial it. Interface selection and beacon
// coding are pure functions; the Multicast class only owns the UDP socket, the listeners and a 1 s tick.
//
// planetd's udp:// beacon (opt-in, Planetd.MulticastUdp) is a second datagram next to the standard one:
// key ‖ link-local ‖ "pdU1" ‖ udp port, 54 bytes. Yggdrasil 0.4.7 reads bytes 32..n-2 as the IP, 20
// bytes here, which is no IP: it drops the datagram without a word, and still dials the standard TLS
// beacon; planetd before this reads only 50-byte beacons. A node announcing udp:// itself dials a udp
// beacon it hears and leaves that peer's TLS beacon alone.
import dgram from "node:dgram";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import os from "node:os";
import type { Logger } from "pino";
import { formatIPv6 } from "../../crypto/address.js";
import type { Identity } from "../../crypto/identity.js";
import { LimitedLog } from "../../util/log-limit.js";
import { isLinkLocal6 } from "./uri.js";

export interface MulticastInterfaceConfig {
  Regex: string;
  Beacon: boolean;
  Listen: boolean;
  Port: number;
  Priority: number;
}

export interface EligibleInterface {
  name: string;
  /** First fe80:: address of the interface, without zone. */
  linkLocal: string;
  beacon: boolean;
  listen: boolean;
  port: number;
  priority: number;
}

export const MULTICAST_GROUP = "ff02::114";
export const MULTICAST_PORT = 9001;
const BEACON_BYTES = 50;
const UDP_BEACON_MAGIC = Buffer.from("pdU1", "latin1");
const UDP_BEACON_BYTES = 32 + 16 + UDP_BEACON_MAGIC.length + 2;
/** A TLS beacon is left alone this long after a udp beacon from the same address (beacons come each second). */
const UDP_BEACON_HOLD_MS = 5000;
const IFF_UP = 0x1;
const IFF_POINTOPOINT = 0x10;
const IFF_MULTICAST = 0x1000;

/** Compile the Regex fields, failing with an operator-readable message. */
export function compileMulticastConfig(config: MulticastInterfaceConfig[]): RegExp[] {
  return config.map((entry, i) => {
    try {
      return new RegExp(entry.Regex);
    } catch (e) {
      throw new Error(
        `MulticastInterfaces[${i}].Regex ${JSON.stringify(entry.Regex)}: ${(e as Error).message}`,
      );
    }
  });
}

/**
 * Interfaces to use: up, multicast-capable, not point-to-point (when flags are known), with a
 * link-local address, governed by the first config entry whose regex matches, if that entry enables
 * Beacon or Listen.
 */
export function eligibleInterfaces(
  ifaces: Record<string, os.NetworkInterfaceInfo[] | undefined>,
  config: MulticastInterfaceConfig[],
  flags: (name: string) => number | undefined = () => undefined,
  regexes: RegExp[] = compileMulticastConfig(config),
): EligibleInterface[] {
  const out: EligibleInterface[] = [];
  for (const [name, addrs] of Object.entries(ifaces)) {
    const f = flags(name);
    if (f !== undefined && ((f & IFF_UP) === 0 || (f & IFF_MULTICAST) === 0 || (f & IFF_POINTOPOINT) !== 0))
      continue;
    const ll = addrs?.find((a) => a.family === "IPv6" && isLinkLocal6(a.address));
    if (!ll) continue;
    const idx = regexes.findIndex((re) => re.test(name));
    if (idx < 0) continue;
    const entry = config[idx]!;
    if (!entry.Beacon && !entry.Listen) continue;
    out.push({
      name,
      linkLocal: ll.address.split("%")[0]!,
      beacon: entry.Beacon,
      listen: entry.Listen,
      port: entry.Port,
      priority: entry.Priority,
    });
  }
  return out;
}

/** Linux interface flags from sysfs; undefined elsewhere. */
export function sysfsFlags(name: string): number | undefined {
  try {
    return Number.parseInt(readFileSync(`/sys/class/net/${name}/flags`, "ascii").trim(), 16);
  } catch {
    return undefined;
  }
}

export function encodeBeacon(publicKey: Buffer, linkLocal: string, port: number): Buffer {
  const out = Buffer.alloc(BEACON_BYTES);
  publicKey.copy(out, 0);
  parseIPv6(linkLocal).copy(out, 32);
  out.writeUInt16BE(port, 48);
  return out;
}

/** planetd's udp:// beacon (see the header): never a valid beacon to Yggdrasil 0.4.7. */
export function encodeUdpBeacon(publicKey: Buffer, linkLocal: string, port: number): Buffer {
  const out = Buffer.alloc(UDP_BEACON_BYTES);
  publicKey.copy(out, 0);
  parseIPv6(linkLocal).copy(out, 32);
  UDP_BEACON_MAGIC.copy(out, 48);
  out.writeUInt16BE(port, 48 + UDP_BEACON_MAGIC.length);
  return out;
}

/**
 * Decide what to do with a received beacon: the URI to dial, or null to ignore it. `source` is the
 * UDP source address (with or without zone), `iface` the receiving interface's config. A udp beacon
 * gives a udp:// URI only when `udp` is set (we announce udp:// ourselves).
 */
export function beaconDialUri(
  msg: Buffer,
  source: string,
  ourKey: Buffer,
  iface: EligibleInterface | undefined,
  udp = false,
): string | null {
  if (msg.length < 32 + 2 || !iface || !iface.listen) return null;
  const key = msg.subarray(0, 32);
  if (key.equals(ourKey)) return null;
  let scheme = "tls";
  let addrEnd = msg.length - 2;
  if (
    msg.length === UDP_BEACON_BYTES &&
    msg.subarray(48, 48 + UDP_BEACON_MAGIC.length).equals(UDP_BEACON_MAGIC)
  ) {
    if (!udp) return null;
    scheme = "udp";
    addrEnd = 48;
  }
  const addr = msg.subarray(32, addrEnd);
  const src = source.split("%")[0]!;
  if (addr.length !== 16 || isIP(src) !== 6 || !addr.equals(parseIPv6(src))) return null;
  const port = msg.readUInt16BE(msg.length - 2);
  if (port === 0) return null;
  return `${scheme}://[${formatIPv6(addr)}%${iface.name}]:${port}?key=${key.toString("hex")}&priority=${iface.priority}`;
}

/** 16 bytes of an IPv6 address (no zone, no embedded IPv4 needed here). */
export function parseIPv6(text: string): Buffer {
  const out = Buffer.alloc(16);
  const [head, tail] = text.includes("::") ? (text.split("::", 2) as [string, string]) : [text, undefined];
  const headGroups = head === "" ? [] : head.split(":");
  const tailGroups = tail === undefined || tail === "" ? [] : tail.split(":");
  const fill = (groups: string[], start: number): void => {
    groups.forEach((g, i) => out.writeUInt16BE(Number.parseInt(g, 16) & 0xffff, (start + i) * 2));
  };
  fill(headGroups, 0);
  fill(tailGroups, 8 - tailGroups.length);
  return out;
}

interface ListenerLike {
  port: number;
  close(): Promise<void>;
}

export interface MulticastOptions {
  identity: Identity;
  interfaces: MulticastInterfaceConfig[];
  logger: Logger;
  port?: number;
  intervalMs?: number;
  listen(host: string, port: number, iface: string, priority: number): Promise<ListenerLike>;
  /** With it, Beacon interfaces also run a udp:// listener and announce it (Planetd.MulticastUdp). */
  listenUdp?(host: string, port: number, iface: string, priority: number): Promise<ListenerLike>;
  /** Dial a discovered peer once; `id` is the dedupe id of spec 4.2 (tls|iface|ip). */
  dial(uri: string, iface: string, id: string): void;
  scan?: () => Record<string, os.NetworkInterfaceInfo[] | undefined>;
}

interface ActiveInterface {
  info: EligibleInterface;
  listener: ListenerLike | undefined;
  listening: boolean;
  udpListener: ListenerLike | undefined;
  udpListening: boolean;
  udpBeacon: Buffer | undefined;
  joined: boolean;
  beacon: Buffer | undefined;
  loggedFailure: boolean;
}

export class Multicast {
  private readonly opts: MulticastOptions;
  private readonly regexes: RegExp[];
  private readonly active = new Map<string, ActiveInterface>();
  /** iface|address of peers heard announcing udp:// -> until when their TLS beacons are left alone. */
  private readonly udpHeard = new Map<string, number>();
  private socket: dgram.Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;
  /** Socket errors, interface changes and join failures can repeat every tick. */
  private readonly limitedLog: LimitedLog;

  constructor(opts: MulticastOptions) {
    this.opts = opts;
    this.limitedLog = new LimitedLog(opts.logger);
    this.regexes = compileMulticastConfig(opts.interfaces);
  }

  interfaces(): string[] {
    return [...this.active.keys()];
  }

  async start(): Promise<void> {
    if (this.opts.interfaces.length === 0) return;
    const socket = dgram.createSocket({ type: "udp6", reuseAddr: true });
    socket.on("message", (msg, rinfo) => this.onBeacon(msg, rinfo.address));
    socket.on("error", (e) =>
      this.limitedLog.warn("multicast socket error", `multicast socket: ${e.message}`),
    );
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind({ port: this.opts.port ?? MULTICAST_PORT, address: "::" }, () => {
        socket.off("error", reject);
        resolve();
      });
    }).catch((e: Error) => {
      socket.close();
      throw new Error(`multicast: cannot bind [::]:${this.opts.port ?? MULTICAST_PORT}: ${e.message}`);
    });
    this.socket = socket;
    this.tick();
    this.timer = setInterval(() => this.tick(), this.opts.intervalMs ?? 1000);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.limitedLog.flush();
    this.socket?.close();
    this.socket = undefined;
    const closing = [...this.active.values()].flatMap((a) => [a.listener?.close(), a.udpListener?.close()]);
    this.active.clear();
    await Promise.all(closing);
  }

  private tick(): void {
    if (this.stopped || !this.socket) return;
    const found = eligibleInterfaces(
      (this.opts.scan ?? os.networkInterfaces)(),
      this.opts.interfaces,
      sysfsFlags,
      this.regexes,
    );
    const names = new Set(found.map((f) => f.name));
    for (const [name, a] of this.active) {
      if (
        names.has(name) &&
        this.active.get(name)!.info.linkLocal === found.find((f) => f.name === name)!.linkLocal
      ) {
        continue;
      }
      this.active.delete(name);
      if (a.joined) this.membership(false, name);
      void a.listener?.close();
      void a.udpListener?.close();
      this.limitedLog.info(`multicast interface ${name}`, `multicast: stopped on ${name}`);
    }
    for (const info of found) {
      let a = this.active.get(info.name);
      if (!a) {
        a = {
          info,
          listener: undefined,
          listening: false,
          udpListener: undefined,
          udpListening: false,
          udpBeacon: undefined,
          joined: false,
          beacon: undefined,
          loggedFailure: false,
        };
        this.active.set(info.name, a);
        this.limitedLog.info(
          `multicast interface ${info.name}`,
          `multicast: started on ${info.name} (${info.linkLocal})`,
        );
      }
      if (info.listen && !a.joined) a.joined = this.membership(true, info.name);
      if (info.beacon && !a.listener && !a.listening) this.startListener(a);
      if (info.beacon && this.opts.listenUdp && !a.udpListener && !a.udpListening) this.startUdpListener(a);
      const to = `${MULTICAST_GROUP}%${info.name}`;
      // The udp beacon first: a planetd hearing both then skips the TLS one.
      if (a.udpBeacon) this.socket.send(a.udpBeacon, this.opts.port ?? MULTICAST_PORT, to);
      if (a.beacon) this.socket.send(a.beacon, this.opts.port ?? MULTICAST_PORT, to);
    }
  }

  private startListener(a: ActiveInterface): void {
    a.listening = true;
    const { name, linkLocal, port, priority } = a.info;
    this.opts.listen(`${linkLocal}%${name}`, port, name, priority).then(
      (listener) => {
        a.listening = false;
        if (this.stopped || this.active.get(name) !== a) {
          void listener.close();
          return;
        }
        a.listener = listener;
        a.beacon = encodeBeacon(this.opts.identity.publicKey, linkLocal, listener.port);
      },
      (e: Error) => {
        a.listening = false;
        // Typically a link-local address still in duplicate address detection; retried next tick.
        if (!a.loggedFailure) this.opts.logger.warn(`multicast: ${e.message}`);
        a.loggedFailure = true;
      },
    );
  }

  private startUdpListener(a: ActiveInterface): void {
    const listenUdp = this.opts.listenUdp;
    if (!listenUdp) return;
    a.udpListening = true;
    const { name, linkLocal, port, priority } = a.info;
    listenUdp(`${linkLocal}%${name}`, port, name, priority).then(
      (listener) => {
        a.udpListening = false;
        if (this.stopped || this.active.get(name) !== a) {
          void listener.close();
          return;
        }
        a.udpListener = listener;
        a.udpBeacon = encodeUdpBeacon(this.opts.identity.publicKey, linkLocal, listener.port);
      },
      (e: Error) => {
        a.udpListening = false;
        this.limitedLog.warn(`multicast udp listener ${name}`, `multicast: ${e.message}`);
      },
    );
  }

  private membership(join: boolean, iface: string): boolean {
    try {
      if (join) this.socket?.addMembership(MULTICAST_GROUP, `::%${iface}`);
      else this.socket?.dropMembership(MULTICAST_GROUP, `::%${iface}`);
      return true;
    } catch (e) {
      if (join)
        this.limitedLog.warn(
          `multicast join on ${iface}`,
          `multicast: cannot join ${MULTICAST_GROUP} on ${iface}: ${(e as Error).message}`,
        );
      return false;
    }
  }

  private onBeacon(msg: Buffer, source: string): void {
    const zone = source.split("%")[1];
    // Node reports the zone of link-local sources; without it we can only guess with one interface.
    const a =
      zone !== undefined
        ? this.active.get(zone)
        : this.active.size === 1
          ? [...this.active.values()][0]
          : undefined;
    const udp = this.opts.listenUdp !== undefined;
    const uri = beaconDialUri(msg, source, this.opts.identity.publicKey, a?.info, udp);
    if (!uri || !a) return;
    const address = formatIPv6(parseIPv6(source.split("%")[0]!));
    const heard = `${a.info.name}|${address}`;
    const scheme = uri.startsWith("udp:") ? "udp" : "tls";
    const now = Date.now();
    if (scheme === "udp") {
      if (this.udpHeard.size > 1024) this.udpHeard.clear(); // one entry per LAN neighbour; bound it anyway
      this.udpHeard.set(heard, now + UDP_BEACON_HOLD_MS);
    } else if ((this.udpHeard.get(heard) ?? 0) > now) return;
    this.opts.dial(uri, a.info.name, `${scheme}|${a.info.name}|${address}`);
  }
}
