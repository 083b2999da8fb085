// The session AEAD per call, its two implementations side by side (issue 11: idle RTT): direct
// (session_chacha.c, OpenSSL's ChaCha20_ctr32 and Poly1305 from Node's binary) and EVP
// (EVP_chacha20_poly1305). An idle ping seals and opens one ~100-byte packet per hop with cold caches,
// so besides the warm median per call it times calls after evicting the caches (16 MiB touched
// between calls), and GB/s at 53 kB, the default MTU's packets. Prints medians; asserts nothing.
//   npx vite-node bench/session-aead-call.mjs     (ROUNDS=5: rounds of interleaved runs per figure)
import { randomBytes } from "node:crypto";
import { loadSessionAead } from "../src/crypto/session-aead.js";

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const addon = loadSessionAead();
if (!addon?.use("direct") || !addon.use("evp")) {
  throw new Error("planetd_session addon without both implementations: npx node-gyp rebuild");
}
const key = randomBytes(32);
const evict = Buffer.alloc(16 << 20);
const median = (xs) => xs.sort((a, b) => a - b)[xs.length >> 1];

/** Median ns of a seal and of an open of `size` bytes (4 bytes of AD), over `calls` calls. */
function perCall(impl, size, cold, calls) {
  addon.use(impl);
  const buf = Buffer.alloc(4 + size + 16);
  const plain = Buffer.alloc(size);
  const seals = [];
  const opens = [];
  for (let i = 0; i < calls; i++) {
    if (cold) for (let j = 0; j < evict.length; j += 64) evict[j]++;
    const t0 = process.hrtime.bigint();
    addon.seal(key, 0, i, buf, 4, 4 + size);
    const t1 = process.hrtime.bigint();
    if (!addon.open(key, 0, i, buf, 4, 4 + size + 16, plain, 0)) throw new Error("does not open");
    seals.push(Number(t1 - t0));
    opens.push(Number(process.hrtime.bigint() - t1));
  }
  return [median(seals), median(opens)];
}

/** GB/s sealing `size` bytes. */
function rate(impl, size) {
  addon.use(impl);
  const buf = Buffer.alloc(4 + size + 16);
  const calls = Math.ceil(200_000_000 / size);
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < calls; i++) addon.seal(key, 0, i, buf, 4, 4 + size);
  return (size * calls) / Number(process.hrtime.bigint() - t0);
}

console.log(`node ${process.version}; medians of ${ROUNDS} interleaved rounds`);
for (const [size, cold, calls] of [
  [100, false, 20_000],
  [100, true, 300],
  [1400, false, 20_000],
  [1400, true, 300],
]) {
  const runs = { direct: [], evp: [] };
  for (let r = 0; r < ROUNDS; r++)
    for (const impl of ["evp", "direct"]) runs[impl].push(perCall(impl, size, cold, calls));
  const [ds, dopen] = [median(runs.direct.map((x) => x[0])), median(runs.direct.map((x) => x[1]))];
  const [es, eopen] = [median(runs.evp.map((x) => x[0])), median(runs.evp.map((x) => x[1]))];
  console.log(
    `${String(size).padStart(5)} B ${cold ? "cold" : "warm"}: seal direct ${ds} ns, evp ${es} ns (${(ds / es).toFixed(2)}x); ` +
      `open direct ${dopen} ns, evp ${eopen} ns (${(dopen / eopen).toFixed(2)}x)`,
  );
}
const gb = { direct: [], evp: [] };
for (let r = 0; r < ROUNDS; r++) for (const impl of ["evp", "direct"]) gb[impl].push(rate(impl, 53_000));
const [d, e] = [median(gb.direct), median(gb.evp)];
console.log(`53000 B seal: direct ${d.toFixed(2)} GB/s, evp ${e.toFixed(2)} GB/s (${(d / e).toFixed(2)}x)`);
