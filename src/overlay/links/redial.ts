// When to dial a configured (static) peer again: the redial policy of the link manager, sans-I/O
// (times in, times out) so it runs on a fake clock in tests.
//
// - The delay grows with how long the peer has been unreachable (since its link was lost, or since
//   the first attempt): a quarter of that time, at least `initialMs` (1 s), at most `maxMs` (8 s).
//   So a peer back after D seconds of downtime is found within about max(1 s, D/4), never more than
//   8 s late (a node restarting is linked again within a second or two, a healed cut within 8 s),
//   while a dead address costs one connection attempt every 6.4–8 s.
// - Failures a redial soon cannot mend (the remote answered and was refused: a pin, our own key; a
//   name that does not resolve) wait as long as the peer has been unreachable, up to `hopelessMaxMs`
//   (60 s, Yggdrasil's redial period): 1 s, 1 s, 2 s, 4 s … 60 s.
// - Delays count from the start of the failed attempt, so a 5 s dial timeout does not add to them,
//   and are drawn from [80 %, 100 %] of the step: peers cut at the same moment spread out without
//   any of them waiting beyond the step.
// - A link that stays up for `stableMs` ends the unreachable stretch; one that dies sooner does not,
//   so a remote that accepts and hangs up at once is not redialled every second.
// - nudge(): a reason to believe the peer is reachable now (an inbound link or beacon from its
//   address, a new link to its key, a change of our network interfaces) dials at once, at most once
//   per `nudgeIntervalMs`.

export interface RedialOptions {
  /** The shortest delay. */
  initialMs: number;
  /** Cap for failures the network can mend. */
  maxMs: number;
  /** Cap for failures it cannot. */
  hopelessMaxMs: number;
  /** A link that lived this long ends the peer's unreachable stretch. */
  stableMs: number;
  /** Least time between two nudged dials of one peer. */
  nudgeIntervalMs: number;
}

export const DEFAULT_REDIAL: RedialOptions = {
  initialMs: 1000,
  maxMs: 8000,
  hopelessMaxMs: 60_000,
  stableMs: 1000,
  nudgeIntervalMs: 1000,
};

/** The delay's share of the time the peer has been unreachable, for failures the network can mend. */
const NETWORK_RATIO = 0.25;

export class RedialBackoff {
  /** Start of the current unreachable stretch; undefined before the first attempt. */
  private downSince: number | undefined;
  private attemptAt = Number.NEGATIVE_INFINITY;
  private linkUpAt = Number.NEGATIVE_INFINITY;
  private nudgedAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly opts: RedialOptions,
    private readonly random: () => number = Math.random,
  ) {}

  attemptStarted(now: number): void {
    this.attemptAt = now;
    this.downSince ??= now;
  }

  linkUp(now: number): void {
    this.linkUpAt = now;
  }

  /** The attempt failed at `now`; returns when to dial next (ms since the epoch). */
  failed(now: number, hopeless: boolean): number {
    const down = now - (this.downSince ?? this.attemptAt);
    const step = hopeless
      ? Math.min(this.opts.hopelessMaxMs, Math.max(this.opts.initialMs, down))
      : Math.min(this.opts.maxMs, Math.max(this.opts.initialMs, NETWORK_RATIO * down));
    const jittered = step * (0.8 + 0.2 * this.random());
    return Math.max(this.attemptAt + jittered, now + Math.min(this.opts.initialMs, 500));
  }

  /** The link closed at `now`; returns when to dial next. */
  linkLost(now: number): number {
    if (now - this.linkUpAt >= this.opts.stableMs) {
      this.downSince = now;
      this.attemptAt = now;
    } else {
      this.attemptAt = this.linkUpAt;
    }
    return this.failed(now, false);
  }

  /** Whether a hint that the peer is reachable should dial it now. */
  nudge(now: number): boolean {
    if (now - this.nudgedAt < this.opts.nudgeIntervalMs) return false;
    this.nudgedAt = now;
    return true;
  }
}
