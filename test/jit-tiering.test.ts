// The daemon lowers V8's interrupt budget once started, so a data path that runs once per packet
// is optimized within its first packets instead of after thousands (src/daemon/jit-tiering.ts).
import { setFlagsFromString } from "node:v8";
import { afterAll, describe, expect, it } from "vitest";
import { DATA_PATH_INTERRUPT_BUDGET, tierUpDataPathEarly } from "../src/daemon/jit-tiering.js";

/** V8's default in Node 20 (node --v8-options). */
const V8_DEFAULT_BUDGET = 67_584;
/** %GetOptimizationStatus bit: the function has TurboFan code (V8's OptimizationStatus). */
const TURBOFANNED = 1 << 6;

setFlagsFromString("--allow-natives-syntax");
const optimizationStatus = new Function("f", "return %GetOptimizationStatus(f)") as (f: unknown) => number;

type Frame = { kind: number; length: number; port: number; bytes: Uint8Array };

/** A fresh function (its own source, so no code is shared), shaped like one step of the data path. */
function packetStep(tag: string): (frame: Frame) => number {
  return new Function(
    "frame",
    `// ${tag}
    let out = 0;
    if (frame.kind === 9) out += frame.length >> 3; else out ^= frame.port;
    if (frame.port > 100) out += frame.length; else out -= frame.port;
    const b = frame.bytes;
    out += b[0] + b[1] + b[2] + b[3];
    if (b.length > 4) out += b[4] ^ b[5];
    out += frame.length * 3 + (frame.kind << 2);
    return out < 0 ? 0 : out & 0xffff;`,
  ) as (frame: Frame) => number;
}

/**
 * Calls f once per turn of the event loop (as packets arrive) until V8 has installed TurboFan code
 * for it or maxCalls is reached; how many calls that took (maxCalls when never).
 */
async function callsUntilOptimized(f: (frame: Frame) => number, maxCalls: number): Promise<number> {
  const frame = { kind: 9, length: 1280, port: 3, bytes: new Uint8Array(8) };
  for (let i = 1; i <= maxCalls; i++) {
    f(frame);
    if (optimizationStatus(f) & TURBOFANNED) return i;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return maxCalls;
}

afterAll(() => setFlagsFromString(`--interrupt-budget=${V8_DEFAULT_BUDGET}`));

describe("tierUpDataPathEarly", () => {
  it("sets the data path budget by default, PLANETD_INTERRUPT_BUDGET's when given, none for 0 or junk", () => {
    expect(tierUpDataPathEarly({ PLANETD_INTERRUPT_BUDGET: "0" })).toBeUndefined();
    expect(tierUpDataPathEarly({ PLANETD_INTERRUPT_BUDGET: "fast" })).toBeUndefined();
    expect(tierUpDataPathEarly({ PLANETD_INTERRUPT_BUDGET: "32" })).toBeUndefined();
    expect(tierUpDataPathEarly({ PLANETD_INTERRUPT_BUDGET: "4096" })).toBe(4096);
    expect(tierUpDataPathEarly({})).toBe(DATA_PATH_INTERRUPT_BUDGET);
  });

  // Measured here (node 20.20, 6 runs each): V8's default took 1320-2875 calls, the lowered budget 29-292.
  it("a function run once per event-loop turn reaches TurboFan within its first hundreds of calls, not with V8's default", async () => {
    setFlagsFromString(`--interrupt-budget=${V8_DEFAULT_BUDGET}`);
    const withDefault = await callsUntilOptimized(packetStep("default"), 1000);
    tierUpDataPathEarly({});
    const lowered = await callsUntilOptimized(packetStep("lowered"), 1000);
    expect(withDefault).toBe(1000);
    expect(lowered).toBeLessThan(1000);
  });
});
