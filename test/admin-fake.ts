// A fake AdminView and a paired Proto for the admin tests.
import type { AdminView, DhtView, PathView, PeerView, SessionView, TunView } from "../src/admin/view.js";
import { Identity } from "../src/crypto/identity.js";
import { Proto, type ProtoSelf } from "../src/overlay/proto.js";

export const keyA = Identity.fromSeed(Buffer.alloc(32, 0)).publicKey;
export const keyB = Identity.fromSeed(Buffer.from(Array.from({ length: 32 }, (_, i) => i + 1))).publicKey;
export const keyC = Identity.fromSeed(Buffer.alloc(32, 7)).publicKey;

/** Two Proto instances whose sends are delivered to each other asynchronously. */
export function protoPair(selfA: Partial<ProtoSelf> = {}, selfB: Partial<ProtoSelf> = {}) {
  const sent: Array<{ from: string; to: string; message: Buffer }> = [];
  let dropAll = false;
  const protos = new Map<string, Proto>();
  const makeSender = (from: Buffer) => ({
    mtu: 53049,
    send(dest: Buffer, message: Uint8Array) {
      const copy = Buffer.from(message);
      sent.push({ from: from.toString("hex"), to: dest.toString("hex"), message: copy });
      if (dropAll) return;
      const target = protos.get(dest.toString("hex"));
      if (target) setImmediate(() => target.handle(Buffer.from(from), copy, Date.now()));
    },
  });
  const base = (key: Buffer, extra: Partial<ProtoSelf>): ProtoSelf => ({
    key,
    nodeInfo: {},
    coords: () => [],
    peerKeys: () => [],
    dhtKeys: () => [],
    ...extra,
  });
  const a = new Proto(makeSender(keyA), base(keyA, selfA));
  const b = new Proto(makeSender(keyB), base(keyB, selfB));
  protos.set(keyA.toString("hex"), a);
  protos.set(keyB.toString("hex"), b);
  return {
    a,
    b,
    sent,
    setDrop(drop: boolean) {
      dropAll = drop;
    },
  };
}

export class FakeView implements AdminView {
  selfCoords: number[] = [1, 1];
  peerList: PeerView[] = [];
  dhtList: DhtView[] = [];
  pathList: PathView[] = [];
  sessionList: SessionView[] = [];
  tunState: TunView = { enabled: true, name: "pd0", mtu: 53049 };
  multicast: string[] = ["pdv0"];
  configured = new Set<string>();
  failNext = false;

  constructor(
    readonly selfKey: Buffer,
    readonly proto: Proto,
  ) {}

  self() {
    if (this.failNext) {
      this.failNext = false;
      throw new TypeError("simulated bug");
    }
    return { key: this.selfKey, coords: this.selfCoords };
  }
  peers() {
    return this.peerList;
  }
  dht() {
    return this.dhtList;
  }
  paths() {
    return this.pathList;
  }
  sessions() {
    return this.sessionList;
  }
  tun() {
    return this.tunState;
  }
  multicastInterfaces() {
    return this.multicast;
  }
  addPeer(uri: string, iface?: string) {
    if (!/^(tcp|tls|unix|socks):\/\//.test(uri)) throw new Error(`unknown call scheme: ${uri.split(":")[0]}`);
    const id = `${uri}|${iface ?? ""}`;
    if (this.configured.has(id)) throw new Error("peer already configured");
    this.configured.add(id);
  }
  removePeer(uri: string, iface?: string) {
    const id = `${uri}|${iface ?? ""}`;
    if (!this.configured.delete(id)) throw new Error("peer not configured");
  }
  /** What reload() answers next: a summary, or an Error to reject with. */
  reloadAnswer: string | Error = "nothing changed";
  reload(): Promise<string> {
    const a = this.reloadAnswer;
    return a instanceof Error ? Promise.reject(a) : Promise.resolve(a);
  }
}
