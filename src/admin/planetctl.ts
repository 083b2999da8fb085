// planetctl: yggdrasilctl-style client for the admin socket of planetd (and of Yggdrasil 0.4.7).
//   planetctl [-endpoint=unix:///…|tcp://host:port | -useconffile FILE] [-json] <command> [key=value …]
import { existsSync, readFileSync } from "node:fs";
import net from "node:net";
import Hjson from "hjson";
import { defaultAdminListen, defaultConfigPath, systemConfigPath } from "../config/paths.js";
import { BUILD_NAME, BUILD_VERSION } from "../util/version.js";
import { commandSummary, findCommandHelp, formatCommandHelp } from "./ctl-help.js";
import { formatResponse } from "./format.js";
import { JsonStreamScanner } from "./stream.js";

export const DEFAULT_ENDPOINTS = [
  "unix:///var/run/planetd/planetd.sock",
  "unix:///run/planetd/planetd.sock",
  "unix:///var/run/yggdrasil/yggdrasil.sock",
];

export interface CtlIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
  /** Whole-request deadline; remote queries take up to 6 s on the daemon side. */
  timeoutMs?: number;
}

const USAGE = `Usage: planetctl [options] command [key=value] [key=value] ...
       planetctl help command    (or planetctl command --help) for one command's usage

Options (before the command):
  -endpoint=URI   admin socket: unix:///path, tcp://host:port or host:port
  -useconffile FILE  (or --config FILE) use the AdminListen of that planetd/yggdrasil config
                  Default: $PLANETD_ADMIN, else the AdminListen of /etc/planetd/planetd.conf, else
                  of the state directory's planetd.conf (as planetd run picks them), else the
                  first of ${DEFAULT_ENDPOINTS.join(", ")} that exists
  -json           print the raw JSON response
  -version        print planetctl's version

Commands (names match in any case; "list" asks the daemon for its own list):
${commandSummary()}

Examples:
  planetctl getPeers
  planetctl getNodeInfo key=<hex public key>
  planetctl -endpoint=tcp://127.0.0.1:9001 addPeer uri=tls://host:port
`;

class CtlError extends Error {}

interface Parsed {
  endpoint?: string;
  /** -useconffile / --config: read AdminListen from this config. */
  configFile?: string;
  json: boolean;
  version: boolean;
  help: boolean;
  command?: string;
  args: Record<string, string>;
  /** `help <command>` or `<command> --help`: print that command's usage, ask no daemon. */
  helpFor?: string;
}

function parseBool(name: string, value: string): boolean {
  if (/^(1|t|true)$/i.test(value)) return true;
  if (/^(0|f|false)$/i.test(value)) return false;
  throw new CtlError(`invalid boolean value "${value}" for -${name}`);
}

export function parseArgs(argv: string[]): Parsed {
  const parsed: Parsed = { json: false, version: false, help: false, args: {} };
  let i = 0;
  for (; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      i++;
      break;
    }
    if (!arg.startsWith("-") || arg === "-") break;
    const [rawName, inline] = arg.replace(/^--?/, "").split(/=(.*)/s, 2);
    const name = rawName.toLowerCase();
    if (name === "endpoint") {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new CtlError("flag needs an argument: -endpoint");
      parsed.endpoint = value;
    } else if (name === "useconffile" || name === "config" || name === "c") {
      const value = inline ?? argv[++i];
      if (value === undefined) throw new CtlError(`flag needs an argument: ${arg}`);
      parsed.configFile = value;
    } else if (name === "json" || name === "version" || name === "v") {
      const value = inline === undefined ? true : parseBool(name, inline);
      if (name === "json") parsed.json = value;
      else parsed.version = value;
    } else if (name === "h" || name === "help") {
      parsed.help = true;
    } else {
      throw new CtlError(`unknown flag ${arg} (flags go before the command; see planetctl -help)`);
    }
  }
  parsed.command = argv[i];
  const rest = argv.slice(i + 1);
  if (parsed.command?.toLowerCase() === "help") {
    parsed.helpFor = rest[0];
    return parsed;
  }
  if (parsed.command !== undefined && rest.some((a) => /^--?(h|help)$/i.test(a))) {
    parsed.helpFor = parsed.command;
    return parsed;
  }
  for (const arg of rest) {
    const eq = arg.indexOf("=");
    if (eq <= 0) throw new CtlError(`argument "${arg}" is not key=value (e.g. key=<hex public key>)`);
    parsed.args[arg.slice(0, eq)] = arg.slice(eq + 1);
  }
  return parsed;
}

/**
 * AdminListen of the config at `path`, like yggdrasilctl -useconffile: the daemon's default when the
 * key is absent. `required` (the operator named the file): problems are errors; otherwise a file
 * that is missing, unreadable, broken or has the admin socket off is passed over (undefined).
 */
export function adminListenFromConfig(
  path: string,
  env: Record<string, string | undefined>,
  required: boolean,
): string | undefined {
  const refuse = (problem: string) => {
    if (required) throw new CtlError(`${path}: ${problem}`);
    return undefined;
  };
  let raw: unknown;
  try {
    raw = Hjson.parse(readFileSync(path, "utf8").replace(/^\uFEFF/, ""));
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return refuse("no such file (give -useconffile FILE or -endpoint=URI)");
    if (code === "EACCES") return refuse("permission denied (run as root, or give -endpoint=URI)");
    return refuse(`not a readable HJSON or JSON config: ${(err as Error).message.split("\n")[0]}`);
  }
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) return refuse("is not a config object");
  // Go's encoding/json matches keys case-insensitively.
  const key = Object.keys(raw).find((k) => k.toLowerCase() === "adminlisten");
  const value = key === undefined ? null : (raw as Record<string, unknown>)[key];
  if (value === null || value === undefined) return defaultAdminListen(env as NodeJS.ProcessEnv);
  if (typeof value !== "string")
    return refuse("AdminListen is not a string (expected unix:///path or tcp://host:port)");
  if (value === "none")
    return refuse(
      'AdminListen is "none": the admin socket is off (set it and reload, or give -endpoint=URI)',
    );
  return value;
}

/** -endpoint, else -useconffile, else $PLANETD_ADMIN, else the default configs' AdminListen, else the socket defaults. */
export function defaultEndpoint(env: Record<string, string | undefined>, configFile?: string): string {
  if (configFile !== undefined) return adminListenFromConfig(configFile, env, true)!;
  if (env.PLANETD_ADMIN) return env.PLANETD_ADMIN;
  const processEnv = env as NodeJS.ProcessEnv;
  for (const path of [systemConfigPath(processEnv), defaultConfigPath(processEnv)]) {
    const endpoint = adminListenFromConfig(path, env, false);
    if (endpoint !== undefined) return endpoint;
  }
  return DEFAULT_ENDPOINTS.find((e) => existsSync(e.slice(7))) ?? DEFAULT_ENDPOINTS[0];
}

function connectOptions(endpoint: string): net.NetConnectOpts {
  if (/^unix:\/\//i.test(endpoint)) return { path: endpoint.slice(7) };
  const hostPort = /^tcp:\/\//i.test(endpoint) ? endpoint.slice(6).replace(/\/$/, "") : endpoint;
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(hostPort);
  if (!match) {
    throw new CtlError(`endpoint "${endpoint}" is not unix:///path, tcp://host:port or host:port`);
  }
  return { host: match[1] ?? (match[2] || "localhost"), port: Number(match[3]) };
}

/** The one-line explanation planetctl prints when it cannot reach the endpoint. */
export function connectError(endpoint: string, err: NodeJS.ErrnoException): Error {
  const hint = "is planetd running? (try -endpoint=…, -useconffile FILE or set PLANETD_ADMIN)";
  switch (err.code) {
    case "ENOENT":
      return new CtlError(`cannot connect to ${endpoint}: no such file — ${hint}`);
    case "ECONNREFUSED":
      return new CtlError(`cannot connect to ${endpoint}: connection refused — ${hint}`);
    case "EACCES":
    case "EPERM":
      return new CtlError(
        `cannot connect to ${endpoint}: permission denied (run as root or join the socket's group)`,
      );
    default:
      return new CtlError(`cannot connect to ${endpoint}: ${err.message}`);
  }
}

/** Sends one request and resolves with the decoded envelope. */
export function request(
  endpoint: string,
  name: string,
  args: Record<string, string>,
  timeoutMs = 15_000,
): Promise<Record<string, unknown>> {
  const options = connectOptions(endpoint);
  return new Promise((resolve, reject) => {
    const socket = net.connect(options);
    const scanner = new JsonStreamScanner();
    let settled = false;
    const done = (err: Error | null, value?: Record<string, unknown>) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value ?? {});
    };
    const timer = setTimeout(
      () => done(new CtlError(`no answer from ${endpoint} within ${timeoutMs / 1000} s`)),
      timeoutMs,
    );
    let connected = false;
    socket.once("connect", () => {
      connected = true;
      socket.write(`${JSON.stringify({ request: name, arguments: args, keepalive: false })}\n`);
    });
    const take = (eof: boolean) => {
      const item = scanner.next(eof);
      if (item === null) {
        if (eof) done(new CtlError(`${endpoint} closed the connection without an answer`));
        return;
      }
      if ("error" in item) done(new CtlError(`${endpoint} sent an answer that is not JSON: ${item.error}`));
      else if (item.value === null || typeof item.value !== "object" || Array.isArray(item.value)) {
        done(new CtlError(`${endpoint} sent an answer that is not a JSON object`));
      } else done(null, item.value as Record<string, unknown>);
    };
    socket.on("data", (chunk: Buffer) => {
      scanner.push(chunk);
      take(false);
    });
    socket.on("end", () => take(true));
    socket.on("error", (err: NodeJS.ErrnoException) =>
      done(connected ? new CtlError(`${endpoint}: ${err.message}`) : connectError(endpoint, err)),
    );
  });
}

export async function run(argv: string[], io: CtlIo): Promise<number> {
  try {
    const parsed = parseArgs(argv);
    if (parsed.version) {
      io.stdout(`Build name: ${BUILD_NAME}\nBuild version: ${BUILD_VERSION}\n`);
      return 0;
    }
    if (parsed.helpFor !== undefined || (parsed.help && parsed.command !== undefined)) {
      const name = parsed.helpFor ?? parsed.command!;
      const help = findCommandHelp(name);
      if (help === undefined) throw new CtlError(`no command "${name}" (see planetctl -help for the list)`);
      io.stdout(formatCommandHelp(help));
      return 0;
    }
    if (
      parsed.help ||
      (parsed.command !== undefined && parsed.command.toLowerCase() === "help") ||
      parsed.command === undefined
    ) {
      io.stdout(USAGE);
      return 0;
    }
    const endpoint = parsed.endpoint ?? defaultEndpoint(io.env, parsed.configFile);
    const reply = await request(endpoint, parsed.command, parsed.args, io.timeoutMs);
    if (reply.status !== "success") {
      const error = typeof reply.error === "string" && reply.error !== "" ? reply.error : "unspecified error";
      io.stderr(`planetctl: ${parsed.command}: ${error}\n`);
      return 1;
    }
    const command = parsed.command.toLowerCase();
    if (parsed.json) {
      io.stdout(`${JSON.stringify(reply.response, null, 2)}\n`);
    } else if (command === "addpeer" || command === "removepeer") {
      io.stdout(`${command === "addpeer" ? "added" : "removed"} peer ${parsed.args.uri ?? ""}\n`);
    } else {
      io.stdout(formatResponse(command, reply.response));
    }
    return 0;
  } catch (err) {
    if (!(err instanceof CtlError)) throw err;
    io.stderr(`planetctl: ${err.message}\n`);
    return 1;
  }
}

export async function main(argv: string[]): Promise<void> {
  process.exitCode = await run(argv, {
    stdout: (text) => process.stdout.write(text),
    stderr: (text) => process.stderr.write(text),
    env: process.env,
  });
}
