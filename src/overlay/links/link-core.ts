// What the stream and UDP links do the same way: the getPeers facts, priority negotiation (spec 4.6)
// and the close bookkeeping (reason, watchers, the handler's onClose). Framing, timers and sockets
// stay with each transport.
import type { LinkEvents, LinkInfo } from "./link.js";

const PRIORITY_TAG = 0x70; // 'p'

export interface LinkIdentity {
  remoteKey: Buffer;
  remote: string;
  outbound: boolean;
  /** Our configured priority for this link. */
  priority: number;
  openedAt: number;
}

export abstract class LinkCore implements LinkInfo {
  readonly remoteKey: Buffer;
  readonly remote: string;
  readonly outbound: boolean;
  readonly openedAt: number;
  readonly localPriority: number;
  priority: number;
  bytesIn = 0;
  bytesOut = 0;
  closed = false;
  closeReason = "";

  protected handler: LinkEvents | undefined;
  private readonly closeWatchers: Array<(reason: string) => void> = [];

  constructor(id: LinkIdentity) {
    this.remoteKey = id.remoteKey;
    this.remote = id.remote;
    this.outbound = id.outbound;
    this.openedAt = id.openedAt;
    this.localPriority = id.priority;
    this.priority = id.priority;
  }

  abstract send(frame: Uint8Array, held?: boolean): void;

  /** Called once with the close reason (for the link manager; the handler gets onClose as well). */
  onClosed(watch: (reason: string) => void): void {
    if (this.closed) watch(this.closeReason);
    else this.closeWatchers.push(watch);
  }

  /** Call at the end of the subclass constructor, once `send` works. */
  protected announcePriority(): void {
    if (this.localPriority > 0) this.send(Buffer.from([0x00, PRIORITY_TAG, this.localPriority]));
  }

  /** Installs the handler; false when the link had already closed (the handler has been told). */
  protected attachHandler(events: LinkEvents): boolean {
    this.handler = events;
    if (!this.closed) return true;
    events.onClose(this.closeReason);
    return false;
  }

  /** A dummy frame (type 0): keepalive, or a priority announcement. Never passed up. */
  protected receiveDummy(frame: Buffer): void {
    if (frame.length >= 3 && frame[1] === PRIORITY_TAG) {
      this.priority = Math.max(this.localPriority, frame[2]!);
      this.handler?.onPriority?.(this.priority);
    }
  }

  /** First step of close: false when the link was already closed (then do nothing more). */
  protected markClosed(reason: string): boolean {
    if (this.closed) return false;
    this.closed = true;
    this.closeReason = reason;
    return true;
  }

  /** Last step of close, after the transport let go of its socket: tell watchers, then the handler. */
  protected announceClosed(reason: string): void {
    for (const watch of this.closeWatchers.splice(0)) watch(reason);
    this.handler?.onClose(reason);
  }
}
