import { describe, expect, it } from "vitest";
import { parseListenUri, parsePeerUri } from "../src/overlay/links/uri.js";

const KEY = "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29";

describe("parsePeerUri", () => {
  it("parses tcp with IPv4 and a DNS name", () => {
    const u = parsePeerUri("tcp://10.0.0.1:12345");
    expect(u).toMatchObject({
      scheme: "tcp",
      host: "10.0.0.1",
      port: 12345,
      priority: 0,
      keys: [],
      sni: undefined,
    });
    expect(u.base).toBe("tcp://10.0.0.1:12345");
    expect(parsePeerUri("tcp://node.example.org:1").host).toBe("node.example.org");
  });

  it("parses bracketed IPv6 with a zone, raw or %25-escaped", () => {
    expect(parsePeerUri("tls://[fe80::1%eth0]:80")).toMatchObject({ host: "fe80::1%eth0", port: 80 });
    expect(parsePeerUri("tls://[fe80::1%25eth0]:80/").host).toBe("fe80::1%eth0");
    expect(parsePeerUri("tcp://[::1]:9").host).toBe("::1");
  });

  it("reads repeatable key pins, priority and sni", () => {
    const other = "ab".repeat(32);
    const u = parsePeerUri(`tls://1.2.3.4:5?key=${KEY}&key=${other}&priority=7&sni=x.example`);
    expect(u.keys.map((k) => k.toString("hex"))).toEqual([KEY, other]);
    expect(u.priority).toBe(7);
    expect(u.sni).toBe("x.example");
    expect(u.base).toBe("tls://1.2.3.4:5");
  });

  it("derives SNI only from DNS names", () => {
    expect(parsePeerUri("tls://peer.example.com:443").sni).toBe("peer.example.com");
    expect(parsePeerUri("tls://1.2.3.4:443").sni).toBeUndefined();
    expect(parsePeerUri("tls://[::1]:443").sni).toBeUndefined();
    expect(parsePeerUri("tcp://peer.example.com:443").sni).toBeUndefined();
  });

  it("parses unix paths", () => {
    expect(parsePeerUri("unix:///run/y.sock")).toMatchObject({ scheme: "unix", path: "/run/y.sock" });
  });

  it.each([
    ["tcp//x", '"tcp//x" is not a URI (expected tcp://host:port)'],
    ["http://a:1", '"http://a:1" has unknown scheme "http" (expected tcp://, tls://, udp:// or unix://)'],
    ["tcp://a", '"tcp://a" has no port (expected tcp://host:port)'],
    ["tcp://a:0", '"tcp://a:0": "0" is not a valid port (expected 1..65535)'],
    ["tcp://a:70000", '"tcp://a:70000": "70000" is not a valid port (expected 1..65535)'],
    ["tcp://a:x", '"tcp://a:x": "x" is not a valid port (expected 1..65535)'],
    ["tcp://::1:5", '"tcp://::1:5": IPv6 addresses need brackets (expected tcp://[addr]:port)'],
    ["tcp://[zz::1]:5", '"tcp://[zz::1]:5": "zz::1" is not an IPv6 address'],
    ["tcp://a:1?priority=256", '"tcp://a:1?priority=256": priority= must be an integer 0..255, got "256"'],
    ["tcp://a:1?key=abc", '"tcp://a:1?key=abc": key= must be 64 hex characters, got "abc"'],
    ["unix://rel", '"unix://rel" is not a URI (expected unix:///path)'],
    [
      "socks://a:1/b:2",
      '"socks://a:1/b:2": socks:// peers are not supported (use tcp://, tls:// or unix://)',
    ],
  ])("rejects %s with a one-line message", (uri, message) => {
    expect(() => parsePeerUri(uri)).toThrow(message);
  });

  it("allows port 0 only on listen URIs", () => {
    expect(parseListenUri("tcp://127.0.0.1:0").port).toBe(0);
    expect(parseListenUri("tls://[::]:0?priority=2").priority).toBe(2);
  });
});
