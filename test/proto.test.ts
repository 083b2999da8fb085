import { describe, expect, it } from "vitest";
import {
  NODEINFO_MAX_BYTES,
  Proto,
  ProtoTimeoutError,
  buildNodeInfo,
  formatGoCoords,
} from "../src/overlay/proto.js";
import { goArch, goPlatform } from "../src/util/version.js";
import { keyA, keyB, keyC, protoPair } from "./admin-fake.js";

describe("nodeinfo content", () => {
  it("adds the build keys (overwriting user keys), sorted like Go's json.Marshal", () => {
    const json = buildNodeInfo(
      { name: "nodeA", buildname: "mine", zeta: { b: 1, a: [2, { d: 1, c: 0 }] } },
      false,
    );
    const parsed = JSON.parse(json);
    expect(Object.keys(parsed)).toEqual([
      "buildarch",
      "buildname",
      "buildplatform",
      "buildversion",
      "name",
      "zeta",
    ]);
    expect(parsed.buildname).toBe("planetd");
    expect(parsed.buildplatform).toBe(goPlatform());
    expect(parsed.buildarch).toBe(goArch());
    expect(json).toContain('"zeta":{"a":[2,{"c":0,"d":1}],"b":1}');
  });

  it("publishes only the configured object with privacy on", () => {
    expect(buildNodeInfo({ name: "nodeB" }, true)).toBe('{"name":"nodeB"}');
    expect(buildNodeInfo(null, true)).toBe("{}");
  });

  it("escapes HTML characters as Go does and enforces the 16384-byte limit", () => {
    expect(buildNodeInfo({ n: "a<&>" }, true)).toBe('{"n":"a\\u003c\\u0026\\u003e"}');
    expect(() => buildNodeInfo({ big: "x".repeat(NODEINFO_MAX_BYTES) }, true)).toThrow(/16384/);
  });

  it("maps Node's platform and arch names to Go's", () => {
    expect(goArch("x64")).toBe("amd64");
    expect(goArch("arm64")).toBe("arm64");
    expect(goArch("ia32")).toBe("386");
    expect(goPlatform("win32")).toBe("windows");
    expect(goPlatform("linux")).toBe("linux");
  });
});

describe("Proto request/response between two nodes", () => {
  it("answers nodeinfo with the configured object and build keys", async () => {
    const { a, sent } = protoPair({}, { nodeInfo: { name: "nodeB" } });
    const info = await a.getNodeInfo(keyB, 2000);
    expect(info).toMatchObject({ name: "nodeB", buildname: "planetd", buildarch: goArch() });
    // Request is type 01 with no body; the response is 02 ‖ JSON (the sender adds the 0x02 session byte).
    expect(sent[0]).toMatchObject({ from: keyA.toString("hex"), to: keyB.toString("hex") });
    expect([...sent[0].message]).toEqual([0x01]);
    expect(sent[1].message[0]).toBe(0x02);
    expect(JSON.parse(sent[1].message.subarray(1).toString())).toEqual(info);
  });

  it("answers debug getSelf with a Go-formatted coords string", async () => {
    const { a, sent } = protoPair({}, { coords: () => [1, 2, 3] });
    expect(await a.debugGetSelf(keyB, 2000)).toEqual({ key: keyB.toString("hex"), coords: "[1 2 3]" });
    expect([...sent[0].message]).toEqual([0xff, 0x01]);
    expect(sent[1].message.subarray(2).toString()).toBe(
      `{"coords":"[1 2 3]","key":"${keyB.toString("hex")}"}`,
    );
    expect(formatGoCoords([])).toBe("[]");
  });

  it("answers debug getPeers and getDHT with concatenated keys", async () => {
    const { a, sent } = protoPair({}, { peerKeys: () => [keyA, keyC], dhtKeys: () => [keyC] });
    expect(await a.debugGetPeers(keyB, 2000)).toEqual([keyA, keyC]);
    expect(await a.debugGetDHT(keyB, 2000)).toEqual([keyC]);
    const peersResponse = sent.find((s) => s.message[0] === 0xff && s.message[1] === 0x04);
    expect(peersResponse?.message.length).toBe(2 + 64);
  });

  it("resolves every concurrent waiter for the same key with one response", async () => {
    const { a } = protoPair({}, { nodeInfo: { name: "b" } });
    const [x, y] = await Promise.all([a.getNodeInfo(keyB, 2000), a.getNodeInfo(keyB, 2000)]);
    expect(x).toEqual(y);
  });

  it("answers queries to its own key without the network", async () => {
    const { a, sent } = protoPair({ nodeInfo: { name: "self" } });
    expect((await a.getNodeInfo(keyA, 2000)).name).toBe("self");
    expect(sent).toHaveLength(0);
  });

  it("times out with ProtoTimeoutError and ignores the late answer", async () => {
    const fired: Array<() => void> = [];
    const timers = { set: (fn: () => void) => fired.push(fn), clear: () => {} };
    const self = { key: keyA, coords: () => [], peerKeys: () => [], dhtKeys: () => [] };
    const proto = new Proto({ send: () => {} }, self, { timers });
    const pending = proto.getNodeInfoRaw(keyB, 6000);
    fired[0]();
    await expect(pending).rejects.toBeInstanceOf(ProtoTimeoutError);
    proto.handle(keyB, Buffer.from('\x02{"late":true}'));
  });

  it("ignores malformed, unsolicited and unknown messages", async () => {
    const sent: Buffer[] = [];
    const self = { key: keyA, coords: () => [], peerKeys: () => [], dhtKeys: () => [] };
    const proto = new Proto({ send: (_d, m) => sent.push(Buffer.from(m)) }, self);
    for (const m of [[], [0x00], [0x02, 0x7b], [0xff], [0xff, 0x00], [0xff, 0x02], [0xff, 0x09], [0x77]]) {
      proto.handle(keyB, Buffer.from(m));
    }
    expect(sent).toHaveLength(0);
    proto.handle(keyB, Buffer.from([0x01]));
    expect(sent).toHaveLength(1);
  });

  it("caps the key list to what fits in the MTU", async () => {
    const keys = Array.from({ length: 100 }, (_, i) => Buffer.alloc(32, i));
    const sent: Buffer[] = [];
    const self = { key: keyA, coords: () => [], peerKeys: () => keys, dhtKeys: () => [] };
    const proto = new Proto({ send: (_d, m) => sent.push(Buffer.from(m)), mtu: 32 * 10 + 3 }, self);
    proto.handle(keyB, Buffer.from([0xff, 0x03]));
    expect(sent[0].length).toBe(2 + 32 * 10);
  });

  it("rejects pending requests on close", async () => {
    const { a, setDrop } = protoPair();
    setDrop(true);
    const pending = a.debugGetDHT(keyB, 5000);
    a.close();
    await expect(pending).rejects.toThrow("proto closed");
  });
});
