// What Sessions offers and takes: its output, options and summaries (the state machine is in
// ../sessions.ts).
import type { BoxKeyPair } from "../../crypto/box.js";
import type { SessionAead } from "../../crypto/session-aead.js";
import type { CipherName } from "./aead.js";

export interface SessionOutput {
  /**
   * A kind-1 payload for the router; `payload` may be a reused buffer valid only during the call.
   * `now` is the time of the call into Sessions that caused it. held: `payload` was sealed in place
   * (send's inPlace) and stays unchanged until the event loop turns, so it may be sent from there.
   */
  sendTraffic(dest: Buffer, payload: Buffer, now: number, held?: boolean): void;
  /** A decrypted application message; valid only during the call. `now` as given to handle. */
  deliver(source: Buffer, message: Buffer, now: number): void;
}

export interface SessionOptions {
  /** Source of fresh X25519 key pairs (default: the box backend's). */
  keyPair?: () => BoxKeyPair;
  /** Most sessions kept (default MAX_SESSIONS). */
  maxSessions?: number;
  /** Most bytes of packets waiting for a handshake, over all destinations (default 4 MiB). */
  maxPendingBytes?: number;
  /** Handshakes that may create a session, per second over all links (default 250, burst twice that). */
  newSessionsPerSecond?: number;
  /**
   * ChaCha20-Poly1305 for traffic with planetd nodes that announce it (sessions/aead.ts); without
   * it (default) we neither announce nor seal it, and ignore the type as Yggdrasil does.
   */
  aead?: SessionAead;
}

export interface SessionSummary {
  key: Buffer;
  bytesIn: number;
  bytesOut: number;
  since: number;
  /** What we seal with (chacha20-poly1305 once the remote announced it), and what we last opened. */
  cipherOut: CipherName;
  cipherIn: CipherName;
}
