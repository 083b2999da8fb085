// When a udp:// link sends keepalives and probes, and when it gives its peer up. A pure clock-driven
// state machine: the link tells it what it sent and received and asks what to do at `now`.
//
// Why not the stream links' rule (keepalive after 4 s, close after 6 s of silence): on a path that
// loses 10 % of datagrams one lost keepalive closed the link. Here both ends send a keepalive after
// `intervalMs` without sending, and an end that heard nothing for `intervalMs` also sends a probe
// every `intervalMs` that the peer answers at once, so each silent second carries three chances
// (the peer's keepalive, our probe and its answer). The peer is declared dead after `deadMs` of
// silence plus the RTT and its spread, capped by `capMs`: with the defaults (1 s, 8 s, 9.5 s) a dead
// peer is found within 10 s, while at 20 % loss per direction a live one is given up only when eight
// keepalives and seven probe round trips in a row are lost (about 2e-9 per silent stretch).
import type { LinkTimeouts } from "./stream.js";

export interface LivenessConfig {
  intervalMs: number;
  deadMs: number;
  capMs: number;
}

/** Default LinkTimeouts (4 s, 6 s) give 1 s, 8 s and 9.5 s; tests shorten them proportionally. */
export function livenessFor(t: LinkTimeouts): LivenessConfig {
  const intervalMs = Math.max(5, Math.min(1000, Math.floor(t.keepaliveMs / 4)));
  const deadMs = Math.max(t.idleMs, 8 * intervalMs);
  return { intervalMs, deadMs, capMs: deadMs + 1.5 * intervalMs };
}

export const ACT_NONE = 0;
export const ACT_KEEPALIVE = 1;
export const ACT_PROBE = 2;
export const ACT_DEAD = 3;

export class Liveness {
  private readonly c: LivenessConfig;
  private lastSend: number;
  private lastRecv: number;
  private lastProbe = 0;
  /** When check() wants to run next. */
  wakeAt: number;

  constructor(c: LivenessConfig, now: number) {
    this.c = c;
    this.lastSend = now;
    this.lastRecv = now;
    this.wakeAt = now + c.intervalMs;
  }

  sent(now: number): void {
    this.lastSend = now;
  }

  received(now: number): void {
    this.lastRecv = now;
  }

  /** Silence after which the peer counts as dead, given the current RTT estimate (0 = unknown). */
  deadline(srtt: number, rttvar: number): number {
    return Math.min(this.c.capMs, this.c.deadMs + srtt + 4 * rttvar);
  }

  /** What to send (or whether to give up) at `now`; sets wakeAt. The caller reports what it sends. */
  check(now: number, srtt: number, rttvar: number): number {
    const every = this.c.intervalMs;
    const silentFor = now - this.lastRecv;
    const deadAfter = this.deadline(srtt, rttvar);
    if (silentFor >= deadAfter) return ACT_DEAD;
    let act = ACT_NONE;
    if (silentFor >= every && now - this.lastProbe >= every) {
      this.lastProbe = now;
      act = ACT_PROBE;
    } else if (now - this.lastSend >= every) {
      act = ACT_KEEPALIVE;
    }
    if (act !== ACT_NONE) this.lastSend = now;
    const probeAt = silentFor >= every ? this.lastProbe + every : this.lastRecv + every;
    this.wakeAt = Math.max(now + 1, Math.min(this.lastSend + every, probeAt, this.lastRecv + deadAfter));
    return act;
  }
}

/**
 * Date.now() read once per run of synchronous work (a receive batch, a tick's sends) rather than
 * per datagram: liveness and fragment repair count in tens of milliseconds at the least, and the
 * clock read was a runtime call for every datagram each way.
 */
let clockMs = 0;
let clockRead = false;
function clockStale(): void {
  clockRead = false;
}
export function batchNow(): number {
  if (!clockRead) {
    clockMs = Date.now();
    clockRead = true;
    queueMicrotask(clockStale);
  }
  return clockMs;
}
