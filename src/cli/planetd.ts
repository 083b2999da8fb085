// The planetd command line. Subcommands (`planetd address --config a.conf`) and Yggdrasil 0.4.7's
// single-dash flags (`planetd -useconffile a.conf -address`) are two spellings of the same request,
// so existing scripts and systemd units keep working. Bad input ends with one line on stderr and
// exit code 2; a failure of the running daemon with exit code 1.
import { existsSync, readFileSync } from "node:fs";
import { resolve } from "node:path";
import type { Readable, Writable } from "node:stream";
import {
  ConfigError,
  LOG_LEVELS,
  type PlanetConfig,
  decodeConfigBytes,
  formatConfig,
  generateConfig,
  identityFromConfig,
  loadConfigFile,
  loadOrCreateConfigFile,
  parseConfig,
} from "../config/config.js";
import { defaultConfigPath, systemConfigPath } from "../config/paths.js";
import { formatIPv6, formatSubnet } from "../crypto/address.js";
import type { Node } from "../daemon/node.js";
import type { Logger } from "./logger.js";

export class UsageError extends Error {
  override name = "UsageError";
}

type Command = "run" | "genconf" | "normaliseconf" | "address" | "subnet" | "publickey" | "version" | "help";

export interface CliOptions {
  command: Command | undefined;
  configPath: string | undefined;
  useStdin: boolean;
  autoconf: boolean;
  json: boolean;
  logLevel: string | undefined;
  logTo: string;
  /** --help, -h or `help` was given: print the usage of `command` (or the overview) and do nothing else. */
  help: boolean;
}

export interface CliIo {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
}

const COMMAND_WORDS: Record<string, Command> = {
  run: "run",
  genconf: "genconf",
  normaliseconf: "normaliseconf",
  normalizeconf: "normaliseconf",
  address: "address",
  subnet: "subnet",
  publickey: "publickey",
  version: "version",
  help: "help",
};

const BOOL_FLAGS = new Set(["json", "useconf", "autoconf"]);
const VALUE_FLAGS: Record<string, "config" | "logLevel" | "logTo"> = {
  config: "config",
  c: "config",
  useconffile: "config",
  "log-level": "logLevel",
  loglevel: "logLevel",
  logto: "logTo",
  "log-to": "logTo",
};
const COMMAND_FLAGS: Record<string, Command> = {
  genconf: "genconf",
  normaliseconf: "normaliseconf",
  normalizeconf: "normaliseconf",
  address: "address",
  subnet: "subnet",
  publickey: "publickey",
  version: "version",
  V: "version",
  help: "help",
  h: "help",
};

const CONFIG_OPTIONS = `  --config FILE       read the config from FILE, HJSON or JSON (-useconffile FILE)
  --stdin             read the config from standard input (-useconf)`;

const DEFAULT_CONFIG = `Without --config or --stdin the config is /etc/planetd/planetd.conf when it exists, else
$PLANETD_STATE_DIR/planetd.conf (default: /var/lib/planetd as root, else $XDG_STATE_HOME/planetd
or ~/.local/state/planetd).`;

export const HELP = `planetd: a planetary peer-to-peer IPv6 overlay daemon, wire-compatible with Yggdrasil 0.4.7

Usage: planetd <command> [options]
       planetd <command> --help    (or planetd help <command>) for the command's options

Commands:
  run                 run the daemon (the default when a config is given)
  genconf             print a new config with a fresh key (HJSON; --json for JSON)
  normaliseconf       print the given config with every default filled in
  address             print the IPv6 address of the config's key
  subnet              print the /64 subnet of the config's key
  publickey           print the public key of the config's key
  version             print the version
  help                print this text

Options:
${CONFIG_OPTIONS}
  --autoconf          run with a fresh random key and defaults (a new address every start)
  --json              genconf/normaliseconf print JSON instead of HJSON
  --log-level LEVEL   error, warn, info (default), debug or trace
  --logto DEST        stdout (default), syslog (datagrams to /dev/log), syslog:/path/to/socket,
                      or a file path to append to (JSON lines)

${DEFAULT_CONFIG} run generates it on first start.

Yggdrasil spellings work too: -genconf, -json, -useconffile FILE, -useconf, -normaliseconf,
-autoconf, -address, -subnet, -publickey, -version, -loglevel LEVEL, -logto DEST.
`;

const KEY_COMMAND_HELP = (
  what: string,
  flag: string,
  example: string,
) => `Usage: planetd ${flag} [--config FILE | --stdin]

Prints ${what} that the config's PrivateKey derives, e.g.
  ${example}

Options:
${CONFIG_OPTIONS}

${DEFAULT_CONFIG} It is never created here.
Yggdrasil spelling: planetd -useconffile FILE -${flag}
`;

/** `planetd <command> --help`: what the command does and the options it reads. */
export const COMMAND_HELP: Record<Command, string> = {
  run: `Usage: planetd run [--config FILE | --stdin | --autoconf] [--log-level LEVEL] [--logto DEST]

Runs the daemon in the foreground until SIGINT or SIGTERM; SIGHUP re-reads the config file.

Options:
${CONFIG_OPTIONS}
  --autoconf          a fresh random key and defaults (a new address every start)
  --log-level LEVEL   error, warn, info, debug or trace (default: the config's Planetd.LogLevel)
  --logto DEST        stdout (default), syslog (datagrams to /dev/log), syslog:/path/to/socket,
                      or a file path to append to (JSON lines)

${DEFAULT_CONFIG} It is generated, with a new key, on the first start.
Yggdrasil spellings: -useconffile FILE, -useconf, -autoconf, -loglevel LEVEL, -logto DEST.
`,
  genconf: `Usage: planetd genconf [--json]

Prints a new config with a fresh private key and every default, with comments (HJSON).
  planetd genconf > /etc/planetd/planetd.conf

Options:
  --json              print JSON (no comments) instead of HJSON

Yggdrasil spelling: planetd -genconf [-json]
`,
  normaliseconf: `Usage: planetd normaliseconf (--config FILE | --stdin) [--json]

Checks a config and prints it with every default filled in, in genconf's layout.
Problems are reported on stderr, one line each (exit 2); warnings do not stop it.

Options:
${CONFIG_OPTIONS}
  --json              print JSON instead of HJSON

Yggdrasil spelling: planetd -useconffile FILE -normaliseconf [-json]
`,
  address: KEY_COMMAND_HELP(
    "the node's IPv6 address (200::/7)",
    "address",
    "200:1234:5678:9abc:def0:1234:5678:9abc",
  ),
  subnet: KEY_COMMAND_HELP("the node's /64 for workloads (300::/8)", "subnet", "300:1234:5678:9abc::/64"),
  publickey: KEY_COMMAND_HELP("the node's ed25519 public key (64 hex characters)", "publickey", "1f0e…"),
  version: `Usage: planetd version

Prints the build name and version (as yggdrasil -version does). Yggdrasil spelling: -version
`,
  help: `Usage: planetd help [command]

Prints the overview, or the usage of one command: planetd help run (or planetd run --help).
`,
};

const COMMAND_NAMES = ["run", "genconf", "normaliseconf", "address", "subnet", "publickey", "version"];

export function parseArgs(argv: string[]): CliOptions {
  const opts: CliOptions = {
    command: undefined,
    configPath: undefined,
    useStdin: false,
    autoconf: false,
    json: false,
    logLevel: undefined,
    logTo: "stdout",
    help: false,
  };
  const setCommand = (command: Command, spelled: string) => {
    if (opts.command !== undefined && opts.command !== command) {
      throw new UsageError(
        `planetd: ${spelled} cannot be combined with ${opts.command} (see planetd --help)`,
      );
    }
    opts.command = command;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (!arg.startsWith("-") || arg === "-") {
      const command = COMMAND_WORDS[arg];
      if (command === "help") {
        opts.help = true;
        continue;
      }
      if (command === undefined && opts.help) {
        throw new UsageError(`planetd: no command "${arg}" (commands: ${COMMAND_NAMES.join(", ")})`);
      }
      if (command === undefined || opts.command !== undefined) {
        throw new UsageError(`planetd: unexpected argument "${arg}" (see planetd --help)`);
      }
      setCommand(command, arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = (eq >= 0 ? arg.slice(0, eq) : arg).replace(/^--?/, "");
    const inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    if (name === "stdin") {
      opts.useStdin = true;
    } else if (BOOL_FLAGS.has(name)) {
      let value = true;
      if (inline !== undefined) {
        if (inline !== "true" && inline !== "false") {
          throw new UsageError(`planetd: ${arg} is not true or false`);
        }
        value = inline === "true";
      }
      if (name === "json") opts.json = value;
      else if (name === "useconf") opts.useStdin = value;
      else opts.autoconf = value;
    } else if (name in VALUE_FLAGS) {
      let value = inline;
      if (value === undefined) {
        value = argv[++i];
        if (value === undefined) throw new UsageError(`planetd: ${arg} needs a value (see planetd --help)`);
      }
      const target = VALUE_FLAGS[name]!;
      if (target === "config") opts.configPath = value;
      else if (target === "logLevel") opts.logLevel = value;
      else opts.logTo = value;
    } else if (name in COMMAND_FLAGS && inline === undefined) {
      if (COMMAND_FLAGS[name] === "help") opts.help = true;
      else setCommand(COMMAND_FLAGS[name]!, arg);
    } else {
      throw new UsageError(`planetd: unknown flag ${arg} (see planetd --help)`);
    }
  }
  // Help describes the command; the rest of the line need not be complete or valid yet.
  if (opts.help) return opts;
  if (opts.logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(opts.logLevel)) {
    throw new UsageError(`planetd: log level "${opts.logLevel}" is not one of ${LOG_LEVELS.join(", ")}`);
  }
  const sources = [opts.configPath !== undefined, opts.useStdin, opts.autoconf].filter(Boolean).length;
  if (sources > 1)
    throw new UsageError("planetd: give only one of --config FILE, --stdin (-useconf) and --autoconf");
  // Yggdrasil runs when given a config and nothing else to do.
  if (opts.command === undefined && sources > 0) opts.command = "run";
  return opts;
}

function versionText(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
      version?: string;
    };
    return pkg.version ?? "unknown";
  } catch {
    return "unknown";
  }
}

async function readAll(stream: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(String(chunk)));
  return decodeConfigBytes(Buffer.concat(chunks));
}

interface LoadedConfig {
  config: PlanetConfig;
  warnings: string[];
  /** Absolute path of the file it came from; undefined for stdin and autoconf. */
  path: string | undefined;
  generatedAt?: string;
}

async function loadConfig(opts: CliOptions, io: CliIo, createDefault: boolean): Promise<LoadedConfig> {
  if (opts.autoconf) return { config: generateConfig(), warnings: [], path: undefined };
  if (opts.useStdin) return { ...parseConfig(await readAll(io.stdin), "stdin"), path: undefined };
  if (opts.configPath !== undefined) {
    const path = resolve(opts.configPath);
    return { ...loadConfigFile(path), path };
  }
  // A config the operator put in /etc wins over the one planetd generated for itself.
  const system = systemConfigPath();
  if (existsSync(system)) return { ...loadConfigFile(system), path: system };
  const path = defaultConfigPath();
  if (!createDefault) {
    try {
      return { ...loadConfigFile(path), path };
    } catch (err) {
      if (err instanceof ConfigError && err.message.endsWith("no such file")) {
        throw new UsageError(
          `planetd: ${opts.command} needs a config (--config FILE, --stdin, ${system}, or ${path} written by a first planetd run)`,
        );
      }
      throw err;
    }
  }
  const { config, warnings, created } = loadOrCreateConfigFile(path);
  return { config, warnings, path, generatedAt: created ? path : undefined };
}

function writeWarnings(io: CliIo, warnings: string[]): void {
  for (const w of warnings) io.stderr.write(`planetd: warning: ${w}\n`);
}

interface RunningNode {
  stop(): Promise<void>;
}

/** Re-reads `path` and applies it; rejects with one line (validation, or a key that needs a restart). */
async function reloadFrom(path: string, node: Node, keepLogLevel: boolean): Promise<string> {
  let loaded: ReturnType<typeof loadConfigFile>;
  try {
    loaded = loadConfigFile(path);
  } catch (err) {
    // A log line and an admin answer are one line each: every problem, joined.
    if (err instanceof ConfigError) throw new ConfigError(err.message.split("\n").join("; "));
    throw err;
  }
  const { config, warnings } = loaded;
  const summary = await node.reload(config, keepLogLevel);
  return warnings.length === 0 ? summary : `${summary} (warnings: ${warnings.join("; ")})`;
}

async function run(opts: CliOptions, io: CliIo): Promise<number> {
  const loaded = await loadConfig(opts, io, true);
  const { config } = loaded;
  const identity = identityFromConfig(config);
  // Loaded here, not at the top: pino costs other commands' start-up time for nothing.
  const { createLogger, LogDestinationError } = await import("./logger.js");
  let logger: Logger;
  const logLevel = opts.logLevel ?? config.Planetd.LogLevel;
  try {
    logger = createLogger(logLevel, opts.logTo);
  } catch (err) {
    if (err instanceof LogDestinationError) throw new UsageError(`planetd: ${err.message}`);
    throw err;
  }
  if (loaded.generatedAt)
    logger.info({ path: loaded.generatedAt }, `generated a new config at ${loaded.generatedAt}`);
  else if (loaded.path) logger.info({ path: loaded.path }, `using config ${loaded.path}`);
  else if (opts.autoconf) logger.info("using a generated config with a random key (--autoconf)");
  for (const w of loaded.warnings) logger.warn(w);
  const address = formatIPv6(identity.address);
  const subnet = formatSubnet(identity.subnet);
  const publicKey = identity.publicKey.toString("hex");
  logger.info({ address }, `Your IPv6 address is ${address}`);
  logger.info({ subnet }, `Your IPv6 subnet is ${subnet}`);
  logger.info({ publicKey }, `Your public key is ${publicKey}`);

  // Signals are handled from here on, so one arriving during startup is neither lost nor fatal.
  let stopRequested: NodeJS.Signals | undefined;
  let onStop = (signal: NodeJS.Signals) => {
    stopRequested = signal;
  };
  const stopHandler = (signal: NodeJS.Signals) => onStop(signal);
  process.on("SIGINT", stopHandler);
  process.on("SIGTERM", stopHandler);
  // Until the node runs there is nothing to reload; afterwards SIGHUP re-reads the config file.
  let reload: (() => Promise<string>) | undefined;
  process.on("SIGHUP", () => {
    if (!reload) {
      logger.warn("SIGHUP during startup ignored; send it again once planetd has started");
      return;
    }
    reload().then(
      (summary) => logger.info(`SIGHUP: config reloaded: ${summary}`),
      (err) => logger.error(`SIGHUP: reload refused, the running config stays: ${oneLine(err)}`),
    );
  });

  let node: RunningNode;
  try {
    const { Node } = await import("../daemon/node.js");
    const started = await Node.start({ config, identity, logger });
    node = started;
    if (loaded.path !== undefined) {
      const path = loaded.path;
      // One reload at a time: a second SIGHUP waits for the first, then reads the file again.
      let last: Promise<unknown> = Promise.resolve();
      reload = () => {
        const next = last.then(() => reloadFrom(path, started, opts.logLevel !== undefined));
        last = next.catch(() => {});
        return next;
      };
      started.reloadFromSource = reload;
    } else {
      reload = () =>
        Promise.reject(new Error("the config came from --stdin or --autoconf: there is no file to re-read"));
    }
  } catch (err) {
    // One line an operator reads on the terminal or in `systemctl status`; the stack is for developers.
    if (logLevel === "debug" || logLevel === "trace")
      logger.error({ err }, `startup failed: ${oneLine(err)}`);
    else logger.error(`startup failed: ${oneLine(err)}`);
    io.stderr.write(`planetd: ${oneLine(err)}\n`);
    return 1;
  }
  logger.info("planetd started");
  // Type=notify units start their dependents only now: listeners, links and the TUN are up.
  if (process.env.NOTIFY_SOCKET) {
    const { systemdNotify } = await import("../tun/native.js");
    systemdNotify(`READY=1\nMAINPID=${process.pid}`);
  }

  return await new Promise<number>((resolveExit) => {
    let stopping = false;
    onStop = (signal: NodeJS.Signals) => {
      if (stopping) {
        logger.warn(`${signal} again while stopping; exiting now`);
        resolveExit(1);
        return;
      }
      stopping = true;
      logger.info(`${signal} received, stopping`);
      node.stop().then(
        () => {
          logger.info("stopped");
          resolveExit(0);
        },
        (err: unknown) => {
          logger.error({ err }, `stop failed: ${oneLine(err)}`);
          resolveExit(1);
        },
      );
    };
    if (stopRequested !== undefined) onStop(stopRequested);
  });
}

function oneLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split("\n")[0]!;
}

/** Runs one command and returns its exit code; `main` is this plus the process around it. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  try {
    const opts = parseArgs(argv);
    if (opts.help && opts.command !== undefined) {
      io.stdout.write(COMMAND_HELP[opts.command]);
      return 0;
    }
    switch (opts.command) {
      case undefined:
      case "help":
        io.stdout.write(HELP);
        return 0;
      case "version":
        io.stdout.write(`Build name: planetd\nBuild version: ${versionText()}\n`);
        return 0;
      case "genconf":
        io.stdout.write(formatConfig(generateConfig(), opts.json));
        return 0;
      case "normaliseconf": {
        if (!opts.useStdin && opts.configPath === undefined) {
          throw new UsageError("planetd: normaliseconf needs a config (--config FILE or --stdin)");
        }
        const { config, warnings } = await loadConfig(opts, io, false);
        writeWarnings(io, warnings);
        io.stdout.write(formatConfig(config, opts.json));
        return 0;
      }
      case "address":
      case "subnet":
      case "publickey": {
        const { config, warnings } = await loadConfig(opts, io, false);
        writeWarnings(io, warnings);
        const identity = identityFromConfig(config);
        if (opts.command === "address") io.stdout.write(`${formatIPv6(identity.address)}\n`);
        else if (opts.command === "subnet") io.stdout.write(`${formatSubnet(identity.subnet)}\n`);
        else io.stdout.write(`${identity.publicKey.toString("hex")}\n`);
        return 0;
      }
      case "run":
        return await run(opts, io);
    }
  } catch (err) {
    if (err instanceof ConfigError) {
      // One line per problem, each "config: <key path> ..." (the DEVELOPERS.md form), all at once.
      io.stderr.write(`${err.message}\n`);
      return 2;
    }
    if (err instanceof UsageError) {
      io.stderr.write(`${oneLine(err)}\n`);
      return 2;
    }
    io.stderr.write(`planetd: ${oneLine(err)}\n`);
    return 1;
  }
}

export async function main(argv: string[]): Promise<void> {
  const code = await runCli(argv, { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin });
  // Exit explicitly: a stopped daemon may leave handles (timers, sockets being torn down) behind.
  process.exit(code);
}
