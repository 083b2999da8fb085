// The counters of the encrypted layer (../sessions.ts): what it did and what it refused, and why.

export interface SessionStats {
  initsSent: number;
  acksSent: number;
  initsReceived: number;
  acksReceived: number;
  /** init/ack that failed to open or verify */
  handshakeFailures: number;
  /** traffic whose box did not open (answered with an init) */
  decryptFailures: number;
  /** traffic whose counter was already opened, or is older than the replay window */
  replaysDropped: number;
  /** handshakes from unknown keys refused by a link's, a key prefix's or the global budget (no crypto spent) */
  initsRateLimited: number;
  /** answers (inits) to stray or failing traffic not sent: the link or session budget was spent */
  answersRateLimited: number;
  /** new sessions refused: the table was full of proven sessions */
  sessionsRefused: number;
  /** unproven sessions dropped to make room for a new one (oldest first) */
  sessionsEvicted: number;
  /** waiting packets dropped to keep the pending bytes under their cap (oldest first) */
  buffersEvicted: number;
  /** acks sent again for an init we had already taken (the first ack was lost) */
  acksResent: number;
  /** traffic whose key sequences matched no case (answered with an init) */
  keySeqMismatches: number;
  /** traffic for which no session existed (answered with a throw-away init) */
  noSession: number;
  malformed: number;
  oversizeDropped: number;
  ratchets: number;
  sessionsCreated: number;
  sessionsExpired: number;
  buffersExpired: number;
  /** Traffic sealed with NaCl box and with ChaCha20-Poly1305 (sessions/aead.ts), and opened so. */
  boxSealed: number;
  aeadSealed: number;
  boxOpened: number;
  aeadOpened: number;
  /** ChaCha20-Poly1305 seals that failed (the message was dropped; never seen, kept to be sure). */
  aeadSealFailures: number;
  /** ANNOUNCE messages sent, and heard from remotes. */
  announcesSent: number;
  announcesHeard: number;
}

export function newSessionStats(): SessionStats {
  return {
    initsSent: 0,
    acksSent: 0,
    initsReceived: 0,
    acksReceived: 0,
    handshakeFailures: 0,
    decryptFailures: 0,
    replaysDropped: 0,
    initsRateLimited: 0,
    answersRateLimited: 0,
    sessionsRefused: 0,
    sessionsEvicted: 0,
    buffersEvicted: 0,
    acksResent: 0,
    keySeqMismatches: 0,
    noSession: 0,
    malformed: 0,
    oversizeDropped: 0,
    ratchets: 0,
    sessionsCreated: 0,
    sessionsExpired: 0,
    buffersExpired: 0,
    boxSealed: 0,
    aeadSealed: 0,
    boxOpened: 0,
    aeadOpened: 0,
    aeadSealFailures: 0,
    announcesSent: 0,
    announcesHeard: 0,
  };
}
