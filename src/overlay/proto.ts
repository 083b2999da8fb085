// The Yggdrasil core "proto" layer (spec 7): session messages whose first byte is 0x02 carry
// nodeinfo and debug requests/responses. Requests carry no id, so a response is matched to the
// pending request by the responder's key and message type.
import { goMarshal } from "../util/gojson.js";
import { BUILD_NAME, BUILD_VERSION, goArch, goPlatform } from "../util/version.js";

export const SESSION_PROTO = 0x02;
export const NODEINFO_MAX_BYTES = 16384;
const DEFAULT_TIMEOUT_MS = 6000;
const KEY_BYTES = 32;

const ProtoType = { Dummy: 0x00, NodeInfoRequest: 0x01, NodeInfoResponse: 0x02, Debug: 0xff } as const;
const DebugType = {
  Dummy: 0x00,
  GetSelfRequest: 0x01,
  GetSelfResponse: 0x02,
  GetPeersRequest: 0x03,
  GetPeersResponse: 0x04,
  GetDhtRequest: 0x05,
  GetDhtResponse: 0x06,
} as const;

export class ProtoTimeoutError extends Error {
  constructor(what: string, key: Buffer) {
    super(`${what} from ${key.toString("hex")} timed out`);
    this.name = "ProtoTimeoutError";
  }
}

export interface ProtoSender {
  /**
   * Sends one proto message to `dest`; the sender puts the 0x02 session type byte in front (the
   * mirror of `Proto.handle`, which gets what follows that byte).
   */
  send(dest: Buffer, message: Uint8Array): void;
  /** Largest message `send` accepts; bounds the debug key lists. */
  readonly mtu?: number;
}

export interface ProtoSelf {
  key: Buffer;
  /** The configured NodeInfo object (spec 10); null/undefined means {}. */
  nodeInfo?: Record<string, unknown> | null;
  /** NodeInfoPrivacy: publish the configured NodeInfo without the build keys. */
  privacy?: boolean;
  coords(): number[];
  peerKeys(): Buffer[];
  dhtKeys(): Buffer[];
}

export interface ProtoTimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

const realTimers: ProtoTimers = {
  set: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clear: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
};

function sortKeysDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortKeysDeep);
  if (value !== null && typeof value === "object") {
    const sorted: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort())
      sorted[key] = sortKeysDeep((value as Record<string, unknown>)[key]);
    return sorted;
  }
  return value;
}

/**
 * The nodeinfo this node publishes: the configured object plus, unless `privacy`, the build keys
 * (which overwrite user keys of the same name). Keys sorted as Go's json.Marshal sorts map keys.
 */
export function buildNodeInfo(
  nodeInfo: Record<string, unknown> | null | undefined,
  privacy: boolean,
): string {
  const info: Record<string, unknown> = { ...(nodeInfo ?? {}) };
  if (!privacy) {
    info.buildname = BUILD_NAME;
    info.buildversion = BUILD_VERSION;
    info.buildplatform = goPlatform();
    info.buildarch = goArch();
  }
  const json = goMarshal(sortKeysDeep(info));
  const size = Buffer.byteLength(json);
  if (size > NODEINFO_MAX_BYTES) {
    throw new Error(
      `config: NodeInfo is ${size} bytes as JSON, more than the maximum of ${NODEINFO_MAX_BYTES}`,
    );
  }
  return json;
}

/** Go's fmt "%v" of a []uint64: `[1 2 3]`, `[]` for the root. */
export function formatGoCoords(coords: readonly number[]): string {
  return `[${coords.join(" ")}]`;
}

function splitKeys(body: Buffer): Buffer[] {
  const keys: Buffer[] = [];
  for (let at = 0; at + KEY_BYTES <= body.length; at += KEY_BYTES) {
    keys.push(Buffer.from(body.subarray(at, at + KEY_BYTES)));
  }
  return keys;
}

/** Remote queries over the overlay (Proto implements them; the admin API and embedders call them). */
export interface RemoteQueries {
  /** Resolves with the remote node's nodeinfo JSON text; rejects with ProtoTimeoutError. */
  getNodeInfoRaw(key: Buffer, timeoutMs?: number): Promise<string>;
  /** Resolves with the remote's debug getSelf JSON text (`{"coords":"[…]","key":"…"}`). */
  debugGetSelfRaw(key: Buffer, timeoutMs?: number): Promise<string>;
  debugGetPeers(key: Buffer, timeoutMs?: number): Promise<Buffer[]>;
  debugGetDHT(key: Buffer, timeoutMs?: number): Promise<Buffer[]>;
}

interface Waiter {
  resolve(body: Buffer): void;
  reject(err: Error): void;
}

export class Proto implements RemoteQueries {
  nodeInfoJson: string;
  private nodeInfoBytes: Buffer;
  private readonly pending = new Map<string, Set<Waiter>>();
  private readonly timers: ProtoTimers;

  constructor(
    private readonly sender: ProtoSender,
    private readonly self: ProtoSelf,
    options: { timers?: ProtoTimers } = {},
  ) {
    this.timers = options.timers ?? realTimers;
    this.nodeInfoJson = buildNodeInfo(self.nodeInfo, self.privacy ?? false);
    this.nodeInfoBytes = Buffer.from(this.nodeInfoJson);
  }

  /** A reloaded NodeInfo; the next request gets it. Throws (and keeps the old) if it is too large. */
  setNodeInfo(nodeInfo: Record<string, unknown>, privacy: boolean): void {
    const json = buildNodeInfo(nodeInfo, privacy);
    this.nodeInfoJson = json;
    this.nodeInfoBytes = Buffer.from(json);
  }

  /** One proto message from `source`; `message` is what followed the 0x02 session byte. */
  handle(source: Buffer, message: Buffer, _now?: number): void {
    if (message.length === 0) return;
    switch (message[0]) {
      case ProtoType.NodeInfoRequest:
        this.reply(source, [ProtoType.NodeInfoResponse], this.nodeInfoBytes);
        break;
      case ProtoType.NodeInfoResponse:
        this.settle(source, ProtoType.NodeInfoResponse, message.subarray(1));
        break;
      case ProtoType.Debug:
        this.handleDebug(source, message.subarray(1));
        break;
    }
  }

  private handleDebug(source: Buffer, message: Buffer): void {
    if (message.length === 0) return;
    const debugType = message[0];
    switch (debugType) {
      case DebugType.GetSelfRequest: {
        const self = { coords: formatGoCoords(this.self.coords()), key: this.self.key.toString("hex") };
        this.reply(source, [ProtoType.Debug, DebugType.GetSelfResponse], Buffer.from(JSON.stringify(self)));
        break;
      }
      case DebugType.GetPeersRequest:
        this.reply(source, [ProtoType.Debug, DebugType.GetPeersResponse], this.keyList(this.self.peerKeys()));
        break;
      case DebugType.GetDhtRequest:
        this.reply(source, [ProtoType.Debug, DebugType.GetDhtResponse], this.keyList(this.self.dhtKeys()));
        break;
      case DebugType.GetSelfResponse:
      case DebugType.GetPeersResponse:
      case DebugType.GetDhtResponse:
        this.settle(source, 0x100 | debugType, message.subarray(1));
        break;
    }
  }

  /** As many keys as fit in one message after the 3 header bytes. */
  private keyList(keys: Buffer[]): Buffer {
    const room = (this.sender.mtu ?? 53049) - 3;
    const count = Math.max(0, Math.min(keys.length, Math.floor(room / KEY_BYTES)));
    return Buffer.concat(keys.slice(0, count));
  }

  private reply(dest: Buffer, header: number[], body: Buffer): void {
    this.transmit(dest, Buffer.concat([Buffer.from(header), body]));
  }

  private transmit(dest: Buffer, message: Buffer): void {
    if (dest.equals(this.self.key)) {
      // Talking to ourselves never touches the network (ironwood delivers such packets locally).
      queueMicrotask(() => this.handle(Buffer.from(this.self.key), message));
      return;
    }
    try {
      this.sender.send(dest, message);
    } catch {
      // A send failure (no route, session gone) is indistinguishable from a lost packet: the
      // request simply times out.
    }
  }

  private settle(source: Buffer, responseType: number, body: Buffer): void {
    const slot = `${responseType}:${source.toString("hex")}`;
    const waiters = this.pending.get(slot);
    if (!waiters) return;
    this.pending.delete(slot);
    const copy = Buffer.from(body);
    for (const waiter of waiters) waiter.resolve(copy);
  }

  private request(key: Buffer, header: number[], responseType: number, what: string, timeoutMs: number) {
    const slot = `${responseType}:${key.toString("hex")}`;
    return new Promise<Buffer>((resolve, reject) => {
      let waiters = this.pending.get(slot);
      if (!waiters) {
        waiters = new Set();
        this.pending.set(slot, waiters);
      }
      const timer = this.timers.set(() => {
        waiters.delete(waiter);
        if (waiters.size === 0 && this.pending.get(slot) === waiters) this.pending.delete(slot);
        reject(new ProtoTimeoutError(what, key));
      }, timeoutMs);
      const waiter: Waiter = {
        resolve: (body) => {
          this.timers.clear(timer);
          resolve(body);
        },
        reject: (err) => {
          this.timers.clear(timer);
          reject(err);
        },
      };
      waiters.add(waiter);
      this.transmit(key, Buffer.from(header));
    });
  }

  async getNodeInfoRaw(key: Buffer, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
    const body = await this.request(
      key,
      [ProtoType.NodeInfoRequest],
      ProtoType.NodeInfoResponse,
      "nodeinfo",
      timeoutMs,
    );
    return body.toString("utf8");
  }

  async getNodeInfo(key: Buffer, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Record<string, unknown>> {
    const parsed: unknown = JSON.parse(await this.getNodeInfoRaw(key, timeoutMs));
    if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
      throw new Error(`nodeinfo from ${key.toString("hex")} is not a JSON object`);
    }
    return parsed as Record<string, unknown>;
  }

  async debugGetSelfRaw(key: Buffer, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<string> {
    const header = [ProtoType.Debug, DebugType.GetSelfRequest];
    const body = await this.request(
      key,
      header,
      0x100 | DebugType.GetSelfResponse,
      "debug getSelf",
      timeoutMs,
    );
    return body.toString("utf8");
  }

  async debugGetSelf(key: Buffer, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<{ key: string; coords: string }> {
    const parsed = JSON.parse(await this.debugGetSelfRaw(key, timeoutMs)) as {
      key?: unknown;
      coords?: unknown;
    };
    return { key: String(parsed.key ?? ""), coords: String(parsed.coords ?? "") };
  }

  async debugGetPeers(key: Buffer, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Buffer[]> {
    const header = [ProtoType.Debug, DebugType.GetPeersRequest];
    return splitKeys(
      await this.request(key, header, 0x100 | DebugType.GetPeersResponse, "debug getPeers", timeoutMs),
    );
  }

  async debugGetDHT(key: Buffer, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<Buffer[]> {
    const header = [ProtoType.Debug, DebugType.GetDhtRequest];
    return splitKeys(
      await this.request(key, header, 0x100 | DebugType.GetDhtResponse, "debug getDHT", timeoutMs),
    );
  }

  /** Rejects every pending request (node shutting down). */
  close(): void {
    const waiters = [...this.pending.values()].flatMap((set) => [...set]);
    this.pending.clear();
    for (const waiter of waiters) waiter.reject(new Error("proto closed"));
  }
}
