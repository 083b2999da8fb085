// When to dial a configured (static) peer again: the redial policy of the link manager, sans-I/O
// (times in, times out) so it runs on a fake clock in tests.
//
// - Failures the network can mend (refused, unreachable, timed out, reset) back off 1 s, 2 s, 4 s …
//   up to `maxMs` (8 s): a cut that heals is noticed within one such step, and a dead address costs
//   one connection attempt every 6.4–8 s.
// - Failures it cannot (the remote answered and was refused: a pin or our own key; a name that does
//   not resolve) back off up to `hopelessMaxMs` (60 s, Yggdrasil's redial period).
// - Delays count from the start of the failed attempt, so a 5 s dial timeout does not add to them,
//   and are drawn from [80 %, 100 %] of the step: peers cut at the same moment spread out without
//   any of them waiting beyond the step.
// - A link that stays up for `stableMs` resets the backoff; one that dies sooner counts as a failure,
//   so a remote that accepts and hangs up at once is not redialled every second.
// - nudge(): a reason to believe the peer is reachable now (an inbound link or beacon from its
//   address, a new link to its key, a change of our network interfaces) dials at once, at most once
//   per `nudgeIntervalMs`, without resetting the backoff (only a link that holds does that).

export interface RedialOptions {
  initialMs: number;
  /** Cap for failures the network can mend. */
  maxMs: number;
  /** Cap for failures it cannot. */
  hopelessMaxMs: number;
  /** A link that lived this long resets the backoff. */
  stableMs: number;
  /** Least time between two nudged dials of one peer. */
  nudgeIntervalMs: number;
}

export const DEFAULT_REDIAL: RedialOptions = {
  initialMs: 1000,
  maxMs: 8000,
  hopelessMaxMs: 60_000,
  stableMs: 10_000,
  nudgeIntervalMs: 1000,
};

export class RedialBackoff {
  private stepMs: number;
  private attemptAt = Number.NEGATIVE_INFINITY;
  private linkUpAt = Number.NEGATIVE_INFINITY;
  private nudgedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly opts: RedialOptions,
    private readonly random: () => number = Math.random,
  ) {
    this.stepMs = opts.initialMs;
  }

  /** The current step before jitter (for tests and logs). */
  get currentStepMs(): number {
    return this.stepMs;
  }

  attemptStarted(now: number): void {
    this.attemptAt = now;
  }

  linkUp(now: number): void {
    this.linkUpAt = now;
  }

  /** The attempt failed at `now`; returns when to dial next (ms since the epoch). */
  failed(now: number, hopeless: boolean): number {
    const at = Math.max(this.attemptAt + this.jittered(), now + Math.min(this.opts.initialMs, 500));
    const cap = hopeless ? this.opts.hopelessMaxMs : this.opts.maxMs;
    // min() also brings a step grown by hopeless failures back under the network cap.
    this.stepMs = Math.min(cap, this.stepMs * 2);
    return at;
  }

  /** The link closed at `now`; returns when to dial next. */
  linkLost(now: number): number {
    if (now - this.linkUpAt >= this.opts.stableMs) {
      this.stepMs = this.opts.initialMs;
      return now + this.jittered();
    }
    this.attemptAt = this.linkUpAt;
    return this.failed(now, false);
  }

  /** Whether a hint that the peer is reachable should dial it now. */
  nudge(now: number): boolean {
    if (now - this.nudgedAt < this.opts.nudgeIntervalMs) return false;
    this.nudgedAt = now;
    return true;
  }

  private jittered(): number {
    return this.stepMs * (0.8 + 0.2 * this.random());
  }
}
