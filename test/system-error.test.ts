import dgram from "node:dgram";
import net from "node:net";
import { describe, expect, it } from "vitest";
import { systemErrorText } from "../src/util/system-error.js";

const listenError = (server: net.Server, port: number) =>
  new Promise<Error>((resolve) => {
    server.once("error", resolve);
    server.listen(port, "127.0.0.1");
  });

describe("systemErrorText", () => {
  it("keeps the description and code, drops the syscall and address", async () => {
    const first = net.createServer();
    await new Promise<void>((r) => first.listen(0, "127.0.0.1", r));
    const port = (first.address() as net.AddressInfo).port;
    const err = await listenError(net.createServer(), port);
    first.close();
    expect(err.message).toMatch(/^listen EADDRINUSE: address already in use 127\.0\.0\.1:\d+$/);
    expect(systemErrorText(err)).toBe("address already in use (EADDRINUSE)");
  });

  it("describes dgram errors, whose messages carry no description", async () => {
    const socket = dgram.createSocket("udp4");
    const err = await new Promise<Error>((resolve) => {
      socket.once("error", resolve);
      socket.bind(1, "192.0.2.1"); // TEST-NET-1: on no interface here, so the bind fails locally
    });
    socket.close();
    expect(systemErrorText(err)).toBe("address not available (EADDRNOTAVAIL)");
  });

  it("leaves other errors as they are", () => {
    expect(systemErrorText(new Error("TUN: not running as root"))).toBe("TUN: not running as root");
    expect(systemErrorText("text")).toBe("text");
  });
});
