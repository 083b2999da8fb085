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

/** Bytes of bytecode per tick once started; ~3 ticks then mark a function hot (V8's default: 67,584). */
export const DATA_PATH_INTERRUPT_BUDGET = 1024;

/**
 * Lowers V8's interrupt budget for everything that runs from now on. PLANETD_INTERRUPT_BUDGET
 * overrides the value (bytes, at least 64); 0 leaves V8's default. Returns the budget set, or
 * undefined when none was (0, or a value that is not a whole number of at least 64).
 */
export function tierUpDataPathEarly(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env.PLANETD_INTERRUPT_BUDGET;
  const budget = raw === undefined || raw === "" ? DATA_PATH_INTERRUPT_BUDGET : Number(raw);
  if (!Number.isInteger(budget) || budget < 64) return undefined;
  setFlagsFromString(`--interrupt-budget=${budget}`);
  return budget;
}
