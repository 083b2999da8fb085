// A udp:// socket's life tag (udp-listener.ts lifeTag): the first two bytes of every cookie it hands
// out, random per socket. A stray datagram naming a cookie that starts with the socket's own tag gets
// no RESET (that cookie's handshake may still be under way). So a restarted listener, or a second
// socket of the node, that drew the tag of the one before (odds 2^-16, by design: its peer then waits
// for silence) withholds the RESET a test waits for, and the test fails once in 65,536 runs per such
// socket. Tests of the RESET path bind that socket again until its tag differs.
import type { UdpListener } from "../../src/overlay/links/udp-listener.js";

export function lifeTagOf(l: UdpListener): Buffer {
  return Buffer.from((l as unknown as { lifeTag: Buffer }).lifeTag);
}

/**
 * `bind()` until the socket `socketOf` finds in what it made has a life tag other than `previous`,
 * closing each one that drew it; at most 8 tries (each one repeats with odds 2^-16).
 */
export async function withNewLifeTag<T>(
  previous: Buffer,
  bind: () => Promise<T>,
  socketOf: (made: T) => Promise<UdpListener | undefined> | UdpListener,
  close: (made: T) => Promise<void>,
): Promise<T> {
  for (let tries = 0; tries < 8; tries++) {
    const made = await bind();
    const socket = await socketOf(made);
    if (!socket || !lifeTagOf(socket).equals(previous)) return made;
    await close(made);
  }
  throw new Error("8 sockets in a row drew the previous life tag");
}
