import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { COMMANDS } from "../src/admin/commands.js";
import { COMMAND_HELP } from "../src/admin/ctl-help.js";
import { formatBytes, formatUptime } from "../src/admin/format.js";
import { connectError, defaultEndpoint, parseArgs, run } from "../src/admin/planetctl.js";
import { type AdminServer, startAdminServer } from "../src/admin/server.js";
import { FakeView, keyA, keyB, protoPair } from "./admin-fake.js";

const quiet = { info: () => {}, warn: () => {}, debug: () => {} };
const dir = mkdtempSync(join(tmpdir(), "pd-ctl-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function ctl(...argv: string[]) {
  return ctlWithEnv({}, ...argv);
}

async function ctlWithEnv(env: Record<string, string | undefined>, ...argv: string[]) {
  let stdout = "";
  let stderr = "";
  const code = await run(argv, {
    stdout: (t) => {
      stdout += t;
    },
    stderr: (t) => {
      stderr += t;
    },
    env,
    timeoutMs: 8000,
  });
  return { code, stdout, stderr };
}

describe("planetctl argument parsing", () => {
  it("takes -flag=value, --flag value and key=value arguments", () => {
    expect(parseArgs(["-endpoint=tcp://127.0.0.1:1", "-json", "getNodeInfo", "key=ab"])).toMatchObject({
      endpoint: "tcp://127.0.0.1:1",
      json: true,
      command: "getNodeInfo",
      args: { key: "ab" },
    });
    expect(parseArgs(["--endpoint", "unix:///x", "--json=false", "getSelf"])).toMatchObject({
      endpoint: "unix:///x",
      json: false,
      command: "getSelf",
    });
    expect(() => parseArgs(["-bogus", "getSelf"])).toThrow(/unknown flag -bogus/);
    expect(() => parseArgs(["getNodeInfo", "abc"])).toThrow(/"abc" is not key=value/);
  });

  it("prefers $PLANETD_ADMIN for the default endpoint", () => {
    expect(defaultEndpoint({ PLANETD_ADMIN: "tcp://127.0.0.1:9" })).toBe("tcp://127.0.0.1:9");
    expect(defaultEndpoint({})).toMatch(/^unix:\/\/\//);
  });

  it("formats uptimes like Go durations and byte counts with units", () => {
    expect(formatUptime(8.07)).toBe("8s");
    expect(formatUptime(4000.5)).toBe("1h6m40s");
    expect(formatUptime(90)).toBe("1m30s");
    expect(formatBytes(698)).toBe("698 B");
    expect(formatBytes(5_000_000)).toBe("4.8 MiB");
  });
});

describe("planetctl help", () => {
  it("has a usage text for every command the admin socket serves, planetd's reload included", () => {
    expect(COMMAND_HELP.map((c) => c.name.toLowerCase()).sort()).toEqual(Object.keys(COMMANDS).sort());
  });

  it("help <command>, <command> --help and -help <command> print it on stdout without a daemon", async () => {
    // No endpoint exists here: any attempt to connect would fail with exit code 1.
    for (const { name, args } of COMMAND_HELP) {
      const usage = `Usage: planetctl [options] ${name}${args ? ` ${args}` : ""}\n`;
      for (const argv of [
        ["help", name],
        [name, "--help"],
        [name.toLowerCase(), "-h"],
        ["-help", name],
        ["-endpoint=unix:///nonexistent.sock", name, "key=x", "-help"],
      ]) {
        const r = await ctl(...argv);
        expect({ argv, code: r.code, stderr: r.stderr }).toEqual({ argv, code: 0, stderr: "" });
        expect(r.stdout.startsWith(usage)).toBe(true);
      }
    }
    const reload = await ctl("help", "reload");
    expect(reload.stdout).toMatch(/re-reads the config file/);
    const addPeer = await ctl("addPeer", "--help");
    expect(addPeer.stdout).toMatch(
      /uri=URI +tcp:\/\/host:port, tls:\/\/host:port, udp:\/\/host:port or unix:\/\/\/path/,
    );
  });

  it("lists every command in -help and plain help; refuses help for a command that does not exist", async () => {
    for (const argv of [["-help"], ["help"], []]) {
      const r = await ctl(...argv);
      expect(r.code).toBe(0);
      for (const { name } of COMMAND_HELP) expect(r.stdout).toMatch(new RegExp(`^  ${name}\\b`, "m"));
    }
    expect(await ctl("help", "getPeer")).toEqual({
      code: 1,
      stdout: "",
      stderr: 'planetctl: no command "getPeer" (see planetctl -help for the list)\n',
    });
  });
});

describe("planetctl against planetd's admin socket", () => {
  let server: AdminServer;
  beforeAll(async () => {
    const pair = protoPair({}, { nodeInfo: { name: "nodeB" } });
    const view = new FakeView(keyA, pair.a);
    view.peerList = [
      {
        key: keyB,
        port: 1,
        priority: 2,
        coords: [1],
        remote: "tcp://10.0.0.2:1234",
        bytesRecvd: 2048,
        bytesSent: 10,
        uptimeSeconds: 61,
      },
    ];
    server = await startAdminServer(`unix://${join(dir, "a.sock")}`, view, quiet, { remoteTimeoutMs: 300 });
  });
  afterAll(() => server.close());

  it("prints human tables", async () => {
    const self = await ctl(`-endpoint=${server.address}`, "getSelf");
    expect(self.code).toBe(0);
    expect(self.stdout).toMatch(/^Build name: +planetd$/m);
    expect(self.stdout).toMatch(/^IPv6 address: +202:24ae:c219:8a4a:de94:eae2:b97e:ac87$/m);
    expect(self.stdout).toMatch(/^Coordinates: +\[1 1\]$/m);
    const peers = await ctl(`-endpoint=${server.address}`, "getpeers");
    const lines = peers.stdout.trimEnd().split("\n");
    expect(lines[0].split(/\s{2,}/)).toEqual([
      "Port",
      "Public Key",
      "IP Address",
      "Uptime",
      "RX",
      "TX",
      "Pr",
      "URI",
    ]);
    expect(lines[1].split(/\s{2,}/)).toEqual([
      "1",
      keyB.toString("hex"),
      "201:192a:a745:c066:ac1a:fe1d:3bb4:5d59",
      "1m1s",
      "2.0 KiB",
      "10 B",
      "2",
      "tcp://10.0.0.2:1234",
    ]);
    const list = await ctl(`-endpoint=${server.address}`, "list");
    expect(list.stdout).toMatch(
      /^getnodeinfo +key=\.\.\. +Request nodeinfo from a remote node by its public key$/m,
    );
    const info = await ctl("--endpoint", server.address, "getNodeInfo", `key=${keyB.toString("hex")}`);
    expect(JSON.parse(info.stdout).name).toBe("nodeB");
    const added = await ctl(`-endpoint=${server.address}`, "addPeer", "uri=tcp://192.0.2.1:1");
    expect(added).toEqual({ code: 0, stdout: "added peer tcp://192.0.2.1:1\n", stderr: "" });
  });

  it("finds the endpoint like yggdrasilctl: -useconffile's AdminListen, $PLANETD_ADMIN, the default configs", async () => {
    const conf = (name: string, body: string) => {
      const path = join(dir, name);
      writeFileSync(path, body);
      return path;
    };
    const good = conf(
      "good.conf",
      `{\n  # HJSON, as genconf writes it\n  AdminListen: "${server.address}"\n}\n`,
    );
    const lower = conf("lower.conf", JSON.stringify({ adminlisten: server.address }));
    const off = conf("off.conf", JSON.stringify({ AdminListen: "none" }));
    const elsewhere = `unix://${join(dir, "elsewhere.sock")}`;
    const absent = join(dir, "absent.conf");
    const noConfigs = { PLANETD_SYSTEM_CONFIG: absent, PLANETD_STATE_DIR: join(dir, "no-state") };
    for (const argv of [
      ["-useconffile", good, "getTun"],
      ["--config", good, "getTun"],
      [`-useconffile=${lower}`, "getTun"],
    ]) {
      // -useconffile wins over $PLANETD_ADMIN, as an explicit flag should.
      const r = await ctlWithEnv({ ...noConfigs, PLANETD_ADMIN: elsewhere }, ...argv);
      expect({ argv, ...r }).toMatchObject({ argv, code: 0, stderr: "" });
    }
    // Without flags: $PLANETD_ADMIN, then /etc/planetd/planetd.conf, then the state directory's config.
    expect(defaultEndpoint({ ...noConfigs, PLANETD_ADMIN: elsewhere })).toBe(elsewhere);
    expect(defaultEndpoint({ PLANETD_SYSTEM_CONFIG: good, PLANETD_ADMIN: elsewhere })).toBe(elsewhere);
    expect(defaultEndpoint({ PLANETD_SYSTEM_CONFIG: good, PLANETD_STATE_DIR: dir })).toBe(server.address);
    mkdirSync(join(dir, "state"), { recursive: true });
    writeFileSync(join(dir, "state", "planetd.conf"), readFileSync(good));
    expect(defaultEndpoint({ PLANETD_SYSTEM_CONFIG: absent, PLANETD_STATE_DIR: join(dir, "state") })).toBe(
      server.address,
    );
    const viaState = await ctlWithEnv(
      { PLANETD_SYSTEM_CONFIG: absent, PLANETD_STATE_DIR: join(dir, "state") },
      "getTun",
    );
    expect(viaState).toMatchObject({ code: 0, stderr: "" });
    // A default config with the socket off or unreadable is passed over; an explicit one is an error.
    expect(defaultEndpoint({ PLANETD_SYSTEM_CONFIG: off, PLANETD_STATE_DIR: join(dir, "state") })).toBe(
      server.address,
    );
    expect(defaultEndpoint(noConfigs)).toMatch(/^unix:\/\/\//);
    expect(await ctlWithEnv(noConfigs, "-useconffile", off, "getTun")).toEqual({
      code: 1,
      stdout: "",
      stderr: `planetctl: ${off}: AdminListen is "none": the admin socket is off (set it and reload, or give -endpoint=URI)\n`,
    });
    expect(await ctlWithEnv(noConfigs, "-useconffile", absent, "getTun")).toEqual({
      code: 1,
      stdout: "",
      stderr: `planetctl: ${absent}: no such file (give -useconffile FILE or -endpoint=URI)\n`,
    });
    expect((await ctlWithEnv(noConfigs, "-useconffile")).stderr).toBe(
      "planetctl: flag needs an argument: -useconffile\n",
    );
  });

  it("prints raw JSON with -json", async () => {
    const { code, stdout } = await ctl(`-endpoint=${server.address}`, "-json", "getTun");
    expect(code).toBe(0);
    expect(JSON.parse(stdout)).toEqual({ enabled: true, name: "pd0", mtu: 53049 });
  });

  it("reports the daemon's errors with exit code 1", async () => {
    expect(await ctl(`-endpoint=${server.address}`, "nosuch")).toEqual({
      code: 1,
      stdout: "",
      stderr: "planetctl: nosuch: Unknown action 'nosuch', try 'list' for help\n",
    });
    const timeout = await ctl(`-endpoint=${server.address}`, "getNodeInfo", `key=${"00".repeat(32)}`);
    expect(timeout.stderr).toBe("planetctl: getNodeInfo: Timed out waiting for response\n");
  });

  it("explains connection failures", async () => {
    const missing = await ctl(`-endpoint=unix://${join(dir, "missing.sock")}`, "getSelf");
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe(
      `planetctl: cannot connect to unix://${join(dir, "missing.sock")}: no such file — is planetd running? (try -endpoint=…, -useconffile FILE or set PLANETD_ADMIN)\n`,
    );
    const probe = net.createServer();
    await new Promise<void>((r) => probe.listen(0, "127.0.0.1", r));
    const port = (probe.address() as net.AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    const refused = await ctl(`-endpoint=tcp://127.0.0.1:${port}`, "getSelf");
    expect(refused.stderr).toMatch(/connection refused — is planetd running\?/);
    const denied = Object.assign(new Error("connect EACCES"), { code: "EACCES" });
    expect(connectError("unix:///run/planetd/planetd.sock", denied).message).toBe(
      "cannot connect to unix:///run/planetd/planetd.sock: permission denied (run as root or join the socket's group)",
    );
    const bad = await ctl("-endpoint=tcp//x", "getSelf");
    expect(bad.stderr).toBe(
      'planetctl: endpoint "tcp//x" is not unix:///path, tcp://host:port or host:port\n',
    );
  });
});

const haveYggdrasil = (() => {
  try {
    execFileSync("yggdrasil", ["-version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!haveYggdrasil)("planetctl against Debian's yggdrasil 0.4.7", () => {
  let child: ChildProcess;
  let endpoint: string;
  let publicKey: string;
  beforeAll(async () => {
    const generated = JSON.parse(execFileSync("yggdrasil", ["-genconf", "-json"], { encoding: "utf8" }));
    publicKey = generated.PublicKey ?? generated.PrivateKey.slice(64);
    const sock = join(dir, `pd-admin-${process.pid}.sock`);
    endpoint = `unix://${sock}`;
    const config = {
      PrivateKey: generated.PrivateKey,
      AdminListen: endpoint,
      IfName: "none",
      MulticastInterfaces: [],
      Listen: [],
      NodeInfo: { name: "debian" },
    };
    const file = join(dir, "ygg.json");
    writeFileSync(file, JSON.stringify(config));
    child = spawn("yggdrasil", ["-useconffile", file], { stdio: ["ignore", "pipe", "pipe"] });
    // Kept whole, so that a daemon that stops answering says what it printed and how it ended.
    let log = "";
    let ended = "";
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer) => {
        log += d;
        if (log.includes("admin socket listening")) resolve();
      };
      child.stdout?.on("data", onData);
      child.stderr?.on("data", onData);
      child.once("exit", (code, signal) => {
        ended = `yggdrasil exited (code ${code}, signal ${signal})`;
        reject(new Error(`${ended}: ${log}`));
      });
    });
    // 0.4.7 listens before it registers its handlers (it answers "Unknown action" meanwhile), so
    // wait, bounded, until a real command succeeds.
    const deadline = Date.now() + 10_000;
    for (;;) {
      const probe = await ctl(`-endpoint=${endpoint}`, "-json", "getSelf");
      if (probe.code === 0) break;
      if (Date.now() > deadline || ended) {
        throw new Error(
          `yggdrasil never answered getSelf: ${probe.stderr} ${ended || "(still running)"}; its log: ${log}`,
        );
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  });
  afterAll(async () => {
    if (child && child.exitCode === null) {
      const exited = new Promise((r) => child.once("exit", r));
      child.kill("SIGTERM");
      await exited;
    }
  });

  it("reads every table from the real daemon", async () => {
    const self = await ctl(`-endpoint=${endpoint}`, "getSelf");
    expect({ code: self.code, stderr: self.stderr }).toEqual({ code: 0, stderr: "" });
    expect(self.stdout).toMatch(new RegExp(`^Public key: +${publicKey}$`, "m"));
    expect(self.stdout).toMatch(/^Coordinates: +\[\]$/m);
    for (const command of [
      "getPeers",
      "getDHT",
      "getPaths",
      "getSessions",
      "getTun",
      "getMulticastInterfaces",
      "list",
    ]) {
      const result = await ctl(`-endpoint=${endpoint}`, command);
      expect(result.code, command).toBe(0);
      expect(result.stderr, command).toBe("");
    }
    const json = await ctl(`-endpoint=${endpoint}`, "-json", "list");
    expect(JSON.parse(json.stdout).list).toHaveLength(14);
  });

  it("gets nodeinfo and debug answers, and steers peers", async () => {
    const info = await ctl(`-endpoint=${endpoint}`, "getNodeInfo", `key=${publicKey}`);
    expect(JSON.parse(info.stdout)).toMatchObject({ name: "debian", buildplatform: "linux" });
    const dbg = await ctl(`-endpoint=${endpoint}`, "-json", "debug_remoteGetSelf", `key=${publicKey}`);
    expect(Object.values(JSON.parse(dbg.stdout))[0]).toEqual({ coords: "[]", key: publicKey });
    expect((await ctl(`-endpoint=${endpoint}`, "addPeer", "uri=tcp://127.0.0.1:1")).code).toBe(0);
    const again = await ctl(`-endpoint=${endpoint}`, "addPeer", "uri=tcp://127.0.0.1:1");
    expect(again).toMatchObject({ code: 1, stderr: "planetctl: addPeer: peer already configured\n" });
    expect((await ctl(`-endpoint=${endpoint}`, "removePeer", "uri=tcp://127.0.0.1:1")).code).toBe(0);
  });
});
