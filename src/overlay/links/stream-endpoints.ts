// Stream links (tcp://, tls://, unix://) of the link manager: the listening server, the accepted
// and the dialled socket, and what both go through before a link is admitted: the outer TCP's
// congestion control, TLS, the metadata handshake (stream.ts) and the admission rules.
import { once } from "node:events";
import { createRequire } from "node:module";
import net, { type Server, type Socket } from "node:net";
import type { SecureContext } from "node:tls";
import { selfSignedCertificate } from "../../crypto/cert.js";
import { remoteId, routeVia } from "./addresses.js";
import { Refused } from "./admission.js";
import { DEFAULT_HANDSHAKE_LIMITS, HandshakeSlots, sourceOf } from "./handshake-slots.js";
import type { DialAttempt, ListenerHandle, ManagerContext } from "./manager-context.js";
import { bindError, clearStaleSocket, requestCongestion, withTimeout } from "./sockets.js";
import { DEFAULT_TIMEOUTS, type StreamLink, handshake } from "./stream.js";
import { type PeerUri, hostPort } from "./uri.js";

type TlsModule = typeof import("node:tls");
let tlsModule: TlsModule | undefined;
/** node:tls loads with the first tls:// link: a node with none keeps its code out of memory (~0.6 MiB RSS). */
function tls(): TlsModule {
  tlsModule ??= createRequire(import.meta.url)("node:tls") as TlsModule;
  return tlsModule;
}

const DIAL_TIMEOUT_MS = 5000;

export class StreamEndpoints {
  private readonly ctx: ManagerContext;
  /** Inbound handshakes in flight, bounded in total and per source (handshake-slots.ts). */
  readonly handshakes: HandshakeSlots<Socket>;
  private readonly firstByteMs: number;
  /** Dialled and accepted sockets until they close: stop() destroys them. */
  readonly sockets = new Set<Socket>();
  private tlsContext: SecureContext | undefined;
  /** Numbers inbound unix:// connections, which have no remote address to dedupe by. */
  private inboundSeq = 0;

  constructor(ctx: ManagerContext) {
    this.ctx = ctx;
    const limits = { ...DEFAULT_HANDSHAKE_LIMITS, ...ctx.cfg.handshakes };
    this.handshakes = new HandshakeSlots(limits);
    this.firstByteMs = limits.firstByteMs;
  }

  /** Bind a tcp://, tls:// or unix:// listener (`uri` as configured, `parsed` from it). */
  async listen(uri: string, parsed: PeerUri, iface: string | undefined): Promise<ListenerHandle> {
    const server: Server = net.createServer({ pauseOnConnect: true }, (socket) =>
      this.accept(socket, parsed, iface),
    );
    if (parsed.scheme === "unix") await clearStaleSocket(parsed.path);
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e) => reject(bindError(uri, iface, e)));
      server.once("listening", resolve);
      if (parsed.scheme === "unix") server.listen(parsed.path);
      else server.listen({ host: parsed.host, port: parsed.port });
    });
    server.removeAllListeners("error");
    server.on("error", (e) => this.ctx.limitedLog.warn(`listener ${uri}`, `listener ${uri}: ${e.message}`));
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    const actual =
      parsed.scheme === "unix"
        ? `unix://${parsed.path}`
        : `${parsed.scheme}://${hostPort(parsed.host, port)}`;
    this.ctx.log.info(`listening on ${actual}`);
    return {
      uri: actual,
      port,
      close: () =>
        new Promise<void>((resolve) => {
          server.close(() => resolve());
        }),
    };
  }

  private accept(raw: Socket, parsed: PeerUri, iface: string | undefined): void {
    const ctx = this.ctx;
    if (ctx.stopped()) {
      raw.destroy();
      return;
    }
    const ip = raw.remoteAddress ?? "";
    const id =
      parsed.scheme === "unix"
        ? `unix||${parsed.path}|in${++this.inboundSeq}`
        : remoteId(parsed.scheme, iface, ip, raw.remotePort ?? 0);
    const remote =
      parsed.scheme === "unix"
        ? `unix://${parsed.path}`
        : `${parsed.scheme}://${hostPort(ip, raw.remotePort ?? 0)}`;
    const ids = ctx.admission.ids;
    if (ids.has(id)) {
      raw.destroy();
      return;
    }
    const source = sourceOf(parsed.scheme === "unix" ? "" : ip);
    const admission = this.handshakes.acquire(source, raw);
    if (!admission.ok) {
      raw.destroy();
      const why =
        admission.reason === "source_limit" ? "too many handshakes from it" : "handshake table full";
      ctx.limitedLog.info(
        `inbound connections from ${source} refused`,
        `inbound connection from ${remote} refused: ${why}`,
        { remote, reason: admission.reason },
      );
      return;
    }
    admission.evicted?.destroy();
    ids.add(id);
    this.sockets.add(raw);
    raw.once("close", () => {
      ids.delete(id);
      this.sockets.delete(raw);
    });
    raw.on("error", () => raw.destroy());
    // An honest peer writes its metadata (or TLS hello) as soon as it connects; a silent one only
    // holds a slot. Only armed when shorter than the handshake deadline, which closes it anyway.
    let closedFor: string | undefined;
    const handshakeMs = ctx.cfg.timeouts?.handshakeMs ?? DEFAULT_TIMEOUTS.handshakeMs;
    const silence =
      this.firstByteMs < handshakeMs
        ? setTimeout(() => {
            if (raw.bytesRead > 0) return;
            closedFor = `sent nothing for ${this.firstByteMs} ms`;
            this.handshakes.refused.silent++;
            raw.destroy();
          }, this.firstByteMs)
        : undefined;
    this.acceptAsync(raw, parsed, remote, ip).then(
      (link) => {
        clearTimeout(silence);
        this.handshakes.release(source, raw);
        if (link) ctx.admit(link);
      },
      (e: Error) => {
        clearTimeout(silence);
        if (!this.handshakes.release(source, raw)) {
          closedFor ??= "closed to make room (handshake table full, its source holds the most slots)";
        }
        ctx.counters.handshakeFailures++;
        raw.destroy();
        if (ctx.stopped()) return;
        ctx.limitedLog.info(
          `inbound links from ${source} failed`,
          `inbound link from ${remote} failed: ${closedFor ?? e.message}`,
          { remote },
        );
      },
    );
  }

  private async acceptAsync(
    raw: Socket,
    parsed: PeerUri,
    remote: string,
    ip: string,
  ): Promise<StreamLink | null> {
    const cfg = this.ctx.cfg;
    if (parsed.scheme !== "unix") requestCongestion(raw, cfg.tcpCongestion);
    let stream: Socket = raw;
    if (parsed.scheme === "tls") {
      const secured = new (tls().TLSSocket)(raw, {
        isServer: true,
        secureContext: this.serverContext(),
        requestCert: false,
      });
      stream = secured;
      raw.resume();
      const timeoutMs = cfg.timeouts?.handshakeMs ?? 6000;
      await withTimeout(once(secured, "secure"), timeoutMs, raw, "TLS handshake timed out");
    } else {
      raw.resume();
    }
    const link = await handshake(stream, {
      localKey: cfg.identity.publicKey,
      outbound: false,
      remote,
      priority: parsed.priority,
      timeouts: cfg.timeouts,
    });
    const refused = this.ctx.admission.refusal(link.remoteKey, false, [], ip);
    if (refused !== undefined) {
      link.close(refused);
      throw new Error(refused);
    }
    return link;
  }

  /** Dial a tcp://, tls:// or unix:// peer; `attempt.socket` is the socket while it is under way. */
  async dial(parsed: PeerUri, iface: string | undefined, attempt: DialAttempt): Promise<StreamLink> {
    const ctx = this.ctx;
    const timeoutMs = ctx.cfg.dialTimeoutMs ?? DIAL_TIMEOUT_MS;
    let raw: Socket;
    if (parsed.scheme === "unix") {
      raw = net.connect({ path: parsed.path });
    } else {
      const { host, localAddress } = routeVia(parsed.host, iface);
      raw = net.connect({ host, port: parsed.port, localAddress });
    }
    attempt.socket = raw;
    raw.on("error", () => {}); // errors surface through the awaited events and "close"
    this.sockets.add(raw);
    raw.once("close", () => this.sockets.delete(raw));
    let id = "";
    let connected = false;
    try {
      await withTimeout(once(raw, "connect"), timeoutMs, raw, "dial timed out");
      connected = true;
      if (parsed.scheme !== "unix") requestCongestion(raw, ctx.cfg.tcpCongestion);
      id =
        parsed.scheme === "unix"
          ? `unix||${parsed.path}|out`
          : remoteId(parsed.scheme, iface, raw.remoteAddress ?? "", raw.remotePort ?? 0);
      const ids = ctx.admission.ids;
      if (ids.has(id)) throw new Error("already connected to this address");
      ids.add(id);
      raw.once("close", () => ids.delete(id));
      let stream: Socket = raw;
      if (parsed.scheme === "tls") {
        const secured = tls().connect({
          socket: raw,
          servername: parsed.sni,
          rejectUnauthorized: false,
          minVersion: "TLSv1.3",
        });
        stream = secured;
        await withTimeout(once(secured, "secureConnect"), timeoutMs, raw, "TLS handshake timed out");
      }
      const link = await handshake(stream, {
        localKey: ctx.cfg.identity.publicKey,
        outbound: true,
        remote: parsed.base,
        priority: parsed.priority,
        timeouts: ctx.cfg.timeouts,
      });
      const refused = ctx.admission.refusal(link.remoteKey, true, parsed.keys, "");
      if (refused !== undefined) {
        link.close(refused);
        throw new Refused(refused);
      }
      return link;
    } catch (e) {
      if (connected) ctx.counters.handshakeFailures++;
      raw.destroy();
      throw e;
    }
  }

  private serverContext(): SecureContext {
    if (!this.tlsContext) {
      const { cert, key } = selfSignedCertificate(this.ctx.cfg.identity);
      this.tlsContext = tls().createSecureContext({ cert, key, minVersion: "TLSv1.3" });
    }
    return this.tlsContext;
  }
}
