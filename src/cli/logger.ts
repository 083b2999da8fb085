// Logging through pino: JSON lines by default (for journald and log shippers), pino-pretty when a
// person is watching a terminal. Writes are synchronous: log volume is low (never per packet) and a
// daemon that exits right after an error must not lose the line that explains it.
import { openSync } from "node:fs";
import pino, { type DestinationStream, type Logger } from "pino";
import PinoPretty from "pino-pretty";

export type { Logger };

export class LogDestinationError extends Error {
  override name = "LogDestinationError";
}

/**
 * `destination` is "stdout", a file path (appended to, created if missing) or "syslog", which
 * planetd does not implement: it logs to stdout, where systemd's journal picks it up anyway.
 */
export function createLogger(level: string, destination = "stdout"): Logger {
  const options = { level, base: { pid: process.pid } };
  if (destination === "stdout" || destination === "syslog") {
    const stream: DestinationStream = process.stdout.isTTY
      ? PinoPretty({ colorize: true, sync: true, translateTime: "SYS:standard", ignore: "pid" })
      : pino.destination({ dest: 1, sync: true });
    const logger = pino(options, stream);
    if (destination === "syslog") logger.warn("logging to syslog is not supported; logging to stdout");
    return logger;
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
