// Multicast peer discovery (spec 4.8): beacons on [ff02::114]:9001 announce a link-local TLS listener;
// a beacon from another key on a Listen interface makes us dial it. Interface selection and beacon
// coding are pure functions; the Multicast class only owns the UDP socket, the listeners and a 1 s tick.
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

/**
 * Decide what to do with a received beacon: the URI to dial, or null to ignore it. `source` is the
 * UDP source address (with or without zone), `iface` the receiving interface's config.
 */
export function beaconDialUri(
  msg: Buffer,
  source: string,
  ourKey: Buffer,
  iface: EligibleInterface | undefined,
): string | null {
  if (msg.length < 32 + 2 || !iface || !iface.listen) return null;
  const key = msg.subarray(0, 32);
  if (key.equals(ourKey)) return null;
  const addr = msg.subarray(32, msg.length - 2);
  const src = source.split("%")[0]!;
  if (addr.length !== 16 || isIP(src) !== 6 || !addr.equals(parseIPv6(src))) return null;
  const port = msg.readUInt16BE(msg.length - 2);
  if (port === 0) return null;
  return `tls://[${formatIPv6(addr)}%${iface.name}]:${port}?key=${key.toString("hex")}&priority=${iface.priority}`;
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
  /** Dial a discovered peer once; `id` is the dedupe id of spec 4.2 (tls|iface|ip). */
  dial(uri: string, iface: string, id: string): void;
  scan?: () => Record<string, os.NetworkInterfaceInfo[] | undefined>;
}

interface ActiveInterface {
  info: EligibleInterface;
  listener: ListenerLike | undefined;
  listening: boolean;
  joined: boolean;
  beacon: Buffer | undefined;
  loggedFailure: boolean;
}

export class Multicast {
  private readonly opts: MulticastOptions;
  private readonly regexes: RegExp[];
  private readonly active = new Map<string, ActiveInterface>();
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
    const closing = [...this.active.values()].map((a) => a.listener?.close());
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
      this.limitedLog.info(`multicast interface ${name}`, `multicast: stopped on ${name}`);
    }
    for (const info of found) {
      let a = this.active.get(info.name);
      if (!a) {
        a = {
          info,
          listener: undefined,
          listening: false,
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
      if (a.beacon)
        this.socket.send(a.beacon, this.opts.port ?? MULTICAST_PORT, `${MULTICAST_GROUP}%${info.name}`);
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
    const uri = beaconDialUri(msg, source, this.opts.identity.publicKey, a?.info);
    if (!uri || !a) return;
    this.opts.dial(uri, a.info.name, `tls|${a.info.name}|${formatIPv6(parseIPv6(source.split("%")[0]!))}`);
  }
}
