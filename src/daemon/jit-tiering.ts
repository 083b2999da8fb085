// Idle latency (issue 11): V8 optimizes a function with TurboFan only after it has run about three
// "interrupt budgets" of bytecode (67,584 bytes each in Node 20). A packet runs each function of the
// data path once, so at 5 pings/s the path stays in the interpreter and Sparkplug code for minutes:
// every property access there goes through an inline-cache builtin, and after 200 ms of idle each
// one touches cold memory. Under load, a fresh tcp:// pair spent ~1.2 ms of daemon CPU per ping at
// 1.2-1.4 ms RTT; after 5000 fast pings (path optimized) ~0.5 ms at 0.77-0.89, level with Yggdrasil.
// With a small budget the path tiers up within its first ~50 packets. bench/rtt.sh (3 interleaved
// rounds under load, medians): the 50 pings after those 1.75 -> 0.81 ms with this, 1.16 -> 1.01 ms
// with V8's default, Yggdrasil 0.59 -> 0.63; the first 50 pay for the compiles (1.75 vs 1.16 ms).
// Set once the node has started, so the startup code, which never runs again, is not compiled for
// nothing: set at process start it doubled startup CPU and added ~5 MiB of RSS; now ~1 MiB.
import { setFlagsFromString } from "node:v8";

/**
 * Bytes of bytecode per tick once started; ~3 ticks then mark a function hot (V8's default: 67,584).
 * A small function of the data path (StreamLink.onRead, Sessions.handle: tens of bytes a packet) took
 * 60-90 idle pings to be optimized at 1024 (--trace-opt), so part of bench/rtt.sh's idle window (pings
 * 51-100) still ran baseline code; at 256 about a quarter of that. Under load, 2 runs of 5 interleaved
 * rounds: idle RTT medians 0.7435 / 0.7465 ms at 256 vs 0.796 / 0.798 at 1024.
 */
export const DATA_PATH_INTERRUPT_BUDGET = 256;

/**
 * Bytes of bytecode a function runs before V8 gives it a feedback vector (V8: 940, or 8x its bytecode
 * length). A function has no type feedback before that, and a caller optimized while a small callee
 * still had none inlines it with a deopt at its first property access: with the lowered interrupt budget
 * the data path's callers (Sessions.handleTraffic inlining ReplayWindow.check, run once per packet)
 * were optimized before their callees had a vector, deopted on the next packet, and a function
 * deoptimized there stayed in baseline code for ~1,000 packets (--trace-opt --trace-deopt on an idle
 * daemon at 5 pings/s). With vectors from the first calls every callee has feedback first.
 */
export const DATA_PATH_FEEDBACK_BUDGET = 64;

/**
 * Calls (times bytecode length) V8 budgets before it looks at a function again after deciding to tier
 * it up (V8's --invocation-count-for-osr, 500). A deopt leaves the function with that budget, so a
 * data path function deoptimized by a branch it had not yet taken (the first counter past 127, the
 * kernel's first router solicitation on the TUN) stayed in baseline code for ~1,000 packets, minutes
 * at idle; with 4 it is optimized again within tens (--trace-opt --trace-deopt, 400 pings at 20/s).
 */
export const DATA_PATH_REOPT_INVOCATIONS = 4;

/**
 * Calls V8 waits for after a function's inline cache changed before it looks at the function again
 * (V8's --minimum-invocations-after-ic-update, 500). On an IC change V8 raises the function's
 * interrupt budget to that many calls' worth of its bytecode (when the function would otherwise be
 * optimized soon), whatever --interrupt-budget says: a data path function that sees a new map once
 * (the first packet of another kind, a session's second key) then ran in baseline code for 500 more
 * packets, 100 s at 5 pings/s. An idle pair, 60 pings at 5/s after the 50 of warm-up
 * (--trace-opt-verbose): sessions' wholeBufferOf and incU64, the replay window's mark, the
 * pathfinder's find, the stream link's and TUN's flushes got "delaying optimization, IC changed" and
 * no tick after it, and perf sampled them in baseline frames throughout; at 8 all were optimized in
 * the same window. bench/rtt.sh, 3 interleaved rounds under light load: idle 0.5555 ms against
 * 0.577 with V8's 500 (each round 17-22 us lower).
 */
export const DATA_PATH_IC_UPDATE_INVOCATIONS = 8;

/**
 * Bytecode TurboFan inlines into one optimized function in all (V8's
 * --max-inlined-bytecode-size-cumulative, 920). A packet's path is a chain of small calls across
 * layers (link, router, sessions, adapter, TUN); each call left out of line is one more frame and
 * one more piece of code to bring back into cache after 200 ms idle. bench/rtt.sh under light load,
 * interleaved: set once started, 3 rounds, idle 0.527 ms against 0.5875 with V8's 920 (per round
 * 0.5575/0.556, 0.527/0.5875, 0.519/0.5965); set from startup, 2 rounds, 0.4665 against 0.521. The
 * daemons' RSS after 100 pings moved by less than the runs' own spread (57.7-58.6 MiB either way).
 */
export const DATA_PATH_INLINE_BYTECODE = 4000;

/** What tierUpDataPathEarly set: each value, or undefined where V8's default stays. */
export interface TieringBudgets {
  interrupt: number | undefined;
  feedback: number | undefined;
  reoptInvocations: number | undefined;
  icUpdateInvocations: number | undefined;
  inlineBytecode: number | undefined;
}

/** A whole number of at least `least` from the environment, the default when unset, undefined for 0 or junk. */
function budgetFrom(raw: string | undefined, fallback: number, least = 64): number | undefined {
  const budget = raw === undefined || raw === "" ? fallback : Number(raw);
  return Number.isInteger(budget) && budget >= least ? budget : undefined;
}

/**
 * Lowers V8's interrupt budget, its feedback allocation budget, its budget after a deopt and its wait
 * after an IC change, and raises TurboFan's inlining budget, for everything that runs from now on.
 * PLANETD_INTERRUPT_BUDGET, PLANETD_FEEDBACK_BUDGET and PLANETD_INLINE_BYTECODE override the budgets
 * (bytes, at least 64), PLANETD_REOPT_INVOCATIONS and PLANETD_IC_UPDATE_INVOCATIONS the calls (at
 * least 1); 0 leaves V8's default.
 */
export function tierUpDataPathEarly(env: NodeJS.ProcessEnv = process.env): TieringBudgets {
  const interrupt = budgetFrom(env.PLANETD_INTERRUPT_BUDGET, DATA_PATH_INTERRUPT_BUDGET);
  const feedback = budgetFrom(env.PLANETD_FEEDBACK_BUDGET, DATA_PATH_FEEDBACK_BUDGET);
  const reoptInvocations = budgetFrom(env.PLANETD_REOPT_INVOCATIONS, DATA_PATH_REOPT_INVOCATIONS, 1);
  const icUpdateInvocations = budgetFrom(
    env.PLANETD_IC_UPDATE_INVOCATIONS,
    DATA_PATH_IC_UPDATE_INVOCATIONS,
    1,
  );
  if (interrupt !== undefined) setFlagsFromString(`--interrupt-budget=${interrupt}`);
  if (feedback !== undefined) {
    // The fixed budget applies before a function's bytecode length is known, the factor after.
    setFlagsFromString(`--interrupt-budget-for-feedback-allocation=${feedback}`);
    setFlagsFromString("--interrupt-budget-factor-for-feedback-allocation=1");
  }
  if (reoptInvocations !== undefined) setFlagsFromString(`--invocation-count-for-osr=${reoptInvocations}`);
  if (icUpdateInvocations !== undefined)
    setFlagsFromString(`--minimum-invocations-after-ic-update=${icUpdateInvocations}`);
  const inlineBytecode = budgetFrom(env.PLANETD_INLINE_BYTECODE, DATA_PATH_INLINE_BYTECODE);
  if (inlineBytecode !== undefined)
    setFlagsFromString(`--max-inlined-bytecode-size-cumulative=${inlineBytecode}`);
  return { interrupt, feedback, reoptInvocations, icUpdateInvocations, inlineBytecode };
}
