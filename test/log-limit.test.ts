// The per-reason log rate limit, driven by a fake clock.
import { afterEach, describe, expect, it, vi } from "vitest";
import { type LimitedLevel, LimitedLog, LogRateLimiter, OVERFLOW_REASON } from "../src/util/log-limit.js";

function limiter(opts = { burst: 3, windowMs: 1000, maxReasons: 4 }) {
  const reports: Array<[string, number, LimitedLevel]> = [];
  const l = new LogRateLimiter(opts, (reason, n, level) => reports.push([reason, n, level]));
  return { l, reports };
}

describe("LogRateLimiter", () => {
  it("logs the first `burst` events of a reason per window and reports the rest when it ends", () => {
    const { l, reports } = limiter();
    const logged = Array.from({ length: 10 }, (_, i) => l.admit("handshake timed out", "info", 100 + i));
    expect(logged).toEqual([true, true, true, false, false, false, false, false, false, false]);
    expect(l.nextReport()).toBe(1100);
    l.expire(1099);
    expect(reports).toEqual([]);
    l.expire(1100);
    expect(reports).toEqual([["handshake timed out", 7, "info"]]);
    expect(l.nextReport()).toBeUndefined();
    // A new window starts with a fresh burst.
    expect(l.admit("handshake timed out", "info", 1200)).toBe(true);
  });

  it("counts each reason on its own", () => {
    const { l } = limiter();
    for (let i = 0; i < 3; i++) l.admit("a", "info", 0);
    expect(l.admit("a", "info", 1)).toBe(false);
    expect(l.admit("b", "warn", 1)).toBe(true);
  });

  it("reports an ended window before the event that starts the next one", () => {
    const { l, reports } = limiter();
    for (let i = 0; i < 5; i++) l.admit("a", "warn", 0);
    expect(l.admit("a", "warn", 5000)).toBe(true);
    expect(reports).toEqual([["a", 2, "warn"]]);
  });

  it("reports nothing for a window that suppressed nothing", () => {
    const { l, reports } = limiter();
    l.admit("a", "info", 0);
    expect(l.nextReport()).toBeUndefined();
    l.expire(10_000);
    expect(reports).toEqual([]);
  });

  it("tracks at most maxReasons reasons; more share one window", () => {
    const { l, reports } = limiter({ burst: 1, windowMs: 1000, maxReasons: 2 });
    expect(l.admit("r1", "info", 0)).toBe(true);
    expect(l.admit("r2", "info", 0)).toBe(true);
    expect(l.admit("r3", "info", 0)).toBe(true); // the overflow window's one line
    expect(l.admit("r4", "info", 0)).toBe(false);
    expect(l.admit("r5", "info", 0)).toBe(false);
    l.expire(1000);
    expect(reports).toEqual([[OVERFLOW_REASON, 2, "info"]]);
    // Ended windows free their places.
    expect(l.admit("r6", "info", 1000)).toBe(true);
    expect(l.admit("r6", "info", 1000)).toBe(false);
  });
});

describe("LimitedLog", () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function sink() {
    const lines: Array<{ level: string; msg: string; fields: object }> = [];
    const at =
      (level: string) =>
      (fields: object, msg: string): void => {
        lines.push({ level, msg, fields });
      };
    return { lines, logger: { debug: at("debug"), info: at("info"), warn: at("warn"), error: at("error") } };
  }

  it("writes one 'suppressed K similar messages' line when the window ends, by itself", () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const { lines, logger } = sink();
    const log = new LimitedLog(logger, { burst: 2, windowMs: 10_000 });
    for (let i = 0; i < 500; i++) log.info("inbound link failed", `inbound link from x:${i} failed`, { i });
    expect(lines.map((l) => l.msg)).toEqual(["inbound link from x:0 failed", "inbound link from x:1 failed"]);
    vi.advanceTimersByTime(9_999);
    expect(lines).toHaveLength(2);
    vi.advanceTimersByTime(1);
    expect(lines).toHaveLength(3);
    expect(lines[2]).toEqual({
      level: "info",
      msg: "suppressed 498 similar messages: inbound link failed",
      fields: { reason: "inbound link failed", suppressed: 498 },
    });
    vi.advanceTimersByTime(60_000);
    expect(lines).toHaveLength(3);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("flush() writes what is pending and leaves no timer", () => {
    vi.useFakeTimers({ now: 0 });
    const { lines, logger } = sink();
    const log = new LimitedLog(logger, { burst: 1, windowMs: 10_000 });
    log.warn("multicast dial failed", "one");
    log.warn("multicast dial failed", "two");
    log.warn("multicast dial failed", "three");
    log.flush();
    expect(lines.map((l) => `${l.level} ${l.msg}`)).toEqual([
      "warn one",
      "warn suppressed 2 similar messages: multicast dial failed",
    ]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
