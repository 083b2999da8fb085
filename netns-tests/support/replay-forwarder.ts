// An on-path attacker for netns-tests/hostile.test.ts: a TCP forwarder between a peer and the victim
// that understands tcp:// framing (38-byte metadata each way, then u16-BE length-prefixed frames).
// While the flag file exists it replays every session traffic frame addressed to the node at the
// far end of the link: once right after the original and once more `delayMs` later. Transit traffic
// (addressed beyond the far end) is left alone: the far end cannot tell a replayed transit frame
// from a fresh one, only the destination can.
//
//   vite-node netns-tests/support/replay-forwarder.ts listen=host:port target=host:port
//     flag=/path stats=/path delayMs=5000 seconds=600
//
// Counts go to the stats file (JSON) at every flag check (100 ms) and at exit.
import { existsSync, renameSync, writeFileSync } from "node:fs";
import net from "node:net";
import { arg, hostPort, num, parseArgs } from "./cli.js";

const META_BYTES = 38;
const KEY_BYTES = 32;
const TYPE_DHT_TRAFFIC = 9;
const TYPE_PATH_TRAFFIC = 10;
const KIND_STANDARD = 1;
const SESSION_TRAFFIC = 3;
/** Delayed replays held at once; more are not scheduled (counted). */
const MAX_DELAYED = 10_000;

interface DirectionStats {
  frames: number;
  /** Session traffic frames addressed to the far end (what replays are made of). */
  sessionTrafficToFarEnd: number;
  replayedNow: number;
  replayedLater: number;
}

const stats = {
  connections: 0,
  replaying: false,
  delayedDropped: 0,
  /** Delayed copies scheduled and not yet sent: 0 with replaying off means every copy is out. */
  delayedPending: 0,
  toVictim: { frames: 0, sessionTrafficToFarEnd: 0, replayedNow: 0, replayedLater: 0 } as DirectionStats,
  toPeer: { frames: 0, sessionTrafficToFarEnd: 0, replayedNow: 0, replayedLater: 0 } as DirectionStats,
};
let delayed = 0;

/** Offset of source ‖ dest ‖ kind in a type-9/10 frame (type byte at 0), or -1. */
function trafficOffset(frame: Buffer): number {
  if (frame[0] === TYPE_DHT_TRAFFIC) return 1;
  if (frame[0] !== TYPE_PATH_TRAFFIC) return -1;
  // A terminated path: uvarints up to and including a single 0 byte (minimal encoding).
  let i = 1;
  while (i < frame.length && frame[i] !== 0) {
    while (i < frame.length && (frame[i]! & 0x80) !== 0) i++;
    i++;
  }
  return i < frame.length ? i + 1 : -1;
}

/**
 * One direction of a connection: passes the metadata through, learns the receiving side's key from
 * the metadata it sent the other way, and re-emits whole frames (so replays never split one).
 */
class Direction {
  private pending: Buffer = Buffer.alloc(0);
  private metaLeft = META_BYTES;
  private meta = Buffer.alloc(0);
  /** The key of the node this direction delivers to (from its own metadata, the other way). */
  farKey: Buffer | undefined;

  constructor(
    private readonly out: net.Socket,
    private readonly st: DirectionStats,
    private readonly delayMs: number,
  ) {}

  /** The metadata the other direction carried: the key of the node this direction writes to. */
  learnFarKey(key: Buffer): void {
    this.farKey = key;
  }

  /** Called with the 38 bytes of metadata this direction carried. */
  onMeta: (meta: Buffer) => void = () => {};

  push(chunk: Buffer): void {
    if (this.metaLeft > 0) {
      const take = Math.min(this.metaLeft, chunk.length);
      this.meta = Buffer.concat([this.meta, chunk.subarray(0, take)]);
      this.out.write(chunk.subarray(0, take));
      this.metaLeft -= take;
      chunk = chunk.subarray(take);
      if (this.metaLeft === 0) this.onMeta(this.meta);
      if (chunk.length === 0) return;
    }
    this.pending = this.pending.length === 0 ? chunk : Buffer.concat([this.pending, chunk]);
    let pos = 0;
    const writes: Buffer[] = [];
    while (this.pending.length - pos >= 2) {
      const len = this.pending.readUInt16BE(pos);
      if (this.pending.length - pos < 2 + len) break;
      const framed = this.pending.subarray(pos, pos + 2 + len);
      pos += 2 + len;
      writes.push(framed);
      this.st.frames++;
      if (this.isSessionTrafficToFarEnd(framed.subarray(2))) {
        this.st.sessionTrafficToFarEnd++;
        if (stats.replaying) {
          const copy = Buffer.from(framed);
          writes.push(copy);
          this.st.replayedNow++;
          if (delayed < MAX_DELAYED) {
            delayed++;
            setTimeout(() => {
              delayed--;
              if (this.out.destroyed) return;
              this.out.write(copy);
              this.st.replayedLater++;
            }, this.delayMs);
          } else stats.delayedDropped++;
        }
      }
    }
    this.pending = Buffer.from(this.pending.subarray(pos));
    if (writes.length > 0) this.out.write(Buffer.concat(writes));
  }

  private isSessionTrafficToFarEnd(frame: Buffer): boolean {
    const off = trafficOffset(frame);
    if (off < 0 || !this.farKey || frame.length < off + 2 * KEY_BYTES + 2) return false;
    const dest = frame.subarray(off + KEY_BYTES, off + 2 * KEY_BYTES);
    return (
      dest.equals(this.farKey) &&
      frame[off + 2 * KEY_BYTES] === KIND_STANDARD &&
      frame[off + 2 * KEY_BYTES + 1] === SESSION_TRAFFIC
    );
  }
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  const listen = hostPort(arg(args, "listen"));
  const target = hostPort(arg(args, "target"));
  const flag = arg(args, "flag");
  const statsPath = arg(args, "stats");
  const delayMs = num(args, "delayMs");
  const seconds = num(args, "seconds");
  const writeStats = () => {
    stats.delayedPending = delayed;
    writeFileSync(`${statsPath}.tmp`, JSON.stringify(stats));
    renameSync(`${statsPath}.tmp`, statsPath);
  };
  const server = net.createServer((peer) => {
    stats.connections++;
    const victim = net.connect(target);
    peer.setNoDelay(true);
    victim.setNoDelay(true);
    const toVictim = new Direction(victim, stats.toVictim, delayMs);
    const toPeer = new Direction(peer, stats.toPeer, delayMs);
    // Each side's metadata names it: what the peer sends is the key traffic toward it is for.
    toVictim.onMeta = (meta) => toPeer.learnFarKey(meta.subarray(6));
    toPeer.onMeta = (meta) => toVictim.learnFarKey(meta.subarray(6));
    peer.on("data", (c: Buffer) => toVictim.push(c));
    victim.on("data", (c: Buffer) => toPeer.push(c));
    const close = () => {
      peer.destroy();
      victim.destroy();
    };
    for (const s of [peer, victim]) {
      s.on("error", close);
      s.on("close", close);
    }
  });
  server.listen(listen.port, listen.host, () => {
    process.stdout.write(`listening ${listen.host}:${listen.port} -> ${target.host}:${target.port}\n`);
  });
  setInterval(() => {
    stats.replaying = existsSync(flag);
    writeStats();
  }, 100).unref();
  setTimeout(() => {
    writeStats();
    process.exit(0);
  }, seconds * 1000).unref();
  process.on("SIGTERM", () => {
    writeStats();
    process.exit(0);
  });
}

try {
  main();
} catch (err) {
  process.stderr.write(`replay-forwarder: ${(err as Error).message}\n`);
  process.exit(2);
}
