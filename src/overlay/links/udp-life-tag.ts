// A udp:// socket's life tag: the first two bytes of every cookie it hands out (udp-listener.ts), so
// a stray datagram can be told apart as naming a cookie of this socket's life (no RESET: its
// handshake may be under way) or of a socket before it (RESET). It only has to differ from the tag
// of the socket that held the port before, i.e. the same node before a restart or the node's other
// socket. A random tag repeated that with odds 2^-16 per restart, and the peer then kept the stale
// link until silence closed it.
//
// So the tag is the start time in milliseconds, mod 2^16, moved on by one when this process already
// handed that one (or a later one) out: sockets of one process get consecutive tags (the first
// 65,536 are distinct), and a socket of a restarted process gets another tag than every socket of
// the process before it as long as the restart took at least a millisecond more than that process's
// tags ran ahead of its clock (one per socket bound in the same millisecond) and less than 65.5 s.
// A restart slower than that can draw an old tag (1 ms in 65,536), but the peer's stale link has
// died of silence by then (udp-liveness.ts: never over 9.5 s), so no RESET is missed for it. A wall
// clock stepped back by exactly the restart's duration would repeat a tag too.

const TAG_SPAN = 0x10000;

/** One process's life tags (tests make one per simulated process). */
export class LifeTags {
  /** The last tag handed out, unwrapped (ms since the epoch, or later when several shared a ms). */
  private last = Number.NEGATIVE_INFINITY;

  /** The tag of a socket opened at `now` (ms since the epoch), as two bytes. */
  next(now: number = Date.now()): Buffer {
    this.last = Math.max(Math.floor(now), this.last + 1);
    const tag = Buffer.allocUnsafe(2);
    tag.writeUInt16BE(this.last % TAG_SPAN, 0);
    return tag;
  }
}

/** This process's: every udp:// socket it opens draws from it. */
export const processLifeTags = new LifeTags();
