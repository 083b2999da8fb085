// The admin socket (spec 9.1): unix:// or tcp:// listener speaking Yggdrasil 0.4.7's JSON envelope,
// so Debian's yggdrasilctl and planetctl both work against planetd.
import { chmodSync, lstatSync, mkdirSync, statSync, unlinkSync } from "node:fs";
import net from "node:net";
import { dirname } from "node:path";
import { goEncodeIndented } from "../util/gojson.js";
import { systemErrorText } from "../util/system-error.js";
import { AdminError, COMMANDS, type CommandContext, decodeArguments } from "./commands.js";
import { JsonStreamScanner } from "./stream.js";
import type { AdminView } from "./view.js";

export interface AdminLogger {
  info(msg: string): void;
  warn(msg: string): void;
  debug(msg: string): void;
}

export interface AdminServerOptions {
  /** How long getNodeInfo / debug_* wait for the remote (0.4.7: 6000 ms). */
  remoteTimeoutMs?: number;
  /**
   * A connection with no request in progress for this long is dropped: no complete request since it
   * connected or since its last answer (default 5 s). Bytes trickling in do not keep it open.
   */
  idleTimeoutMs?: number;
  /** Largest request accepted; a client sending more without completing a request is cut. */
  maxRequestBytes?: number;
  /** Connections at once (default 64); when full, the one idle the longest is closed for a new one. */
  maxConnections?: number;
}

export interface AdminServerStats {
  /** Connections closed after idleTimeoutMs without a complete request. */
  idleClosed: number;
  /** Idle connections closed early to make room for a new one (the table was full). */
  evicted: number;
  /** New connections refused: the table was full and every connection was running a request. */
  refused: number;
}

export interface AdminServer {
  enabled: boolean;
  /** `unix:///path` or `tcp://host:port` actually bound ("" when disabled). */
  address: string;
  stats(): AdminServerStats;
  close(): Promise<void>;
}

/** One admin connection; idleSince is undefined while a request is running. */
interface Connection {
  socket: net.Socket;
  idleSince: number | undefined;
}

export type AdminEndpoint =
  | { kind: "none" }
  | { kind: "unix"; path: string }
  | { kind: "tcp"; host: string; port: number };

/** Parses an AdminListen value as 0.4.7 does: unix://path, tcp://host:port, host:port, none/"". */
export function parseAdminListen(listen: string): AdminEndpoint {
  const value = listen.trim();
  if (value === "" || value === "none") return { kind: "none" };
  if (/^unix:\/\//i.test(value)) {
    const path = value.slice(7);
    if (path === "")
      throw new Error(`admin: AdminListen "${listen}" has no socket path (expected unix:///path)`);
    return { kind: "unix", path };
  }
  const hostPort = /^tcp:\/\//i.test(value) ? value.slice(6).replace(/\/$/, "") : value;
  const match = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(hostPort);
  const port = match ? Number(match[3]) : Number.NaN;
  if (!match || port > 65535) {
    throw new Error(`admin: AdminListen "${listen}" is not unix:///path, tcp://host:port or host:port`);
  }
  return { kind: "tcp", host: match[1] ?? match[2] ?? "", port };
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\./.test(host);
}

const errorCode = (err: unknown) => (err as NodeJS.ErrnoException).code;

/** Resolves true if something accepts connections on the unix socket at `path`. */
function socketIsLive(path: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = net.connect(path);
    const timer = setTimeout(() => {
      probe.destroy();
      resolve(true); // Go treats a timeout as "in use" too.
    }, 2000);
    probe.once("connect", () => {
      clearTimeout(timer);
      probe.destroy();
      resolve(true);
    });
    probe.once("error", (err) => {
      clearTimeout(timer);
      const code = errorCode(err);
      if (code === "ECONNREFUSED" || code === "ENOENT") resolve(false);
      else reject(err);
    });
  });
}

async function prepareUnixPath(path: string, listen: string): Promise<void> {
  if (path.startsWith("@")) return; // abstract namespace: nothing on disk
  mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  let stats: ReturnType<typeof lstatSync>;
  try {
    stats = lstatSync(path);
  } catch {
    return;
  }
  if (!stats.isSocket())
    throw new Error(`admin: ${listen}: ${path} exists and is not a socket; not replacing it`);
  if (await socketIsLive(path)) {
    throw new Error(
      `admin: ${listen} is in use by another process (is planetd or yggdrasil already running?)`,
    );
  }
  unlinkSync(path);
}

function listenOn(server: net.Server, options: net.ListenOptions): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(options, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function envelopeError(error: string): string {
  return goEncodeIndented({ status: "error", error, request: null, response: null });
}

const PANIC_REPLY = goEncodeIndented({ error: "Check your syntax and input types" });

interface Reply {
  text: string;
  keepalive: boolean;
}

/** Finds a field the way Go's json.Unmarshal does: exact name preferred, else case-insensitive. */
function field(obj: Record<string, unknown>, name: string): unknown {
  if (name in obj) return obj[name];
  let found: unknown;
  for (const [key, value] of Object.entries(obj)) if (key.toLowerCase() === name) found = value;
  return found;
}

/** Handles one decoded request value; never throws. */
export async function handleRequest(
  ctx: CommandContext,
  request: unknown,
  logger?: AdminLogger,
): Promise<Reply> {
  if (request === null) return { text: envelopeError("No request specified"), keepalive: false };
  if (typeof request !== "object" || Array.isArray(request)) {
    return { text: envelopeError("Failed to unmarshal request"), keepalive: false };
  }
  const obj = request as Record<string, unknown>;
  const name = field(obj, "request");
  const keepaliveField = field(obj, "keepalive");
  const keepalive = keepaliveField === true;
  if (
    (name !== undefined && name !== null && typeof name !== "string") ||
    (keepaliveField !== undefined && keepaliveField !== null && typeof keepaliveField !== "boolean")
  ) {
    return { text: envelopeError("Failed to unmarshal request"), keepalive };
  }
  if (!name) return { text: envelopeError("No request specified"), keepalive };
  const commandName = name.toLowerCase();
  const command = Object.hasOwn(COMMANDS, commandName) ? COMMANDS[commandName] : undefined;
  if (!command)
    return { text: envelopeError(`Unknown action '${commandName}', try 'list' for help`), keepalive };
  try {
    const rawArgs = field(obj, "arguments");
    const response = await command.run(ctx, decodeArguments(command, rawArgs === undefined ? {} : rawArgs));
    return { text: goEncodeIndented({ status: "success", request: null, response }), keepalive };
  } catch (err) {
    if (err instanceof AdminError) return { text: envelopeError(err.message), keepalive };
    logger?.warn(`admin: ${commandName} failed: ${(err as Error)?.stack ?? String(err)}`);
    return { text: PANIC_REPLY, keepalive: false };
  }
}

function serveConnection(
  conn: Connection,
  ctx: CommandContext,
  logger: AdminLogger,
  limits: { idleTimeoutMs: number; maxRequestBytes: number },
  stats: AdminServerStats,
): void {
  const { socket } = conn;
  const scanner = new JsonStreamScanner();
  let eof = false;
  let busy = false;
  // Idle time counts from connect and from each answer, not from the last byte received: a client
  // that never completes a request must not hold one of the few connections.
  let idleTimer: NodeJS.Timeout | undefined;
  const setIdle = (idle: boolean) => {
    clearTimeout(idleTimer);
    conn.idleSince = idle ? Date.now() : undefined;
    if (!idle || socket.destroyed) return;
    idleTimer = setTimeout(() => {
      stats.idleClosed++;
      logger.debug(`admin: closing a connection idle for ${limits.idleTimeoutMs} ms`);
      socket.destroy();
    }, limits.idleTimeoutMs);
  };
  setIdle(true);
  socket.once("close", () => clearTimeout(idleTimer));
  socket.on("error", (err) => logger.debug(`admin: connection error: ${err.message}`));

  const finish = (text: string) => {
    if (!socket.destroyed) socket.end(text);
  };

  const pump = async () => {
    if (busy) return;
    busy = true;
    try {
      while (!socket.destroyed && !socket.writableEnded) {
        const item = scanner.next(eof);
        if (item === null) {
          // Like Go's decoder hitting EOF: one last error reply, then close.
          if (eof) finish(envelopeError("Failed to find request"));
          return;
        }
        if ("error" in item) {
          finish(envelopeError("Failed to find request"));
          return;
        }
        setIdle(false);
        const reply = await handleRequest(ctx, item.value, logger);
        setIdle(true);
        if (socket.destroyed) return;
        if (!reply.keepalive) {
          finish(reply.text);
          return;
        }
        if (!socket.write(reply.text)) {
          // A keepalive client that does not read gets no further answers until it does; the idle
          // timeout ends it if it never does.
          await new Promise<void>((resolve) => {
            socket.once("drain", resolve);
            socket.once("close", resolve);
          });
        }
      }
    } finally {
      busy = false;
    }
  };

  socket.on("data", (chunk: Buffer) => {
    scanner.push(chunk);
    if (scanner.buffered > limits.maxRequestBytes) {
      logger.debug(`admin: request larger than ${limits.maxRequestBytes} bytes, closing the connection`);
      socket.destroy();
      return;
    }
    void pump();
  });
  socket.on("end", () => {
    eof = true;
    void pump();
  });
}

/** Closes the connection idle the longest; false when every one is running a request. */
function closeLongestIdle(connections: Set<Connection>): boolean {
  let oldest: Connection | undefined;
  for (const conn of connections) {
    if (conn.idleSince !== undefined && (!oldest || conn.idleSince < oldest.idleSince!)) oldest = conn;
  }
  if (!oldest) return false;
  // Out of the table now: its "close" comes later, and the new connection takes its place.
  connections.delete(oldest);
  oldest.socket.destroy();
  return true;
}

export async function startAdminServer(
  listen: string,
  view: AdminView,
  logger: AdminLogger,
  options: AdminServerOptions = {},
): Promise<AdminServer> {
  const endpoint = parseAdminListen(listen);
  if (endpoint.kind === "none") {
    return {
      enabled: false,
      address: "",
      stats: () => ({ idleClosed: 0, evicted: 0, refused: 0 }),
      close: async () => {},
    };
  }
  const ctx: CommandContext = { view, remoteTimeoutMs: options.remoteTimeoutMs ?? 6000 };
  const limits = {
    idleTimeoutMs: options.idleTimeoutMs ?? 5000,
    maxRequestBytes: options.maxRequestBytes ?? 1 << 20,
  };
  const maxConnections = options.maxConnections ?? 64;
  const stats: AdminServerStats = { idleClosed: 0, evicted: 0, refused: 0 };
  const connections = new Set<Connection>();
  const server = net.createServer({ allowHalfOpen: true }, (socket) => {
    if (connections.size >= maxConnections) {
      if (!closeLongestIdle(connections)) {
        stats.refused++;
        logger.debug("admin: refusing a connection: every connection is running a request");
        socket.destroy();
        return;
      }
      stats.evicted++;
    }
    const conn: Connection = { socket, idleSince: Date.now() };
    connections.add(conn);
    socket.once("close", () => connections.delete(conn));
    serveConnection(conn, ctx, logger, limits, stats);
  });

  let address: string;
  let unixPath: string | undefined;
  try {
    if (endpoint.kind === "unix") {
      await prepareUnixPath(endpoint.path, listen);
      await listenOn(server, { path: endpoint.path });
      unixPath = endpoint.path.startsWith("@") ? undefined : endpoint.path;
      if (unixPath) {
        try {
          chmodSync(unixPath, 0o660);
        } catch {
          logger.warn(`admin: ${listen} may have unsafe permissions (chmod 0660 failed)`);
        }
      }
      address = `unix://${endpoint.path}`;
    } else {
      await listenOn(server, { host: endpoint.host || undefined, port: endpoint.port });
      const bound = server.address() as net.AddressInfo;
      const host = bound.family === "IPv6" ? `[${bound.address}]` : bound.address;
      address = `tcp://${host}:${bound.port}`;
      if (!isLoopback(endpoint.host)) {
        logger.warn(`admin: ${address} is not on loopback; anyone who can reach it can control this node`);
      }
    }
  } catch (err) {
    server.close();
    const message = (err as Error).message;
    throw new Error(
      message.startsWith("admin:")
        ? message
        : `admin: AdminListen ${JSON.stringify(listen)}: cannot bind: ${systemErrorText(err)}`,
    );
  }
  const ino = unixPath ? statSync(unixPath).ino : undefined;
  // After listen, an accept failure (e.g. EMFILE) is emitted here; without a listener it would kill the daemon.
  server.on("error", (err) => logger.warn(`admin: ${err.message}`));
  logger.info(`admin socket listening on ${address}`);

  return {
    enabled: true,
    address,
    stats: () => ({ ...stats }),
    close: () =>
      new Promise<void>((resolve) => {
        for (const conn of connections) conn.socket.destroy();
        server.close(() => {
          // Remove our socket file, but not one a newer daemon has put in its place.
          try {
            if (unixPath && statSync(unixPath).ino === ino) unlinkSync(unixPath);
          } catch {
            // already gone
          }
          resolve();
        });
      }),
  };
}
