// tls:// stream links: Node decrypts into the links' shared read buffer (no fresh Buffer per read),
// which the next read overwrites; test/links-stream-slabs.test.ts forwards frames held from it.
import { afterEach, expect, it } from "vitest";
import { framesNotAsExpected, linkedStreamPair, numberedFrame } from "./support/stream-pair.js";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

it("keeps the tls:// frames that arrive before the link has a handler, in order", async () => {
  const [a, b] = await linkedStreamPair("tls", cleanups);
  a.setHandler({ onFrame() {}, onClose() {} });
  const FRAMES = 20;
  const SIZE = 30_000; // 600 kB: several 16 KiB reads land in the shared buffer before the handler
  for (let i = 0; i < FRAMES; i++) a.send(numberedFrame(i, SIZE));
  const readBefore = b.bytesIn;
  const deadline = Date.now() + 5000;
  while (b.bytesIn < readBefore + 3 * 16_384 && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 1));
  }
  expect(b.bytesIn).toBeGreaterThanOrEqual(readBefore + 3 * 16_384);
  expect(await framesNotAsExpected(b, FRAMES, (f, i) => f.equals(numberedFrame(i, SIZE)))).toBe(0);
}, 30_000);
