// Config parsing in-process: defaults, Yggdrasil's own output, encodings, and every refusal naming
// the key, what it got and what it expects.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Hjson from "hjson";
import { afterAll, describe, expect, it } from "vitest";
import {
  ConfigError,
  decodeConfigBytes,
  formatConfig,
  generateConfig,
  identityFromConfig,
  loadConfigFile,
  parseConfig,
} from "../src/config/config.js";
import { defaultAdminListen, stateDir } from "../src/config/paths.js";
import { Identity } from "../src/crypto/identity.js";
import { parseListenUri } from "../src/overlay/links/uri.js";

const KEY = Identity.fromSeed(Buffer.alloc(32, 7)).privateKeyHex;
const dir = mkdtempSync(join(tmpdir(), "planetd-config-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function refused(text: string): string {
  try {
    parseConfig(text, "test.conf");
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    const message = (err as Error).message;
    expect(message).not.toContain("\n");
    return message;
  }
  throw new Error(`accepted: ${text}`);
}

function withKey(extra: Record<string, unknown>): string {
  return JSON.stringify({ PrivateKey: KEY, ...extra });
}

describe("parseConfig", () => {
  it("fills every 0.4.7 default and planetd's own when the file holds only a key", () => {
    const { config, warnings } = parseConfig(withKey({}), "t");
    expect(warnings).toEqual([]);
    expect(config).toEqual({
      Peers: [],
      InterfacePeers: {},
      Listen: [],
      AdminListen: defaultAdminListen(),
      MulticastInterfaces: [{ Regex: ".*", Beacon: true, Listen: true, Port: 0, Priority: 0 }],
      AllowedPublicKeys: [],
      PrivateKey: KEY,
      IfName: "auto",
      IfMTU: 65535,
      NodeInfoPrivacy: false,
      NodeInfo: {},
      Planetd: { MetricsListen: "none", LogLevel: "info" },
    });
  });

  it("reads every key, HJSON style with comments and quoteless values", () => {
    const text = `{
      # a comment
      Peers: [ "tls://198.51.100.1:443?key=${"ab".repeat(32)}&priority=3", "tcp://example.net:12345" ]
      InterfacePeers: { eth0: [ "tcp://[fe80::1%eth0]:12345" ] }
      Listen: [ "tls://[::]:0", "unix:///run/p.sock" ]
      AdminListen: tcp://127.0.0.1:9001
      MulticastInterfaces: [
        {
          Regex: ^eth
          Beacon: false, Listen: true, Port: 9000, Priority: 4
        }
      ]
      AllowedPublicKeys: [ "${"CD".repeat(32)}" ]
      PrivateKey: ${KEY}
      IfName: pd0
      IfMTU: 1500
      NodeInfoPrivacy: true
      NodeInfo: { "name": "alpha", n: 1 }
      Planetd: { MetricsListen: "127.0.0.1:9464", LogLevel: "debug" }
    }`;
    const { config, warnings } = parseConfig(text, "t");
    expect(warnings).toEqual([]);
    expect(config.Peers).toHaveLength(2);
    expect(config.InterfacePeers).toEqual({ eth0: ["tcp://[fe80::1%eth0]:12345"] });
    expect(config.Listen).toEqual(["tls://[::]:0", "unix:///run/p.sock"]);
    expect(config.AdminListen).toBe("tcp://127.0.0.1:9001");
    expect(config.MulticastInterfaces).toEqual([
      { Regex: "^eth", Beacon: false, Listen: true, Port: 9000, Priority: 4 },
    ]);
    expect(config.AllowedPublicKeys).toEqual(["cd".repeat(32)]);
    expect(config.IfName).toBe("pd0");
    expect(config.IfMTU).toBe(1500);
    expect(config.NodeInfoPrivacy).toBe(true);
    expect(config.NodeInfo).toEqual({ name: "alpha", n: 1 });
    expect(config.Planetd).toEqual({ MetricsListen: "127.0.0.1:9464", LogLevel: "debug" });
  });

  it("loads Yggdrasil's own -genconf output unchanged, with no warnings", () => {
    let text: string;
    try {
      text = execFileSync("yggdrasil", ["-genconf"], { encoding: "utf8", timeout: 5000 });
    } catch {
      console.warn("skipped: yggdrasil is not on PATH");
      return;
    }
    const { config, warnings } = parseConfig(text, "ygg.conf");
    expect(warnings).toEqual([]);
    const raw = Hjson.parse(text) as Record<string, unknown>;
    expect(config.PrivateKey).toBe(raw.PrivateKey);
    expect(identityFromConfig(config).publicKey.toString("hex")).toBe(raw.PublicKey);
    expect(config.AdminListen).toBe(raw.AdminListen);
    expect(config.MulticastInterfaces).toEqual(raw.MulticastInterfaces);
  });

  it("takes an old single-string Listen and NodeInfo null as Yggdrasil does", () => {
    const { config } = parseConfig(withKey({ Listen: "tcp://0.0.0.0:1", NodeInfo: null }), "t");
    expect(config.Listen).toEqual(["tcp://0.0.0.0:1"]);
    expect(config.NodeInfo).toEqual({});
  });

  it("warns about unknown keys, 0.3 keys, other case, a missing key and a stale PublicKey, and still loads", () => {
    const { config, warnings } = parseConfig(
      JSON.stringify({
        PrivateKey: KEY,
        Foo: 1,
        SigningPrivateKey: "x",
        peers: ["tcp://a:1"],
        PublicKey: "00".repeat(32),
        Planetd: { Bar: 2 },
        MulticastInterfaces: [{ Regex: ".*", Password: "x" }],
      }),
      "t",
    );
    expect(config.Peers).toEqual(["tcp://a:1"]);
    expect(config.MulticastInterfaces).toEqual([
      { Regex: ".*", Beacon: false, Listen: false, Port: 0, Priority: 0 },
    ]);
    expect(warnings).toEqual([
      "config: unknown key Foo ignored",
      "config: unknown key SigningPrivateKey ignored (a Yggdrasil 0.3 setting; 0.4 ignores it too)",
      "config: key peers read as Peers",
      "config: unknown key Planetd.Bar ignored",
      "config: unknown key MulticastInterfaces[0].Password ignored",
      "config: PublicKey does not match PrivateKey; it is informational and ignored",
    ]);
    const noKey = parseConfig("{}", "t");
    expect(noKey.warnings).toEqual([
      "config: no PrivateKey, so this run uses a new random identity (and a new address)",
    ]);
    expect(() => identityFromConfig(noKey.config)).not.toThrow();
  });

  it("handles a UTF-8 BOM and UTF-16 LE/BE with BOM", () => {
    const text = withKey({ IfMTU: 1400 });
    const utf8 = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(text)]);
    const le = Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(text, "utf16le")]);
    const be = Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(text, "utf16le").swap16()]);
    for (const bytes of [utf8, le, be]) {
      const path = join(dir, "bom.conf");
      writeFileSync(path, bytes);
      expect(loadConfigFile(path).config.IfMTU).toBe(1400);
    }
    expect(decodeConfigBytes(le)).toBe(text);
  });

  it.each([
    [{ IfMTU: "big" }, 'config: IfMTU "big" is not a number (expected a whole number, e.g. 65535)'],
    [{ IfMTU: 1500.5 }, "config: IfMTU 1500.5 is not a whole number (expected a whole number, e.g. 65535)"],
    [{ IfMTU: -1 }, "config: IfMTU -1 is out of range (expected a whole number, e.g. 65535)"],
    [{ Peers: ["tcp//x"] }, 'config: Peers[0] "tcp//x" is not a URI (expected tcp://host:port)'],
    [
      { Peers: "tcp://a:1" },
      'config: Peers "tcp://a:1" is a string (expected a list like ["tls://host:port"])',
    ],
    [{ Peers: ["tcp://h"] }, 'config: Peers[0] "tcp://h" has no port (expected tcp://host:port)'],
    [
      { Peers: ["http://h:1"] },
      'config: Peers[0] "http://h:1" has unknown scheme "http" (expected tcp://, tls://, udp:// or unix://)',
    ],
    [
      { Peers: ["tcp://::1:5"] },
      'config: Peers[0] "tcp://::1:5": IPv6 addresses need brackets (expected tcp://[addr]:port)',
    ],
    [
      { Peers: ["tcp://h:70000"] },
      'config: Peers[0] "tcp://h:70000": "70000" is not a valid port (expected 1..65535)',
    ],
    [
      { Peers: ["tls://h:1?priority=256"] },
      'config: Peers[0] "tls://h:1?priority=256": priority= must be an integer 0..255, got "256"',
    ],
    [
      { Peers: ["tls://h:1?key=ab"] },
      'config: Peers[0] "tls://h:1?key=ab": key= must be 64 hex characters, got "ab"',
    ],
    [
      { Peers: ["socks://p:1/h:2"] },
      'config: Peers[0] "socks://p:1/h:2": socks:// peers are not supported (use tcp://, tls:// or unix://)',
    ],
    [{ Listen: ["tcp://[::]"] }, 'config: Listen[0] "tcp://[::]" is not a URI (expected tcp://host:port)'],
    [
      { InterfacePeers: { eth0: ["x"] } },
      'config: InterfacePeers["eth0"][0] "x" is not a URI (expected tcp://host:port)',
    ],
    [
      { AdminListen: "localhost:9001" },
      'config: AdminListen "localhost:9001" is not a URI (expected tcp://host:port)',
    ],
    [
      { AdminListen: "tls://[::1]:9001" },
      'config: AdminListen "tls://[::1]:9001" uses tls:// (expected unix:///path/to.sock or tcp://127.0.0.1:9001)',
    ],
    [
      { MulticastInterfaces: [{ Priority: 300 }] },
      "config: MulticastInterfaces[0].Priority 300 is out of range (expected a number 0..255)",
    ],
    [
      { MulticastInterfaces: [{ Beacon: "yes" }] },
      'config: MulticastInterfaces[0].Beacon "yes" is a string (expected true or false)',
    ],
    [
      { AllowedPublicKeys: ["abc"] },
      'config: AllowedPublicKeys[0] "abc" is not a public key (expected 64 hex characters (an ed25519 public key))',
    ],
    [
      { IfName: "a-name-that-is-too-long" },
      'config: IfName "a-name-that-is-too-long" is not an interface name (expected "auto", "none" or an interface name of at most 15 characters)',
    ],
    [{ NodeInfoPrivacy: "no" }, 'config: NodeInfoPrivacy "no" is a string (expected true or false)'],
    [
      { NodeInfo: [1] },
      'config: NodeInfo a list is a list (expected an object like { "name": "alpha" }, or null)',
    ],
    [
      { NodeInfo: { big: "x".repeat(17000) } },
      "config: NodeInfo is 17010 bytes as JSON (expected at most 16384)",
    ],
    [
      { Planetd: { LogLevel: "loud" } },
      'config: Planetd.LogLevel "loud" is not a log level (expected error, warn, info, debug, trace)',
    ],
    [
      { Planetd: { MetricsListen: "9464" } },
      'config: Planetd.MetricsListen "9464" is not host:port (expected "none" or host:port, e.g. "127.0.0.1:9464")',
    ],
  ])("refuses bad value %# with one line", (extra, message) => {
    expect(refused(withKey(extra))).toBe(message);
  });

  it("refuses broken HJSON, a non-object, and bad private keys without echoing the key", () => {
    expect(refused("{\n a: 1\n b: [\n}")).toMatch(
      /^config: test\.conf is not valid HJSON or JSON: .* at line 4,1$/,
    );
    expect(refused("[1, 2]")).toBe(
      "config: test.conf holds a list at the top level (expected an object { ... })",
    );
    expect(refused(JSON.stringify({ PrivateKey: KEY.slice(1) }))).toBe(
      "config: PrivateKey has 127 hex characters (expected 128: seed ‖ public key)",
    );
    const flipped = KEY.slice(0, 127) + (KEY[127] === "0" ? "1" : "0");
    const halves = refused(JSON.stringify({ PrivateKey: flipped }));
    expect(halves).toMatch(/^config: PrivateKey public half does not match its seed/);
    expect(halves).not.toContain(KEY.slice(0, 64));
    expect(refused(JSON.stringify({ PrivateKey: `${KEY.slice(0, 127)}g` }))).toBe(
      "config: PrivateKey is not hexadecimal",
    );
    expect(refused(JSON.stringify({ PrivateKey: 5 }))).toBe(
      "config: PrivateKey 5 is a number (expected 128 hex characters (seed ‖ public key))",
    );
  });

  it("reports every problem at once, one line each in file order, and loads nothing", () => {
    const text = `{
      Peers: ["tcp//x", "tls://ok.example:443", "socks://proxy:1080/host:22"]
      IfMTU: "big"
      MulticastInterfaces: [{ Regex: "(", Port: 70000 }]
      AllowedPublicKeys: ["ab"]
      Planetd: { LogLevel: "loud", UdpMaxDatagram: 10 }
      PrivateKey: "${KEY.slice(1)}"
    }`;
    let message = "";
    try {
      parseConfig(text, "test.conf");
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError);
      message = (err as Error).message;
    }
    expect(message.split("\n")).toEqual([
      'config: Peers[0] "tcp//x" is not a URI (expected tcp://host:port)',
      'config: Peers[2] "socks://proxy:1080/host:22": socks:// peers are not supported (use tcp://, tls:// or unix://)',
      'config: IfMTU "big" is not a number (expected a whole number, e.g. 65535)',
      'config: MulticastInterfaces[0].Regex "(" is not a valid regular expression (expected a regular expression such as "^eth")',
      "config: MulticastInterfaces[0].Port 70000 is out of range (expected a port 0..65535 (0 = random))",
      'config: AllowedPublicKeys[0] "ab" is not a public key (expected 64 hex characters (an ed25519 public key))',
      'config: Planetd.LogLevel "loud" is not a log level (expected error, warn, info, debug, trace)',
      "config: Planetd.UdpMaxDatagram 10 is out of range (expected a datagram size in bytes, 1232..65507)",
      "config: PrivateKey has 127 hex characters (expected 128: seed ‖ public key)",
    ]);
  });

  it("shows at most 20 problem lines and counts the rest", () => {
    const peers = Array.from({ length: 25 }, (_, i) => `tcp//x${i}`);
    let lines: string[] = [];
    try {
      parseConfig(withKey({ Peers: peers }), "test.conf");
    } catch (err) {
      lines = (err as Error).message.split("\n");
    }
    expect(lines).toHaveLength(21);
    expect(lines[19]).toBe('config: Peers[19] "tcp//x19" is not a URI (expected tcp://host:port)');
    expect(lines[20]).toBe("config: 5 more problems not shown; fix the ones above first");
  });

  it("names a missing file", () => {
    expect(() => loadConfigFile(join(dir, "absent.conf"))).toThrow(
      new ConfigError(`config: cannot read ${join(dir, "absent.conf")}: no such file`),
    );
  });
});

describe("formatConfig", () => {
  it("round-trips through HJSON and JSON, and states the public key", () => {
    const config = generateConfig();
    config.Peers = [`tls://[2001:db8::1]:443?key=${"ab".repeat(32)}`];
    config.NodeInfo = { name: "a # not a comment", list: [1, 2] };
    config.Planetd.MetricsListen = "127.0.0.1:9464";
    const pub = identityFromConfig(config).publicKey.toString("hex");
    for (const json of [false, true]) {
      const text = formatConfig(config, json);
      const back = parseConfig(text, "t");
      expect(back.warnings).toEqual([]);
      expect(back.config).toEqual(config);
      expect((Hjson.parse(text) as { PublicKey: string }).PublicKey).toBe(pub);
    }
    expect(formatConfig(config, false)).toContain("  # ");
    expect(() => JSON.parse(formatConfig(config, true))).not.toThrow();
  });

  it("comments name exactly the link schemes the links accept, and every example URI in them parses", () => {
    const text = formatConfig(generateConfig(), false);
    const comments = text.split("\n").filter((l) => l.trimStart().startsWith("#"));
    const uris = comments.flatMap((l) => l.match(/\b[a-z]+:\/\/[^\s,()"]+/g) ?? []);
    expect(new Set(uris.map((u) => u.split(":")[0]))).toEqual(new Set(["tcp", "tls", "udp", "unix"]));
    expect(text).not.toMatch(/socks/i);
    // Placeholders (host:port, /path) stand for real values.
    const real = (uri: string) =>
      uri.replace(/[.;]$/, "").replace("host:port", "example.net:443").replace(":///path", ":///run/pd.sock");
    for (const uri of uris) expect(() => parseListenUri(real(uri))).not.toThrow();
    // The Peers comment's examples are outbound URIs: each one loads as a peer.
    const peersComment = text.slice(0, text.indexOf("  Peers:"));
    for (const uri of peersComment.match(/\b[a-z]+:\/\/[^\s,()"]+/g) ?? []) {
      const peer = real(uri);
      expect(parseConfig(withKey({ Peers: [peer] }), "t").config.Peers).toEqual([peer]);
    }
  });

  it("generateConfig makes a fresh valid key each time", () => {
    const a = identityFromConfig(generateConfig());
    const b = identityFromConfig(generateConfig());
    expect(a.publicKey.equals(b.publicKey)).toBe(false);
  });
});

describe("link URIs and paths", () => {
  it("accepts the link URIs of spec 4.1 in Peers, InterfacePeers and Listen", () => {
    const peers = [
      "tcp://1.2.3.4:5",
      "tls://example.net:443?sni=example.net&priority=7",
      "tcp://[::1]:1",
      "tcp://[fe80::1%25eth0]:1",
      "unix:///var/run/x.sock",
    ];
    const listen = ["tcp://[::]:0", "tls://0.0.0.0:0", "unix:///run/p.sock"];
    const { config } = parseConfig(
      withKey({ Peers: peers, InterfacePeers: { eth0: peers }, Listen: listen }),
      "t",
    );
    expect(config.Peers).toEqual(peers);
    expect(config.Listen).toEqual(listen);
    expect(refused(withKey({ Peers: ["tcp://[::]:0"] }))).toBe(
      'config: Peers[0] "tcp://[::]:0": "0" is not a valid port (expected 1..65535)',
    );
  });

  it("picks the state directory from the environment and privileges", () => {
    expect(stateDir({ PLANETD_STATE_DIR: "/x" }, true)).toBe("/x");
    expect(stateDir({}, true)).toBe("/var/lib/planetd");
    expect(stateDir({ XDG_STATE_HOME: "/s", HOME: "/h" }, false)).toBe("/s/planetd");
    expect(stateDir({ HOME: "/h" }, false)).toBe("/h/.local/state/planetd");
    expect(defaultAdminListen({}, true)).toBe("unix:///var/run/planetd/planetd.sock");
    expect(defaultAdminListen({ HOME: "/h" }, false)).toBe("unix:///h/.local/state/planetd/planetd.sock");
  });
});
