// Rate limits for log lines a stranger can cause (one per connection attempt, handshake or link):
// under a connection flood they filled 18 MB in 47 minutes. Per reason, the first `burst` events of
// a window are logged and the rest counted; when the window ends, one line says how many were not.
// Lifecycle lines (started, listening, stopped) stay with the plain logger.

export type LimitedLevel = "debug" | "info" | "warn" | "error";

export interface LogLimitOptions {
  /** Events of one reason logged per window (default 10). */
  burst?: number;
  /** Window length in ms (default 60 s). */
  windowMs?: number;
  /** Reasons tracked at once (default 256); further reasons share one window. */
  maxReasons?: number;
}

/** Reasons beyond maxReasons are counted together under this one. */
export const OVERFLOW_REASON = "other repeated messages";

interface Window {
  end: number;
  logged: number;
  suppressed: number;
  level: LimitedLevel;
}

export type SuppressedReport = (reason: string, suppressed: number, level: LimitedLevel) => void;

/** The clock-free core: time comes in as `now`, summaries go out through `report`. */
export class LogRateLimiter {
  private readonly burst: number;
  private readonly windowMs: number;
  private readonly maxReasons: number;
  private readonly windows = new Map<string, Window>();
  private readonly report: SuppressedReport;

  constructor(opts: LogLimitOptions, report: SuppressedReport) {
    this.burst = opts.burst ?? 10;
    this.windowMs = opts.windowMs ?? 60_000;
    this.maxReasons = opts.maxReasons ?? 256;
    this.report = report;
  }

  /** Records one event; true when it should be logged. An ended window is reported first. */
  admit(reason: string, level: LimitedLevel, now: number): boolean {
    let key = reason;
    let w = this.windows.get(key);
    if (w && now >= w.end) {
      this.close(key, w);
      w = undefined;
    }
    if (!w) {
      if (this.windows.size >= this.maxReasons) this.expire(now);
      if (this.windows.size >= this.maxReasons) {
        key = OVERFLOW_REASON;
        w = this.windows.get(key);
      }
      if (!w) {
        w = { end: now + this.windowMs, logged: 0, suppressed: 0, level };
        this.windows.set(key, w);
      }
    }
    if (w.logged < this.burst) {
      w.logged++;
      return true;
    }
    w.suppressed++;
    w.level = level;
    return false;
  }

  /** Reports and forgets every window that has ended by `now`. */
  expire(now: number): void {
    for (const [reason, w] of this.windows) if (now >= w.end) this.close(reason, w);
  }

  /** When the earliest window holding suppressed events ends; undefined when none does. */
  nextReport(): number | undefined {
    let next: number | undefined;
    for (const w of this.windows.values()) {
      if (w.suppressed > 0 && (next === undefined || w.end < next)) next = w.end;
    }
    return next;
  }

  private close(reason: string, w: Window): void {
    this.windows.delete(reason);
    if (w.suppressed > 0) this.report(reason, w.suppressed, w.level);
  }
}

/** What LimitedLog needs of a logger; pino's Logger fits. */
export interface LevelLogger {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

/** A logger whose lines are rate-limited per reason; a timer writes the "suppressed" lines. */
export class LimitedLog {
  private readonly logger: LevelLogger;
  private readonly limiter: LogRateLimiter;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | undefined;
  private timerAt = 0;

  constructor(logger: LevelLogger, opts: LogLimitOptions = {}, now: () => number = Date.now) {
    this.logger = logger;
    this.now = now;
    this.limiter = new LogRateLimiter(opts, (reason, suppressed, level) =>
      this.logger[level]({ reason, suppressed }, `suppressed ${suppressed} similar messages: ${reason}`),
    );
  }

  debug(reason: string, msg: string, fields: object = {}): void {
    this.write("debug", reason, msg, fields);
  }

  info(reason: string, msg: string, fields: object = {}): void {
    this.write("info", reason, msg, fields);
  }

  warn(reason: string, msg: string, fields: object = {}): void {
    this.write("warn", reason, msg, fields);
  }

  /** Writes the pending "suppressed" lines now and stops the timer (call on stop). */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    this.limiter.expire(Number.POSITIVE_INFINITY);
  }

  private write(level: LimitedLevel, reason: string, msg: string, fields: object): void {
    if (this.limiter.admit(reason, level, this.now())) this.logger[level](fields, msg);
    else this.schedule();
  }

  private schedule(): void {
    const at = this.limiter.nextReport();
    if (at === undefined || (this.timer && this.timerAt <= at)) return;
    clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.limiter.expire(this.now());
        this.schedule();
      },
      Math.max(0, at - this.now()),
    );
    this.timer.unref();
  }
}
