// Continuous ping probes for the recovery tests: one `ping -D` process per pair of nodes, its output
// in a log file, parsed into the Unix times (ms) of the echo replies. One long-running process per
// pair costs far less than a process per probe, and the reply times are exact to the probe interval.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { DaemonNode, Lab, Proc } from "../harness.js";

/** Probes sent per second on each pair. */
export const PROBE_INTERVAL_S = 0.5;

export class PairProbe {
  private readonly proc: Proc;
  private readonly path: string;
  /** Reply times parsed so far, ascending; the file is re-read from `offset` on. */
  private readonly replies: number[] = [];
  private readonly answeredSeqs = new Set<number>();
  /** `-O` lines: a probe not answered before the next one went out (its seq, when that was printed). */
  private readonly unanswered: Array<{ seq: number; at: number }> = [];
  /** Every reply and every `-O` line: the sequence numbers ping printed, and when. */
  private readonly seen: Array<{ seq: number; at: number }> = [];
  private offset = 0;

  constructor(
    lab: Lab,
    readonly from: DaemonNode,
    readonly to: DaemonNode,
  ) {
    this.path = join(lab.dir, `ping-${from.name}-${to.name}.log`);
    this.proc = lab.spawn(`ping ${from.name}→${to.name}`, this.path, "ip", [
      "netns",
      "exec",
      from.ns.name,
      "ping",
      "-6",
      "-n",
      "-D",
      "-O",
      "-i",
      String(PROBE_INTERVAL_S),
      to.address,
    ]);
  }

  get name(): string {
    return `${this.from.name}→${this.to.name}`;
  }

  /** Reply times (ms since the epoch) in [from, to). */
  repliesBetween(from: number, to = Number.POSITIVE_INFINITY): number[] {
    this.read();
    return this.replies.filter((t) => t >= from && t < to);
  }

  /** The first reply at or after `t`, if any yet. */
  firstReplyAfter(t: number): number | undefined {
    this.read();
    return this.replies.find((r) => r >= t);
  }

  /** Longest stretch of [from, to) without a reply, in ms (the edges count as stretch ends). */
  longestGap(from: number, to: number): number {
    let last = from;
    let gap = 0;
    for (const t of this.repliesBetween(from, to)) {
      gap = Math.max(gap, t - last);
      last = t;
    }
    return Math.max(gap, to - last);
  }

  /** Probes found unanswered in [from, to) (by the time their successor was sent) and never answered later. */
  lostBetween(from: number, to: number): number {
    this.read();
    return this.unanswered.filter((u) => u.at >= from && u.at < to && !this.answeredSeqs.has(u.seq)).length;
  }

  /**
   * Probes sent in [from, to), counted by ping's sequence numbers: every probe shows up as a reply or,
   * with -O, as "no answer yet" when its successor goes out, so the span of the sequence numbers seen
   * in the window is what ping sent. Not one per interval: on a loaded machine ping's timer slips
   * (97 answered of an estimated 99 with 0 lost failed a CI run here).
   */
  sentBetween(from: number, to: number): number {
    this.read();
    let first = Number.POSITIVE_INFINITY;
    let last = Number.NEGATIVE_INFINITY;
    for (const e of this.seen) {
      if (e.at < from || e.at >= to) continue;
      first = Math.min(first, e.seq);
      last = Math.max(last, e.seq);
    }
    return last >= first ? last - first + 1 : 0;
  }

  stop(): Promise<void> {
    return this.proc.stop("SIGINT", 1000);
  }

  private read(): void {
    let text: string;
    try {
      text = readFileSync(this.path, "latin1");
    } catch {
      return;
    }
    const end = text.lastIndexOf("\n") + 1;
    if (end <= this.offset) return;
    // `[1700000000.123456] 64 bytes from 200:…: icmp_seq=5 ttl=64 time=1.23 ms`
    // `[1700000000.623456] no answer yet for icmp_seq=6`
    for (const line of text.slice(this.offset, end).split("\n")) {
      const m = /^\[(\d+\.\d+)\] (?:\d+ bytes from .*icmp_seq=(\d+)|no answer yet for icmp_seq=(\d+))/.exec(
        line,
      );
      if (!m) continue;
      const at = Math.round(Number(m[1]) * 1000);
      const seq = Number(m[2] ?? m[3]);
      this.seen.push({ seq, at });
      if (m[2] !== undefined) {
        this.replies.push(at);
        this.answeredSeqs.add(seq);
      } else this.unanswered.push({ seq, at });
    }
    this.offset = end;
  }
}

/** A probe for every unordered pair of `nodes` (from the earlier node in the list to the later). */
export function probeAllPairs(lab: Lab, nodes: DaemonNode[]): PairProbe[] {
  const probes: PairProbe[] = [];
  for (let i = 0; i < nodes.length; i++) {
    for (let j = i + 1; j < nodes.length; j++) probes.push(new PairProbe(lab, nodes[i]!, nodes[j]!));
  }
  return probes;
}

/**
 * Wait (bounded) until every probe has a reply at or after `since`; returns the time each probe
 * first answered, or throws naming the probes that never did.
 */
export async function allAnsweredAfter(
  lab: Lab,
  probes: PairProbe[],
  since: number,
  timeoutMs: number,
  what: string,
): Promise<Map<PairProbe, number>> {
  const first = new Map<PairProbe, number>();
  await lab.waitFor(
    () => {
      for (const p of probes) {
        if (first.has(p)) continue;
        const t = p.firstReplyAfter(since);
        if (t !== undefined) first.set(p, t);
      }
      if (first.size === probes.length) return true;
      throw new Error(
        `not yet answered: ${probes
          .filter((p) => !first.has(p))
          .map((p) => p.name)
          .join(", ")}`,
      );
    },
    timeoutMs,
    what,
  );
  return first;
}

/**
 * How long after `since` the last of `probes` answered, and which one that was; Infinity (the
 * reason logged) when one did not within `timeoutMs`, so the caller can print every figure first.
 */
export async function timeToAllAnswered(
  lab: Lab,
  probes: PairProbe[],
  since: number,
  timeoutMs: number,
  what: string,
): Promise<{ ms: number; last: string }> {
  try {
    const first = await allAnsweredAfter(lab, probes, since, timeoutMs, what);
    let ms = 0;
    let last = "";
    for (const [p, t] of first) {
      if (t - since >= ms) {
        ms = t - since;
        last = p.name;
      }
    }
    return { ms, last };
  } catch (e) {
    console.log(`${what}: ${(e as Error).message.split("\n").slice(0, 2).join(" ")}`);
    return { ms: Number.POSITIVE_INFINITY, last: "never answered" };
  }
}
