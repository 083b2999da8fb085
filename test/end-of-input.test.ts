// Flushes asked for during an input run when it ends, in the same call; outside any input, on the next tick.
import { describe, expect, it } from "vitest";
import { beginInput, endInput, endOfInputOverflows, flushAtEndOfInput } from "../src/util/end-of-input.js";

const nextTick = (): Promise<void> => new Promise((resolve) => process.nextTick(resolve));

describe("end of input", () => {
  it("runs an input's flushes when the outermost input ends, in the order asked", () => {
    const ran: string[] = [];
    beginInput();
    flushAtEndOfInput(() => ran.push("link"));
    beginInput();
    flushAtEndOfInput(() => ran.push("tun"));
    endInput();
    expect(ran).toEqual([]);
    endInput();
    expect(ran).toEqual(["link", "tun"]);
  });

  it("runs a flush asked for by another flush in the same run", () => {
    const ran: string[] = [];
    beginInput();
    flushAtEndOfInput(() => {
      ran.push("first");
      flushAtEndOfInput(() => ran.push("second"));
    });
    endInput();
    expect(ran).toEqual(["first", "second"]);
  });

  it("runs a flush asked for outside any input on the next tick", async () => {
    const ran: string[] = [];
    flushAtEndOfInput(() => ran.push("timer's keepalive"));
    expect(ran).toEqual([]);
    await nextTick();
    expect(ran).toEqual(["timer's keepalive"]);
  });

  it("leaves the flushes after one that threw for the next tick", async () => {
    const ran: string[] = [];
    beginInput();
    flushAtEndOfInput(() => {
      throw new Error("write failed");
    });
    flushAtEndOfInput(() => ran.push("after"));
    expect(() => endInput()).toThrow("write failed");
    expect(ran).toEqual([]);
    await nextTick();
    expect(ran).toEqual(["after"]);
    // The next input starts from an empty list.
    beginInput();
    flushAtEndOfInput(() => ran.push("next input"));
    endInput();
    expect(ran).toEqual(["after", "next input"]);
  });

  it("sends flushes past its bound through the next tick and counts them", async () => {
    const before = endOfInputOverflows();
    let ran = 0;
    beginInput();
    for (let i = 0; i < 1025; i++) flushAtEndOfInput(() => ran++);
    expect(endOfInputOverflows()).toBe(before + 1);
    endInput();
    expect(ran).toBe(1024);
    await nextTick();
    expect(ran).toBe(1025);
  });
});
