import type { LinkTimeouts } from "./stream.js";
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
//
// An ICMP error for the peer's address (udp-icmp-hints.ts) is a hint, never proof: hint() starts a
// short deadline, `intervalMs` or three RTT bounds if longer (never past the silence one), probing
// HINT_PROBES times within it; any authentic datagram ends it. With the defaults a stopped peer's
// link closes about 1 s after the first port unreachable instead of 8 to 10 s of silence.
// Anyone who knows both ports can forge one, as often as they like, so a hint must almost never
// close a live link. With three probes a hint did so whenever all three round trips were lost:
// 0.19^3 = 7e-3 at 10 % loss each way, and a new hint could start as soon as the last one ended, so
// a forger closed a live link on such a path about 130 times an hour
// (test/udp-liveness-forged-hints.test.ts). Now the window holds HINT_PROBES probes (at least two
// thirds of them can be answered in it, as it spans three RTT bounds: 0.19^10 = 6e-8 at the least,
// 0.19^15 = 2e-11 at a short RTT), and once an authentic datagram has ended a hint (the peer lives,
// the error was forged or stale) further hints are held off for `deadMs` (one a ~8 s at most: a
// stopped peer found in that time waits for silence instead, as without hints).
import { udpIcmpHints } from "./udp-icmp-hints.js";

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
/** Silent through the short deadline an ICMP error started (hint). */
export const ACT_DEAD_HINTED = 4;
/** Probes in a hint's window (see the header for the odds): tiny PINGs, only while one runs. */
export const HINT_PROBES = 16;

export class Liveness {
  private readonly c: LivenessConfig;
  private lastSend: number;
  private lastRecv: number;
  private lastProbe = 0;
  /** When an ICMP error hinted that the peer is gone (0: no hint running). */
  private hintAt = 0;
  /** Until when hints are ignored: the last one was ended by an authentic datagram (a forgery?). */
  private hintsHeldUntil = 0;
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
    if (this.hintAt !== 0) {
      this.hintAt = 0;
      this.hintsHeldUntil = now + this.c.deadMs;
      udpIcmpHints.cancelled++;
    }
  }

  /**
   * An ICMP error named the peer's address: false when a hint is running already (it keeps its
   * deadline, counted repeated) or hints are held off (held_off); else the caller probes now and
   * reschedules for wakeAt.
   */
  hint(now: number, srtt: number, rttvar: number): boolean {
    if (this.hintAt !== 0) {
      udpIcmpHints.repeated++;
      return false;
    }
    if (now < this.hintsHeldUntil) {
      udpIcmpHints.held_off++;
      return false;
    }
    this.hintAt = now;
    this.lastProbe = now;
    this.lastSend = now;
    this.wakeAt = now + this.hintProbeEvery(this.hintWindow(srtt, rttvar));
    return true;
  }

  private hintProbeEvery(window: number): number {
    return Math.max(1, Math.ceil(window / HINT_PROBES));
  }

  /** How long a hinted peer has to answer: see the header. */
  hintWindow(srtt: number, rttvar: number): number {
    return Math.min(this.deadline(srtt, rttvar), Math.max(this.c.intervalMs, 3 * (srtt + 4 * rttvar)));
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
    const hinted = this.hintAt !== 0;
    const window = hinted ? this.hintWindow(srtt, rttvar) : 0;
    if (hinted && now - this.hintAt >= window) return ACT_DEAD_HINTED;
    // Under a hint the probes go every HINT_PROBES-th of its window, silent or not.
    const probeEvery = hinted ? this.hintProbeEvery(window) : every;
    const probing = hinted || silentFor >= every;
    let act = ACT_NONE;
    if (probing && now - this.lastProbe >= probeEvery) {
      this.lastProbe = now;
      act = ACT_PROBE;
    } else if (now - this.lastSend >= every) {
      act = ACT_KEEPALIVE;
    }
    if (act !== ACT_NONE) this.lastSend = now;
    const probeAt = probing ? this.lastProbe + probeEvery : this.lastRecv + every;
    const deadAt = Math.min(
      this.lastRecv + deadAfter,
      hinted ? this.hintAt + window : Number.POSITIVE_INFINITY,
    );
    this.wakeAt = Math.max(now + 1, Math.min(this.lastSend + every, probeAt, deadAt));
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
