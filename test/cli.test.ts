// The planetd CLI as a user runs it: ./bin/planetd spawned with a timeout, compared with Debian's
// yggdrasil where it is installed. Set PLANETD_TEST_BIN to try another entry point.
import { execFile, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import Hjson from "hjson";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMMAND_HELP, HELP, parseArgs, runCli } from "../src/cli/planetd.js";
import { loadOrCreateConfigFile } from "../src/config/config.js";
import { formatIPv6, formatSubnet } from "../src/crypto/address.js";
import { Identity } from "../src/crypto/identity.js";

const BIN = process.env.PLANETD_TEST_BIN ?? resolve("bin/planetd");
const dir = mkdtempSync(join(tmpdir(), "planetd-cli-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A machine's own /etc/planetd/planetd.conf must not stand in for the configs the tests write. */
const noSystemConfig = { PLANETD_SYSTEM_CONFIG: join(dir, "no-system.conf") };

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function exec(
  file: string,
  args: string[],
  options: { input?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<Result> {
  return new Promise((done) => {
    const child = execFile(
      file,
      args,
      { timeout: 15_000, env: { ...process.env, ...noSystemConfig, ...options.env }, encoding: "utf8" },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === "number" ? err.code : -1) : 0;
        done({ code, stdout, stderr });
      },
    );
    child.stdin?.on("error", () => {}); // a child that exits without reading stdin
    if (options.input !== undefined) child.stdin?.end(options.input);
    else child.stdin?.end();
  });
}

const planetd = (args: string[], options?: { input?: string; env?: NodeJS.ProcessEnv }) =>
  exec(BIN, args, options);

let hasYggdrasil = false;
try {
  execFileSync("yggdrasil", ["-version"], { timeout: 5000, stdio: "ignore" });
  hasYggdrasil = true;
} catch {
  console.warn("yggdrasil is not on PATH: the comparisons with Debian's binary are skipped");
}

/** Runs jobs with at most `width` in flight. */
async function pool<T>(jobs: (() => Promise<T>)[], width: number): Promise<T[]> {
  const results: T[] = new Array(jobs.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < jobs.length) {
        const i = next++;
        results[i] = await jobs[i]!();
      }
    }),
  );
  return results;
}

function writeConfig(name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, body);
  return path;
}

/** One line on stderr, no stack frame, nothing on stdout, exit code 2. */
function expectOneLineRefusal(r: Result, pattern: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.stdout).toBe("");
  expect(r.stderr.endsWith("\n")).toBe(true);
  expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
  expect(r.stderr).not.toMatch(/\bat .*\(|\bat \/|node:internal/);
  expect(r.stderr).toMatch(pattern);
}

beforeAll(async () => {
  // The first run may build dist/; later parallel runs then find it fresh.
  const r = await exec(BIN, ["--version"]);
  expect(r.stderr).toBe("");
  expect(r.code).toBe(0);
}, 180_000);

describe("planetd address/subnet/publickey", () => {
  it("prints the spec 3.4 vector 1 address, subnet and key in both spellings", async () => {
    const id = Identity.fromSeed(Buffer.alloc(32));
    const conf = writeConfig("v1.conf", `{\n  PrivateKey: ${id.privateKeyHex}\n}\n`);
    const [a, s, p] = await Promise.all([
      planetd(["-useconffile", conf, "-address"]),
      planetd(["subnet", "--config", conf]),
      planetd(["publickey", `--config=${conf}`]),
    ]);
    expect(a).toEqual({ code: 0, stdout: "202:24ae:c219:8a4a:de94:eae2:b97e:ac87\n", stderr: "" });
    expect(s).toEqual({ code: 0, stdout: "302:24ae:c219:8a4a::/64\n", stderr: "" });
    expect(p.stdout).toBe("3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29\n");
  });

  it.skipIf(!hasYggdrasil)(
    "prints what yggdrasil -address/-subnet print, for 20 random keys",
    async () => {
      const files = Array.from({ length: 20 }, (_, i) =>
        writeConfig(`rand${i}.conf`, JSON.stringify({ PrivateKey: Identity.generate().privateKeyHex })),
      );
      const jobs = files.flatMap((f) => [
        () => planetd(["-useconffile", f, "-address"]),
        () => exec("yggdrasil", ["-useconffile", f, "-address"]),
        () => planetd(["subnet", "--config", f]),
        () => exec("yggdrasil", ["-useconffile", f, "-subnet"]),
      ]);
      const results = await pool(jobs, 4);
      const addresses = new Set<string>();
      for (let i = 0; i < files.length; i++) {
        const [pa, ya, ps, ys] = results.slice(4 * i, 4 * i + 4) as [Result, Result, Result, Result];
        for (const r of [pa, ya, ps, ys]) expect(r.code).toBe(0);
        expect(pa.stdout).toMatch(/^2[0-9a-f]{2}:[0-9a-f:]+\n$/);
        expect(pa.stdout).toBe(ya.stdout);
        expect(ps.stdout).toMatch(/^3[0-9a-f]{2}:.*::\/64\n$/);
        expect(ps.stdout).toBe(ys.stdout);
        addresses.add(pa.stdout);
      }
      expect(addresses.size).toBe(20);
    },
    60_000,
  );

  it("reads the config from stdin with -useconf", async () => {
    const id = Identity.generate();
    const r = await planetd(["-useconf", "-address"], {
      input: JSON.stringify({ PrivateKey: id.privateKeyHex }),
    });
    expect(r).toEqual({ code: 0, stdout: `${formatIPv6(id.address)}\n`, stderr: "" });
  });

  it("uses the state directory's config when none is given, and says so when there is none", async () => {
    const state = join(dir, "state-a");
    const missing = await planetd(["address"], { env: { PLANETD_STATE_DIR: state } });
    expectOneLineRefusal(missing, /^planetd: address needs a config .*planetd\.conf/);
    const id = Identity.generate();
    mkdirSync(state);
    writeFileSync(join(state, "planetd.conf"), JSON.stringify({ PrivateKey: id.privateKeyHex }));
    const r = await planetd(["subnet"], { env: { PLANETD_STATE_DIR: state } });
    expect(r).toEqual({ code: 0, stdout: `${formatSubnet(id.subnet)}\n`, stderr: "" });
  });

  it("prefers /etc/planetd/planetd.conf (here $PLANETD_SYSTEM_CONFIG) to the state directory's", async () => {
    const state = join(dir, "state-etc");
    mkdirSync(state);
    const stateId = Identity.generate();
    writeFileSync(join(state, "planetd.conf"), JSON.stringify({ PrivateKey: stateId.privateKeyHex }));
    const etcId = Identity.generate();
    const etc = writeConfig("etc-planetd.conf", JSON.stringify({ PrivateKey: etcId.privateKeyHex }));
    const env = { PLANETD_STATE_DIR: state, PLANETD_SYSTEM_CONFIG: etc };
    expect(await planetd(["address"], { env })).toEqual({
      code: 0,
      stdout: `${formatIPv6(etcId.address)}\n`,
      stderr: "",
    });
    // --config still wins, and without the system file the state directory's config is back.
    const given = writeConfig("given.conf", JSON.stringify({ PrivateKey: stateId.privateKeyHex }));
    expect((await planetd(["address", "--config", given], { env })).stdout).toBe(
      `${formatIPv6(stateId.address)}\n`,
    );
    const noEtc = { ...env, PLANETD_SYSTEM_CONFIG: join(dir, "absent-etc.conf") };
    expect((await planetd(["address"], { env: noEtc })).stdout).toBe(`${formatIPv6(stateId.address)}\n`);
    expect(COMMAND_HELP.run).toContain("/etc/planetd/planetd.conf when it exists");
  });
});

describe("genconf and normaliseconf", () => {
  it("genconf > a.conf is read back by planetd and by yggdrasil with the same address", async () => {
    for (const args of [["genconf"], ["-genconf", "-json"]]) {
      const gen = await planetd(args);
      expect(gen.code).toBe(0);
      expect(gen.stderr).toBe("");
      const conf = writeConfig(`gen-${args.length}.conf`, gen.stdout);
      const ours = await planetd(["-useconffile", conf, "-address"]);
      expect(ours.code).toBe(0);
      expect(ours.stderr).toBe("");
      expect(ours.stdout).toMatch(/^2[0-9a-f]{2}:/);
      const key = (Hjson.parse(gen.stdout) as { PrivateKey: string }).PrivateKey;
      expect(ours.stdout).toBe(`${formatIPv6(Identity.fromPrivateKeyHex(key).address)}\n`);
      if (hasYggdrasil) {
        const theirs = await exec("yggdrasil", ["-useconffile", conf, "-address"]);
        expect(theirs).toEqual({ code: 0, stdout: ours.stdout, stderr: "" });
      }
    }
  });

  it("two genconf runs give two different keys", async () => {
    const [a, b] = await Promise.all([planetd(["genconf", "--json"]), planetd(["genconf", "--json"])]);
    expect(JSON.parse(a.stdout).PrivateKey).not.toBe(JSON.parse(b.stdout).PrivateKey);
  });

  it.skipIf(!hasYggdrasil)("loads a yggdrasil -genconf config unchanged, with no warnings", async () => {
    const text = execFileSync("yggdrasil", ["-genconf"], { encoding: "utf8", timeout: 5000 });
    const conf = writeConfig("ygg.conf", text);
    const [ours, theirs, pub] = await Promise.all([
      planetd(["-useconffile", conf, "-address"]),
      exec("yggdrasil", ["-useconffile", conf, "-address"]),
      planetd(["-useconffile", conf, "-publickey"]),
    ]);
    expect(ours).toEqual({ code: 0, stdout: theirs.stdout, stderr: "" });
    expect(pub.stdout).toBe(`${(Hjson.parse(text) as { PublicKey: string }).PublicKey}\n`);
    const norm = await planetd(["-normaliseconf", "-json", "-useconffile", conf]);
    expect(norm.stderr).toBe("");
    const back = JSON.parse(norm.stdout) as Record<string, unknown>;
    const original = Hjson.parse(text) as Record<string, unknown>;
    for (const key of Object.keys(original)) expect(back[key]).toEqual(original[key]);
  });

  it("normaliseconf fills the defaults of a partial config read from stdin", async () => {
    const id = Identity.generate();
    const r = await planetd(["normaliseconf", "--stdin", "--json"], {
      input: `{\n  PrivateKey: ${id.privateKeyHex}\n  Peers: ["tls://192.0.2.1:443"]\n}\n`,
    });
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(out.PrivateKey).toBe(id.privateKeyHex);
    expect(out.PublicKey).toBe(id.publicKey.toString("hex"));
    expect(out.Peers).toEqual(["tls://192.0.2.1:443"]);
    expect(out.IfMTU).toBe(65535);
    expect(out.Planetd).toEqual({ MetricsListen: "none", LogLevel: "info" });
  });
});

describe("bad input: exit code 2 and one line", () => {
  const key = Identity.fromSeed(Buffer.alloc(32, 9)).privateKeyHex;
  it("missing file", async () => {
    const path = join(dir, "absent.conf");
    expectOneLineRefusal(
      await planetd(["-useconffile", path, "-address"]),
      /^config: cannot read .*absent\.conf: no such file$/m,
    );
  });
  it("broken HJSON", async () => {
    const conf = writeConfig("broken.conf", "{\n  PrivateKey: abc\n  Peers: [\n}\n");
    expectOneLineRefusal(
      await planetd(["address", "--config", conf]),
      /^config: .*broken\.conf is not valid HJSON or JSON: .*line \d+/,
    );
  });
  it("a 127-hex-character key", async () => {
    const conf = writeConfig("short.conf", JSON.stringify({ PrivateKey: key.slice(1) }));
    expectOneLineRefusal(
      await planetd(["address", "--config", conf]),
      /^config: PrivateKey has 127 hex characters \(expected 128/,
    );
  });
  it("a key whose halves disagree", async () => {
    const bad = key.slice(0, 64) + Identity.generate().publicKey.toString("hex");
    const conf = writeConfig("halves.conf", JSON.stringify({ PrivateKey: bad }));
    expectOneLineRefusal(
      await planetd(["-useconffile", conf, "-subnet"]),
      /^config: PrivateKey public half does not match its seed/,
    );
  });
  it('IfMTU: "big"', async () => {
    const conf = writeConfig("mtu.conf", `{\n  PrivateKey: ${key}\n  IfMTU: "big"\n}\n`);
    expectOneLineRefusal(
      await planetd(["address", "--config", conf]),
      /^config: IfMTU "big" is not a number \(expected/,
    );
  });
  it('Peers: ["tcp//x"]', async () => {
    const conf = writeConfig("peers.conf", JSON.stringify({ PrivateKey: key, Peers: ["tcp//x"] }));
    expectOneLineRefusal(
      await planetd(["address", "--config", conf]),
      /^config: Peers\[0\] "tcp\/\/x" is not a URI \(expected tcp:\/\/host:port\)\n$/,
    );
  });
  it("three problems: all three, one line each, exit 2 (run and normaliseconf too)", async () => {
    const conf = writeConfig(
      "three.conf",
      JSON.stringify({ PrivateKey: key, Peers: ["tcp//x"], IfMTU: "big", NodeInfoPrivacy: "yes" }),
    );
    const expected = [
      'config: Peers[0] "tcp//x" is not a URI (expected tcp://host:port)',
      'config: IfMTU "big" is not a number (expected a whole number, e.g. 65535)',
      'config: NodeInfoPrivacy "yes" is a string (expected true or false)',
    ];
    for (const argv of [
      ["address", "--config", conf],
      ["run", "--config", conf],
      ["-normaliseconf", "-useconffile", conf],
    ]) {
      expect({ argv, ...(await planetd(argv)) }).toEqual({
        argv,
        code: 2,
        stdout: "",
        stderr: `${expected.join("\n")}\n`,
      });
    }
  });
  it("an unknown key is a warning only", async () => {
    const conf = writeConfig("unknown.conf", JSON.stringify({ PrivateKey: key, Colour: "blue" }));
    const r = await planetd(["address", "--config", conf]);
    expect(r.code).toBe(0);
    expect(r.stdout).toBe(`${formatIPv6(Identity.fromPrivateKeyHex(key).address)}\n`);
    expect(r.stderr).toBe("planetd: warning: config: unknown key Colour ignored\n");
  });
  it("unknown flags, missing values and bad log levels", async () => {
    const conf = writeConfig("ok.conf", JSON.stringify({ PrivateKey: key }));
    expectOneLineRefusal(await planetd(["-frobnicate"]), /^planetd: unknown flag -frobnicate/);
    expectOneLineRefusal(await planetd(["address", "-useconffile"]), /^planetd: -useconffile needs a value/);
    expectOneLineRefusal(
      await planetd(["run", "--config", conf, "--log-level", "loud"]),
      /^planetd: log level "loud"/,
    );
    expectOneLineRefusal(await planetd(["genconf", "address"]), /^planetd: unexpected argument "address"/);
    expectOneLineRefusal(await planetd(["--autoconf", "--config", conf]), /^planetd: give only one of/);
  });
});

describe("argument spellings", () => {
  it("Yggdrasil's single-dash flags and planetd's subcommands mean the same", () => {
    expect(parseArgs(["-useconffile", "a.conf", "-address"])).toEqual(
      parseArgs(["address", "--config", "a.conf"]),
    );
    expect(parseArgs(["--useconffile=a.conf", "-subnet"])).toEqual(parseArgs(["subnet", "--config=a.conf"]));
    expect(parseArgs(["-genconf", "-json"])).toEqual(parseArgs(["genconf", "--json"]));
    expect(parseArgs(["-useconf", "-normaliseconf"])).toEqual(parseArgs(["normaliseconf", "--stdin"]));
    expect(parseArgs(["-loglevel", "debug", "-logto", "/tmp/x", "-autoconf"])).toEqual(
      parseArgs(["run", "--autoconf", "--log-level=debug", "--logto", "/tmp/x"]),
    );
    expect(parseArgs(["-useconffile", "a.conf"]).command).toBe("run");
    expect(parseArgs([]).command).toBeUndefined();
    expect(parseArgs(["-version"]).command).toBe("version");
  });

  it("--version and --help", async () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { version: string };
    expect(await planetd(["--version"])).toEqual({
      code: 0,
      stdout: `Build name: planetd\nBuild version: ${pkg.version}\n`,
      stderr: "",
    });
    const help = await planetd(["--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain("-useconffile");
    expect(await planetd(["run", "--help"])).toEqual({ code: 0, stdout: COMMAND_HELP.run, stderr: "" });
  });
});

/** runCli in this process: help needs no child process, and 7 commands × 6 spellings would be slow. */
async function cliInProcess(argv: string[]): Promise<Result> {
  const { PassThrough } = await import("node:stream");
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const out: string[] = [];
  const err: string[] = [];
  stdout.on("data", (c: Buffer) => out.push(c.toString()));
  stderr.on("data", (c: Buffer) => err.push(c.toString()));
  const stdin = new PassThrough();
  stdin.end();
  const code = await runCli(argv, { stdout, stderr, stdin });
  return { code, stdout: out.join(""), stderr: err.join("") };
}

describe("help for every command", () => {
  const commands = ["run", "genconf", "normaliseconf", "address", "subnet", "publickey", "version"] as const;

  it("<cmd> --help, -h, help <cmd>, -<cmd> -help print the command's usage on stdout, exit 0", async () => {
    for (const command of commands) {
      const text = COMMAND_HELP[command];
      expect(text).toMatch(new RegExp(`^Usage: planetd (help|${command}|-${command})\\b`));
      for (const argv of [
        [command, "--help"],
        [command, "-h"],
        ["help", command],
        ["--help", command],
        // Yggdrasil's flag spelling; there is no -run (it runs when given a config)
        command === "run" ? ["run", "-help"] : [`-${command}`, "-help"],
        // the rest of the line need not be valid yet: help answers first
        [command, "--config", "/nonexistent.conf", "--log-level", "loud", "--help"],
      ]) {
        expect({ argv, ...(await cliInProcess(argv)) }).toEqual({ argv, code: 0, stdout: text, stderr: "" });
      }
    }
    expect(COMMAND_HELP.run).toContain("SIGHUP re-reads the config file");
    expect(COMMAND_HELP.genconf).toContain("planetd genconf > /etc/planetd/planetd.conf");
  });

  it("help alone and --help alone print the overview; help for an unknown command is refused", async () => {
    for (const argv of [["help"], ["--help"], ["-h"], []]) {
      expect(await cliInProcess(argv)).toEqual({ code: 0, stdout: HELP, stderr: "" });
    }
    expect(HELP).toContain("planetd <command> --help");
    expect(await cliInProcess(["help", "start"])).toEqual({
      code: 2,
      stdout: "",
      stderr:
        'planetd: no command "start" (commands: run, genconf, normaliseconf, address, subnet, publickey, version)\n',
    });
  });
});

describe("default config in the state directory", () => {
  it("is generated once (0600 in a 0700 directory) and then reused", () => {
    const path = join(dir, "state-b", "sub", "planetd.conf");
    const first = loadOrCreateConfigFile(path);
    expect(first.created).toBe(true);
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, "state-b", "sub")).mode & 0o777).toBe(0o700);
    const second = loadOrCreateConfigFile(path);
    expect(second.created).toBe(false);
    expect(second.warnings).toEqual([]);
    expect(second.config).toEqual(first.config);
  });
});

describe("planetd run", () => {
  it("logs its address, reloads on SIGHUP, stops with exit 0 on SIGTERM", async () => {
    const state = join(dir, "state-run");
    mkdirSync(state);
    const id = Identity.generate();
    writeFileSync(
      join(state, "planetd.conf"),
      JSON.stringify({
        PrivateKey: id.privateKeyHex,
        IfName: "none",
        AdminListen: "none",
        MulticastInterfaces: [],
        Listen: [],
      }),
    );
    const child = spawn(BIN, ["run"], {
      env: { ...process.env, ...noSystemConfig, PLANETD_STATE_DIR: state },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    const waiters: { pattern: RegExp; resolve: () => void }[] = [];
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
      for (const w of waiters) if (w.pattern.test(stdout)) w.resolve();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    const exited = new Promise<number | null>((done) => child.on("exit", (code) => done(code)));
    const waitFor = (pattern: RegExp) =>
      Promise.race([
        new Promise<void>((done) => {
          if (pattern.test(stdout)) done();
          else waiters.push({ pattern, resolve: done });
        }),
        exited.then((code) => {
          throw new Error(`planetd exited (${code}) before logging ${pattern}: ${stdout}${stderr}`);
        }),
        new Promise<void>((_, fail) =>
          setTimeout(() => fail(new Error(`timeout waiting for ${pattern}: ${stdout}`)), 15_000),
        ),
      ]);
    try {
      await waitFor(new RegExp(`Your IPv6 address is ${formatIPv6(id.address)}`));
      await waitFor(/planetd started/);
      child.kill("SIGHUP");
      await waitFor(/SIGHUP: config reloaded: nothing changed/);
      // A config with two problems is refused in one log line naming both.
      writeFileSync(
        join(state, "planetd.conf"),
        JSON.stringify({ PrivateKey: id.privateKeyHex, IfName: "none", Peers: ["tcp//x"], IfMTU: "big" }),
      );
      child.kill("SIGHUP");
      await waitFor(
        /reload refused, the running config stays: config: Peers\[0\] [^\n]*; config: IfMTU \S+ is not a number/,
      );
      expect(child.exitCode).toBeNull();
      child.kill("SIGTERM");
      expect(await exited).toBe(0);
      const lines = stdout
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as { msg: string; subnet?: string; level: unknown; time: unknown });
      expect(lines.find((l) => l.subnet)?.subnet).toBe(formatSubnet(id.subnet));
      expect(new Set(lines.map((l) => l.level))).toEqual(new Set(["info", "error"]));
      for (const l of lines) expect(l.time).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
      expect(stderr).toBe("");
    } finally {
      if (child.exitCode === null) child.kill("SIGKILL");
    }
  });
});

describe("startup failures: exit 1, one line on stderr naming what failed, no stack", () => {
  let held: net.Server;
  let heldPort = 0;
  beforeAll(async () => {
    held = net.createServer();
    await new Promise<void>((r) => held.listen(0, "127.0.0.1", r));
    heldPort = (held.address() as net.AddressInfo).port;
  });
  afterAll(() => held.close());

  const runWith = (name: string, settings: Record<string, unknown>, args: string[] = []) => {
    const conf = writeConfig(
      name,
      JSON.stringify({
        PrivateKey: Identity.generate().privateKeyHex,
        IfName: "none",
        AdminListen: "none",
        MulticastInterfaces: [],
        Listen: [],
        ...settings,
      }),
    );
    return planetd(["run", "--config", conf, ...args]);
  };

  function expectStartupFailure(r: Result, pattern: RegExp): void {
    expect(r.code).toBe(1);
    expect(r.stderr.endsWith("\n")).toBe(true);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stderr).toMatch(pattern);
    expect(r.stderr).not.toMatch(/\bat .*\(|\bat \/|node:internal/);
    expect(r.stdout).not.toContain('"stack"');
    expect(r.stdout).toContain("startup failed: ");
  }

  it("a Listen port already bound, and a Listen address not on this machine (tcp and udp)", async () => {
    const [inUse, notHere, udpNotHere] = await Promise.all([
      runWith("listen-inuse.conf", { Listen: [`tcp://127.0.0.1:${heldPort}`] }),
      // 192.0.2.1 (TEST-NET-1) is on no interface: the bind fails locally, nothing is sent.
      runWith("listen-absent.conf", { Listen: ["tcp://192.0.2.1:1"] }),
      runWith("listen-udp.conf", { Listen: ["udp://192.0.2.1:1"] }),
    ]);
    expectStartupFailure(
      inUse,
      new RegExp(
        `^planetd: Listen "tcp://127\\.0\\.0\\.1:${heldPort}": cannot bind: address already in use \\(EADDRINUSE\\)\\n$`,
      ),
    );
    expectStartupFailure(
      notHere,
      /^planetd: Listen "tcp:\/\/192\.0\.2\.1:1": cannot bind: address not available \(EADDRNOTAVAIL\)\n$/,
    );
    expectStartupFailure(
      udpNotHere,
      /^planetd: Listen "udp:\/\/192\.0\.2\.1:1": cannot bind: address not available \(EADDRNOTAVAIL\)\n$/,
    );
  });

  it("an AdminListen or MetricsListen port already bound", async () => {
    const [admin, metrics] = await Promise.all([
      runWith("admin-inuse.conf", { AdminListen: `tcp://127.0.0.1:${heldPort}` }),
      runWith("metrics-inuse.conf", { Planetd: { MetricsListen: `127.0.0.1:${heldPort}` } }),
    ]);
    expectStartupFailure(
      admin,
      new RegExp(
        `^planetd: admin: AdminListen "tcp://127\\.0\\.0\\.1:${heldPort}": cannot bind: address already in use \\(EADDRINUSE\\)\\n$`,
      ),
    );
    expectStartupFailure(
      metrics,
      new RegExp(
        `^planetd: metrics: MetricsListen "127\\.0\\.0\\.1:${heldPort}": cannot bind: address already in use \\(EADDRINUSE\\)\\n$`,
      ),
    );
  });

  it("logs the stack only at log level debug; stderr stays one line", async () => {
    const r = await runWith("listen-debug.conf", { Listen: [`tcp://127.0.0.1:${heldPort}`] }, [
      "--log-level",
      "debug",
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    expect(r.stdout).toContain('"stack"');
  });
});
