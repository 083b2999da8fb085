// The hostile peer of netns-tests/hostile.test.ts, run as its own process inside the attacker's
// namespace: `vite-node netns-tests/support/attacker.ts <mode> key=value…`. Every mode is bounded
// in count and time. It prints `ready {…}` once its material is built and the flood starts, and
// `done {…}` (what it actually reached) before it exits.
//
//   inits  target=host:port key=<hex seed> victim=<hex key> rate=N seconds=S
//          valid 193-byte session inits from fresh keys, in type-9 frames (kind 1) to the victim
//   dht    target=… key=… victim=… rate=N seconds=S
//          validly signed DHT bootstraps and setups from fresh keys, alternating
//   stall  target=host:port count=N rate=N seconds=S
//          up to N connections at once that send half the 38-byte metadata and stall; each one the
//          victim closes is replaced, at most `rate` new connections a second
//   admin  socket=/path count=N rate=N seconds=S
//          N idle connections to the victim's admin socket, replaced the same way
import { randomBytes } from "node:crypto";
import net from "node:net";
import { setPriority } from "node:os";
import sodium from "sodium-native";
import { loadBox } from "../../src/crypto/box.js";
import { Identity, curveFromEd } from "../../src/crypto/identity.js";
import { encodeMetadata } from "../../src/overlay/links/stream.js";
import { sealInit } from "../../src/overlay/sessions/wire.js";
import { FrameType, type TreeInfo } from "../../src/routing/types.js";
import {
  type Signer,
  appendTreeHop,
  decodeTree,
  encodeBootstrap,
  encodeDhtTraffic,
  encodeSetup,
  encodeTree,
  makeLabel,
  makeSetup,
  makeToken,
} from "../../src/routing/wire.js";
import { type Args, arg, hostPort, num, parseArgs } from "./cli.js";

/**
 * Fresh keys start at this byte or above. The test gives the honest nodes keys below 0x40 and the
 * attacker's own key in [0x40, 0x50), so the victim's greedy keyspace routing sends its answers
 * (acks, notifies, forwarded bootstraps) for these keys back down the attacker's link: the load
 * measured is the victim's, not the honest peers' relaying.
 */
const FRESH_KEY_MIN_BYTE = 0x50;
const META_BYTES = 38;
const KEEPALIVE = Buffer.from([0x00, 0x01, 0x00]);
/** Above this many bytes queued in the socket the flood skips a tick instead of buffering more. */
const BACKLOG_BYTES = 512 * 1024;
const TICK_MS = 4;

function say(word: "ready" | "done", data: Record<string, unknown>): void {
  process.stdout.write(`${word} ${JSON.stringify(data)}\n`);
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** A throw-away ed25519 key above FRESH_KEY_MIN_BYTE: sodium directly, no Identity's derived keys. */
function freshSigner(): Signer {
  const publicKey = Buffer.alloc(32);
  const secretKey = Buffer.alloc(64);
  do sodium.crypto_sign_seed_keypair(publicKey, secretKey, randomBytes(32));
  while (publicKey[0]! < FRESH_KEY_MIN_BYTE);
  return {
    publicKey,
    sign(message: Uint8Array): Buffer {
      const sig = Buffer.alloc(64);
      sodium.crypto_sign_detached(sig, message, secretKey);
      return sig;
    },
  };
}

// ---------------------------------------------------------------------------------------------
// An authenticated link: metadata both ways, a tree info that makes us the victim's child (so its
// tree and keyspace lookups can route to us), keepalives, and a reader that drains what it sends.

class AttackLink {
  private buffered = Buffer.alloc(0);
  private metaSeen = false;
  private victimInfo: TreeInfo | undefined;
  private infoWaiter: (() => void) | undefined;
  private readonly keepalive: NodeJS.Timeout;
  framesIn = 0;
  bytesIn = 0;
  closedReason: string | undefined;

  private constructor(
    readonly socket: net.Socket,
    readonly identity: Identity,
    readonly victim: Buffer,
  ) {
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("close", () => {
      this.closedReason ??= "closed by the victim";
      this.infoWaiter?.();
    });
    socket.on("error", (e) => {
      this.closedReason = e.message;
    });
    this.keepalive = setInterval(() => {
      if (socket.writableLength === 0) socket.write(KEEPALIVE);
    }, 2000);
  }

  static async open(target: string, identity: Identity, victim: Buffer): Promise<AttackLink> {
    const { host, port } = hostPort(target);
    const socket = net.connect({ host, port });
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`connect to ${target} timed out`)), 5000);
      socket.once("connect", () => {
        clearTimeout(t);
        resolve();
      });
      socket.once("error", (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
    const link = new AttackLink(socket, identity, victim);
    socket.write(encodeMetadata(identity.publicKey));
    // A hello rooted at ourselves (seq 0) makes the victim send us its own tree info.
    const hello = appendTreeHop(identity, { root: identity.publicKey, seq: 0n, hops: [] }, victim, 1);
    link.sendFrame(encodeTree(hello));
    return link;
  }

  sendFrame(frame: Buffer): void {
    const head = Buffer.alloc(2);
    head.writeUInt16BE(frame.length);
    this.socket.write(Buffer.concat([head, frame]));
  }

  /** The victim's tree info to us (seq > 0, i.e. not its hello), then our info as its child. */
  async joinTree(timeoutMs: number): Promise<TreeInfo> {
    const deadline = Date.now() + timeoutMs;
    while (!this.victimInfo) {
      if (this.closedReason) throw new Error(`link lost before the victim's tree info: ${this.closedReason}`);
      if (Date.now() > deadline) throw new Error("no tree info from the victim");
      await new Promise<void>((r) => {
        this.infoWaiter = r;
        setTimeout(r, 200);
      });
    }
    const info = this.victimInfo;
    this.sendFrame(encodeTree(appendTreeHop(this.identity, info, this.victim, 1)));
    return info;
  }

  private onData(chunk: Buffer): void {
    this.bytesIn += chunk.length;
    if (this.victimInfo) return; // from here on: drained, not parsed
    this.buffered = Buffer.concat([this.buffered, chunk]);
    if (!this.metaSeen) {
      if (this.buffered.length < META_BYTES) return;
      this.metaSeen = true;
      this.buffered = this.buffered.subarray(META_BYTES);
    }
    while (this.buffered.length >= 2) {
      const len = this.buffered.readUInt16BE(0);
      if (this.buffered.length < 2 + len) break;
      const frame = this.buffered.subarray(2, 2 + len);
      this.buffered = this.buffered.subarray(2 + len);
      this.framesIn++;
      if (frame[0] === FrameType.Tree) {
        const info = decodeTree(Buffer.from(frame.subarray(1)));
        const last = info.hops[info.hops.length - 1];
        if (info.seq !== 0n && last?.next.equals(this.identity.publicKey)) {
          this.victimInfo = info;
          this.infoWaiter?.();
          return;
        }
      }
    }
  }

  close(): void {
    clearInterval(this.keepalive);
    this.socket.destroy();
  }
}

// ---------------------------------------------------------------------------------------------
// Paced flood of pre-built frames over one link

interface Pool {
  /** Every frame with its u16 length prefix, back to back. */
  bytes: Buffer;
  /** ends[i] = offset after frame i. */
  ends: number[];
}

/**
 * Builds `count` frames, yielding to the event loop every few milliseconds so the link's keepalives
 * still go out (the victim closes a link that sends nothing for 6 s).
 */
async function buildPool(count: number, make: (i: number) => Buffer): Promise<Pool> {
  const frames: Buffer[] = [];
  const ends: number[] = [];
  let total = 0;
  let sliceStart = performance.now();
  for (let i = 0; i < count; i++) {
    if (performance.now() - sliceStart > 50) {
      await new Promise((r) => setImmediate(r));
      sliceStart = performance.now();
    }
    const frame = make(i);
    const framed = Buffer.allocUnsafe(2 + frame.length);
    framed.writeUInt16BE(frame.length, 0);
    frame.copy(framed, 2);
    frames.push(framed);
    total += framed.length;
    ends.push(total);
  }
  return { bytes: Buffer.concat(frames, total), ends };
}

interface FloodResult {
  framesWritten: number;
  framesFlushed: number;
  seconds: number;
  ratePerSecond: number;
  targetPerSecond: number;
  /** Ticks skipped because the socket already held BACKLOG_BYTES (the victim was not reading). */
  backloggedTicks: number;
  largestWrite: number;
  largestWriteAtS: number;
  linkClosed: string | undefined;
}

/** Writes the pool at `rate` frames/s for `seconds` (or until it is used up or the link closes). */
async function flood(link: AttackLink, pool: Pool, rate: number, seconds: number): Promise<FloodResult> {
  const socket = link.socket;
  const start = performance.now();
  const endAt = start + seconds * 1000;
  let sent = 0;
  let backloggedTicks = 0;
  // The most frames written at once (a late tick catches up): how smooth the flood was.
  let largestWrite = 0;
  let largestWriteAtS = 0;
  while (performance.now() < endAt && sent < pool.ends.length && !link.closedReason) {
    const due = Math.min(pool.ends.length, Math.floor(((performance.now() - start) / 1000) * rate));
    if (due > sent) {
      if (socket.writableLength > BACKLOG_BYTES) backloggedTicks++;
      else {
        const from = sent === 0 ? 0 : pool.ends[sent - 1]!;
        socket.write(pool.bytes.subarray(from, pool.ends[due - 1]!));
        if (due - sent > largestWrite) {
          largestWrite = due - sent;
          largestWriteAtS = Number(((performance.now() - start) / 1000).toFixed(2));
        }
        sent = due;
      }
    }
    await delay(TICK_MS);
  }
  const elapsed = (performance.now() - start) / 1000;
  // What is still in our socket buffer never reached the victim's kernel.
  const pending = socket.writableLength;
  const sentBytes = sent === 0 ? 0 : pool.ends[sent - 1]!;
  const flushed = sent === 0 ? 0 : sent - Math.ceil(pending / (sentBytes / sent));
  return {
    framesWritten: sent,
    framesFlushed: flushed,
    seconds: Number(elapsed.toFixed(2)),
    ratePerSecond: Math.round(flushed / elapsed),
    targetPerSecond: rate,
    backloggedTicks,
    largestWrite,
    largestWriteAtS,
    linkClosed: link.closedReason,
  };
}

async function linkAttack(mode: "inits" | "dht", args: Args): Promise<void> {
  const identity = Identity.fromSeed(Buffer.from(arg(args, "key"), "hex"));
  const victim = Buffer.from(arg(args, "victim"), "hex");
  const rate = num(args, "rate");
  const seconds = num(args, "seconds");
  const count = Math.ceil(rate * seconds);
  const link = await AttackLink.open(arg(args, "target"), identity, victim);
  const info = await link.joinTree(10_000);
  // Building the material is the attacker's own CPU work, not part of the attack: keep it from
  // crowding out the victim on a small machine, and flood at normal priority.
  setPriority(10);
  const buildStart = performance.now();
  let pool: Pool;
  if (mode === "inits") {
    const box = loadBox();
    const victimCurve = curveFromEd(victim);
    const seq = BigInt(Math.floor(Date.now() / 1000));
    pool = await buildPool(count, () => {
      const sender = freshSigner();
      const keys = randomBytes(64);
      // sealInit only signs with the identity it is given; a full Identity (curve key, address)
      // per throw-away key would triple the time to build the pool.
      const init = sealInit(
        1,
        { current: keys.subarray(0, 32), next: keys.subarray(32), keySeq: 0n, seq },
        sender as unknown as Identity,
        victim,
        box,
        box.keyPair(),
        victimCurve,
      );
      if (!init) throw new Error("the victim's key has no X25519 form");
      return encodeDhtTraffic({ source: sender.publicKey, dest: victim, kind: 1, payload: init });
    });
  } else {
    // One would-be destination D below us in the tree (our child at port 1): the victim's
    // treeLookup sends every setup for it to us, so the victim is a transit hop that stores each.
    const coords = info.hops.map((h) => h.port);
    const dest = freshSigner();
    const destLabel = makeLabel(dest, info.root, info.seq, [...coords, 1]);
    let setupSeq = BigInt(Date.now());
    pool = await buildPool(count, (i) => {
      const fresh = freshSigner();
      if (i % 2 === 0) return encodeBootstrap(makeLabel(fresh, info.root, info.seq, [...coords, 2]));
      setupSeq++;
      return encodeSetup(makeSetup(fresh, setupSeq, makeToken(dest, fresh.publicKey, destLabel)));
    });
  }
  const buildSeconds = Number(((performance.now() - buildStart) / 1000).toFixed(1));
  setPriority(0);
  say("ready", { mode, frames: count, buildSeconds, root: info.root.toString("hex"), seq: String(info.seq) });
  const result = await flood(link, pool, rate, seconds);
  // Let the victim read what is queued before we hang up (bounded).
  const drainUntil = Date.now() + 2000;
  while (link.socket.writableLength > 0 && Date.now() < drainUntil) await delay(20);
  link.close();
  say("done", { mode, buildSeconds, framesIn: link.framesIn, bytesIn: link.bytesIn, ...result });
}

// ---------------------------------------------------------------------------------------------
// Many connections that hold a slot and do nothing useful

interface HoldResult {
  attempts: number;
  connected: number;
  peakOpen: number;
  openAtEnd: number;
  closedByVictim: number;
  errors: number;
  /** How long the victim let a connection live before closing it, ms (median, max). */
  lifetimeMedianMs: number;
  lifetimeMaxMs: number;
}

/**
 * Keeps up to `count` connections open for `seconds`, replacing each closed one, no more than
 * `rate` new connections a second; `onConnect` writes whatever a stalling client writes.
 */
async function hold(
  connect: () => net.Socket,
  onConnect: (s: net.Socket) => void,
  count: number,
  rate: number,
  seconds: number,
  label: string,
): Promise<HoldResult> {
  const open = new Set<net.Socket>();
  const lifetimes: number[] = [];
  let attempts = 0;
  let connected = 0;
  let closedByVictim = 0;
  let errors = 0;
  let peakOpen = 0;
  let readySaid = false;
  const start = performance.now();
  const endAt = start + seconds * 1000;
  let stopping = false;
  while (performance.now() < endAt) {
    const allowed = Math.floor(((performance.now() - start) / 1000) * rate) + 1;
    while (open.size < count && attempts < allowed) {
      attempts++;
      const s = connect();
      open.add(s);
      let connectedAt = 0;
      s.on("connect", () => {
        connected++;
        connectedAt = performance.now();
        onConnect(s);
      });
      s.on("data", () => {});
      s.on("error", () => {
        errors++;
      });
      s.on("close", () => {
        open.delete(s);
        if (stopping) return;
        if (connectedAt > 0) {
          closedByVictim++;
          lifetimes.push(performance.now() - connectedAt);
        }
      });
    }
    peakOpen = Math.max(peakOpen, open.size);
    if (!readySaid && (attempts >= count || performance.now() - start > 2000)) {
      readySaid = true;
      say("ready", { mode: label, attempts, open: open.size });
    }
    await delay(10);
  }
  stopping = true;
  const openAtEnd = open.size;
  for (const s of open) s.destroy();
  lifetimes.sort((a, b) => a - b);
  return {
    attempts,
    connected,
    peakOpen,
    openAtEnd,
    closedByVictim,
    errors,
    lifetimeMedianMs: Math.round(lifetimes[Math.floor(lifetimes.length / 2)] ?? 0),
    lifetimeMaxMs: Math.round(lifetimes[lifetimes.length - 1] ?? 0),
  };
}

async function stallAttack(args: Args): Promise<void> {
  const { host, port } = hostPort(arg(args, "target"));
  // "meta", version 0.4 and 13 bytes of a key: 19 of the 38 bytes, then nothing.
  const partial = encodeMetadata(randomBytes(32)).subarray(0, 19);
  const result = await hold(
    () => net.connect({ host, port }),
    (s) => s.write(partial),
    num(args, "count"),
    num(args, "rate"),
    num(args, "seconds"),
    "stall",
  );
  say("done", { mode: "stall", ...result });
}

async function adminAttack(args: Args): Promise<void> {
  const path = arg(args, "socket");
  const result = await hold(
    () => net.connect({ path }),
    () => {},
    num(args, "count"),
    num(args, "rate"),
    num(args, "seconds"),
    "admin",
  );
  say("done", { mode: "admin", ...result });
}

async function main(): Promise<void> {
  const [mode = "", ...words] = process.argv.slice(2).filter((w) => w !== "--");
  const args = parseArgs(words);
  // Whatever happens, this process never outlives its attack by much.
  const seconds = Number(args.get("seconds") ?? 10);
  setTimeout(
    () => {
      process.stderr.write("attacker: hard time limit reached\n");
      process.exit(3);
    },
    (seconds + 60) * 1000,
  ).unref();
  if (mode === "inits" || mode === "dht") await linkAttack(mode, args);
  else if (mode === "stall") await stallAttack(args);
  else if (mode === "admin") await adminAttack(args);
  else throw new Error(`unknown mode "${mode}" (inits, dht, stall, admin)`);
  process.exit(0);
}

main().catch((err: Error) => {
  process.stderr.write(`attacker: ${err.message}\n`);
  process.exit(2);
});
