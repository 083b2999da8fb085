// Session traffic crypto: NaCl secretbox (sodium-native) vs ChaCha20-Poly1305 through the
// planetd_session addon (OpenSSL EVP), raw and through two Sessions, at IfMTU-sized and 53 KB
// messages. Prints GB/s and the ratio; nothing asserts on time. Run on a quiet machine:
//   npx vite-node bench/session-cipher.mjs        (ROUNDS=5 for more rounds; medians are printed)
import { randomBytes } from "node:crypto";
import { loadBox, nonceForCounter } from "../src/crypto/box.js";
import { Identity } from "../src/crypto/identity.js";
import { loadSessionAead } from "../src/crypto/session-aead.js";
import { Sessions } from "../src/overlay/sessions.js";

const ROUNDS = Number(process.env.ROUNDS ?? 3);
const SIZES = [1400, 53_000];
const box = loadBox();
const aead = loadSessionAead();
if (!aead) throw new Error("planetd_session addon missing or built without OpenSSL: npx node-gyp rebuild");

/** GB/s of fn over `bytes` per call: the median of ROUNDS timed runs of `calls` calls each. */
function rate(bytes, calls, fn) {
  for (let i = 0; i < Math.min(calls, 2000); i++) fn(i);
  const rates = [];
  for (let r = 0; r < ROUNDS; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < calls; i++) fn(i);
    rates.push((bytes * calls) / Number(process.hrtime.bigint() - start));
  }
  return rates.sort((a, b) => a - b)[Math.floor(ROUNDS / 2)];
}

function raw(size) {
  const key = randomBytes(32);
  const nonce = Buffer.alloc(24);
  const buf = Buffer.alloc(size + 16);
  randomBytes(size).copy(buf, 16);
  const boxSeal = rate(size, 200_000_000 / size, (i) =>
    box.seal(buf, buf.subarray(16), nonceForCounter(nonce, BigInt(i)), key),
  );
  const aeadSeal = rate(size, 200_000_000 / size, (i) => aead.seal(key, 0, i, buf, 4, size));
  const sealed = Buffer.alloc(size + 16);
  box.seal(sealed, buf.subarray(16), nonceForCounter(nonce, 1n), key);
  const plain = Buffer.alloc(size);
  const boxOpen = rate(size, 200_000_000 / size, () => box.open(plain, sealed, nonce, key));
  aead.seal(key, 0, 1, buf, 4, size);
  const aeadOpen = rate(size, 200_000_000 / size, () => aead.open(key, 0, 1, buf, 4, size + 16, plain, 0));
  return { boxSeal, aeadSeal, boxOpen, aeadOpen };
}

/** A→B send+handle through two Sessions (both ways established), GB/s of application bytes. */
function sessions(size, withAead) {
  const ids = [Identity.generate(), Identity.generate()];
  const nodes = [];
  let now = Date.now();
  let delivered = 0;
  for (let i = 0; i < 2; i++) {
    const out = {
      sendTraffic: (_dest, payload) => nodes[1 - i].handle(ids[i].publicKey, payload, now),
      deliver: () => delivered++,
    };
    nodes.push(new Sessions(ids[i], out, box, withAead ? { aead } : {}));
  }
  const msg = randomBytes(size);
  for (let i = 0; i < 3; i++) {
    nodes[0].send(ids[1].publicKey, msg, now);
    nodes[1].send(ids[0].publicKey, msg, now);
    now += 1000;
  }
  const cipher = nodes[0].list()[0].cipherOut;
  if (cipher !== (withAead ? "chacha20-poly1305" : "box")) throw new Error(`sessions sealed with ${cipher}`);
  const r = rate(size, 100_000_000 / size, () => nodes[0].send(ids[1].publicKey, msg, now));
  if (delivered < 100_000_000 / size) throw new Error(`only ${delivered} delivered`);
  return r;
}

console.log(
  `node ${process.version}; GB/s, median of ${ROUNDS} rounds; box = sodium secretbox, aead = addon`,
);
for (const size of SIZES) {
  const r = raw(size);
  const fmt = (x) => x.toFixed(2);
  console.log(
    `${String(size).padStart(6)} B  seal box ${fmt(r.boxSeal)} aead ${fmt(r.aeadSeal)} (${fmt(r.aeadSeal / r.boxSeal)}x)` +
      `  open box ${fmt(r.boxOpen)} aead ${fmt(r.aeadOpen)} (${fmt(r.aeadOpen / r.boxOpen)}x)`,
  );
  const s0 = sessions(size, false);
  const s1 = sessions(size, true);
  console.log(
    `${String(size).padStart(6)} B  Sessions send+handle box ${fmt(s0)} aead ${fmt(s1)} (${fmt(s1 / s0)}x)`,
  );
}
