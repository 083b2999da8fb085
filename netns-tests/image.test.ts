// The container image as an operator builds and runs it, without a registry: the Dockerfile's FROM
// images are made here (contrib/container/local-base-images.sh: debootstrap + this machine's Node,
// cached in $PD_IMAGE_CACHE), the image is built with `buildah build --isolation chroot` inside a
// namespace that has no route anywhere (so offline), and two containers, each in its own namespace,
// peer over tcp:// and ping each other's overlay addresses.
//
// Environment:
//   PD_IMAGE_TEST=0   skip this file; PD_IMAGE_TEST=1 fail when buildah or debootstrap is missing
//                     (as PD_NETNS_REQUIRED does).
//   PD_IMAGE_CACHE    base root filesystems and buildah's storage (default /var/cache/planetd-image).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  Lab,
  type Netns,
  type PeerInfo,
  type Proc,
  type RunResult,
  type SelfInfo,
  delay,
  ping6,
  repoRoot,
  run,
  skipReason,
} from "./harness.js";

const cache = process.env.PD_IMAGE_CACHE || "/var/cache/planetd-image";
const storageConf = join(cache, "storage.conf");

function imageSkipReason(): string | undefined {
  if (process.env.PD_IMAGE_TEST === "0") return "PD_IMAGE_TEST=0";
  if (skipReason) return skipReason;
  for (const cmd of ["buildah", "debootstrap", "flock"]) {
    try {
      execFileSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" });
    } catch {
      return `\`${cmd}\` is not installed (apt-get install buildah debootstrap)`;
    }
  }
  return undefined;
}

const imageSkip = imageSkipReason();
if (
  imageSkip &&
  process.env.PD_IMAGE_TEST !== "0" &&
  (process.env.PD_IMAGE_TEST || process.env.PD_NETNS_REQUIRED)
) {
  throw new Error(`the image test is required here but cannot run: ${imageSkip}`);
}
const describeImage = (name: string, fn: () => void) =>
  imageSkip ? describe.skip(`${name} (skipped: ${imageSkip})`, fn) : describe(name, fn);

/** buildah against the test's own vfs storage in the cache (no daemon, works inside containers). */
function buildahArgs(args: string[]): string[] {
  return [`CONTAINERS_STORAGE_CONF=${storageConf}`, "buildah", ...args];
}
function buildah(args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return run("env", buildahArgs(args), timeoutMs);
}
async function mustBuildah(args: string[], timeoutMs = 60_000): Promise<string> {
  const r = await buildah(args, timeoutMs);
  if (r.code !== 0) throw new Error(`buildah ${args.join(" ")} failed (${r.code}): ${r.stderr || r.stdout}`);
  return r.stdout;
}

interface ImageInfo {
  /** The image's manifest as stored (a JSON string): its layers with their uncompressed sizes here. */
  Manifest: string;
  Docker: {
    config: {
      Entrypoint: string[] | null;
      Cmd: string[] | null;
      Healthcheck?: { Test: string[] } | null;
    };
  };
}

async function inspectImage(image: string): Promise<ImageInfo> {
  return JSON.parse(await mustBuildah(["inspect", "--type", "image", image])) as ImageInfo;
}

/** Uncompressed size of an image: the sum of its layers in buildah's local storage. */
async function imageBytes(image: string): Promise<number> {
  const manifest = JSON.parse((await inspectImage(image)).Manifest) as { layers: { size: number }[] };
  return manifest.layers.reduce((sum, layer) => sum + layer.size, 0);
}

const MB = 1e6;

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "utf8").replaceAll("\0", " ");
  } catch {
    return "";
  }
}

/** Every process below `root` (the containers run in the host's PID namespace under chroot isolation). */
function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), Number(entry)]);
    } catch {}
  }
  const found: number[] = [];
  const queue = [root];
  while (queue.length > 0) {
    for (const child of children.get(queue.shift() as number) ?? []) {
      found.push(child);
      queue.push(child);
    }
  }
  return found;
}

describeImage("container image", () => {
  let lab: Lab;
  const tag = `localhost/planetd-test:${process.pid}`;
  const containers: string[] = [];

  beforeAll(async () => {
    lab = new Lab();
    mkdirSync(cache, { recursive: true });
    if (!existsSync(storageConf)) {
      writeFileSync(
        storageConf,
        // vfs: no overlay mounts needed, so it works inside containers. The runroot (locks, state) is
        // per cache, so two caches never share one.
        `[storage]\ndriver = "vfs"\nrunroot = "/run/planetd-image/${createHash("sha256").update(cache).digest("hex").slice(0, 12)}"\ngraphroot = "${join(cache, "storage")}"\n`,
      );
    }
    const started = Date.now();
    const script = join(repoRoot, "contrib", "container", "local-base-images.sh");
    // One maker at a time: a concurrent run waits for the cache instead of debootstrapping into it.
    const r = await run(
      "env",
      [
        `CONTAINERS_STORAGE_CONF=${storageConf}`,
        `PLANETD_IMAGE_CACHE=${cache}`,
        "flock",
        join(cache, ".lock"),
        "sh",
        script,
      ],
      1_500_000,
    );
    if (r.code !== 0) throw new Error(`local-base-images.sh failed (${r.code}):\n${r.stderr.slice(-3000)}`);
    console.log(`image test: base images ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  }, 1_600_000);

  afterAll(async () => {
    await lab?.cleanup();
    for (const c of containers) await buildah(["rm", c]);
    await buildah(["rmi", tag]);
  }, 120_000);

  it("builds offline from the Dockerfile into a small image with only what runs", async () => {
    // In a namespace with nothing but loopback: a build step that reached for a registry would fail.
    const offline = await lab.netns();
    const started = Date.now();
    const build = await offline.exec(
      "env",
      buildahArgs([
        "build",
        "--isolation",
        "chroot",
        "--pull=never",
        "--format",
        "docker",
        "-t",
        tag,
        repoRoot,
      ]),
      900_000,
    );
    const buildSeconds = (Date.now() - started) / 1000;
    expect(build.code, (build.stdout + build.stderr).slice(-4000)).toBe(0);
    const size = await imageBytes(tag);
    const base = await imageBytes("docker.io/library/node:20-bookworm-slim");
    console.log(
      `image test: built in ${buildSeconds.toFixed(1)} s; image ${(size / MB).toFixed(0)} MB = node:20-bookworm-slim ${(base / MB).toFixed(0)} MB + planetd ${((size - base) / MB).toFixed(1)} MB`,
    );
    // The old single-stage image was 886 MB; planetd's own layers are dist/, the addon and runtime deps.
    expect(size - base).toBeLessThan(60 * MB);

    const health = (await inspectImage(tag)).Docker.config.Healthcheck;
    expect(health?.Test).toEqual(["CMD", "planetctl", "getSelf"]);

    const ctr = (await mustBuildah(["from", "--pull=never", tag])).trim();
    containers.push(ctr);
    const probe = await buildah([
      "run",
      "--isolation",
      "chroot",
      ctr,
      "--",
      "sh",
      "-c",
      "for c in gcc g++ cc make python3 yggdrasil yggdrasilctl iperf3 tsc; do command -v $c; done; " +
        "command -v planetd >&2; command -v planetctl >&2; planetd --version",
    ]);
    expect(probe.code, probe.stderr).toBe(0);
    expect(probe.stdout).not.toMatch(/^\//m); // none of the build or test tools is in the image
    expect(probe.stderr).toContain("/usr/local/bin/planetd\n/usr/local/bin/planetctl");
    expect(probe.stdout).toMatch(/Build version: \d+\.\d+\.\d+/);
    expect(probe.stderr).not.toMatch(/compiling/);
  }, 1_000_000);

  it("two containers in two namespaces (mounted config, generated config) peer over tcp:// and ping each other", async () => {
    const nsA = await lab.netns();
    const nsB = await lab.netns();
    const veth = await lab.link(nsA, nsB);
    const port = 12000 + Math.floor(Math.random() * 2000);

    const config = (await inspectImage(tag)).Docker.config;
    const command = [...(config.Entrypoint ?? []), ...(config.Cmd ?? [])];
    const healthcheck = config.Healthcheck?.Test.slice(1) ?? [];
    expect(healthcheck.length).toBeGreaterThan(0);

    interface Container {
      name: string;
      ns: Netns;
      runDir: string;
      proc?: Proc;
    }
    const create = async (letter: string, ns: Netns): Promise<Container> => {
      const name = (await mustBuildah(["from", "--pull=never", "--name", `${ns.name}-ctr`, tag])).trim();
      containers.push(name);
      const runDir = join(lab.dir, `run-${letter}`);
      mkdirSync(runDir);
      return { name, ns, runDir };
    };
    // `buildah run` starts a new mount namespace per call; the admin socket's directory is shared
    // through a host directory, as `docker exec` would see it.
    const exec = (c: Container, args: string[], timeoutMs = 60_000) =>
      c.ns.exec(
        "env",
        buildahArgs([
          "run",
          "--isolation",
          "chroot",
          "-v",
          `${c.runDir}:/run/planetd`,
          c.name,
          "--",
          ...args,
        ]),
        timeoutMs,
      );
    // The image's own command, as `docker run --cap-add NET_ADMIN --device /dev/net/tun` runs it.
    const start = (c: Container, mounts: string[]) => {
      c.proc = lab.spawn(c.name, join(lab.dir, `${c.name}.log`), "ip", [
        "netns",
        "exec",
        c.ns.name,
        "env",
        ...buildahArgs([
          "run",
          "--isolation",
          "chroot",
          "--cap-add",
          "CAP_NET_ADMIN",
          "-v",
          "/dev/net/tun:/dev/net/tun",
          "-v",
          `${c.runDir}:/run/planetd`,
          ...mounts,
          c.name,
          "--",
          ...command,
        ]),
      ]);
    };
    const healthy = (c: Container) =>
      lab.waitFor(
        async () => (await exec(c, healthcheck)).code === 0,
        60_000,
        `${c.name}: the image's HEALTHCHECK (${healthcheck.join(" ")}) to pass`,
        () => !c.proc?.running,
      );
    const getSelf = async (c: Container) => {
      const r = await exec(c, ["planetctl", "-json", "getSelf"]);
      expect(r.code, r.stderr).toBe(0);
      return JSON.parse(r.stdout) as SelfInfo;
    };

    // A: the operator's config, made with the image's own `planetd genconf`, mounted at
    // /etc/planetd/planetd.conf. B: nothing mounted, so planetd generates its config into the
    // image's /var/lib/planetd volume on first start.
    const a = await create("a", nsA);
    const b = await create("b", nsB);
    const genconf = await exec(a, ["planetd", "genconf", "--json"]);
    expect(genconf.code, genconf.stderr).toBe(0);
    const configA = JSON.parse(genconf.stdout) as Record<string, unknown>;
    configA.Listen = [`tcp://${veth.a.ipv4}:${port}`];
    configA.MulticastInterfaces = []; // the tcp:// peering below is then the only way A and B meet
    const confA = join(lab.dir, "a.conf");
    writeFileSync(confA, JSON.stringify(configA));

    start(a, ["-v", `${confA}:/etc/planetd/planetd.conf:ro`]);
    start(b, []);
    await Promise.all([healthy(a), healthy(b)]);

    const selfA = await getSelf(a);
    expect(selfA.key).toBe(configA.PublicKey);
    const selfB = await getSelf(b);
    const generated = await exec(b, ["sh", "-c", "test -s /var/lib/planetd/planetd.conf && planetd address"]);
    expect(generated.stdout.trim(), generated.stderr).toBe(selfB.address);
    for (const [c, self] of [
      [a, selfA],
      [b, selfB],
    ] as const) {
      expect(self.address).toMatch(/^2[0-9a-f]{2}:/); // 200::/7
      expect(await c.ns.ip("-6", "addr", "show")).toContain(`${self.address}/7`);
    }

    const uri = `tcp://${veth.a.ipv4}:${port}`;
    const added = await exec(b, ["planetctl", "addPeer", `uri=${uri}`]);
    expect(added.code, added.stderr).toBe(0);
    await lab.waitFor(
      async () => (await ping6(nsB, selfA.address, { count: 1 })).received === 1,
      30_000,
      "a first ping from B's namespace to A's overlay address",
    );
    const peers = await exec(b, ["planetctl", "-json", "getPeers"]);
    expect((JSON.parse(peers.stdout) as { peers: PeerInfo[] }).peers.map((p) => p.remote)).toEqual([uri]);
    const ab = await ping6(nsA, selfB.address, { count: 5 });
    const ba = await ping6(nsB, selfA.address, { count: 5 });
    expect(ab.received, ab.output).toBe(5);
    expect(ba.received, ba.output).toBe(5);

    // `docker stop`: SIGTERM to the container's main process. The entrypoint execs planetd, so the
    // daemon itself gets it and stops cleanly (exit 0, "stopped" logged); then the HEALTHCHECK fails.
    const daemonA = descendants(a.proc?.child.pid ?? 0).find((pid) => cmdline(pid).includes("planetd run"));
    expect(daemonA, "planetd's process inside container A").toBeDefined();
    process.kill(daemonA as number, "SIGTERM");
    const code = await Promise.race([a.proc?.exited, delay(15_000).then(() => "still running")]);
    expect(code, lab.logTails()).toBe(0);
    expect(a.proc?.logTail(3)).toMatch(/stopped/);
    expect((await exec(a, healthcheck)).code).not.toBe(0);
  }, 300_000);
});
