// Cost of the session crypto per packet. Run: npx vite-node bench/box.mjs
// (vite-node resolves the TypeScript sources; nothing here asserts on time).
import { randomBytes } from "node:crypto";
import { createTweetnaclBackend, loadBox, nonceForCounter } from "../src/crypto/box.js";
import { Identity } from "../src/crypto/identity.js";
import { Sessions } from "../src/overlay/sessions.js";

const SIZE = 1400;

function measure(label, iterations, fn) {
  for (let i = 0; i < Math.min(1000, iterations); i++) fn(i); // warm-up
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn(i);
  const us = Number(process.hrtime.bigint() - start) / 1000 / iterations;
  console.log(`${label.padEnd(44)} ${us.toFixed(2).padStart(8)} µs`);
  return us;
}

function benchBackend(box, iterations) {
  const key = randomBytes(32);
  const nonce = Buffer.alloc(24);
  const msg = randomBytes(SIZE);
  const sealed = Buffer.alloc(SIZE + 16);
  const plain = Buffer.alloc(SIZE);
  measure(`${box.name} seal ${SIZE} B`, iterations, (i) =>
    box.seal(sealed, msg, nonceForCounter(nonce, BigInt(i)), key),
  );
  box.seal(sealed, msg, nonceForCounter(nonce, 1n), key);
  measure(`${box.name} open ${SIZE} B`, iterations, () => {
    if (!box.open(plain, sealed, nonce, key)) throw new Error("open failed");
  });
  const a = box.keyPair();
  const b = box.keyPair();
  measure(`${box.name} before (X25519 + HSalsa20)`, Math.max(200, iterations / 20), () =>
    box.before(a.publicKey, b.secretKey),
  );
}

function benchSessions(box, iterations) {
  const ids = [Identity.generate(), Identity.generate()];
  let delivered = 0;
  const nodes = [];
  let now = Date.now();
  for (let i = 0; i < 2; i++) {
    nodes.push(
      new Sessions(
        ids[i],
        {
          sendTraffic: (_dest, payload) => nodes[1 - i].handle(ids[i].publicKey, payload, now),
          deliver: () => delivered++,
        },
        box,
      ),
    );
  }
  const msg = randomBytes(SIZE);
  nodes[0].send(ids[1].publicKey, msg, now);
  nodes[1].send(ids[0].publicKey, msg, now);
  now += 1000;
  measure(`${box.name} Sessions send+handle ${SIZE} B (A→B)`, iterations, () =>
    nodes[0].send(ids[1].publicKey, msg, now),
  );
  measure(`${box.name} Sessions send+handle ${SIZE} B (B→A)`, iterations, () =>
    nodes[1].send(ids[0].publicKey, msg, now),
  );
  if (delivered < 2 * iterations) throw new Error(`only ${delivered} delivered`);
}

const sodium = loadBox();
const tweet = createTweetnaclBackend();
console.log(`node ${process.version}; default backend: ${sodium.name}`);
benchBackend(sodium, 100_000);
benchBackend(tweet, 5_000);
benchSessions(sodium, 50_000);
benchSessions(tweet, 3_000);
