import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type AdminServer, parseAdminListen, startAdminServer } from "../src/admin/server.js";
import { BUILD_VERSION } from "../src/util/version.js";
import { FakeView, keyA, keyB, keyC, protoPair } from "./admin-fake.js";

const execFileAsync = promisify(execFile);
const quiet = { info: () => {}, warn: () => {}, debug: () => {} };
const hexA = keyA.toString("hex");
const hexB = keyB.toString("hex");
const hexC = keyC.toString("hex");

function makeView(): FakeView {
  const pair = protoPair(
    { nodeInfo: { name: "nodeA" } },
    { nodeInfo: { name: "nodeB" }, peerKeys: () => [keyA, keyC], coords: () => [1] },
  );
  const view = new FakeView(keyA, pair.a);
  view.peerList = [
    {
      key: keyB,
      port: 2,
      priority: 0,
      coords: [1],
      remote: "tcp://10.0.0.2:1234",
      bytesRecvd: 1245,
      bytesSent: 698,
      uptimeSeconds: 8.07,
    },
    {
      key: keyC,
      port: 1,
      priority: 3,
      coords: [1, 1],
      remote: "tls://[fe80::1%eth0]:35005",
      bytesRecvd: 10,
      bytesSent: 12,
      uptimeSeconds: 1.5,
    },
    {
      key: keyB,
      port: 1,
      priority: 1,
      coords: [1, 1],
      remote: "tcp://10.0.0.3:1",
      bytesRecvd: 1,
      bytesSent: 2,
      uptimeSeconds: 3,
    },
  ];
  view.dhtList = [
    { key: keyC, port: 1, rest: 0 },
    { key: keyB, port: 2, rest: 1 },
  ];
  view.pathList = [
    { key: keyC, path: [] },
    { key: keyB, path: [1, 1, 0] },
  ];
  view.sessionList = [{ key: keyB, bytesRecvd: 3213, bytesSent: 3214, uptimeSeconds: 1.64 }];
  return view;
}

interface Exchange {
  text: string;
  closed: boolean;
}

/** Writes `payload`, collects everything until the server closes (or `untilReplies` replies arrived). */
function exchange(
  address: string,
  payload: string | Buffer,
  untilReplies = 0,
  timeoutMs = 5000,
): Promise<Exchange> {
  const socket = address.startsWith("unix://")
    ? net.connect(address.slice(7))
    : net.connect(Number(address.split(":").pop()), "127.0.0.1");
  return new Promise((resolve, reject) => {
    let text = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ text, closed: false });
    }, timeoutMs);
    socket.on("data", (d) => {
      text += d;
      if (untilReplies > 0 && text.split(/^}$/m).length - 1 >= untilReplies) {
        clearTimeout(timer);
        socket.destroy();
        resolve({ text, closed: false });
      }
    });
    let connected = false;
    socket.on("error", (err) => {
      if (!connected) reject(err);
    });
    socket.on("close", () => {
      clearTimeout(timer);
      resolve({ text, closed: true });
    });
    socket.once("connect", () => {
      connected = true;
      socket.write(payload);
    });
  });
}

async function call(address: string, request: unknown): Promise<Record<string, unknown>> {
  const { text } = await exchange(address, JSON.stringify(request));
  return JSON.parse(text);
}

const errorReply = (error: string) =>
  `{\n  "status": "error",\n  "error": ${JSON.stringify(error)},\n  "request": null,\n  "response": null\n}\n`;

const dir = mkdtempSync(join(tmpdir(), "pd-admin-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

for (const transport of ["unix", "tcp"] as const) {
  describe(`admin socket over ${transport}`, () => {
    let server: AdminServer;
    let view: FakeView;
    beforeAll(async () => {
      view = makeView();
      const listen = transport === "unix" ? `unix://${join(dir, "admin.sock")}` : "tcp://127.0.0.1:0";
      server = await startAdminServer(listen, view, quiet, { remoteTimeoutMs: 300, idleTimeoutMs: 1500 });
    });
    afterAll(() => server.close());

    it("getSelf: exact bytes of 0.4.7's envelope", async () => {
      const { text, closed } = await exchange(server.address, '{"request":"getSelf"}');
      expect(closed).toBe(true);
      expect(text).toBe(
        [
          "{",
          '  "status": "success",',
          '  "request": null,',
          '  "response": {',
          '    "build_name": "planetd",',
          `    "build_version": "${BUILD_VERSION}",`,
          `    "key": "${hexA}",`,
          '    "address": "202:24ae:c219:8a4a:de94:eae2:b97e:ac87",',
          '    "coords": [',
          "      1,",
          "      1",
          "    ],",
          '    "subnet": "302:24ae:c219:8a4a::/64"',
          "  }",
          "}",
          "",
        ].join("\n"),
      );
    });

    it("getSelf: coords [] at the root", async () => {
      view.selfCoords = [];
      const text = (await exchange(server.address, '{"request":"getself"}')).text;
      view.selfCoords = [1, 1];
      expect(text).toContain('"coords": [],');
    });

    it("list: 0.4.7's 14 commands and planetd's reload, getfirewall, getnat and getudp, sorted, fields omitted when empty", async () => {
      const reply = await call(server.address, { request: "list" });
      const list = (reply.response as { list: Array<Record<string, unknown>> }).list;
      expect(list.map((e) => e.command)).toEqual([
        "addpeer",
        "debug_remotegetdht",
        "debug_remotegetpeers",
        "debug_remotegetself",
        "getdht",
        "getfirewall",
        "getmulticastinterfaces",
        "getnat",
        "getnodeinfo",
        "getpaths",
        "getpeers",
        "getself",
        "getsessions",
        "gettun",
        "getudp",
        "list",
        "reload",
        "removepeer",
      ]);
      expect(list[0]).toEqual({
        command: "addpeer",
        description: "Add a peer to the peer list",
        fields: ["uri", "interface"],
      });
      expect(Object.keys(list[4])).toEqual(["command", "description"]);
    });

    it("getPeers: shape, key order, sorted by port then priority", async () => {
      const peers = (
        (await call(server.address, { request: "getPeers" })).response as {
          peers: Array<Record<string, unknown>>;
        }
      ).peers;
      expect(peers.map((p) => [p.port, p.priority])).toEqual([
        [1, 1],
        [1, 3],
        [2, 0],
      ]);
      expect(Object.keys(peers[0])).toEqual([
        "address",
        "key",
        "port",
        "priority",
        "coords",
        "remote",
        "bytes_recvd",
        "bytes_sent",
        "uptime",
      ]);
      expect(peers[2]).toEqual({
        address: "201:192a:a745:c066:ac1a:fe1d:3bb4:5d59",
        key: hexB,
        port: 2,
        priority: 0,
        coords: [1],
        remote: "tcp://10.0.0.2:1234",
        bytes_recvd: 1245,
        bytes_sent: 698,
        uptime: 8.07,
      });
    });

    it("getDHT, getPaths, getSessions: shapes and key-hex order", async () => {
      const dht = (await call(server.address, { request: "getdht" })).response as {
        dht: Array<Record<string, unknown>>;
      };
      expect(dht.dht.map((d) => d.key)).toEqual([hexB, hexC].sort());
      expect(Object.keys(dht.dht[0])).toEqual(["address", "key", "port", "rest"]);
      const paths = (await call(server.address, { request: "GETPATHS" })).response as {
        paths: Array<Record<string, unknown>>;
      };
      expect(paths.paths).toEqual(
        [
          { address: "201:192a:a745:c066:ac1a:fe1d:3bb4:5d59", key: hexB, path: [1, 1, 0] },
          { address: "200:2b6b:2738:3ac7:5bea:8215:5f09:d9a2", key: hexC, path: [] },
        ].sort((a, b) => (a.key < b.key ? -1 : 1)),
      );
      const sessions = (await call(server.address, { request: "getSessions" })).response;
      expect(sessions).toEqual({
        sessions: [
          {
            address: "201:192a:a745:c066:ac1a:fe1d:3bb4:5d59",
            key: hexB,
            bytes_recvd: 3213,
            bytes_sent: 3214,
            uptime: 1.64,
          },
        ],
      });
    });

    it("getTun and getMulticastInterfaces", async () => {
      expect((await call(server.address, { request: "getTun" })).response).toEqual({
        enabled: true,
        name: "pd0",
        mtu: 53049,
      });
      view.tunState = { enabled: false };
      expect((await exchange(server.address, '{"request":"gettun"}')).text).toContain(
        '"response": {\n    "enabled": false\n  }',
      );
      view.tunState = { enabled: true, name: "pd0", mtu: 53049 };
      expect((await call(server.address, { request: "getMulticastInterfaces" })).response).toEqual({
        multicast_interfaces: ["pdv0"],
      });
    });

    it("addPeer/removePeer: {} and 0.4.7's error strings", async () => {
      const args = { uri: "tcp://192.0.2.1:1234" };
      expect(
        (await exchange(server.address, JSON.stringify({ request: "addPeer", arguments: args }))).text,
      ).toBe('{\n  "status": "success",\n  "request": null,\n  "response": {}\n}\n');
      expect(
        (await exchange(server.address, JSON.stringify({ request: "addPeer", arguments: args }))).text,
      ).toBe(errorReply("peer already configured"));
      expect(view.configured.has("tcp://192.0.2.1:1234|")).toBe(true);
      expect((await call(server.address, { request: "removepeer", arguments: args })).status).toBe("success");
      expect(
        (await exchange(server.address, JSON.stringify({ request: "removePeer", arguments: args }))).text,
      ).toBe(errorReply("peer not configured"));
      expect(
        (
          await call(server.address, {
            request: "addpeer",
            arguments: { URI: "tcp://192.0.2.1:1", interface: "eth0" },
          })
        ).status,
      ).toBe("success");
      expect(view.configured.has("tcp://192.0.2.1:1|eth0")).toBe(true);
      expect((await call(server.address, { request: "addpeer", arguments: { uri: "foo://x" } })).error).toBe(
        "unknown call scheme: foo",
      );
    });

    it("getNodeInfo: remote nodeinfo, missing key, bad hex, timeout", async () => {
      const reply = await call(server.address, { request: "getNodeInfo", arguments: { key: hexB } });
      expect(reply.response).toEqual({
        [hexB]: expect.objectContaining({ name: "nodeB", buildname: "planetd" }),
      });
      expect((await exchange(server.address, '{"request":"getnodeinfo"}')).text).toBe(
        errorReply("No remote public key supplied"),
      );
      expect((await call(server.address, { request: "getnodeinfo", arguments: { key: "zz" } })).error).toBe(
        "Failed to decode public key: encoding/hex: invalid byte: U+007A 'z'",
      );
      expect((await call(server.address, { request: "getnodeinfo", arguments: { key: hexC } })).error).toBe(
        "Timed out waiting for response",
      );
      expect((await call(server.address, { request: "getnodeinfo", arguments: { key: 5 } })).error).toBe(
        "json: cannot unmarshal number into Go struct field GetNodeInfoRequest.key of type string",
      );
    });

    it("debug_remoteGet*: keyed by the remote's address; 'timeout'", async () => {
      const ipB = "201:192a:a745:c066:ac1a:fe1d:3bb4:5d59";
      expect(
        (await call(server.address, { request: "debug_remoteGetSelf", arguments: { key: hexB } })).response,
      ).toEqual({
        [ipB]: { coords: "[1]", key: hexB },
      });
      expect(
        (await call(server.address, { request: "debug_remotegetpeers", arguments: { key: hexB } })).response,
      ).toEqual({
        [ipB]: { keys: [hexA, hexC] },
      });
      // An empty key list is an empty object in 0.4.7 (no "keys" field).
      expect(
        (await call(server.address, { request: "debug_remoteGetDHT", arguments: { key: hexB } })).response,
      ).toEqual({ [ipB]: {} });
      expect(
        (await call(server.address, { request: "debug_remoteGetDHT", arguments: { key: hexC } })).error,
      ).toBe("timeout");
      expect(
        (await call(server.address, { request: "debug_remoteGetSelf", arguments: { key: "abc" } })).error,
      ).toBe("encoding/hex: odd length hex string");
    });

    it("keepalive: several requests on one connection, any case", async () => {
      const payload =
        '{"Request":"GETTUN","KEEPALIVE":true}\n{"request":"getMulticastInterfaces","keepalive":true}{"request":"gettun"}';
      const { text, closed } = await exchange(server.address, payload);
      expect(closed).toBe(true);
      const replies = text.split(/(?<=^})\n/m).filter((t) => t.trim() !== "");
      expect(replies.map((r) => JSON.parse(r).status)).toEqual(["success", "success", "success"]);
      expect(JSON.parse(replies[1]).response).toEqual({ multicast_interfaces: ["pdv0"] });
    });

    it("bad envelopes get 0.4.7's errors and a closed connection", async () => {
      const cases: Array<[string, string]> = [
        ["garbage", "Failed to find request"],
        ["[1,2]", "Failed to unmarshal request"],
        ['{"request":5}', "Failed to unmarshal request"],
        ['{"request":"gettun","keepalive":"yes"}', "Failed to unmarshal request"],
        ["{}", "No request specified"],
        ["null\n", "No request specified"],
        ['{"request":"NoSuch"}', "Unknown action 'nosuch', try 'list' for help"],
        [
          '{"request":"getself","arguments":5}',
          "json: cannot unmarshal number into Go value of type admin.GetSelfRequest",
        ],
        ['{"request":"hasOwnProperty"}', "Unknown action 'hasownproperty', try 'list' for help"],
      ];
      for (const [payload, error] of cases) {
        const { text, closed } = await exchange(server.address, payload);
        expect(text, payload).toBe(errorReply(error));
        expect(closed).toBe(true);
      }
    });

    it("a half-closed connection with nothing sent gets 'Failed to find request'", async () => {
      const socket = server.address.startsWith("unix://")
        ? net.connect(server.address.slice(7))
        : net.connect(Number(server.address.split(":").pop()), "127.0.0.1");
      let text = "";
      socket.on("data", (d) => {
        text += d;
      });
      await new Promise((r) => socket.once("connect", r));
      socket.end();
      await new Promise((r) => socket.once("close", r));
      expect(text).toBe(errorReply("Failed to find request"));
    });

    it("a failing view yields 'Check your syntax and input types'", async () => {
      view.failNext = true;
      const { text, closed } = await exchange(server.address, '{"request":"getself","keepalive":true}');
      expect(text).toBe('{\n  "error": "Check your syntax and input types"\n}\n');
      expect(closed).toBe(true);
    });

    it("a 10 MB request closes that connection; the daemon keeps answering", async () => {
      const huge = Buffer.alloc(10 * 1024 * 1024, 0x61);
      huge.write('{"request":"', 0);
      const { text, closed } = await exchange(server.address, huge);
      expect(closed).toBe(true);
      expect(text).toBe("");
      expect((await call(server.address, { request: "gettun" })).status).toBe("success");
    });

    it("a client that never reads is cut; others are served meanwhile", async () => {
      const socket = server.address.startsWith("unix://")
        ? net.connect(server.address.slice(7))
        : net.connect(Number(server.address.split(":").pop()), "127.0.0.1");
      socket.pause();
      socket.on("error", () => {});
      const closed = new Promise<void>((r) => socket.once("close", () => r()));
      await new Promise((r) => socket.once("connect", r));
      // Pipelined keepalive requests, written for as long as the connection lasts, answers never read.
      // Count chunks the kernel took, not write()'s return: Node 18 returns false for any chunk above
      // the high-water mark even when it went out at once, Node 20 returns true.
      const chunk = '{"request":"list","keepalive":true}'.repeat(1000);
      let sent = 0;
      const counted = (err?: Error | null) => {
        if (!err) sent++;
      };
      const flood = () => {
        while (!socket.destroyed && socket.write(chunk, counted));
        if (!socket.destroyed) socket.once("drain", flood);
      };
      flood();
      expect((await call(server.address, { request: "getself" })).status).toBe("success");
      await closed;
      expect(sent).toBeGreaterThan(0);
    });
  });
}

describe("admin listen addresses", () => {
  it("parses 0.4.7's forms", () => {
    expect(parseAdminListen("none")).toEqual({ kind: "none" });
    expect(parseAdminListen("")).toEqual({ kind: "none" });
    expect(parseAdminListen("unix:///run/x.sock")).toEqual({ kind: "unix", path: "/run/x.sock" });
    expect(parseAdminListen("tcp://localhost:9001")).toEqual({ kind: "tcp", host: "localhost", port: 9001 });
    expect(parseAdminListen("[::1]:9001")).toEqual({ kind: "tcp", host: "::1", port: 9001 });
    expect(() => parseAdminListen("tcp://nohost")).toThrow(
      /is not unix:\/\/\/path, tcp:\/\/host:port or host:port/,
    );
  });

  it("disabled for none", async () => {
    const server = await startAdminServer("none", makeView(), quiet);
    expect(server.enabled).toBe(false);
  });

  it("unix: mode 0660, stale socket replaced, live socket refused, file removed on close", async () => {
    const path = join(dir, "stale.sock");
    // A stale socket: bound, then its listener gone without unlinking.
    const stale = net.createServer();
    await new Promise<void>((r) => stale.listen(path, r));
    const fd = (stale as unknown as { _handle: { fd: number } })._handle.fd;
    expect(fd).toBeGreaterThan(0);
    await new Promise<void>((r) => stale.close(() => r()));
    if (!existsSync(path)) {
      // Node unlinked it on close; recreate a dead socket file by binding in a child.
      await execFileAsync(process.execPath, [
        "-e",
        `require("net").createServer().listen(${JSON.stringify(path)}, () => process.exit(0))`,
      ]);
    }
    expect(statSync(path).isSocket()).toBe(true);
    const server = await startAdminServer(`unix://${path}`, makeView(), quiet);
    expect(statSync(path).mode & 0o777).toBe(0o660);
    await expect(startAdminServer(`unix://${path}`, makeView(), quiet)).rejects.toThrow(
      /in use by another process/,
    );
    await server.close();
    expect(existsSync(path)).toBe(false);
    const notSocket = join(dir, "regular");
    writeFileSync(notSocket, "x");
    await expect(startAdminServer(`unix://${notSocket}`, makeView(), quiet)).rejects.toThrow(
      /is not a socket/,
    );
  });
});

const haveYggdrasilctl = await execFileAsync("yggdrasilctl", ["-version"]).then(
  () => true,
  () => false,
);

describe.skipIf(!haveYggdrasilctl)("Debian's yggdrasilctl against planetd's admin socket", () => {
  let server: AdminServer;
  beforeAll(async () => {
    server = await startAdminServer(`unix://${join(dir, "ctl.sock")}`, makeView(), quiet, {
      remoteTimeoutMs: 300,
    });
  });
  afterAll(() => server.close());

  const ctl = (...args: string[]) =>
    execFileAsync("yggdrasilctl", [`-endpoint=${server.address}`, ...args], { timeout: 10_000 }).catch(
      (err: { stdout: string; stderr: string; code: number }) => ({
        stdout: err.stdout,
        stderr: err.stderr,
        code: err.code,
      }),
    );

  it("answers every command with well-formed JSON", async () => {
    const commands = [
      ["getSelf"],
      ["getPeers"],
      ["getDHT"],
      ["getPaths"],
      ["getSessions"],
      ["getTun"],
      ["getMulticastInterfaces"],
      ["list"],
      ["addPeer", "uri=tcp://192.0.2.9:1"],
      ["removePeer", "uri=tcp://192.0.2.9:1"],
      ["getNodeInfo", `key=${hexB}`],
      ["debug_remoteGetSelf", `key=${hexB}`],
      ["debug_remoteGetPeers", `key=${hexB}`],
      ["debug_remoteGetDHT", `key=${hexB}`],
    ];
    // removePeer fails unless addPeer has run, so it waits for it; the rest run at once.
    let added: Promise<unknown> = Promise.resolve();
    const results = await Promise.all(
      commands.map((c) => {
        const run = c[0] === "removePeer" ? added.then(() => ctl("-json", ...c)) : ctl("-json", ...c);
        if (c[0] === "addPeer") added = run;
        return run;
      }),
    );
    results.forEach((result, i) => {
      expect(() => JSON.parse(result.stdout), commands[i].join(" ")).not.toThrow();
    });
    expect(JSON.parse(results[0].stdout).key).toBe(hexA);
    expect(JSON.parse(results[1].stdout).peers).toHaveLength(3);
    expect(JSON.parse(results[10].stdout)[hexB].name).toBe("nodeB");
  });

  it("shows human tables and reports errors with exit code 1", async () => {
    const self = await ctl("getSelf");
    expect(self.stdout).toMatch(/Coordinates:\s+\[1 1\]/);
    expect(self.stdout).toContain("Build name:");
    const bad = await ctl("nosuch");
    expect(bad.stdout).toContain(
      "Admin socket returned an error: Unknown action 'nosuch', try 'list' for help",
    );
    expect((bad as { code?: number }).code).toBe(1);
  });
});
