// The UDP socket udp:// links use: the batched native one (udp-native.ts: recvmmsg/sendmmsg, GSO and
// GRO) when the planetd_udp addon is built and the kernel has those calls, node:dgram otherwise.
// PLANETD_UDP_SOCKET=dgram (or `impl: "dgram"`) forces the portable one, for benches and tests;
// =native refuses to fall back.
import dgram from "node:dgram";
import { type NativeUdpAddon, loadNativeUdp, openNativeUdp } from "./udp-native.js";
import type {
  RemoteInfo,
  UdpErrorHandler,
  UdpMessageHandler,
  UdpSocket,
  UdpSocketOptions,
} from "./udp-socket-types.js";

export type {
  RemoteInfo,
  SealKeys,
  UdpErrorHandler,
  UdpMessageHandler,
  UdpSocket,
  UdpSocketOptions,
} from "./udp-socket-types.js";
export { OPENED_FAILED, OPENED_NONE } from "./udp-socket-types.js";

export const SOCKET_BUFFER_BYTES = 4 * 1024 * 1024;

function implWanted(o: UdpSocketOptions): "auto" | "native" | "dgram" {
  if (o.impl) return o.impl;
  const env = process.env.PLANETD_UDP_SOCKET;
  return env === "dgram" || env === "native" ? env : "auto";
}

/**
 * Opens and binds a socket; a bind failure rejects with the errno's code (EADDRINUSE, ...).
 * `addon` null stands for a missing addon (tests of the fallback).
 */
export async function openUdpSocket(
  o: UdpSocketOptions,
  addon: NativeUdpAddon | null | undefined = loadNativeUdp(),
): Promise<UdpSocket> {
  const want = implWanted(o);
  if (want !== "dgram") {
    if (addon) {
      try {
        return openNativeUdp(addon, o);
      } catch (e) {
        // No recvmmsg/sendmmsg in this kernel or sandbox: the portable socket still works.
        if (want === "native" || (e as { code?: string }).code !== "ENOSYS") throw e;
        return DgramUdpSocket.open(o);
      }
    }
    if (want === "native")
      throw new Error("udp: the planetd_udp addon is not built (run `npx node-gyp rebuild`)");
  }
  return DgramUdpSocket.open(o);
}

/** The portable socket: one send call and one 'message' event per datagram. */
class DgramUdpSocket implements UdpSocket {
  readonly kind = "dgram";
  /** dgram sends from the caller's buffer once the socket is writable (after a lookup, a tick later). */
  readonly copiesOnSend = false;
  private readonly socket: dgram.Socket;
  private messageHandler: UdpMessageHandler | undefined;
  private errorHandler: UdpErrorHandler | undefined;

  static async open(o: UdpSocketOptions): Promise<DgramUdpSocket> {
    const socket = dgram.createSocket({ type: o.family === 6 ? "udp6" : "udp4" });
    await new Promise<void>((resolve, reject) => {
      socket.once("error", reject);
      socket.bind({ address: o.address || undefined, port: o.port ?? 0, exclusive: true }, () => {
        socket.off("error", reject);
        resolve();
      });
    });
    const bytes = o.bufferBytes ?? SOCKET_BUFFER_BYTES;
    try {
      socket.setRecvBufferSize(bytes);
      socket.setSendBufferSize(bytes);
    } catch {}
    return new DgramUdpSocket(socket);
  }

  private constructor(socket: dgram.Socket) {
    this.socket = socket;
    socket.on("message", (msg: Buffer, rinfo: dgram.RemoteInfo & { key?: string }) => {
      rinfo.key = `${rinfo.address}|${rinfo.port}`;
      this.messageHandler?.(msg, rinfo as RemoteInfo);
    });
    socket.on("error", (e: Error) => this.errorHandler?.(e));
  }

  onMessage(handler: UdpMessageHandler | undefined): void {
    this.messageHandler = handler;
  }

  onError(handler: UdpErrorHandler | undefined): void {
    this.errorHandler = handler;
  }

  send(data: Uint8Array, port?: number, address?: string): void {
    try {
      if (address === undefined) this.socket.send(data);
      else this.socket.send(data, port, address);
    } catch {} // closed: nothing to send from
  }

  async connect(port: number, address: string): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.socket.once("error", reject);
      this.socket.connect(port, address, () => {
        this.socket.off("error", reject);
        resolve();
      });
    });
  }

  address(): { address: string; port: number; family: string } {
    return this.socket.address();
  }

  setTTL(ttl: number): void {
    try {
      this.socket.setTTL(ttl);
    } catch {}
  }

  congested(limitBytes: number): boolean {
    return this.socket.getSendQueueSize() > limitBytes;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      try {
        this.socket.close(() => resolve());
      } catch {
        resolve(); // already closed
      }
    });
  }
}
