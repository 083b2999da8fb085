// Idle RSS floor (issue 11): a process that loads planetd's dependencies and addons, writes one log
// line, opens a TCP and a UDP listener, and runs none of planetd's own code. Its RSS against a bare
// `node -e 'setInterval(() => {}, 1e9)'` is what the runtime and the dependency set cost before
// planetd's code runs. SKIP=pino,prom,sodium,addons leaves those out. Started like bin/planetd:
//   MALLOC_ARENA_MAX=1 node --v8-pool-size=1 bench/rss-deps-only.cjs & sleep 30; grep VmRSS /proc/$!/status
// (needs the addons built: npx node-gyp rebuild).
const { createRequire } = require("node:module");
const path = require("node:path");
const root = path.join(__dirname, "..");
const req = createRequire(path.join(root, "package.json"));
const skip = (process.env.SKIP || "").split(",");
const pino = skip.includes("pino") ? null : req("pino");
if (!skip.includes("prom")) req("prom-client");
req("hjson");
if (!skip.includes("sodium")) req("sodium-native");
req("tweetnacl");
if (!skip.includes("addons")) {
  for (const name of ["planetd_tun", "planetd_session", "planetd_udp"]) {
    require(path.join(root, "build", "Release", `${name}.node`));
  }
}
require("node:tls");
require("node:crypto");
const net = require("node:net");
const dgram = require("node:dgram");
if (pino) pino({ level: "info" }).info("up");
net.createServer(() => {}).listen(0, "127.0.0.1");
dgram.createSocket("udp6").bind(0);
setInterval(() => {}, 1000);
