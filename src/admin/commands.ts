// The 14 admin commands of Yggdrasil 0.4.7 (spec 9.2): argument decoding with Go's error texts,
// response objects with 0.4.7's key order and sort orders.
import { addressForKey, formatIPv6, formatSubnet, subnetForKey } from "../crypto/address.js";
import type { FirewallDirectionView } from "../tun/firewall.js";
import { RawJson } from "../util/gojson.js";
import { BUILD_NAME, BUILD_VERSION } from "../util/version.js";
import type { AdminView } from "./view.js";

/** An error whose message is sent to the client as 0.4.7 would word it. */
export class AdminError extends Error {}

export interface CommandContext {
  view: AdminView;
  /** How long remote queries wait (0.4.7: 6 s). */
  remoteTimeoutMs: number;
}

interface Command {
  description: string;
  fields: string[];
  /** Go type name used in json.Unmarshal errors, e.g. "admin.GetSelfRequest". */
  goType: string;
  run(ctx: CommandContext, args: Record<string, string>): unknown | Promise<unknown>;
}

function goTypeOf(value: unknown): string {
  if (Array.isArray(value)) return "array";
  if (value === null) return "null";
  if (typeof value === "boolean") return "bool";
  return typeof value; // "number", "string", "object"
}

/** Go's fmt %#U of one byte as hex.DecodeString reports it. */
function goRuneQuote(byte: number): string {
  const code = `U+${byte.toString(16).toUpperCase().padStart(4, "0")}`;
  const printable = (byte >= 0x20 && byte < 0x7f) || (byte >= 0xa1 && byte !== 0xad);
  return printable ? `${code} '${String.fromCharCode(byte)}'` : code;
}

/** hex.DecodeString with Go's error messages. */
export function decodeHexGo(text: string): Buffer {
  const bytes = Buffer.from(text, "utf8");
  const isHex = (b: number) =>
    (b >= 0x30 && b <= 0x39) || (b >= 0x61 && b <= 0x66) || (b >= 0x41 && b <= 0x46);
  const pairs = bytes.length >> 1;
  for (let i = 0; i < pairs * 2; i++) {
    if (!isHex(bytes[i])) throw new AdminError(`encoding/hex: invalid byte: ${goRuneQuote(bytes[i])}`);
  }
  if (bytes.length % 2 === 1) {
    const last = bytes[bytes.length - 1];
    if (!isHex(last)) throw new AdminError(`encoding/hex: invalid byte: ${goRuneQuote(last)}`);
    throw new AdminError("encoding/hex: odd length hex string");
  }
  return Buffer.from(text, "hex");
}

/** Go copies the decoded bytes into a 32-byte array: shorter keys are zero-padded. */
function asKey(bytes: Buffer): Buffer {
  const key = Buffer.alloc(32);
  bytes.copy(key, 0, 0, Math.min(32, bytes.length));
  return key;
}

const addressOf = (key: Buffer) => formatIPv6(addressForKey(key));
const hexOf = (key: Buffer) => key.toString("hex");
const byKeyHex = <T extends { key: string }>(a: T, b: T) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** addPeer/removePeer report refusals as Errors whose message goes to the client as is. */
function steer(action: () => void): void {
  try {
    action();
  } catch (err) {
    throw new AdminError(err instanceof Error ? err.message : String(err));
  }
}

async function remote<T>(work: Promise<T>, timeoutText: string): Promise<T> {
  try {
    return await work;
  } catch (err) {
    if (err instanceof Error && err.name === "ProtoTimeoutError") throw new AdminError(timeoutText);
    throw new AdminError(err instanceof Error ? err.message : String(err));
  }
}

function firewallDirection(d: FirewallDirectionView): Record<string, unknown> {
  return {
    default: d.default,
    default_hits: d.defaultHits,
    established: d.established,
    rules: d.rules.map((r) => ({
      index: r.index,
      name: r.name,
      action: r.action,
      match: r.match,
      hits: r.hits,
    })),
  };
}

function debugKeysResponse(key: Buffer, keys: Buffer[]): Record<string, unknown> {
  return { [addressOf(key)]: keys.length > 0 ? { keys: keys.map(hexOf) } : {} };
}

export const COMMANDS: Record<string, Command> = {
  addpeer: {
    description: "Add a peer to the peer list",
    fields: ["uri", "interface"],
    goType: "admin.AddPeerRequest",
    run: ({ view }, args) => {
      steer(() => view.addPeer(args.uri ?? "", args.interface || undefined));
      return {};
    },
  },
  debug_remotegetdht: {
    description: "Debug use only",
    fields: ["key"],
    goType: "core.DebugGetDHTRequest",
    run: async ({ view, remoteTimeoutMs }, args) => {
      const key = asKey(decodeHexGo(args.key ?? ""));
      return debugKeysResponse(key, await remote(view.proto.debugGetDHT(key, remoteTimeoutMs), "timeout"));
    },
  },
  debug_remotegetpeers: {
    description: "Debug use only",
    fields: ["key"],
    goType: "core.DebugGetPeersRequest",
    run: async ({ view, remoteTimeoutMs }, args) => {
      const key = asKey(decodeHexGo(args.key ?? ""));
      return debugKeysResponse(key, await remote(view.proto.debugGetPeers(key, remoteTimeoutMs), "timeout"));
    },
  },
  debug_remotegetself: {
    description: "Debug use only",
    fields: ["key"],
    goType: "core.DebugGetSelfRequest",
    run: async ({ view, remoteTimeoutMs }, args) => {
      const key = asKey(decodeHexGo(args.key ?? ""));
      const text = await remote(view.proto.debugGetSelfRaw(key, remoteTimeoutMs), "timeout");
      return { [addressOf(key)]: rawOrError(text) };
    },
  },
  getdht: {
    description: "Show known DHT entries",
    fields: [],
    goType: "admin.GetDHTRequest",
    run: ({ view }) => ({
      dht: view
        .dht()
        .map((d) => ({ address: addressOf(d.key), key: hexOf(d.key), port: d.port, rest: d.rest }))
        .sort(byKeyHex),
    }),
  },
  getfirewall: {
    description: "planetd: the firewall's rules with their hit counts, and its flow table",
    fields: [],
    goType: "",
    run: ({ view }) => {
      const fw = view.firewall?.();
      if (!fw) return { enabled: false };
      return {
        enabled: true,
        inbound: firewallDirection(fw.inbound),
        outbound: firewallDirection(fw.outbound),
        flows: fw.flows,
        max_flows: fw.maxFlows,
        flows_evicted: fw.flowsEvicted,
        flows_expired: fw.flowsExpired,
        flows_revoked: fw.flowsRevoked,
        rejects_sent: fw.rejectsSent,
        rejects_rate_limited: fw.rejectsRateLimited,
      };
    },
  },
  getnat: {
    description: "planetd: NAT traversal's mapping, punch counters and punched links, and traffic relayed",
    fields: [],
    goType: "",
    run: ({ view }) => {
      const forwarded = view.forwarded?.() ?? { frames: 0, bytes: 0 };
      const relayed = { forwarded_frames: forwarded.frames, forwarded_bytes: forwarded.bytes };
      const nat = view.nat?.();
      if (!nat) return { enabled: false, ...relayed };
      const c = nat.counters;
      return {
        enabled: true,
        mapping: nat.mapping,
        reflexive: nat.reflexive.map((r) => `${r.ip.includes(":") ? `[${r.ip}]` : r.ip}:${r.port}`),
        punch_attempts: c.attempts ?? 0,
        punch_successes: c.successes ?? 0,
        punch_failures: c.failures ?? 0,
        punch_skipped: c.skipped ?? 0,
        offers_sent: c.offersSent ?? 0,
        answers_sent: c.answersSent ?? 0,
        offers_ignored: c.offersIgnored ?? 0,
        table_full: c.tableFull ?? 0,
        signals_malformed: c.signalsMalformed ?? 0,
        destinations: {
          offered: nat.destinations.offered,
          punching: nat.destinations.punching,
          direct: nat.destinations.direct,
          backing_off: nat.destinations.backingOff,
        },
        punched_peers: nat.punchedPeers
          .map((p) => ({ address: addressOf(p.key), key: hexOf(p.key), remote: p.remote }))
          .sort(byKeyHex),
        ...relayed,
      };
    },
  },
  getudp: {
    description:
      "planetd: the native udp sockets' drops by reason, refused keys, datagrams sent and opened, and batches done by a threadpool job or inline; what the udp:// receive path refused: RESETs, CONFIRMs, answers to dials, stray datagrams, link datagrams and fragments",
    fields: [],
    goType: "",
    run: ({ view }) => {
      const r = view.udpRefusals?.();
      // Not native-only: links on node:dgram refuse the same datagrams.
      const refusals = r && {
        resets_refused: { ...r.resetsRefused },
        confirms_refused: { ...r.confirmsRefused },
        dial_answers_refused: { ...r.dialAnswersRefused },
        stray_datagrams: { ...r.strayDatagrams },
        spent_cookies_evicted: r.spentCookiesEvicted,
        link_datagrams_refused: { ...r.datagramsRefused },
        reassembly_refused: { ...r.reassemblyRefused },
      };
      const overflows = view.endOfInputOverflows?.();
      const deferred = overflows === undefined ? {} : { end_of_input_overflows: overflows };
      const u = view.udpSockets?.();
      if (!u) return { sockets: 0, ...refusals, ...deferred };
      return {
        ...refusals,
        ...deferred,
        sockets: u.sockets,
        dropped: { ...u.dropped },
        keys_refused: { ...u.keysRefused },
        sent: u.sent,
        opened: u.opened,
        gso_messages: u.gsoMessages,
        gro_buffers: u.groBuffers,
        frames_joined: u.framesJoined,
        icmp_hints: { ...u.icmpHints },
        receive_batches: { ...u.paths.reads },
        opened_by: { ...u.paths.opened },
        send_batches: { ...u.paths.sends },
      };
    },
  },
  getmulticastinterfaces: {
    description: "Show which interfaces multicast is enabled on",
    fields: [],
    goType: "multicast.GetMulticastInterfacesRequest",
    run: ({ view }) => ({ multicast_interfaces: [...view.multicastInterfaces()] }),
  },
  getnodeinfo: {
    description: "Request nodeinfo from a remote node by its public key",
    fields: ["key"],
    goType: "core.GetNodeInfoRequest",
    run: async ({ view, remoteTimeoutMs }, args) => {
      if (!args.key) throw new AdminError("No remote public key supplied");
      let bytes: Buffer;
      try {
        bytes = decodeHexGo(args.key);
      } catch (err) {
        throw new AdminError(`Failed to decode public key: ${(err as Error).message}`);
      }
      const text = await remote(
        view.proto.getNodeInfoRaw(asKey(bytes), remoteTimeoutMs),
        "Timed out waiting for response",
      );
      return { [hexOf(bytes)]: rawOrError(text) };
    },
  },
  getpaths: {
    description: "Show established paths through this node",
    fields: [],
    goType: "admin.GetPathsRequest",
    run: ({ view }) => ({
      paths: view
        .paths()
        .map((p) => ({ address: addressOf(p.key), key: hexOf(p.key), path: [...p.path] }))
        .sort(byKeyHex),
    }),
  },
  getpeers: {
    description: "Show directly connected peers",
    fields: [],
    goType: "admin.GetPeersRequest",
    run: ({ view }) => ({
      peers: view
        .peers()
        .map((p) => ({
          address: addressOf(p.key),
          key: hexOf(p.key),
          port: p.port,
          priority: p.priority,
          coords: [...p.coords],
          remote: p.remote,
          ...(p.punched ? { punched: true } : {}),
          ...(p.keyGeneration !== undefined ? { key_generation: p.keyGeneration } : {}),
          bytes_recvd: Math.trunc(p.bytesRecvd),
          bytes_sent: Math.trunc(p.bytesSent),
          uptime: p.uptimeSeconds,
        }))
        .sort((a, b) => a.port - b.port || a.priority - b.priority),
    }),
  },
  getself: {
    description: "Show details about this node",
    fields: [],
    goType: "admin.GetSelfRequest",
    run: ({ view }) => {
      const self = view.self();
      return {
        build_name: BUILD_NAME,
        build_version: BUILD_VERSION,
        key: hexOf(self.key),
        address: addressOf(self.key),
        coords: [...self.coords],
        subnet: formatSubnet(subnetForKey(self.key)),
      };
    },
  },
  getsessions: {
    description: "Show established traffic sessions with remote nodes",
    fields: [],
    goType: "admin.GetSessionsRequest",
    run: ({ view }) => ({
      sessions: view
        .sessions()
        .map((s) => ({
          address: addressOf(s.key),
          key: hexOf(s.key),
          bytes_recvd: Math.trunc(s.bytesRecvd),
          bytes_sent: Math.trunc(s.bytesSent),
          uptime: s.uptimeSeconds,
          // planetd's own fields (Yggdrasil's clients ignore them): box or chacha20-poly1305
          ...(s.cipherOut ? { cipher_out: s.cipherOut, cipher_in: s.cipherIn } : {}),
        }))
        .sort(byKeyHex),
    }),
  },
  gettun: {
    description: "Show information about the node's TUN interface",
    fields: [],
    goType: "tun.GetTUNRequest",
    run: ({ view }) => {
      const tun = view.tun();
      if (!tun.enabled) return { enabled: false };
      // Go's omitempty drops an empty name and a zero MTU.
      return {
        enabled: true,
        name: tun.name || undefined,
        mtu: tun.mtu || undefined,
        offload: tun.offload,
        counters: tun.counters,
      };
    },
  },
  list: {
    description: "List available commands",
    fields: [],
    goType: "",
    run: () => ({
      list: Object.keys(COMMANDS)
        .sort()
        .map((command) => {
          const { description, fields } = COMMANDS[command];
          return fields.length > 0 ? { command, description, fields } : { command, description };
        }),
    }),
  },
  reload: {
    description:
      "planetd: re-read the config file and apply Peers, Listen, AllowedPublicKeys, MulticastInterfaces, NodeInfo, the log level and the firewall",
    fields: [],
    goType: "",
    run: async ({ view }) => {
      try {
        return { reloaded: await view.reload() };
      } catch (err) {
        throw new AdminError(err instanceof Error ? err.message : String(err));
      }
    },
  },
  removepeer: {
    description: "Remove a peer from the peer list",
    fields: ["uri", "interface"],
    goType: "admin.RemovePeerRequest",
    run: ({ view }, args) => {
      steer(() => view.removePeer(args.uri ?? "", args.interface || undefined));
      return {};
    },
  },
};

function rawOrError(text: string): RawJson {
  try {
    return RawJson.parse(text);
  } catch (err) {
    throw new AdminError(`Failed to marshal response: remote sent invalid JSON: ${(err as Error).message}`);
  }
}

/**
 * Decodes a command's `arguments` the way json.Unmarshal fills the 0.4.7 request struct: field
 * names match case-insensitively, unknown fields are ignored, every known field is a string.
 */
export function decodeArguments(command: Command, raw: unknown): Record<string, string> {
  const args: Record<string, string> = {};
  if (command.goType === "" || raw === null || raw === undefined) return args;
  if (typeof raw !== "object" || Array.isArray(raw)) {
    throw new AdminError(`json: cannot unmarshal ${goTypeOf(raw)} into Go value of type ${command.goType}`);
  }
  const structName = command.goType.slice(command.goType.indexOf(".") + 1);
  for (const [name, value] of Object.entries(raw as Record<string, unknown>)) {
    const field =
      command.fields.find((f) => f === name) ?? command.fields.find((f) => f === name.toLowerCase());
    if (field === undefined || value === null) continue;
    if (typeof value !== "string") {
      throw new AdminError(
        `json: cannot unmarshal ${goTypeOf(value)} into Go struct field ${structName}.${field} of type string`,
      );
    }
    args[field] = value;
  }
  return args;
}
