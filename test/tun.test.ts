import { describe, expect, it } from "vitest";
import { MemoryTun } from "../src/tun/memory.js";
import { clampMtu, openTun } from "../src/tun/native.js";

describe("MemoryTun", () => {
  it("delivers injected batches and collects writes", () => {
    const tun = new MemoryTun("mem1", 1400);
    expect(tun.inject(Buffer.of(1))).toBe(false); // nobody listening yet
    const batches: string[][] = [];
    tun.onPackets((ps) => batches.push(ps.map((p) => p.toString("hex"))));
    expect(tun.inject(Buffer.of(1, 2), Buffer.of(3))).toBe(true);
    expect(batches).toEqual([["0102", "03"]]);
    const src = Buffer.of(9, 9);
    tun.write(src);
    src[0] = 0;
    expect(tun.written.map((p) => p.toString("hex"))).toEqual(["0909"]);
    const seen: Buffer[] = [];
    tun.onWrite((p) => seen.push(p));
    tun.write(Buffer.of(5));
    expect(seen).toHaveLength(1);
    tun.close();
    expect(tun.inject(Buffer.of(1))).toBe(false);
    tun.write(Buffer.of(6));
    expect(seen).toHaveLength(1);
  });
});

describe("native TUN wrapper (no kernel changes)", () => {
  it("clamps the MTU to [1280, 53049]", () => {
    expect(clampMtu(65535)).toBe(53049);
    expect(clampMtu(576)).toBe(1280);
    expect(clampMtu(1400)).toBe(1400);
  });

  it("rejects a name longer than IFNAMSIZ-1 before touching the kernel", () => {
    expect(() => openTun({ name: "x".repeat(16), mtu: 1280, address: Buffer.alloc(16) })).toThrow(
      /TUN: interface name "x{16}" is longer than 15 characters/,
    );
    expect(() => openTun({ name: "auto", mtu: 1280, address: Buffer.alloc(4) })).toThrow(/16 bytes/);
  });
});
