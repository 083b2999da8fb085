// The native TUN addon against a real kernel, inside a namespace this test creates and deletes.
// A child process (in the namespace) opens the TUN through src/tun/native.ts, reports every packet it
// reads as a JSON line, and answers ICMPv6 echo requests itself, so a ping through the interface
// succeeds only if reading, writing and our ICMPv6 checksum all work.
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { formatIPv6 } from "../src/crypto/address.js";
import { Identity } from "../src/crypto/identity.js";

const isRoot = process.getuid?.() === 0;
const hasTun = existsSync("/dev/net/tun");
const skipReason = !isRoot ? "not root" : !hasTun ? "/dev/net/tun is missing" : "";
if (skipReason)
  console.warn(`netns-tests/tun: skipped (${skipReason}); run as root on Linux with the tun module`);

const repo = fileURLToPath(new URL("..", import.meta.url));
const viteNode = join(repo, "node_modules", ".bin", "vite-node");
const ns = `pdtun${process.pid % 100000}`;
const MTU = 1400;
const self = Identity.fromSeed(Buffer.alloc(32, 0x11));
const peer = Identity.fromSeed(Buffer.alloc(32, 0x22)); // some other address in 200::/7

const childSource = (nativeTs: string, icmpTs: string) => `
import { openTun } from ${JSON.stringify(nativeTs)};
import { icmpv6Checksum } from ${JSON.stringify(icmpTs)};
import { createInterface } from "node:readline";
const out = (o) => process.stdout.write(JSON.stringify(o) + "\\n");
const tun = openTun({ name: "auto", mtu: ${MTU}, address: Buffer.from(process.argv[2], "hex") });
let dupError = "";
try { openTun({ name: tun.name, mtu: ${MTU}, address: Buffer.from(process.argv[2], "hex") }).close(); }
catch (e) { dupError = String(e.message); }
tun.onPackets((packets) => {
  out({ event: "batch", count: packets.length, echoRequests: packets.filter((p) => p[6] === 58 && p[40] === 128).length });
  for (const p of packets) {
    out({ event: "packet", length: p.length, version: p[0] >> 4, nextHeader: p[6],
      src: p.subarray(8, 24).toString("hex"), dst: p.subarray(24, 40).toString("hex"), icmpType: p[40] });
    if (p[6] === 58 && p[40] === 128) {
      const reply = Buffer.from(p);
      p.copy(reply, 8, 24, 40);
      p.copy(reply, 24, 8, 24);
      reply[7] = 64;
      reply[40] = 129;
      reply.writeUInt16BE(icmpv6Checksum(reply.subarray(8, 24), reply.subarray(24, 40), reply.subarray(40)), 42);
      tun.write(reply);
      tun.flush(); // writes are queued until the end of the turn; the counters are read now
      out({ event: "replied", counters: tun.counters });
    }
  }
});
// "block <ms>" stalls the event loop, so the kernel queues what arrives meanwhile.
createInterface({ input: process.stdin }).on("line", (line) => {
  const [cmd, ms] = line.split(" ");
  if (cmd !== "block") return;
  out({ event: "blocking" });
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, Number(ms));
}).on("close", () => { tun.close(); out({ event: "closed" }); });
out({ event: "ready", name: tun.name, mtu: tun.mtu, dupError });
`;

type ChildEvent = Record<string, unknown> & { event: string };

function ip(...args: string[]): string {
  return execFileSync("ip", args, { encoding: "utf8", timeout: 10_000, stdio: ["ignore", "pipe", "pipe"] });
}

describe.skipIf(skipReason !== "")("native TUN in a namespace", () => {
  let dir = "";
  let child: ChildProcessWithoutNullStreams | undefined;
  let exited: Promise<number | null> = Promise.resolve(null);
  const events: ChildEvent[] = [];
  const waiters: { match: (e: ChildEvent) => boolean; resolve: (e: ChildEvent) => void }[] = [];
  let stderr = "";

  function waitFor(match: (e: ChildEvent) => boolean, what: string, ms = 15_000): Promise<ChildEvent> {
    const seen = events.find(match);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${what}; child stderr: ${stderr.slice(-2000)}`)),
        ms,
      );
      waiters.push({
        match,
        resolve: (e) => {
          clearTimeout(timer);
          resolve(e);
        },
      });
    });
  }

  beforeAll(() => {
    try {
      ip("netns", "del", ns);
    } catch {
      // not left over from an earlier run: the usual case
    }
    ip("netns", "add", ns);
    ip("-n", ns, "link", "set", "lo", "up");
    dir = mkdtempSync(join(tmpdir(), "pdtun-"));
    const script = join(dir, "child.ts");
    writeFileSync(script, childSource(join(repo, "src/tun/native.ts"), join(repo, "src/tun/icmpv6.ts")));
    const proc = spawn("ip", ["netns", "exec", ns, viteNode, script, self.address.toString("hex")], {
      cwd: repo,
      stdio: ["pipe", "pipe", "pipe"],
    });
    child = proc;
    exited = new Promise((resolve) => proc.on("exit", (code) => resolve(code)));
    proc.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    createInterface({ input: proc.stdout }).on("line", (line) => {
      let e: ChildEvent;
      try {
        e = JSON.parse(line) as ChildEvent;
      } catch {
        return; // tool chatter on stdout
      }
      events.push(e);
      for (let i = waiters.length - 1; i >= 0; i--) {
        if (waiters[i]!.match(e)) waiters.splice(i, 1)[0]!.resolve(e);
      }
    });
  });

  afterAll(async () => {
    if (child && child.exitCode === null) {
      child.stdin.end();
      const code = await Promise.race([exited, new Promise((r) => setTimeout(() => r("timeout"), 10_000))]);
      if (code === "timeout" && child.pid !== undefined) child.kill("SIGKILL");
    }
    try {
      ip("netns", "del", ns);
    } catch {
      // already gone
    }
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("creates tunN with the /7 address, the MTU, and up", async () => {
    const ready = await waitFor((e) => e.event === "ready", "the child to open the TUN", 30_000);
    const name = String(ready.name);
    expect(name).toMatch(/^tun\d+$/);
    expect(ready.mtu).toBe(MTU);
    const addr = ip("-n", ns, "-6", "addr", "show", "dev", name);
    expect(addr).toContain(`inet6 ${formatIPv6(self.address)}/7 scope global`);
    const link = ip("-n", ns, "link", "show", "dev", name);
    expect(link).toContain(`mtu ${MTU}`);
    expect(link).toMatch(/<[^>]*\bUP\b[^>]*>/);
    expect(link).toContain("qlen 4096"); // the kernel's queue toward us, longer than the default 500
    const route = ip("-n", ns, "-6", "route", "get", formatIPv6(peer.address));
    expect(route).toContain(`dev ${name}`);
    // A second open of the same, attached name fails with an operator message, not a crash.
    expect(String(ready.dupError)).toMatch(/^TUN: cannot create interface "tun\d+": Device or resource busy/);
  });

  it("a ping to another 200::/7 address is read as IPv6, and the written echo reply completes it", async () => {
    await waitFor((e) => e.event === "ready", "the child to open the TUN", 30_000);
    const target = formatIPv6(peer.address);
    const result = await new Promise<{ code: number | null; out: string }>((resolve) => {
      const p = spawn("ip", ["netns", "exec", ns, "ping", "-6", "-c", "1", "-W", "5", "-s", "100", target]);
      let out = "";
      p.stdout.on("data", (d: Buffer) => {
        out += d.toString();
      });
      p.on("exit", (code) => resolve({ code, out }));
    });
    const request = await waitFor((e) => e.event === "packet" && e.icmpType === 128, "the echo request");
    expect(request).toMatchObject({
      version: 6,
      nextHeader: 58,
      length: 40 + 8 + 100,
      src: self.address.toString("hex"),
      dst: peer.address.toString("hex"),
    });
    expect(result.out).toContain("1 received");
    expect(result.code).toBe(0);
    const replied = await waitFor((e) => e.event === "replied", "the reply write");
    expect(replied.counters).toMatchObject({ packetsWritten: 1, writeDrops: 0 });
  });

  it("reads what queued up while the loop was busy in one batch", async () => {
    await waitFor((e) => e.event === "ready", "the child to open the TUN", 30_000);
    child!.stdin.write("block 1500\n");
    await waitFor((e) => e.event === "blocking", "the child to stall");
    // -l 10: ten echo requests at once, all queued in the kernel while the child is stalled.
    const code = await new Promise<number | null>((resolve) => {
      const p = spawn("ip", [
        "netns",
        "exec",
        ns,
        "ping",
        "-6",
        "-c",
        "10",
        "-l",
        "10",
        "-w",
        "6",
        formatIPv6(peer.address),
      ]);
      p.on("exit", (c) => resolve(c));
    });
    const batch = await waitFor(
      (e) => e.event === "batch" && Number(e.echoRequests) >= 10,
      "a batch of 10 requests",
    );
    expect(Number(batch.count)).toBeGreaterThanOrEqual(10);
    expect(code).toBe(0); // and all ten replies, written one by one, arrived
  });

  it("an unprivileged open fails with an operator message", () => {
    const addon = join(repo, "build/Release/planetd_tun.node");
    const probe = `const a = require(process.argv[1]);
      try { a.open("auto", 1280, Buffer.alloc(16), 7, Buffer.alloc(70000), new Int32Array(3), () => {}); console.log("opened"); }
      catch (e) { console.log(e.code + " " + e.message); }`;
    const out = execFileSync(
      "setpriv",
      ["--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "-e", probe, addon],
      { encoding: "utf8", timeout: 10_000 },
    );
    // Where /dev/net/tun is 0666 (Debian's default; .ci/run makes it so) the open succeeds and
    // creating the interface is what needs CAP_NET_ADMIN; where it is root-only, the open fails.
    expect(out.trim()).toMatch(
      /^(EACCES|EPERM) TUN: (cannot open \/dev\/net\/tun|cannot create interface "tun%d"): (Permission denied|Operation not permitted) \(run as root.*IfName: none for router-only mode\)$/,
    );
  });

  it("close() releases the device so the child exits on its own", async () => {
    await waitFor((e) => e.event === "ready", "the child to open the TUN", 30_000);
    child!.stdin.end();
    await waitFor((e) => e.event === "closed", "the close");
    const code = await Promise.race([
      exited,
      new Promise((r) => setTimeout(() => r("still running"), 10_000)),
    ]);
    expect(code).toBe(0);
    // The kernel removes a non-persistent TUN when its last fd closes.
    expect(ip("-n", ns, "-o", "link")).not.toMatch(/\btun\d+:/);
  });
});
