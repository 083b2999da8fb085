// udp:// links of the link manager: binding a listener (a configured Listen, a multicast one, or
// NAT traversal's punch socket) and dialling a peer, with the dedupe ids and admission rules of spec
// 4.2 applied as udp.ts's handshake asks (check) and as its links come up (onLink).
import { hkdfSync } from "node:crypto";
import { lookup } from "node:dns/promises";
import net from "node:net";
import { remoteId, routeVia } from "./addresses.js";
import { sourceOf } from "./handshake-slots.js";
import type { DialAttempt, ListenerHandle, ManagerContext } from "./manager-context.js";
import type { Puncher } from "./punch.js";
import { bindError } from "./sockets.js";
import { DEFAULT_TIMEOUTS } from "./stream.js";
import { type UdpDial, type UdpLink, UdpListener, dialUdp } from "./udp.js";
import { type PeerUri, hostPort } from "./uri.js";

export class UdpEndpoints {
  private readonly ctx: ManagerContext;
  /** Which keys are being punched with, and where punched links go (punch.ts). */
  private readonly puncher: Pick<Puncher, "punching" | "inbound">;
  /** Dials under way: stop() cancels them. */
  readonly dials = new Set<UdpDial>();

  constructor(ctx: ManagerContext, puncher: Pick<Puncher, "punching" | "inbound">) {
    this.ctx = ctx;
    this.puncher = puncher;
  }

  async dial(parsed: PeerUri, iface: string | undefined, attempt: DialAttempt): Promise<UdpLink> {
    const ctx = this.ctx;
    const route = routeVia(parsed.host, iface);
    const address = net.isIP(route.host.split("%")[0]!) ? route.host : (await lookup(route.host)).address;
    if (ctx.stopped()) throw new Error("stopping");
    // One link per peer key and priority: two Peers entries that differ only in priority both link.
    const id = `${remoteId("udp", iface, address, parsed.port)}|p${parsed.priority}`;
    const ids = ctx.admission.ids;
    if (ids.has(id)) throw new Error("already connected to this address");
    ids.add(id);
    const dial = dialUdp({
      address,
      port: parsed.port,
      localAddress: route.localAddress,
      localKey: ctx.cfg.identity.publicKey,
      sign: (message) => ctx.cfg.identity.sign(message),
      priority: parsed.priority,
      remote: parsed.base,
      timeouts: { ...DEFAULT_TIMEOUTS, ...ctx.cfg.timeouts },
      datagramBytes: ctx.cfg.udp?.datagramBytes,
      hooks: ctx.cfg.udp?.hooks,
      rekey: ctx.cfg.udp?.rekey,
      check: (remoteKey) => ctx.admission.refusal(remoteKey, true, parsed.keys, ""),
    });
    attempt.cancel = (reason) => dial.cancel(reason);
    this.dials.add(dial);
    try {
      const link = await dial.link;
      link.onClosed(() => ids.delete(id));
      return link;
    } catch (e) {
      ids.delete(id);
      if (dial.answered) ctx.counters.handshakeFailures++;
      throw e;
    } finally {
      this.dials.delete(dial);
    }
  }

  /** Bind a udp:// listener; `punchOnly` (NAT traversal's own socket) admits only keys being punched with. */
  async listen(
    uri: string,
    parsed: PeerUri,
    iface: string | undefined,
    punchOnly = false,
  ): Promise<ListenerHandle> {
    const ctx = this.ctx;
    const ids = ctx.admission.ids;
    const host = net.isIP(parsed.host.split("%")[0]!) ? parsed.host : (await lookup(parsed.host)).address;
    let listener: UdpListener;
    try {
      listener = await UdpListener.bind({
        host,
        port: parsed.port,
        localKey: ctx.cfg.identity.publicKey,
        sign: (message) => ctx.cfg.identity.sign(message),
        resetSecret: this.resetSecret(),
        priority: parsed.priority,
        timeouts: { ...DEFAULT_TIMEOUTS, ...ctx.cfg.timeouts },
        datagramBytes: ctx.cfg.udp?.datagramBytes,
        hooks: ctx.cfg.udp?.hooks,
        rekey: ctx.cfg.udp?.rekey,
        check: (remoteKey, ip, port) => {
          const remote = `udp://${hostPort(ip, port)}`;
          const id = remoteId("udp", iface, ip, port);
          const refused = ctx.stopped()
            ? "stopping"
            : punchOnly && !this.puncher.punching(remoteKey.toString("hex"))
              ? "this socket only takes links being punched"
              : ids.has(id)
                ? "already connected to this address"
                : ctx.admission.refusal(remoteKey, false, [], ip);
          if (refused !== undefined) {
            ctx.counters.handshakeFailures++;
            if (!ctx.stopped()) {
              ctx.limitedLog.info(
                `inbound links from ${sourceOf(ip)} failed`,
                `inbound link from ${remote} failed: ${refused}`,
                { remote },
              );
            }
          }
          return refused;
        },
        onLink: (link, ip, port) => {
          const id = remoteId("udp", iface, ip, port);
          ids.add(id);
          link.onClosed(() => ids.delete(id));
          this.puncher.inbound(link);
        },
        onSocketError: (message) => ctx.limitedLog.warn(`listener ${uri}`, `listener ${uri}: ${message}`),
      });
    } catch (e) {
      throw bindError(uri, iface, e);
    }
    const actual = `udp://${hostPort(parsed.host, listener.port)}`;
    ctx.log.info(`listening on ${actual}${punchOnly ? " (NAT traversal)" : ""}`);
    const family = net.isIPv4(host) ? 4 : 6;
    return { uri: actual, port: listener.port, udp: listener, family, close: () => listener.close() };
  }

  /** udp:// reset tokens are keyed from the node's private key, so they survive a restart. */
  private resetSecret(): Buffer {
    return Buffer.from(hkdfSync("sha256", this.ctx.cfg.identity.seed, "", "planetd udp reset token", 32));
  }
}
