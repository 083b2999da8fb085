// Log output as operators and machines read it: JSON lines with string levels and ISO times, pretty
// terminal text that shows each value once, and syslog datagrams (received here by a python3
// AF_UNIX datagram socket, since Node has none).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PassThrough } from "node:stream";
import { afterAll, describe, expect, it } from "vitest";
import { createLogger, humanMessage, isoTimestamp, syslogDatagram } from "../src/cli/logger.js";
import { runCli } from "../src/cli/planetd.js";

const dir = mkdtempSync(join(tmpdir(), "pd-log-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function capture(tty: boolean): { out: PassThrough & { isTTY?: boolean }; text: () => string } {
  const out: PassThrough & { isTTY?: boolean } = new PassThrough();
  out.isTTY = tty;
  const chunks: string[] = [];
  out.on("data", (c: Buffer) => chunks.push(c.toString()));
  return { out, text: () => chunks.join("") };
}

const ADDRESS = "200:1234:5678:9abc:def0:1234:5678:9abc";
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

describe("isoTimestamp", () => {
  it("prints what Date#toISOString prints, without asking for the local time zone", () => {
    // Edges (epoch, leap day, end of 9999, one-digit fields and milliseconds) and a spread of
    // pseudo-random times between 1970 and 9999.
    const times = [0, 1, 9, 10, 99, 100, 951_782_400_000, 253_402_300_799_999, Date.now()];
    let x = 0x9e3779b9;
    for (let i = 0; i < 2000; i++) {
      x = (Math.imul(x, 1_664_525) + 1_013_904_223) >>> 0;
      times.push(Math.floor((x / 2 ** 32) * 253_402_300_799_999));
    }
    for (const t of times) expect(isoTimestamp(t)).toBe(new Date(t).toISOString());
  });
});

describe("JSON lines", () => {
  it("carry string levels and ISO times, on stdout and in a file", () => {
    const { out, text } = capture(false);
    const file = join(dir, "planetd.log");
    for (const logger of [createLogger("info", "stdout", out), createLogger("info", file)]) {
      logger.info({ address: ADDRESS }, `Your IPv6 address is ${ADDRESS}`);
      logger.warn("careful");
      logger.debug("not at info");
    }
    for (const body of [text(), readFileSync(file, "utf8")]) {
      const lines = body
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l) as Record<string, unknown>);
      expect(lines.map((l) => l.level)).toEqual(["info", "warn"]);
      for (const l of lines) expect(l.time).toMatch(ISO);
      expect(Math.abs(Date.parse(lines[0]!.time as string) - Date.now())).toBeLessThan(60_000);
      // Machines keep every field, even one the message repeats.
      expect(lines[0]!.address).toBe(ADDRESS);
    }
  });
});

describe("pretty terminal output", () => {
  it("shows a value the message interpolates once, other fields once, an error's stack", () => {
    const { out, text } = capture(true);
    const logger = createLogger("debug", "stdout", out);
    logger.info({ address: ADDRESS }, `Your IPv6 address is ${ADDRESS}`);
    logger.warn({ path: "/etc/x.conf", count: 3 }, "using config /etc/x.conf");
    logger.error({ err: new Error("boom") }, "stop failed: boom");
    const lines = text().split("\n");
    const addressLine = lines.find((l) => l.includes("Your IPv6 address"))!;
    expect(addressLine.split(ADDRESS)).toHaveLength(2);
    expect(addressLine).toMatch(/INFO/);
    const configLine = lines.find((l) => l.includes("using config"))!;
    expect(configLine.split("/etc/x.conf")).toHaveLength(2);
    expect(configLine).toContain("(count=3)");
    expect(text()).toMatch(/stop failed: boom\n\s*Error: boom\n\s+at /);
    expect(text()).not.toMatch(/^\s+(address|path|pid):/m);
  });

  it("humanMessage leaves out fields the message shows and keeps the others", () => {
    expect(humanMessage({ level: "info", time: "t", pid: 1, msg: "peer 10.0.0.1 up", ip: "10.0.0.1" })).toBe(
      "peer 10.0.0.1 up",
    );
    expect(humanMessage({ level: "info", msg: "redial", delayMs: 250, uri: "tls://a:1" })).toBe(
      "redial (delayMs=250 uri=tls://a:1)",
    );
  });
});

const hasPython = (() => {
  try {
    execFileSync("python3", ["-c", "import socket; socket.AF_UNIX"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
})();

/** An AF_UNIX datagram socket at `path` printing each datagram as one JSON string per line. */
async function syslogReceiver(path: string): Promise<{ child: ChildProcess; received: () => string[] }> {
  const script = [
    "import json, socket, sys",
    "s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)",
    "s.bind(sys.argv[1])",
    "print('ready', flush=True)",
    "while True: print(json.dumps(s.recv(65536).decode()), flush=True)",
  ].join("\n");
  const child = spawn("python3", ["-c", script, path], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  await new Promise<void>((ready, fail) => {
    const timer = setTimeout(() => fail(new Error("python3 receiver did not start")), 10_000);
    child.stdout!.on("data", (c: Buffer) => {
      out += c.toString();
      if (out.startsWith("ready\n")) {
        clearTimeout(timer);
        ready();
      }
    });
  });
  const received = () =>
    out
      .split("\n")
      .slice(1)
      .filter(Boolean)
      .map((l) => JSON.parse(l) as string);
  return { child, received };
}

describe("syslog", () => {
  it("formats RFC 3164 lines for facility daemon, one line, at most 500 bytes", () => {
    const at = new Date(2026, 11, 1, 14, 0, 5);
    expect(syslogDatagram({ level: "warn", msg: "x", n: 1 }, at)).toBe(
      `<28>Dec  1 14:00:05 planetd[${process.pid}]: x (n=1)`,
    );
    expect(syslogDatagram({ level: "error", msg: "a\nb" }, at)).toMatch(/^<27>.*: a \| b$/);
    const long = syslogDatagram({ level: "info", msg: "é".repeat(400) }, at);
    expect(Buffer.byteLength(long)).toBeLessThanOrEqual(500);
    expect(long.endsWith("…")).toBe(true);
  });

  it.skipIf(!hasPython)("sends one datagram per line to the socket", async () => {
    const socketPath = join(dir, "log.sock");
    const { child, received } = await syslogReceiver(socketPath);
    try {
      const logger = createLogger("info", `syslog:${socketPath}`);
      logger.info({ address: ADDRESS }, `Your IPv6 address is ${ADDRESS}`);
      logger.error("it broke");
      const deadline = Date.now() + 10_000;
      while (received().length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(received()).toEqual([
        expect.stringMatching(
          new RegExp(
            `^<30>\\w{3} [ \\d]\\d \\d\\d:\\d\\d:\\d\\d planetd\\[${process.pid}\\]: logging to syslog at `,
          ),
        ),
        expect.stringMatching(new RegExp(`^<30>.*: Your IPv6 address is ${ADDRESS}$`)),
        expect.stringMatching(/^<27>.*: it broke$/),
      ]);
    } finally {
      child.kill();
    }
  });

  it("is refused at start with one line, exit 2, when nothing listens on the socket", async () => {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const errors: string[] = [];
    stderr.on("data", (c: Buffer) => errors.push(c.toString()));
    const stdin = new PassThrough();
    stdin.end();
    const missing = join(dir, "no-syslog.sock");
    for (const argv of [
      ["run", "--autoconf", "--logto", `syslog:${missing}`],
      ["-autoconf", "-logto", `syslog:${missing}`],
    ]) {
      errors.length = 0;
      expect(await runCli(argv, { stdout, stderr, stdin })).toBe(2);
      expect(errors.join("")).toBe(
        `planetd: -logto syslog: ${missing} is not a socket (no syslog daemon listening there; under systemd log to stdout, the journal keeps it)\n`,
      );
    }
  });
});
