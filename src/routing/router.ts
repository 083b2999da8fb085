// The routing core of one node (spec 5.3–5.8): a sans-I/O state machine. Events go in with the
// current time (peer up/down, frame from a peer, local send, timer due); effects come out through
// RouterOutput. The driver keeps one timer armed at nextTimeout().
import { TokenBucket } from "../util/token-bucket.js";
import { Dht } from "./dht.js";
import { Pathfinder } from "./pathfinder.js";
import {
  DEFAULT_LIMITS,
  type Peer,
  type RouterCore,
  type RouterLimits,
  type StoredInfo,
  cmpKey,
} from "./state.js";
import { Tree } from "./tree.js";
import { verifyTreeIncremental } from "./treeverify.js";
import { FrameType, ProtocolError, TrafficKind } from "./types.js";
import {
  type Signer,
  decodeBootstrap,
  decodeBootstrapAck,
  decodeLookup,
  decodeNotify,
  decodeResponse,
  decodeSetup,
  decodeTeardown,
  decodeTree,
  encodeDhtTraffic,
  encodePathTraffic,
  pathTrafficFirstPort,
  pathTrafficInner,
  reframe,
  verifySetup,
  writePathTrafficHead,
} from "./wire.js";

export interface RouterOutput {
  /**
   * frame = type ‖ body; may be a view valid only during the call (the link copies). held: it stays
   * unchanged until the event loop turns, so the link may send it from there (Link.send).
   */
  send(port: number, frame: Buffer, held?: boolean): void;
  /**
   * The frame head ‖ tail, both valid only during the call: an output whose link copies both into
   * its send buffer saves building the frame (a copy of the payload and an allocation per packet).
   * held: `tail` stays unchanged until the event loop turns (Link.sendJoined).
   */
  sendJoined?(port: number, head: Buffer, tail: Buffer, held?: boolean): void;
  /** Kind-1 traffic addressed to us; payload is a view valid only during the call. */
  deliver(source: Buffer, payload: Buffer): void;
  /** Kind-2 traffic stopping here (dest may be a partial key); views valid only during the call. */
  deliverOutOfBand(source: Buffer, dest: Buffer, payload: Buffer): void;
  /** Protocol violation on that link: the driver closes it and then calls removePeer(port). */
  closePeer(port: number, reason: string): void;
}

const TRAFFIC_FIXED = 32 + 32 + 1; // source ‖ dest ‖ kind
const TRAFFIC_HEADER = 1 + TRAFFIC_FIXED; // and the type byte
/** Where sendTraffic writes a type-10 head for sendJoined, shared: the output copies it before returning. */
const trafficHead = Buffer.allocUnsafe(1024);
const FRAME_TYPES = 11;
/** 1 for the frame types that cost a signature check or a signature: they spend the link's control budget. */
const COSTLY = new Uint8Array(256);
for (const t of [
  FrameType.DhtBootstrap,
  FrameType.DhtBootstrapAck,
  FrameType.DhtSetup,
  FrameType.PathNotify,
  FrameType.PathLookup,
  FrameType.PathResponse,
])
  COSTLY[t] = 1;

export class Router implements RouterCore {
  readonly publicKey: Buffer;
  readonly ownKey: Buffer;
  readonly peers = new Map<number, Peer>();
  readonly limits: RouterLimits;
  now: number;
  private readonly tree: Tree;
  private readonly dht: Dht;
  private readonly pf: Pathfinder;
  private readonly framesIn = new Array<number>(FRAME_TYPES).fill(0);
  private readonly framesOut = new Array<number>(FRAME_TYPES).fill(0);
  private readonly drops = new Map<string, number>();
  private delivered = 0;
  /** Traffic frames that came from one peer and left to another (this node relayed them). */
  private forwardedFrames = 0;
  private forwardedBytes = 0;

  constructor(
    signer: Signer,
    private readonly out: RouterOutput,
    now: number,
    random: () => number = Math.random,
    limits: Partial<RouterLimits> = {},
  ) {
    this.limits = { ...DEFAULT_LIMITS, ...limits };
    this.publicKey = Buffer.from(signer.publicKey);
    this.ownKey = this.publicKey;
    this.now = now;
    this.tree = new Tree(this, signer);
    // Setup seqs only need to differ between setups, across restarts too: clock mixed with randomness.
    const rnd = BigInt(Math.floor(random() * 0x1_0000_0000)) << 20n;
    this.dht = new Dht(this, signer, this.tree, BigInt(Math.floor(now)) * 1_000_000n + rnd);
    this.pf = new Pathfinder(this, signer, this.tree, this.dht);
    this.tree.afterFix = () => this.dht.doBootstrap();
  }

  /** The port addPeer will assign next (it sends the hello on that port before returning). */
  nextFreePort(): number {
    let port = 1;
    while (this.peers.has(port)) port++;
    return port;
  }

  addPeer(key: Buffer, priority: number, now: number): number {
    this.now = now;
    this.dht.invalidate();
    const port = this.nextFreePort();
    const perSecond = this.limits.controlPerSecond;
    const peer: Peer = {
      port,
      key: Buffer.from(key),
      priority,
      info: undefined,
      closed: false,
      control: new TokenBucket(perSecond, perSecond / 4),
    };
    this.peers.set(port, peer);
    this.pf.peerLinked(key);
    this.tree.sendHello(peer);
    return port;
  }

  removePeer(port: number, now: number): void {
    this.now = now;
    const peer = this.peers.get(port);
    if (peer === undefined) return;
    this.dht.invalidate();
    this.peers.delete(port);
    this.tree.remove(peer);
    this.dht.removePeer(peer);
    this.dht.flushDeferred();
  }

  setPeerPriority(port: number, priority: number): void {
    const peer = this.peers.get(port);
    if (peer !== undefined) peer.priority = priority;
    this.dht.invalidate();
  }

  /**
   * A frame from the peer on `port`. held: the link's read buffer, ours to rewrite and unchanged
   * until the event loop turns (LinkEvents.onFrame): traffic forwarded on is sent from there.
   */
  handleFrame(port: number, frame: Buffer, now: number, held = false): void {
    this.now = now;
    const peer = this.peers.get(port);
    if (peer === undefined || peer.closed) {
      this.drop("frame_from_unknown_port");
      return;
    }
    if (frame.length === 0) {
      this.violation(peer, "empty frame");
      return;
    }
    const type = frame[0];
    if (type < FRAME_TYPES) this.framesIn[type]++;
    if (COSTLY[type] === 1 && !peer.control.take(now)) {
      this.drop("control_budget");
      return;
    }
    // Only traffic leaves tree, peer and DHT state untouched (the pathfinder has its own state).
    if (type !== FrameType.DhtTraffic && type !== FrameType.PathTraffic) this.dht.invalidate();
    try {
      this.dispatch(peer, type, frame, held);
    } catch (err) {
      if (err instanceof ProtocolError || err instanceof RangeError) {
        this.violation(peer, `bad type-${type} frame: ${err.message}`);
      } else {
        // A bug reached by a peer's input must cost that link, not the daemon; counted so tests see it.
        this.drop("internal_error");
        this.violation(peer, `internal error on a type-${type} frame: ${(err as Error).message}`);
      }
    }
    this.dht.flushDeferred();
  }

  private dispatch(peer: Peer, type: number, frame: Buffer, held: boolean): void {
    const body = frame.subarray(1);
    switch (type) {
      case FrameType.Dummy:
        return; // keepalives belong to the link
      case FrameType.Tree: {
        const info = decodeTree(body);
        const from = info.hops.length > 1 ? info.hops[info.hops.length - 2].next : info.root;
        if (!from.equals(peer.key)) {
          this.violation(peer, "tree info not from this peer");
          return;
        }
        if (!info.hops[info.hops.length - 1].next.equals(this.ownKey)) {
          this.violation(peer, "tree info not addressed to us");
          return;
        }
        if (!verifyTreeIncremental(info, this.verifiedInfos())) {
          this.violation(peer, "tree info signature does not verify");
          return;
        }
        this.tree.update(peer, info);
        return;
      }
      case FrameType.DhtBootstrap:
        this.dht.handleBootstrap(decodeBootstrap(body), frame);
        return;
      case FrameType.DhtBootstrapAck:
        this.dht.handleAck(decodeBootstrapAck(body), frame);
        return;
      case FrameType.DhtSetup: {
        const setup = decodeSetup(body);
        if (!verifySetup(setup)) {
          this.violation(peer, "setup signature does not verify");
          return;
        }
        this.dht.handleSetup(peer, setup, frame);
        return;
      }
      case FrameType.DhtTeardown:
        this.dht.teardown(peer, decodeTeardown(body));
        return;
      case FrameType.PathNotify:
        this.pf.handleNotify(decodeNotify(body), frame);
        return;
      case FrameType.PathLookup: {
        const lookup = decodeLookup(body);
        lookup.rpath.push(peer.port);
        this.pf.handleLookup(lookup);
        return;
      }
      case FrameType.PathResponse: {
        const response = decodeResponse(body);
        response.rpath.push(peer.port);
        this.pf.handleResponse(response);
        return;
      }
      case FrameType.DhtTraffic:
        if (frame.length < TRAFFIC_HEADER) throw new ProtocolError("truncated traffic");
        if (this.routeDhtTraffic(body, frame, false, held)) this.forwarded(frame.length);
        return;
      case FrameType.PathTraffic: {
        const [port, afterPort] = pathTrafficFirstPort(body);
        const next = port === 0 ? undefined : this.peers.get(port);
        if (next !== undefined && !next.closed) {
          // Held: the type byte goes over the port's last byte, and the frame leaves from the link's
          // buffer (no copy of up to 64 kB, no allocation); else a copy.
          let rest: Buffer;
          if (held) {
            frame[afterPort] = FrameType.PathTraffic;
            rest = frame.subarray(afterPort);
          } else rest = reframe(FrameType.PathTraffic, body, afterPort);
          this.sendFrame(next, rest, held);
          this.forwarded(rest.length);
          return;
        }
        // Ends here, or its next hop is gone: a view of the type-9 body, copied only if it goes on.
        const inner = port === 0 ? body.subarray(afterPort) : pathTrafficInner(body);
        if (this.routeDhtTraffic(inner, undefined, true)) this.forwarded(1 + inner.length);
        return;
      }
      default:
        this.violation(peer, `unknown frame type ${type}`);
    }
  }

  /** Infos whose signatures were checked on arrival: their hops need no second check. */
  private *verifiedInfos(): Generator<StoredInfo | undefined> {
    yield this.tree.self;
    for (const p of this.peers.values()) yield p.info;
  }

  /**
   * Greedy keyspace forwarding of type-9 traffic (spec 5.5): its body, and the frame when there is one. viaPath: it came by source route (or
   * locally), which selects the slow notify throttle when it ends here. True when it went to a peer.
   */
  private routeDhtTraffic(
    traffic: Buffer,
    frame: Buffer | undefined,
    viaPath: boolean,
    held = false,
  ): boolean {
    const dest = traffic.subarray(32, 64);
    // Traffic for us needs no DHT lookup, no node being closer to our key than we are: at idle the
    // lookup's one-entry cache is cold, since every protocol frame and timeout invalidates it, and a
    // packet paid a key string, a map probe and a keyspace search (issue 11).
    const toUs = cmpKey(dest, this.ownKey) === 0;
    const next = toUs ? null : this.dht.lookupTraffic(dest);
    if (next !== null) {
      if (frame !== undefined) this.sendFrame(next, frame, held);
      else this.sendFrame(next, reframe(FrameType.DhtTraffic, traffic, 0));
      return true;
    }
    const source = traffic.subarray(0, 32);
    if (toUs) this.pf.doNotify(source, viaPath);
    const kind = traffic[64];
    // A fault in the layers above is no fault of the peer that relayed the packet: never close its link.
    if (kind === TrafficKind.Standard && toUs) {
      this.delivered++;
      try {
        this.out.deliver(source, traffic.subarray(TRAFFIC_FIXED));
      } catch {
        this.drop("deliver_error");
      }
    } else if (kind === TrafficKind.OutOfBand) {
      this.delivered++;
      try {
        this.out.deliverOutOfBand(source, dest, traffic.subarray(TRAFFIC_FIXED));
      } catch {
        this.drop("deliver_error");
      }
    } else {
      this.drop(kind === TrafficKind.Standard ? "traffic_no_route" : "traffic_bad_kind");
    }
    return false;
  }

  /** Traffic frames received and sent so far, a cheap sum (the daemon's heap trim waits for bursts to end). */
  trafficFrames(): number {
    const i = this.framesIn;
    const o = this.framesOut;
    return (
      i[FrameType.DhtTraffic]! +
      i[FrameType.PathTraffic]! +
      o[FrameType.DhtTraffic]! +
      o[FrameType.PathTraffic]!
    );
  }

  private forwarded(bytes: number): void {
    this.forwardedFrames++;
    this.forwardedBytes += bytes;
  }

  /** Local send: by a known source route if the pathfinder has one, else greedy DHT routing. */
  sendTraffic(dest: Buffer, kind: number, payload: Buffer, now: number, held = false): void {
    this.now = now;
    const path = this.pf.getPath(dest);
    const traffic = { source: this.ownKey, dest, kind, payload };
    if (path !== null && path.length > 0) {
      const first = path[0];
      const peer = first === 0 ? undefined : this.peers.get(first);
      if (peer !== undefined && !peer.closed) {
        const headBytes = this.out.sendJoined ? writePathTrafficHead(trafficHead, path, 1, traffic) : 0;
        if (headBytes > 0) this.sendJoinedFrame(peer, trafficHead.subarray(0, headBytes), payload, held);
        else this.sendFrame(peer, encodePathTraffic({ path: path.slice(1), traffic }));
        this.dht.flushDeferred();
        return;
      }
    }
    const frame = encodeDhtTraffic(traffic);
    this.routeDhtTraffic(frame.subarray(1), frame, true);
    this.dht.flushDeferred();
  }

  nextTimeout(): number | undefined {
    let t = this.tree.nextTimeout();
    const d = this.dht.nextTimeout();
    if (d !== undefined && (t === undefined || d < t)) t = d;
    const p = this.pf.nextTimeout();
    if (p !== undefined && (t === undefined || p < t)) t = p;
    return t;
  }

  handleTimeout(now: number): void {
    this.now = now;
    this.dht.invalidate();
    this.tree.onTimeout(now);
    this.dht.onTimeout(now);
    this.pf.onTimeout(now);
    this.dht.flushDeferred();
  }

  // RouterCore
  sendFrame(peer: Peer, frame: Buffer, held = false): void {
    if (this.peers.get(peer.port) !== peer || peer.closed) {
      this.drop("send_to_gone_peer");
      return;
    }
    const type = frame[0];
    if (type < FRAME_TYPES) this.framesOut[type]++;
    this.out.send(peer.port, frame, held);
  }

  private sendJoinedFrame(peer: Peer, head: Buffer, tail: Buffer, held: boolean): void {
    if (this.peers.get(peer.port) !== peer || peer.closed) {
      this.drop("send_to_gone_peer");
      return;
    }
    this.framesOut[head[0]!]!++;
    this.out.sendJoined!(peer.port, head, tail, held);
  }

  drop(reason: string): void {
    this.drops.set(reason, (this.drops.get(reason) ?? 0) + 1);
  }

  private violation(peer: Peer, reason: string): void {
    this.drop("peer_closed_protocol_violation");
    peer.closed = true;
    this.dht.invalidate();
    this.dht.peerClosed(peer);
    this.out.closePeer(peer.port, reason);
  }

  // Read-only views for the admin API, tests and the simulator.
  selfInfo(): { key: Buffer; root: Buffer; rootSeq: bigint; coords: number[]; parent: number | undefined } {
    const self = this.tree.self.info;
    return {
      key: this.ownKey,
      root: self.root,
      rootSeq: self.seq,
      coords: [...this.tree.coords()],
      parent: this.tree.parent?.port,
    };
  }

  peerInfos(): Array<{ port: number; key: Buffer; priority: number; coords: number[] | undefined }> {
    const out: Array<{ port: number; key: Buffer; priority: number; coords: number[] | undefined }> = [];
    for (const p of this.peers.values()) {
      out.push({ port: p.port, key: p.key, priority: p.priority, coords: p.info?.ports.slice(0, -1) });
    }
    return out;
  }

  dhtEntries(): Array<{ key: Buffer; port: number; rest: number }> {
    const out: Array<{ key: Buffer; port: number; rest: number }> = [];
    for (const e of this.dht.entries.values()) {
      out.push({ key: e.key, port: e.peer?.port ?? 0, rest: e.rest?.port ?? 0 });
    }
    return out;
  }

  pathEntries(): Array<{ key: Buffer; path: number[] }> {
    const out: Array<{ key: Buffer; path: number[] }> = [];
    for (const e of this.pf.paths.values()) out.push({ key: e.key, path: e.path ? [...e.path] : [] });
    return out;
  }

  /** Our prev path (to our DHT predecessor) and whether a next path ends here; for tests/simulator. */
  dhtState(): {
    prev: { dest: Buffer; root: Buffer; rootSeq: bigint } | undefined;
    next: Buffer | undefined;
    holdDown: boolean;
  } {
    return { prev: this.dht.prevInfo(), next: this.dht.next?.key, holdDown: this.tree.waiting };
  }

  stats(): Record<string, number> {
    const names = [
      "dummy",
      "tree",
      "bootstrap",
      "bootstrap_ack",
      "setup",
      "teardown",
      "notify",
      "lookup",
      "response",
      "dht_traffic",
      "path_traffic",
    ];
    const s: Record<string, number> = {};
    for (let i = 0; i < FRAME_TYPES; i++) {
      s[`in_${names[i]}`] = this.framesIn[i];
      s[`out_${names[i]}`] = this.framesOut[i];
    }
    for (const [reason, n] of this.drops) s[`drop_${reason}`] = n;
    s.delivered = this.delivered;
    s.forwarded_frames = this.forwardedFrames;
    s.forwarded_bytes = this.forwardedBytes;
    s.peers = this.peers.size;
    s.dht_entries = this.dht.entries.size;
    s.path_entries = this.pf.paths.size;
    s.expired_roots = this.tree.expired.size;
    return s;
  }
}
