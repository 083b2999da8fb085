// planetd as operators install and run it: the npm package installed globally into a temporary
// prefix and run from PATH; the systemd unit verified; the daemon as an unprivileged user with only
// CAP_NET_ADMIN (what the unit grants) bringing its TUN up and telling systemd it is ready.
import {
  chmodSync,
  existsSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect, it } from "vitest";
import { Lab, type Netns, type Proc, describeNetns, repoRoot, run } from "./harness.js";

describeNetns("installing and running planetd as a service", () => {
  const work = mkdtempSync(join(tmpdir(), "pdsvc-"));
  afterAll(() => rmSync(work, { recursive: true, force: true }));

  it("npm pack ships only what runs; a global install runs planetd and planetctl from PATH without TypeScript", async () => {
    const pack = await run("npm", ["pack", "--pack-destination", work], 180_000);
    expect(pack.code, pack.stderr).toBe(0);
    const tgz = readdirSync(work).find((f) => f.endsWith(".tgz"));
    expect(tgz).toBeDefined();
    const list = await run("tar", ["tzf", join(work, tgz as string)]);
    const files = list.stdout.split("\n").filter(Boolean);
    const top = new Set(files.map((f) => f.replace(/^package\//, "").split("/")[0]));
    expect([...top].sort()).toEqual(
      ["README.md", "bin", "binding.gyp", "dist", "package.json", "scripts", "src"].sort(),
    );
    // Of src/ only the addon's C sources travel: the package never compiles TypeScript.
    expect(
      files.filter((f) => f.startsWith("package/src/") && !f.startsWith("package/src/tun/native/")),
    ).toEqual([]);
    expect(files).toContain("package/dist/cli/planetd.js");

    const prefix = join(work, "prefix");
    const install = await run(
      "npm",
      ["install", "-g", "--prefix", prefix, join(work, tgz as string)],
      300_000,
    );
    expect(install.code, install.stderr).toBe(0);
    const installed = join(prefix, "lib", "node_modules", "planetd");
    expect(existsSync(join(installed, "node_modules", "typescript"))).toBe(false);
    expect(existsSync(join(installed, "build", "Release", "planetd_tun.node"))).toBe(true);
    // From / and with the prefix first on PATH, as after `npm install -g`.
    const fromPath = (cmd: string) =>
      run("env", [`PATH=${join(prefix, "bin")}:${process.env.PATH}`, "sh", "-c", `cd / && ${cmd}`]);
    const version = await fromPath("planetd --version");
    expect(version.code, version.stderr).toBe(0);
    expect(version.stdout).toMatch(/Build version: \d+\.\d+\.\d+/);
    expect(version.stderr).not.toMatch(/compiling/);
    const genconf = await fromPath("planetd genconf --json");
    expect(genconf.code, genconf.stderr).toBe(0);
    expect(JSON.parse(genconf.stdout).PrivateKey).toMatch(/^[0-9a-f]{128}$/);
    const ctl = await fromPath("planetctl --help");
    expect(ctl.code, ctl.stderr).toBe(0);
    // Above the pack's and the install's own bounds (180 + 300 s), so a slow one fails with its
    // stderr rather than vitest's bare timeout.
  }, 540_000);

  it("the systemd unit passes systemd-analyze verify", async () => {
    const unit = join(repoRoot, "contrib", "systemd", "planetd.service");
    const r = await run("systemd-analyze", ["verify", unit], 60_000);
    expect(r.code, r.stdout + r.stderr).toBe(0);
    const text = readFileSync(unit, "utf8");
    for (const line of [
      "Type=notify",
      "AmbientCapabilities=CAP_NET_ADMIN",
      "NoNewPrivileges=yes",
      "ProtectSystem=strict",
      "ExecReload=/bin/kill -HUP $MAINPID",
    ])
      expect(text).toContain(line);
  });
});

describeNetns("planetd unprivileged with CAP_NET_ADMIN", () => {
  const work = mkdtempSync(join(tmpdir(), "pdsvc-"));
  let lab: Lab;
  let ns: Netns;
  beforeAll(async () => {
    lab = new Lab();
    ns = await lab.netns();
  });
  afterAll(async () => {
    await lab.cleanup();
    rmSync(work, { recursive: true, force: true });
  });

  it("as uid 65534 with only CAP_NET_ADMIN the TUN comes up with its 200::/7 address, and READY=1 reaches systemd's socket", async () => {
    // As on Debian (.ci/run makes it so in containers): opening needs no privilege, TUNSETIFF needs the capability.
    expect(statSync("/dev/net/tun").mode & 0o666, "/dev/net/tun must be mode 0666").toBe(0o666);
    chmodSync(work, 0o755); // mkdtemp makes it 0700: the daemon's user must reach its state directory
    const state = join(work, "state");
    await run("mkdir", ["-p", state]);
    chmodSync(state, 0o777);
    const notifySocket = join(work, "notify.sock");
    const received = join(work, "notify.txt");
    // systemd's side of sd_notify: a datagram socket that records what arrives (Node has no AF_UNIX datagrams).
    const listener = lab.spawn("notify", join(work, "notify.log"), "python3", [
      "-c",
      `import socket,os,sys
s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.bind(sys.argv[1]); os.chmod(sys.argv[1],0o777)
s.settimeout(60)
while True:
  m=s.recv(4096)
  open(sys.argv[2],'ab').write(m+b'\\n')`,
      notifySocket,
      received,
    ]);
    await lab.waitFor(() => existsSync(notifySocket), 10_000, "the notify socket");
    const config = join(state, "planetd.conf");
    const gen = await run(process.execPath, [join(repoRoot, "bin", "planetd"), "genconf", "--json"]);
    const conf = JSON.parse(gen.stdout);
    conf.IfName = "pdtun0";
    conf.AdminListen = "none";
    conf.MulticastInterfaces = [];
    writeFileSync(config, JSON.stringify(conf));
    chmodSync(config, 0o644);
    const daemon: Proc = lab.spawn("planetd-unprivileged", join(work, "planetd.log"), "ip", [
      "netns",
      "exec",
      ns.name,
      "env",
      `NOTIFY_SOCKET=${notifySocket}`,
      `PLANETD_STATE_DIR=${state}`,
      "setpriv",
      "--reuid=65534",
      "--regid=65534",
      "--clear-groups",
      "--inh-caps=-all,+net_admin",
      "--ambient-caps=-all,+net_admin",
      "--bounding-set=-all,+net_admin",
      // The script itself, as the unit's ExecStart runs it: its #! line is part of the install.
      join(repoRoot, "bin", "planetd"),
      "run",
      "--config",
      config,
    ]);
    const address = (
      await run(process.execPath, [join(repoRoot, "bin", "planetd"), "address", "--config", config])
    ).stdout.trim();
    await lab.waitFor(
      () => existsSync(received) && readFileSync(received, "utf8").includes("READY=1"),
      20_000,
      "READY=1 from the unprivileged daemon",
      () => !daemon.running,
    );
    const addr = await ns.ip("-6", "addr", "show", "dev", "pdtun0");
    expect(addr).toContain(`${address}/7`);
    const status = readFileSync(`/proc/${daemon.child.pid}/status`, "utf8");
    // setpriv execs the script and its #! line execs node: the daemon itself runs as 65534 with
    // CAP_NET_ADMIN (bit 12) only, and with the environment bin/planetd sets for it (idle memory).
    const uid = /^Uid:\s+(\d+)/m.exec(status)?.[1];
    const capEff = /^CapEff:\s+([0-9a-f]+)/m.exec(status)?.[1];
    expect(uid).toBe("65534");
    expect(BigInt(`0x${capEff}`)).toBe(1n << 12n);
    const cmdline = readFileSync(`/proc/${daemon.child.pid}/cmdline`, "utf8").split("\0");
    expect(cmdline[0]).toMatch(/node$/);
    expect(cmdline).toContain("--v8-pool-size=1");
    expect(readFileSync(`/proc/${daemon.child.pid}/environ`, "utf8").split("\0")).toContain(
      "MALLOC_ARENA_MAX=1",
    );
    await daemon.stop();
    await listener.stop();
  });
});
