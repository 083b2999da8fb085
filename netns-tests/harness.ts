// Network-namespace harness: namespaces, veth pairs, daemons (Debian yggdrasil and planetd) inside
// them, their admin CLIs, bounded waits and ping. Everything it creates is registered so that a
// crashing test still leaves no namespace or process behind (see installExitHook).
//
// Environment:
//   PD_NETNS_REQUIRED=1        fail instead of skipping when not root or yggdrasil is missing (CI).
//   PD_NETNS_PLANETD=yggdrasil run Debian's yggdrasil (and yggdrasilctl) wherever a test asks for
//                              planetd: validates the tests themselves against the reference node.
//   PD_NETNS_KEEP=1            keep the temporary directory with configs and logs after each test.
//   PD_NETNS_TAG=c             prefix of the lab id in namespace and interface names (pdc…; ≤ 2 characters).
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe } from "vitest";
import { formatIPv6, formatSubnet } from "../src/crypto/address.js";
import { Identity } from "../src/crypto/identity.js";

export const repoRoot = dirname(dirname(fileURLToPath(import.meta.url)));
export const substitutePlanetd = process.env.PD_NETNS_PLANETD === "yggdrasil";

// ---------------------------------------------------------------------------------------------
// Running commands

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Run a command to completion; never longer than `timeoutMs` (killed, code -1 then). */
export function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(
      cmd,
      args,
      { timeout: timeoutMs, killSignal: "SIGKILL", maxBuffer: 16 << 20, cwd: repoRoot },
      (err, stdout, stderr) => {
        let code = 0;
        if (err) code = typeof err.code === "number" ? err.code : -1;
        resolve({
          code,
          stdout: String(stdout),
          stderr: String(stderr) || (err && code === -1 ? err.message : ""),
        });
      },
    );
  });
}

async function mustRun(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  const r = await run(cmd, args, timeoutMs);
  if (r.code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

function hasCommand(name: string): boolean {
  try {
    execFileSync("sh", ["-c", `command -v ${name}`], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Skipping

function prerequisiteProblem(): string | undefined {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "not running as root (namespaces and TUN need root)";
  for (const cmd of ["ip", "ping", "nft", "yggdrasil", "yggdrasilctl"]) {
    if (!hasCommand(cmd))
      return `\`${cmd}\` is not installed (apt-get install iproute2 iputils-ping nftables yggdrasil)`;
  }
  return undefined;
}

export const skipReason = prerequisiteProblem();
if (skipReason && process.env.PD_NETNS_REQUIRED) {
  throw new Error(`netns-tests are required here (PD_NETNS_REQUIRED) but cannot run: ${skipReason}`);
}
if (skipReason) console.warn(`netns-tests skipped: ${skipReason}`);

/** `describe` that skips the whole suite, with the reason in its title, when prerequisites are missing. */
export function describeNetns(name: string, fn: () => void): void {
  if (skipReason) describe.skip(`${name} (skipped: ${skipReason})`, fn);
  else describe(name, fn);
}

// ---------------------------------------------------------------------------------------------
// Global registry and exit hook: whatever a crashed test leaves behind is removed synchronously.

const liveGroups = new Set<number>();
const liveNamespaces = new Set<string>();
let hookInstalled = false;

function cleanupEverythingSync(): void {
  for (const pid of liveGroups) {
    try {
      process.kill(-pid, "SIGKILL");
    } catch {}
  }
  liveGroups.clear();
  for (const ns of liveNamespaces) {
    try {
      execFileSync("ip", ["netns", "del", ns], { stdio: "ignore", timeout: 5000 });
    } catch {}
  }
  liveNamespaces.clear();
}

function installExitHook(): void {
  if (hookInstalled) return;
  hookInstalled = true;
  process.on("exit", cleanupEverythingSync);
  for (const sig of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.once(sig, () => {
      cleanupEverythingSync();
      process.kill(process.pid, sig);
    });
  }
}

// ---------------------------------------------------------------------------------------------
// Processes

/** A process started in its own process group, output appended to a log file. */
export class Proc {
  readonly child: ChildProcess;
  readonly exited: Promise<number | null>;
  exitCode: number | null | undefined = undefined;

  constructor(
    readonly label: string,
    readonly logPath: string,
    cmd: string,
    args: string[],
  ) {
    const fd = openSync(logPath, "a");
    this.child = spawn(cmd, args, { detached: true, stdio: ["ignore", fd, fd], cwd: repoRoot });
    closeSync(fd);
    const pid = this.child.pid;
    if (pid !== undefined) liveGroups.add(pid);
    this.exited = new Promise((resolve) => {
      this.child.once("exit", (code, signal) => {
        if (pid !== undefined) liveGroups.delete(pid);
        this.exitCode = code ?? (signal ? -1 : null);
        resolve(this.exitCode);
      });
      this.child.once("error", () => {
        if (pid !== undefined) liveGroups.delete(pid);
        this.exitCode = -1;
        resolve(-1);
      });
    });
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** SIGTERM (or `signal`) to the whole group, then SIGKILL after `graceMs`. */
  async stop(signal: NodeJS.Signals = "SIGTERM", graceMs = 3000): Promise<void> {
    const pid = this.child.pid;
    if (!this.running || pid === undefined) return;
    try {
      process.kill(-pid, signal);
    } catch {}
    const timedOut = await Promise.race([this.exited.then(() => false), delay(graceMs).then(() => true)]);
    if (timedOut) {
      try {
        process.kill(-pid, "SIGKILL");
      } catch {}
      await Promise.race([this.exited, delay(2000)]);
    }
  }

  logTail(lines = 30): string {
    try {
      const text = readFileSync(this.logPath, "utf8").trimEnd().split("\n");
      return text.slice(-lines).join("\n");
    } catch {
      return "(no log)";
    }
  }
}

export function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

// ---------------------------------------------------------------------------------------------
// Namespaces and veth pairs

export class Netns {
  constructor(readonly name: string) {}

  exec(cmd: string, args: string[], timeoutMs = 30_000): Promise<RunResult> {
    return run("ip", ["netns", "exec", this.name, cmd, ...args], timeoutMs);
  }

  async mustExec(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
    return mustRun("ip", ["netns", "exec", this.name, cmd, ...args], timeoutMs);
  }

  ip(...args: string[]): Promise<string> {
    return mustRun("ip", ["-n", this.name, ...args]);
  }

  sysctl(key: string, value: string): Promise<string> {
    return this.mustExec("sysctl", ["-q", "-w", `${key}=${value}`]);
  }
}

export interface VethEnd {
  ns: Netns;
  ifname: string;
  ipv4: string;
  /** A ULA address on the link, for tests that want IPv6 underlay. */
  ipv6: string;
}

export interface Veth {
  a: VethEnd;
  b: VethEnd;
}

export interface PingResult {
  transmitted: number;
  received: number;
  lossPercent: number;
  output: string;
  code: number;
}

export interface PingOptions {
  count?: number;
  intervalS?: number;
  size?: number;
  /** `-M do`: forbid fragmentation, so Packet Too Big shows. */
  dontFragment?: boolean;
  deadlineS?: number;
}

/** `ping -6` from inside `ns`, parsed; never throws on loss, only when the output is unparsable. */
export async function ping6(ns: Netns, dest: string, opts: PingOptions = {}): Promise<PingResult> {
  const count = opts.count ?? 1;
  const interval = opts.intervalS ?? 0.2;
  // ping stops at the deadline even if not all echoes went out: slack for a loaded machine, but a
  // single probe (the polling case) gives up quickly.
  const deadline = opts.deadlineS ?? Math.ceil(count * interval + (count === 1 ? 2 : 5));
  const args = ["-6", "-n", "-c", String(count), "-i", String(interval), "-W", "1", "-w", String(deadline)];
  if (opts.size !== undefined) args.push("-s", String(opts.size));
  if (opts.dontFragment) args.push("-M", "do");
  args.push(dest);
  const r = await ns.exec("ping", args, (deadline + 5) * 1000);
  const output = r.stdout + r.stderr;
  const tx = /(\d+) packets transmitted/.exec(output);
  const rx = /(\d+) received/.exec(output);
  const loss = /([\d.]+)% packet loss/.exec(output);
  if (!tx || !rx || !loss) {
    return { transmitted: 0, received: 0, lossPercent: 100, output, code: r.code };
  }
  return {
    transmitted: Number(tx[1]),
    received: Number(rx[1]),
    lossPercent: Number(loss[1]),
    output,
    code: r.code,
  };
}

// ---------------------------------------------------------------------------------------------
// Admin CLIs

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
export type JsonObject = { [key: string]: Json };

export class CtlError extends Error {
  constructor(
    message: string,
    readonly output: string,
  ) {
    super(message);
  }
}

async function runCtl(
  tool: "yggdrasilctl" | "planetctl",
  endpoint: string,
  cmd: string,
  args: Record<string, string>,
) {
  const ctlArgs = [
    `-endpoint=${endpoint}`,
    "-json",
    cmd,
    ...Object.entries(args).map(([k, v]) => `${k}=${v}`),
  ];
  const r =
    tool === "yggdrasilctl" || substitutePlanetd
      ? await run("yggdrasilctl", ctlArgs, 20_000)
      : await run(process.execPath, [join(repoRoot, "bin", "planetctl"), ...ctlArgs], 20_000);
  const output = (r.stdout + r.stderr).trim();
  if (r.code !== 0) throw new CtlError(`${tool} ${cmd}: ${output || `exit ${r.code}`}`, output);
  let parsed: Json;
  try {
    parsed = JSON.parse(r.stdout) as Json;
  } catch {
    throw new CtlError(`${tool} ${cmd}: output is not JSON: ${output.slice(0, 300)}`, output);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw new CtlError(`${tool} ${cmd}: output is not a JSON object: ${output.slice(0, 300)}`, output);
  }
  return parsed;
}

/** Debian's `yggdrasilctl -endpoint=… -json cmd k=v…`, parsed; throws CtlError on an error reply. */
export function yggdrasilctl(
  endpoint: string,
  cmd: string,
  args: Record<string, string> = {},
): Promise<JsonObject> {
  return runCtl("yggdrasilctl", endpoint, cmd, args);
}

/** `node bin/planetctl -endpoint=… -json cmd k=v…` (yggdrasilctl under PD_NETNS_PLANETD=yggdrasil). */
export function planetctl(
  endpoint: string,
  cmd: string,
  args: Record<string, string> = {},
): Promise<JsonObject> {
  return runCtl("planetctl", endpoint, cmd, args);
}

export interface PeerInfo {
  address: string;
  key: string;
  port: number;
  priority: number;
  coords: number[];
  remote: string;
  bytes_recvd: number;
  bytes_sent: number;
  uptime: number;
}
export interface DhtEntry {
  address: string;
  key: string;
  port: number;
  rest: number;
}
export interface PathEntry {
  address: string;
  key: string;
  path: number[];
}
export interface SessionEntry {
  address: string;
  key: string;
  bytes_recvd: number;
  bytes_sent: number;
  uptime: number;
  /** planetd only: box or chacha20-poly1305 (src/overlay/sessions/aead.ts) */
  cipher_out?: string;
  cipher_in?: string;
}
export interface SelfInfo {
  key: string;
  address: string;
  subnet: string;
  coords: number[];
}

function listField<T>(obj: JsonObject, field: string, cmd: string): T[] {
  const value = obj[field];
  // 0.4.7 prints `null` for an empty Go slice in some replies.
  if (value === null) return [];
  if (!Array.isArray(value)) throw new Error(`${cmd}: reply has no "${field}" array: ${JSON.stringify(obj)}`);
  return value as unknown as T[];
}

// ---------------------------------------------------------------------------------------------
// Daemons

/**
 * `n` fresh identities in ascending key order. The smallest key becomes the tree root (spec 5.3), so
 * tests use this to pin which node is root instead of leaving the role to chance.
 */
export function identitiesByKey(n: number): Identity[] {
  return Array.from({ length: n }, () => Identity.generate()).sort((x, y) =>
    Buffer.compare(x.publicKey, y.publicKey),
  );
}

export interface MulticastInterface {
  Regex: string;
  Beacon: boolean;
  Listen: boolean;
  Port: number;
  Priority?: number;
}

export interface NodeOptions {
  peers?: string[];
  listen?: string[];
  multicast?: MulticastInterface[];
  /** TUN name; "none" for a router-only node. Default "pdtun". */
  ifName?: string;
  ifMtu?: number;
  nodeInfo?: JsonObject;
  identity?: Identity;
  /** Extra top-level config keys (e.g. planetd's own `Planetd: {…}` object). */
  extra?: JsonObject;
}

export type Role = "yggdrasil" | "planetd";

let builtOnce = false;
function ensurePlanetdBuilt(): void {
  if (builtOnce || substitutePlanetd) return;
  const script = "import('./bin/ensure-built.mjs').then((m) => m.ensureBuilt())";
  try {
    execFileSync(process.execPath, ["--input-type=module", "-e", script], {
      cwd: repoRoot,
      stdio: "pipe",
      timeout: 180_000,
    });
  } catch (err) {
    const e = err as { stdout?: Buffer; stderr?: Buffer };
    throw new Error(
      `planetd does not build: ${String(e.stdout ?? "")}${String(e.stderr ?? "")}`.slice(0, 4000),
    );
  }
  builtOnce = true;
}

/** One overlay node (Debian yggdrasil or planetd) with its config, admin socket and log. */
export class DaemonNode {
  readonly identity: Identity;
  readonly key: string;
  readonly address: string;
  /** The node's /64 as `300:…::/64`. */
  readonly subnet: string;
  readonly configPath: string;
  readonly socketPath: string;
  readonly endpoint: string;
  readonly logPath: string;
  /** Mutable: change fields and call restart() to run with a new configuration. */
  config: JsonObject;
  proc: Proc | undefined;

  constructor(
    readonly lab: Lab,
    readonly role: Role,
    readonly name: string,
    readonly ns: Netns,
    opts: NodeOptions,
  ) {
    this.identity = opts.identity ?? Identity.generate();
    this.key = this.identity.publicKey.toString("hex");
    this.address = formatIPv6(this.identity.address);
    this.subnet = formatSubnet(this.identity.subnet);
    this.configPath = join(lab.dir, `${name}.conf`);
    this.socketPath = join(lab.dir, `${name}.sock`);
    this.endpoint = `unix://${this.socketPath}`;
    this.logPath = join(lab.dir, `${name}.log`);
    this.config = {
      PrivateKey: this.identity.privateKeyHex,
      Peers: opts.peers ?? [],
      Listen: opts.listen ?? [],
      AdminListen: this.endpoint,
      MulticastInterfaces: (opts.multicast ?? []) as unknown as Json,
      AllowedPublicKeys: [],
      IfName: opts.ifName ?? "pdtun",
      IfMTU: opts.ifMtu ?? 65535,
      NodeInfoPrivacy: false,
      NodeInfo: opts.nodeInfo ?? { name: name },
      ...(opts.extra ?? {}),
    };
  }

  /** What actually runs: planetd roles run yggdrasil under PD_NETNS_PLANETD=yggdrasil. */
  get binary(): Role {
    return this.role === "planetd" && !substitutePlanetd ? "planetd" : "yggdrasil";
  }

  /** A host address inside this node's /64, e.g. suffix 1 → `300:…::1`. */
  subnetHost(suffix: number): string {
    const a = Buffer.alloc(16);
    this.identity.subnet.subarray(0, 8).copy(a);
    a.writeUInt16BE(suffix, 14);
    return formatIPv6(a);
  }

  async start(): Promise<void> {
    if (this.proc?.running) throw new Error(`${this.name} is already running`);
    writeFileSync(this.configPath, `${JSON.stringify(this.config, null, 2)}\n`);
    rmSync(this.socketPath, { force: true });
    writeFileSync(this.logPath, `=== start ${new Date().toISOString()} ===\n`, { flag: "a" });
    const inNs = ["netns", "exec", this.ns.name];
    if (this.binary === "planetd") {
      ensurePlanetdBuilt();
      const bin = join(repoRoot, "bin", "planetd");
      this.proc = this.lab.spawn(this.name, this.logPath, "ip", [
        ...inNs,
        process.execPath,
        bin,
        "run",
        "--config",
        this.configPath,
      ]);
    } else {
      this.proc = this.lab.spawn(this.name, this.logPath, "ip", [
        ...inNs,
        "yggdrasil",
        "-useconffile",
        this.configPath,
        "-loglevel",
        "debug",
      ]);
    }
    const proc = this.proc;
    await this.lab.waitFor(
      async () => {
        if (!proc.running) throw new Error(`${this.name} exited with code ${proc.exitCode}`);
        const self = await this.getSelf();
        return self.key === this.key ? self : undefined;
      },
      30_000,
      `${this.name} (${this.binary}) to answer getSelf on its admin socket with its own key`,
      () => !proc.running,
    );
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<void> {
    await this.proc?.stop(signal);
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** The node's own admin CLI (yggdrasilctl or planetctl) against its own socket. */
  ctl(cmd: string, args: Record<string, string> = {}): Promise<JsonObject> {
    return this.binary === "planetd"
      ? planetctl(this.endpoint, cmd, args)
      : yggdrasilctl(this.endpoint, cmd, args);
  }

  async getSelf(): Promise<SelfInfo> {
    return (await this.ctl("getSelf")) as unknown as SelfInfo;
  }
  async getPeers(): Promise<PeerInfo[]> {
    return listField<PeerInfo>(await this.ctl("getPeers"), "peers", "getPeers");
  }
  async getDHT(): Promise<DhtEntry[]> {
    return listField<DhtEntry>(await this.ctl("getDHT"), "dht", "getDHT");
  }
  async getPaths(): Promise<PathEntry[]> {
    return listField<PathEntry>(await this.ctl("getPaths"), "paths", "getPaths");
  }
  async getSessions(): Promise<SessionEntry[]> {
    return listField<SessionEntry>(await this.ctl("getSessions"), "sessions", "getSessions");
  }

  /** This node's getPeers entry for `other`, or undefined. */
  async peerEntry(other: DaemonNode): Promise<PeerInfo | undefined> {
    return (await this.getPeers()).find((p) => p.key === other.key);
  }

  ping(dest: string, opts?: PingOptions): Promise<PingResult> {
    return ping6(this.ns, dest, opts);
  }
}

// ---------------------------------------------------------------------------------------------
// The lab: one per test, owns everything the test creates.

export class Lab {
  readonly id: string;
  readonly dir: string;
  private readonly namespaces: Netns[] = [];
  private readonly procs: Proc[] = [];
  private linkCount = 0;

  constructor() {
    installExitHook();
    // PD_NETNS_TAG leads the id, so engineers sharing a machine each see their own namespaces.
    this.id = `${process.env.PD_NETNS_TAG ?? ""}${randomBytes(2).toString("hex")}`;
    this.dir = mkdtempSync(join(tmpdir(), `pd${this.id}-`));
  }

  /** A fresh namespace `pd<id><letter>` with lo up and DAD off (addresses usable at once). */
  async netns(): Promise<Netns> {
    const name = `pd${this.id}${String.fromCharCode(97 + this.namespaces.length)}`;
    await mustRun("ip", ["netns", "add", name]);
    liveNamespaces.add(name);
    const ns = new Netns(name);
    this.namespaces.push(ns);
    await ns.ip("link", "set", "lo", "up");
    await ns.sysctl("net.ipv6.conf.all.accept_dad", "0");
    await ns.sysctl("net.ipv6.conf.default.accept_dad", "0");
    return ns;
  }

  /**
   * A veth pair between two namespaces, both ends up, with 10.<n>.0.1|2/24 and fd70:<n>::1|2/64.
   * Interface names are `pd<id>v<n>a|b` (≤ 15 characters).
   */
  async link(a: Netns, b: Netns): Promise<Veth> {
    const n = ++this.linkCount;
    const ifA = `pd${this.id}v${n}a`;
    const ifB = `pd${this.id}v${n}b`;
    await mustRun("ip", [
      "link",
      "add",
      ifA,
      "netns",
      a.name,
      "type",
      "veth",
      "peer",
      "name",
      ifB,
      "netns",
      b.name,
    ]);
    const end = (ns: Netns, ifname: string, host: number): VethEnd => ({
      ns,
      ifname,
      ipv4: `10.${n}.0.${host}`,
      ipv6: `fd70:${n}::${host}`,
    });
    const veth = { a: end(a, ifA, 1), b: end(b, ifB, 2) };
    for (const e of [veth.a, veth.b]) {
      await e.ns.ip("addr", "add", `${e.ipv4}/24`, "dev", e.ifname);
      await e.ns.ip("-6", "addr", "add", `${e.ipv6}/64`, "dev", e.ifname, "nodad");
      await e.ns.ip("link", "set", e.ifname, "up");
    }
    return veth;
  }

  spawn(label: string, logPath: string, cmd: string, args: string[]): Proc {
    const p = new Proc(label, logPath, cmd, args);
    this.procs.push(p);
    return p;
  }

  /** Start and return a Debian yggdrasil node (ready when its admin socket answers). */
  async startYggdrasil(ns: Netns, name: string, opts: NodeOptions = {}): Promise<DaemonNode> {
    const node = new DaemonNode(this, "yggdrasil", name, ns, opts);
    await node.start();
    return node;
  }

  async startPlanetd(ns: Netns, name: string, opts: NodeOptions = {}): Promise<DaemonNode> {
    const node = new DaemonNode(this, "planetd", name, ns, opts);
    await node.start();
    return node;
  }

  /**
   * A "workload" namespace behind `node`: a veth from the node's namespace, the workload at
   * `<node /64>::2`, the node side at `::1` (so the node routes its /64 to the workload), forwarding
   * on, and the workload's route to 200::/7 via the node (that prefix covers 300::/8 too).
   */
  async workload(node: DaemonNode): Promise<{ ns: Netns; address: string }> {
    const ns = await this.netns();
    const veth = await this.link(node.ns, ns);
    const gw = node.subnetHost(1);
    const address = node.subnetHost(2);
    await node.ns.ip("-6", "addr", "add", `${gw}/64`, "dev", veth.a.ifname, "nodad");
    await ns.ip("-6", "addr", "add", `${address}/64`, "dev", veth.b.ifname, "nodad");
    await ns.ip("-6", "route", "add", "200::/7", "via", gw);
    await node.ns.sysctl("net.ipv6.conf.all.forwarding", "1");
    return { ns, address };
  }

  /** Tails of every daemon log of this lab, for failure messages. */
  logTails(lines = 25): string {
    return this.procs
      .map(
        (p) =>
          `--- ${p.label} (${p.running ? "running" : `exited ${p.exitCode}`}) ${p.logPath}\n${p.logTail(lines)}`,
      )
      .join("\n");
  }

  /**
   * Poll `fn` every 200 ms until it returns something other than undefined/false/null; a throw counts
   * as "not yet". After `timeoutMs` (or as soon as `abort()` is true) fail with `what`, the last
   * error or value, and the tail of every daemon log.
   */
  async waitFor<T>(
    fn: () => Promise<T | undefined | false | null> | T | undefined | false | null,
    timeoutMs: number,
    what: string,
    abort?: () => boolean,
  ): Promise<T> {
    const start = Date.now();
    let last = "";
    for (;;) {
      try {
        const v = await fn();
        if (v !== undefined && v !== false && v !== null) return v as T;
        last = `last value: ${JSON.stringify(v)}`;
      } catch (err) {
        last = `last error: ${(err as Error).message}`;
      }
      const elapsed = Date.now() - start;
      if (elapsed >= timeoutMs || abort?.()) {
        throw new Error(`timed out after ${elapsed} ms waiting for ${what}\n${last}\n${this.logTails()}`);
      }
      await delay(Math.min(200, timeoutMs - elapsed + 1));
    }
  }

  /** Stop every process (whole groups), delete every namespace, remove the temp dir. */
  async cleanup(): Promise<void> {
    await Promise.all(this.procs.map((p) => p.stop()));
    for (const ns of this.namespaces) {
      await run("ip", ["netns", "del", ns.name], 10_000);
      liveNamespaces.delete(ns.name);
    }
    if (!process.env.PD_NETNS_KEEP) rmSync(this.dir, { recursive: true, force: true });
  }
}
