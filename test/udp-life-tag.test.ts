// The udp:// life tag (udp-life-tag.ts): a quick restart, or the process's next socket, never draws
// the tag of the socket before it, so the peer's stray datagram for the old link gets its RESET.
import { randomBytes } from "node:crypto";
import { afterEach, describe, expect, it } from "vitest";
import { Identity } from "../src/crypto/identity.js";
import { LifeTags } from "../src/overlay/links/udp-life-tag.js";
import { restartablePort } from "./support/ports.js";
import { bareListener, challenged, closeRawUdp } from "./support/udp-raw.js";

afterEach(closeRawUdp);

const tagOf = (b: Buffer) => b.readUInt16BE(0);

describe("udp life tags", () => {
  it("one process's sockets get distinct tags, even when opened in the same millisecond", () => {
    const tags = new LifeTags();
    const t0 = 1_790_000_000_123;
    const seen = new Set<number>();
    for (let i = 0; i < 0x10000; i++) seen.add(tagOf(tags.next(t0)));
    expect(seen.size).toBe(0x10000);
  });

  it("a process restarted 1 ms to 65.5 s after the last socket before it never repeats a tag", () => {
    const t0 = 1_790_000_000_000 + Math.floor(Math.random() * 0x10000);
    // The process before the restart opened three sockets in its last millisecond.
    const before = new LifeTags();
    const old = new Set([before.next(t0), before.next(t0), before.next(t0)].map(tagOf));
    expect(old.size).toBe(3);
    let repeats = 0;
    // Its tags ran 2 ms ahead of its clock: a restart 3 ms or more after it is clear.
    for (let d = 3; d < 0x10000; d++) if (old.has(tagOf(new LifeTags().next(t0 + d)))) repeats++;
    expect(repeats).toBe(0);
    // The residual the module states: a restart 65,536 ms later lands on the old tag again.
    expect(old.has(tagOf(new LifeTags().next(t0 + 0x10000)))).toBe(true);
  });

  it("a listener bound again on its port hands out cookies with another tag", async () => {
    const id = Identity.generate();
    const secret = randomBytes(32);
    let port = await restartablePort(); // bound again below: support/ports.ts
    let previous = -1;
    for (let i = 0; i < 4; i++) {
      const { l } = await bareListener(id, secret, port);
      port = l.port;
      const { lc } = await challenged(port);
      expect(tagOf(lc)).not.toBe(previous);
      previous = tagOf(lc);
      await l.close();
    }
  });
});
