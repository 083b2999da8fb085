// Watching a victim daemon from the test process: its RSS from /proc, its admin socket's answer
// time (a raw JSON request, so the figure is the daemon's and not a CLI's start-up), its Prometheus
// counters, and the helper processes of the hostile-peer suite (attacker, replay forwarder).
import { readFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import { type JsonObject, type Lab, type Netns, type Proc, delay, repoRoot } from "../harness.js";

// ---------------------------------------------------------------------------------------------
// Admin socket

export interface AdminReply {
  ok: boolean;
  /** From connect to the complete reply (or to the timeout). */
  ms: number;
  response?: JsonObject;
  error?: string;
}

/** One request on a fresh connection to a unix admin socket (spec 9.1), bounded by timeoutMs. */
export function adminRequest(
  socketPath: string,
  request: string,
  args: JsonObject = {},
  timeoutMs = 5000,
): Promise<AdminReply> {
  const started = performance.now();
  return new Promise((resolve) => {
    let text = "";
    let settled = false;
    const socket = net.connect({ path: socketPath });
    const finish = (reply: Omit<AdminReply, "ms">) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ ...reply, ms: Math.round(performance.now() - started) });
    };
    const tryParse = (final: boolean) => {
      try {
        const obj = JSON.parse(text) as JsonObject;
        if (obj.status === "success") finish({ ok: true, response: obj.response as JsonObject });
        else finish({ ok: false, error: String(obj.error) });
      } catch {
        if (final) finish({ ok: false, error: `no complete reply: ${JSON.stringify(text.slice(0, 200))}` });
      }
    };
    const timer = setTimeout(
      () => finish({ ok: false, error: `no reply within ${timeoutMs} ms` }),
      timeoutMs,
    );
    socket.on("connect", () => socket.write(JSON.stringify({ request, arguments: args, keepalive: false })));
    socket.on("data", (chunk: Buffer) => {
      text += chunk.toString("utf8");
      if (text.endsWith("\n")) tryParse(false);
    });
    socket.on("end", () => tryParse(true));
    socket.on("close", () => tryParse(true));
    socket.on("error", (e) => finish({ ok: false, error: e.message }));
  });
}

// ---------------------------------------------------------------------------------------------
// RSS and admin latency, sampled for the whole run and split by phase

export interface PhaseFigures {
  peakRssMiB: number;
  adminProbes: number;
  adminFailures: number;
  adminMaxMs: number;
  /** Honest echo replies whose request was sent in this phase, their largest RTT, requests lost. */
  pingReplies: number;
  pingMaxRttMs: number;
  /** Seconds into the phase of the slowest echo and of the slowest getSelf. */
  pingMaxAtS: number;
  adminMaxAtS: number;
  pingLost: number;
}

/** What `addPings` made of an honest ping log. */
export interface HonestPings {
  /** Requests answered or past their wait. */
  counted: number;
  lost: number;
  duplicates: number;
}

export interface SlowProbe {
  phase: string;
  ms: number;
  error?: string;
}

export class VictimMonitor {
  peakRssMiB = 0;
  rssSamples = 0;
  rssErrors = 0;
  readonly phases = new Map<string, PhaseFigures>();
  /** getSelf probes slower than 1 s or failed. */
  readonly slowProbes: SlowProbe[] = [];
  /** When each phase began (Unix ms), in order. */
  private readonly timeline: { phase: string; at: number }[] = [];
  private rssTimer: NodeJS.Timeout | undefined;
  private probing = false;
  private prober: Promise<void> | undefined;

  constructor(
    private readonly pid: number,
    private readonly adminSocket: string,
  ) {
    this.phase = "setup";
  }

  get phase(): string {
    return this.timeline[this.timeline.length - 1]!.phase;
  }

  set phase(name: string) {
    this.timeline.push({ phase: name, at: Date.now() });
    this.figures(name);
  }

  /** The phase that was running at Unix time `at` (ms). */
  phaseAt(at: number): string {
    let name = this.timeline[0]!.phase;
    for (const t of this.timeline) {
      if (t.at > at) break;
      name = t.phase;
    }
    return name;
  }

  private figures(phase = this.phase): PhaseFigures {
    let f = this.phases.get(phase);
    if (!f) {
      f = {
        peakRssMiB: 0,
        adminProbes: 0,
        adminFailures: 0,
        adminMaxMs: 0,
        pingReplies: 0,
        pingMaxRttMs: 0,
        pingMaxAtS: 0,
        adminMaxAtS: 0,
        pingLost: 0,
      };
      this.phases.set(phase, f);
    }
    return f;
  }

  /**
   * Attributes the echo replies of a `ping -D -i intervalS -W waitS` log to the phases their requests
   * were sent in. Requests sent less than waitS before `stoppedAt` (Unix ms) could still be answered
   * when ping was stopped: they count neither as answered nor as lost.
   */
  addPings(log: string, intervalS: number, waitS: number, stoppedAt: number): HonestPings {
    const replies = parsePingReplies(log);
    const out: HonestPings = { counted: 0, lost: 0, duplicates: 0 };
    const first = replies[0];
    if (!first) return out;
    const sentAt = (seq: number) => first.at - first.rttMs - (first.seq - seq) * intervalS * 1000;
    const answered = new Set<number>();
    for (const r of replies) {
      if (r.duplicate) {
        out.duplicates++;
        continue;
      }
      answered.add(r.seq);
      const f = this.figures(this.phaseAt(r.at - r.rttMs));
      f.pingReplies++;
      if (r.rttMs > f.pingMaxRttMs) {
        f.pingMaxRttMs = r.rttMs;
        f.pingMaxAtS = this.secondsInto(r.at - r.rttMs);
      }
    }
    const tx = /(\d+) packets transmitted/.exec(log);
    const transmitted = tx ? Number(tx[1]) : 0;
    for (let seq = 1; seq <= transmitted; seq++) {
      if (answered.has(seq)) {
        out.counted++;
      } else if (sentAt(seq) < stoppedAt - waitS * 1000) {
        out.counted++;
        out.lost++;
        this.figures(this.phaseAt(sentAt(seq))).pingLost++;
      }
    }
    return out;
  }

  /** Seconds from the start of the phase running at `at` to `at`. */
  private secondsInto(at: number): number {
    let start = this.timeline[0]!.at;
    for (const t of this.timeline) {
      if (t.at > at) break;
      start = t.at;
    }
    return Math.round((at - start) / 100) / 10;
  }

  /** VmRSS of the victim every rssEveryMs, and a getSelf every probeEveryMs (one at a time). */
  start(rssEveryMs = 250, probeEveryMs = 500): void {
    this.rssTimer = setInterval(() => this.sampleRss(), rssEveryMs);
    this.probing = true;
    this.prober = (async () => {
      while (this.probing) {
        const began = Date.now();
        await this.probe();
        await delay(Math.max(0, probeEveryMs - (Date.now() - began)));
      }
    })();
  }

  async stop(): Promise<void> {
    clearInterval(this.rssTimer);
    this.probing = false;
    await this.prober;
  }

  /** Current VmRSS in MiB, or undefined once the process is gone. */
  rssMiB(): number | undefined {
    try {
      const status = readFileSync(`/proc/${this.pid}/status`, "utf8");
      const kib = /^VmRSS:\s+(\d+) kB/m.exec(status);
      return kib ? Number(kib[1]) / 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  /** VmHWM: the kernel's own peak RSS of the process, in MiB. */
  hwmMiB(): number | undefined {
    try {
      const kib = /^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${this.pid}/status`, "utf8"));
      return kib ? Number(kib[1]) / 1024 : undefined;
    } catch {
      return undefined;
    }
  }

  private sampleRss(): void {
    const mib = this.rssMiB();
    if (mib === undefined) {
      this.rssErrors++;
      return;
    }
    this.rssSamples++;
    this.peakRssMiB = Math.max(this.peakRssMiB, mib);
    const f = this.figures();
    f.peakRssMiB = Math.max(f.peakRssMiB, mib);
  }

  /** One getSelf, recorded against the current phase. */
  async probe(): Promise<AdminReply> {
    const phase = this.phase;
    const reply = await adminRequest(this.adminSocket, "getSelf", {}, 5000);
    const f = this.figures(phase);
    f.adminProbes++;
    if (!reply.ok) f.adminFailures++;
    if (reply.ms > f.adminMaxMs) {
      f.adminMaxMs = reply.ms;
      f.adminMaxAtS = this.secondsInto(Date.now() - reply.ms);
    }
    if (!reply.ok || reply.ms > 1000) this.slowProbes.push({ phase, ms: reply.ms, error: reply.error });
    return reply;
  }
}

// ---------------------------------------------------------------------------------------------
// Prometheus counters

/** Every sample of a /metrics page as `name{labels}` → value. */
export async function readMetrics(ns: Netns, url: string): Promise<Map<string, number>> {
  const r = await ns.exec("curl", ["-s", "-m", "5", url], 10_000);
  const out = new Map<string, number>();
  if (r.code !== 0) return out;
  for (const line of r.stdout.split("\n")) {
    if (line.startsWith("#") || line.trim() === "") continue;
    const sp = line.lastIndexOf(" ");
    out.set(line.slice(0, sp), Number(line.slice(sp + 1)));
  }
  return out;
}

export function dropped(metrics: Map<string, number>, reason: string): number {
  return metrics.get(`planetd_dropped_packets_total{reason="${reason}"}`) ?? 0;
}

// ---------------------------------------------------------------------------------------------
// ping running for the whole test (stopped with SIGINT, which makes ping print its statistics)

export interface PingSummary {
  transmitted: number;
  received: number;
  duplicates: number;
  lossPercent: number;
  maxRttMs: number;
}

export interface PingReply {
  /** Unix ms the reply arrived (`ping -D`). */
  at: number;
  seq: number;
  rttMs: number;
  duplicate: boolean;
}

/** The reply lines of `ping -D` output: `[1764600000.123456] 64 bytes from …: icmp_seq=5 ttl=63 time=0.8 ms`. */
export function parsePingReplies(text: string): PingReply[] {
  const out: PingReply[] = [];
  for (const m of text.matchAll(/^\[(\d+\.\d+)\] .*icmp_seq=(\d+) .*time=([\d.]+) ms(.*)$/gm)) {
    out.push({
      at: Number(m[1]) * 1000,
      seq: Number(m[2]),
      rttMs: Number(m[3]),
      duplicate: m[4]!.includes("DUP!"),
    });
  }
  return out;
}

export function parsePingLog(text: string): PingSummary | undefined {
  const tx = /(\d+) packets transmitted/.exec(text);
  const rx = /(\d+) received/.exec(text);
  if (!tx || !rx) return undefined;
  const dup = /\+(\d+) duplicates/.exec(text);
  const rtt = /= [\d.]+\/[\d.]+\/([\d.]+)\//.exec(text);
  const transmitted = Number(tx[1]);
  const received = Number(rx[1]);
  return {
    transmitted,
    received,
    duplicates: dup ? Number(dup[1]) : 0,
    lossPercent: transmitted === 0 ? 100 : (100 * (transmitted - received)) / transmitted,
    maxRttMs: rtt ? Number(rtt[1]) : 0,
  };
}

// ---------------------------------------------------------------------------------------------
// Helper processes run with vite-node inside a namespace

const VITE_NODE = join(repoRoot, "node_modules", "vite-node", "vite-node.mjs");

export function spawnTs(lab: Lab, ns: Netns, name: string, script: string, args: string[]): Proc {
  return lab.spawn(name, join(lab.dir, `${name}.log`), "ip", [
    "netns",
    "exec",
    ns.name,
    process.execPath,
    VITE_NODE,
    join(repoRoot, script),
    ...args,
  ]);
}

/** The attacker process of one attack and the `ready` / `done` lines it prints. */
export class AttackerRun {
  readonly proc: Proc;

  constructor(
    private readonly lab: Lab,
    ns: Netns,
    readonly name: string,
    mode: string,
    args: Record<string, string | number>,
  ) {
    const words = Object.entries(args).map(([k, v]) => `${k}=${v}`);
    this.proc = spawnTs(lab, ns, name, "netns-tests/support/attacker.ts", [mode, ...words]);
  }

  private line(word: "ready" | "done"): JsonObject | undefined {
    let text = "";
    try {
      text = readFileSync(this.proc.logPath, "utf8");
    } catch {
      return undefined;
    }
    const m = new RegExp(`^${word} (\\{.*\\})$`, "m").exec(text);
    return m ? (JSON.parse(m[1]!) as JsonObject) : undefined;
  }

  /** Waits (bounded) for `ready`: the material is built and the flood starts now. */
  ready(timeoutMs: number): Promise<JsonObject> {
    return this.lab.waitFor(
      () => this.line("ready"),
      timeoutMs,
      `${this.name} to print ready`,
      () => !this.proc.running,
    );
  }

  /** Waits (bounded) for the process to exit and returns its `done` figures. */
  async done(timeoutMs: number): Promise<JsonObject> {
    const exited = await Promise.race([
      this.proc.exited.then(() => true),
      delay(timeoutMs).then(() => false),
    ]);
    if (!exited) await this.proc.stop("SIGKILL");
    const done = this.line("done");
    if (!done) {
      throw new Error(
        `${this.name} ${exited ? `exited ${this.proc.exitCode}` : `ran past ${timeoutMs} ms`} without its figures:\n${this.proc.logTail(20)}`,
      );
    }
    return done;
  }
}
