// Logging through pino: JSON lines by default (for journald and log shippers) with string levels and
// ISO times, pino-pretty when a person is watching a terminal, or datagrams to the syslog socket.
// Writes are synchronous: log volume is low (never per packet) and a daemon that exits right after
// an error must not lose the line that explains it.
import { openSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import type { Writable } from "node:stream";
import type { DestinationStream, Logger, LoggerOptions, default as Pino } from "pino";
import type PinoPretty from "pino-pretty";
import { systemdNotify } from "../tun/native.js";

// An ES import of CommonJS costs idle memory (src/crypto/box.ts says how much).
const require = createRequire(import.meta.url);
const pino = require("pino") as typeof Pino;

export type { Logger };

export class LogDestinationError extends Error {
  override name = "LogDestinationError";
}

export const DEFAULT_SYSLOG_SOCKET = "/dev/log";

/** Keys every line carries; the rest are the call's own fields. */
const FRAME_KEYS = new Set(["level", "time", "pid", "hostname", "msg", "err"]);

function fieldText(value: unknown): string {
  return typeof value === "string" ? value : (JSON.stringify(value) ?? String(value));
}

/**
 * The message for people: `msg`, then ` (key=value …)` for the fields whose value the message does
 * not already show (`logger.info({ address }, \`Your IPv6 address is ${address}\`)` prints it once),
 * then an error's stack on the following lines. JSON output keeps every field for machines.
 */
export function humanMessage(log: Record<string, unknown>): string {
  const msg = typeof log.msg === "string" ? log.msg : "";
  const extra = Object.entries(log)
    .filter(([key, value]) => !FRAME_KEYS.has(key) && !msg.includes(fieldText(value)))
    .map(([key, value]) => `${key}=${fieldText(value)}`);
  const text = extra.length > 0 ? `${msg} (${extra.join(" ")})` : msg;
  const err = log.err as { stack?: unknown } | undefined;
  return typeof err?.stack === "string" ? `${text}\n${err.stack}` : text;
}

/** RFC 3164 severities (facility daemon = 3), as glibc's syslog(3) writes to /dev/log. */
const SEVERITY: Record<string, number> = { fatal: 2, error: 3, warn: 4, info: 6, debug: 7, trace: 7 };
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** The addon's datagram buffer is 512 bytes; longer lines are cut here, visibly. */
const MAX_SYSLOG_BYTES = 500;

export function syslogDatagram(log: Record<string, unknown>, now: Date = new Date()): string {
  const pri = 3 * 8 + (SEVERITY[String(log.level)] ?? 6);
  const two = (n: number) => String(n).padStart(2, "0");
  const stamp = `${MONTHS[now.getMonth()]} ${String(now.getDate()).padStart(2, " ")} ${two(now.getHours())}:${two(now.getMinutes())}:${two(now.getSeconds())}`;
  let line = `<${pri}>${stamp} planetd[${process.pid}]: ${humanMessage(log).replace(/\n\s*/g, " | ")}`;
  if (Buffer.byteLength(line) > MAX_SYSLOG_BYTES) {
    line = `${Buffer.from(line)
      .subarray(0, MAX_SYSLOG_BYTES - 3)
      .toString()
      .replace(/\uFFFD$/, "")}…`;
  }
  return line;
}

/**
 * One AF_UNIX datagram per line through the TUN addon's sender (Node has no AF_UNIX datagram
 * sockets). Refused at start, with the reason, when the socket is missing or takes no datagram.
 */
function syslogStream(socketPath: string): DestinationStream {
  const send = (line: string) => systemdNotify(line, { NOTIFY_SOCKET: socketPath });
  let isSocket = false;
  try {
    isSocket = statSync(socketPath).isSocket();
  } catch {}
  if (!isSocket) {
    throw new LogDestinationError(
      `-logto syslog: ${socketPath} is not a socket (no syslog daemon listening there; under systemd log to stdout, the journal keeps it)`,
    );
  }
  const probe = { level: "info", msg: `logging to syslog at ${socketPath}` };
  if (!send(syslogDatagram(probe))) {
    throw new LogDestinationError(
      `-logto syslog: cannot send a datagram to ${socketPath} (the native addon build/Release/planetd_tun.node is missing or the socket refused it)`,
    );
  }
  return {
    write(chunk: string) {
      const log = JSON.parse(chunk) as Record<string, unknown>;
      // A lost datagram (a full syslog queue) goes to stderr rather than nowhere.
      if (!send(syslogDatagram(log))) process.stderr.write(chunk);
    },
  };
}

/**
 * pino-pretty (and its colour and date libraries) is loaded only when a terminal is watching: a
 * daemon under systemd or in a container logs JSON and never needs it (a few MiB of idle RSS).
 */
function prettyStream(out: Writable, colorize: boolean): DestinationStream {
  const pretty = require("pino-pretty") as typeof PinoPretty;
  return pretty({
    colorize,
    sync: true,
    destination: out,
    translateTime: "SYS:standard",
    ignore: "pid",
    hideObject: true,
    messageFormat: (log) => humanMessage(log),
  });
}

const twoDigits = (n: number) => (n < 10 ? `0${n}` : `${n}`);

/**
 * Date#toISOString's text for a time from 1970 to 9999, built from the UTC getters. V8's
 * toISOString asks for the local time zone's offset even though it prints UTC, and the first ask
 * loads ICU's time zone data: 0.5-0.7 MiB of RSS for the timestamp of the first log line.
 */
export function isoTimestamp(ms: number): string {
  const d = new Date(ms);
  const millis = d.getUTCMilliseconds();
  const frac = millis < 10 ? `00${millis}` : millis < 100 ? `0${millis}` : `${millis}`;
  return `${d.getUTCFullYear()}-${twoDigits(d.getUTCMonth() + 1)}-${twoDigits(d.getUTCDate())}T${twoDigits(d.getUTCHours())}:${twoDigits(d.getUTCMinutes())}:${twoDigits(d.getUTCSeconds())}.${frac}Z`;
}

/**
 * `destination` is "stdout", "syslog" (datagrams to /dev/log), "syslog:/path/to/socket", or a file
 * path (appended to, created if missing). stdout is pretty text when it is a terminal.
 */
export function createLogger(
  level: string,
  destination = "stdout",
  stdout: Writable & { isTTY?: boolean } = process.stdout,
): Logger {
  const options: LoggerOptions = {
    level,
    base: { pid: process.pid },
    timestamp: () => `,"time":"${isoTimestamp(Date.now())}"`,
    formatters: { level: (label) => ({ level: label }) },
  };
  if (destination === "stdout") {
    if (stdout.isTTY) return pino(options, prettyStream(stdout, stdout === process.stdout));
    const stream = stdout === process.stdout ? pino.destination({ dest: 1, sync: true }) : stdout;
    return pino(options, stream);
  }
  if (destination === "syslog" || destination.startsWith("syslog:")) {
    const socketPath = destination === "syslog" ? DEFAULT_SYSLOG_SOCKET : destination.slice(7);
    return pino(options, syslogStream(socketPath));
  }
  let fd: number;
  try {
    fd = openSync(destination, "a", 0o640);
  } catch (err) {
    throw new LogDestinationError(
      `cannot open log file ${destination}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
  return pino(options, pino.destination({ dest: fd, sync: true }));
}
