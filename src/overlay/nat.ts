// NAT traversal, the sans-I/O part: what this node learned of its own NAT mapping (reflexive
// addresses reported by udp:// peers), the signalling messages, and the bounded per-destination
// state that decides when to offer candidates, when to punch, and how long to back off.
//
// Signalling rides the encrypted session as a planetd-only core message (CORE_PLANETD, after the
// session's core byte): a Yggdrasil 0.4.7 node on the path never sees it (sessions are end to end,
// spec section 6) and one at the far end drops it (spec section 7 lists core bytes 0, 1 and 2 only;
// yggdrasil-go v0.4.7 src/core/core.go ReadFrom skips every other first byte with `default: continue`).
//
//   OFFER  1 ‖ nonce u32 ‖ mapping u8 ‖ count u8 ‖ (family u8 (4|6) ‖ port u16 ‖ ip 4|16)…
//   ANSWER 2 ‖ the same body, echoing the offer's nonce
// (Types 3 and 4 carry TCP super-packets between planetd nodes: src/tun/gso.ts; the node routes them.)
// The offerer sends OFFER when it has session traffic for a key that is not a direct peer; the
// answerer replies with its own candidates and starts punching at once, the offerer when the
// ANSWER arrives. The node with the smaller key dials (udp-punch.ts); the other only opens its NAT.
// When both sides' mappings are endpoint-dependent no candidate can be right (each NAT gives the
// other side a port nobody announced): the answer still goes out, so both sides know, and neither
// punches; the destination backs off as after a failed punch and traffic keeps the relayed path.

import { ipBytes, ipText } from "../util/ip-bytes.js";

export const CORE_PLANETD = 0x70;
export const SIG_OFFER = 1;
export const SIG_ANSWER = 2;
export const MAX_CANDIDATES = 8;

export interface Candidate {
  ip: string;
  port: number;
}

/** 0 unknown (fewer than two observers at different addresses), 1 independent, 2 dependent. */
export type Mapping = 0 | 1 | 2;
export const MAPPING_UNKNOWN = 0;
export const MAPPING_INDEPENDENT = 1;
export const MAPPING_DEPENDENT = 2;
export const mappingName = (m: Mapping): string => ["unknown", "independent", "dependent"][m]!;

export interface Signal {
  type: number;
  nonce: number;
  mapping: Mapping;
  candidates: Candidate[];
}

export function encodeSignal(s: Signal): Buffer {
  const parts: Buffer[] = [];
  for (const c of s.candidates.slice(0, MAX_CANDIDATES)) {
    const raw = ipBytes(c.ip);
    if (!raw) continue;
    const head = Buffer.alloc(3);
    head[0] = raw.length === 4 ? 4 : 6;
    head.writeUInt16BE(c.port, 1);
    parts.push(head, raw);
  }
  const head = Buffer.alloc(7);
  head[0] = s.type;
  head.writeUInt32BE(s.nonce >>> 0, 1);
  head[5] = s.mapping;
  head[6] = parts.length / 2;
  return Buffer.concat([head, ...parts]);
}

/** The signal in `body` (what follows the core byte), or undefined when it is malformed. */
export function decodeSignal(body: Buffer): Signal | undefined {
  if (body.length < 7) return undefined;
  const type = body[0]!;
  const mapping = body[5]!;
  const count = body[6]!;
  if ((type !== SIG_OFFER && type !== SIG_ANSWER) || mapping > 2 || count > MAX_CANDIDATES) return undefined;
  const candidates: Candidate[] = [];
  let p = 7;
  for (let i = 0; i < count; i++) {
    if (body.length < p + 3) return undefined;
    const family = body[p]!;
    const port = body.readUInt16BE(p + 1);
    const n = family === 4 ? 4 : family === 6 ? 16 : 0;
    if (n === 0 || body.length < p + 3 + n || port === 0) return undefined;
    const raw = body.subarray(p + 3, p + 3 + n);
    const ip = ipText(raw);
    candidates.push({ ip, port });
    p += 3 + n;
  }
  if (p !== body.length) return undefined;
  return { type, nonce: body.readUInt32BE(1), mapping: mapping as Mapping, candidates };
}

const MAX_OBSERVERS = 64;

/** What udp:// peers said they see as our source, one answer per peer key. */
export class Reflexive {
  private readonly seen = new Map<string, { observerIp: string; ip: string; port: number; at: number }>();

  record(observer: Buffer, observerIp: string, ip: string, port: number, now: number): void {
    const key = observer.toString("hex");
    this.seen.delete(key);
    if (this.seen.size >= MAX_OBSERVERS) this.seen.delete(this.seen.keys().next().value!);
    this.seen.set(key, { observerIp, ip, port, at: now });
  }

  forget(observer: Buffer): void {
    this.seen.delete(observer.toString("hex"));
  }

  /**
   * Endpoint-dependent when observers at different addresses saw different sources; independent
   * when at least two did and all agree; otherwise unknown.
   */
  mapping(): Mapping {
    const byIp = new Map<string, string>();
    for (const s of this.seen.values()) byIp.set(s.observerIp, `${s.ip}|${s.port}`);
    if (byIp.size < 2) return MAPPING_UNKNOWN;
    return new Set(byIp.values()).size === 1 ? MAPPING_INDEPENDENT : MAPPING_DEPENDENT;
  }

  /** Distinct reflexive addresses, newest first. */
  addresses(): Candidate[] {
    const out = new Map<string, Candidate>();
    for (const s of [...this.seen.values()].sort((a, b) => b.at - a.at)) {
      out.set(`${s.ip}|${s.port}`, { ip: s.ip, port: s.port });
    }
    return [...out.values()];
  }
}

export interface NatOutput {
  sendSignal(dest: Buffer, body: Buffer): void;
  /** Punch towards `candidates`: dial (the smaller key) or only open our NAT; calls punchDone. */
  punch(dest: Buffer, candidates: Candidate[], dial: boolean): void;
}

export interface NatOptions {
  /** Destinations with state at once; the oldest idle one makes room, or the new one waits. */
  maxDestinations: number;
  /** Backoff after the first failure, doubling per consecutive failure up to maxBackoffMs. */
  backoffMs: number;
  maxBackoffMs: number;
  /** How long an OFFER waits for its ANSWER before the destination counts as a failure. */
  offerTimeoutMs: number;
}

export const DEFAULT_NAT: NatOptions = {
  maxDestinations: 256,
  backoffMs: 30_000,
  maxBackoffMs: 30 * 60_000,
  offerTimeoutMs: 5_000,
};

const IDLE = 0;
const OFFERED = 1;
const PUNCHING = 2;
const DIRECT = 3;

interface DestState {
  key: Buffer;
  phase: number;
  nonce: number;
  since: number;
  failures: number;
  nextAt: number;
  /** The last failure was our offer going unanswered (not a punch that failed). */
  unanswered: boolean;
}

export interface NatCounters {
  offersSent: number;
  answersSent: number;
  attempts: number;
  successes: number;
  failures: number;
  /** Punches not started because both sides' mappings are endpoint-dependent. */
  skipped: number;
  /** Destinations turned away because the state table was full of active ones. */
  tableFull: number;
  signalsMalformed: number;
  /** Offers ignored: NAT traversal off here, no udp:// candidates, or the sender is backing off. */
  offersIgnored: number;
}

export class NatTraversal {
  readonly counters: NatCounters = {
    offersSent: 0,
    answersSent: 0,
    attempts: 0,
    successes: 0,
    failures: 0,
    skipped: 0,
    tableFull: 0,
    signalsMalformed: 0,
    offersIgnored: 0,
  };
  readonly reflexive = new Reflexive();
  private readonly dests = new Map<string, DestState>();
  private readonly selfKey: Buffer;
  private readonly out: NatOutput;
  private readonly o: NatOptions;
  private readonly random: () => number;

  constructor(selfKey: Buffer, out: NatOutput, o: Partial<NatOptions> = {}, random = Math.random) {
    this.selfKey = selfKey;
    this.out = out;
    this.o = { ...DEFAULT_NAT, ...o };
    this.random = random;
  }

  get size(): number {
    return this.dests.size;
  }

  /** Session traffic to `dest`, which is not a direct peer; `local` are our candidates (none: no udp). */
  noteTraffic(dest: Buffer, now: number, local: Candidate[]): void {
    const st = this.dests.get(dest.toString("latin1")) ?? this.make(dest, now);
    if (!st || now < st.nextAt || local.length === 0) return;
    if (st.phase === PUNCHING || st.phase === DIRECT) return;
    if (st.phase === OFFERED) {
      if (now - st.since < this.o.offerTimeoutMs) return;
      this.failed(st, now); // no answer: a node without NAT traversal, or the offer was lost
      st.unanswered = true;
      if (now < st.nextAt) return;
    }
    st.phase = OFFERED;
    st.since = now;
    st.nonce = Math.floor(this.random() * 2 ** 32) >>> 0;
    this.counters.offersSent++;
    this.out.sendSignal(dest, encodeSignal(this.signal(SIG_OFFER, st.nonce, local)));
  }

  /** A CORE_PLANETD message from `source` (the body after the core byte). */
  handleSignal(source: Buffer, body: Buffer, now: number, local: Candidate[]): void {
    const s = decodeSignal(body);
    if (!s) {
      this.counters.signalsMalformed++;
      return;
    }
    if (s.type === SIG_OFFER) {
      const st = this.dests.get(source.toString("latin1")) ?? this.make(source, now);
      // An offer from a peer we hold a punched link to says it has none to us: it restarted (on a
      // punch socket bound on demand it is back on another port, where no RESET of its reaches
      // us), or our end missed its close. Punching again replaces the stale link at once
      // (punch.ts); a link younger than offerTimeoutMs keeps it, so offers cannot make it flap.
      const linked = st?.phase === DIRECT && now - st.since < this.o.offerTimeoutMs;
      // Only a failed punch's backoff turns offers away. The pause after a punched link closed
      // holds back our own offers, and a backoff because our offer went unanswered (the peer
      // ignored it, e.g. while its stale link to us lived) says nothing against the peer's offer:
      // ignoring it would cost the peer its own backoff (30 s), and both would then turn the
      // other's offers away.
      const backingOff = now < (st?.nextAt ?? 0) && (st?.failures ?? 0) > 0 && !st?.unanswered;
      if (!st || local.length === 0 || st.phase === PUNCHING || linked || backingOff) {
        this.counters.offersIgnored++;
        return;
      }
      this.counters.answersSent++;
      this.out.sendSignal(source, encodeSignal(this.signal(SIG_ANSWER, s.nonce, local)));
      this.startPunch(st, s, now);
      return;
    }
    const st = this.dests.get(source.toString("latin1"));
    if (!st || st.phase !== OFFERED || st.nonce !== s.nonce) return;
    this.startPunch(st, s, now);
  }

  /** The punch towards `dest` ended: a link (ok) or nothing. */
  punchDone(dest: Buffer, ok: boolean, now: number): void {
    const st = this.dests.get(dest.toString("latin1"));
    if (!st || st.phase !== PUNCHING) return;
    if (ok) {
      this.counters.successes++;
      st.phase = DIRECT;
      st.failures = 0;
      st.since = now;
    } else {
      this.counters.failures++;
      this.failed(st, now);
    }
  }

  /** A punched link to `dest` closed (idle or dead): traffic may punch again after a pause. */
  linkClosed(dest: Buffer, now: number): void {
    const st = this.dests.get(dest.toString("latin1"));
    if (st?.phase !== DIRECT) return;
    st.phase = IDLE;
    st.nextAt = now + this.o.offerTimeoutMs;
  }

  /** Destinations by phase, for the admin view. */
  summary(now: number): { offered: number; punching: number; direct: number; backingOff: number } {
    const out = { offered: 0, punching: 0, direct: 0, backingOff: 0 };
    for (const st of this.dests.values()) {
      if (st.phase === OFFERED) out.offered++;
      else if (st.phase === PUNCHING) out.punching++;
      else if (st.phase === DIRECT) out.direct++;
      else if (st.nextAt > now) out.backingOff++;
    }
    return out;
  }

  private signal(type: number, nonce: number, local: Candidate[]): Signal {
    return { type, nonce, mapping: this.reflexive.mapping(), candidates: local.slice(0, MAX_CANDIDATES) };
  }

  private startPunch(st: DestState, peer: Signal, now: number): void {
    if (peer.candidates.length === 0) {
      this.failed(st, now);
      return;
    }
    if (peer.mapping === MAPPING_DEPENDENT && this.reflexive.mapping() === MAPPING_DEPENDENT) {
      this.counters.skipped++;
      this.failed(st, now);
      return;
    }
    st.phase = PUNCHING;
    st.since = now;
    st.unanswered = false;
    this.counters.attempts++;
    this.out.punch(st.key, peer.candidates, Buffer.compare(this.selfKey, st.key) < 0);
  }

  private failed(st: DestState, now: number): void {
    st.phase = IDLE;
    st.unanswered = false;
    st.failures++;
    st.nextAt = now + Math.min(this.o.maxBackoffMs, this.o.backoffMs * 2 ** Math.min(20, st.failures - 1));
  }

  /** New state for `key`, evicting the oldest idle entry whose backoff ended when the table is full. */
  private make(key: Buffer, now: number): DestState | undefined {
    if (this.dests.size >= this.o.maxDestinations) {
      let victim: string | undefined;
      for (const [k, st] of this.dests) {
        if (st.phase === IDLE && st.nextAt <= now) {
          victim = k;
          break;
        }
      }
      if (victim === undefined) {
        this.counters.tableFull++;
        return undefined;
      }
      this.dests.delete(victim);
    }
    const st: DestState = {
      key: Buffer.from(key),
      phase: IDLE,
      nonce: 0,
      since: now,
      failures: 0,
      nextAt: 0,
      unanswered: false,
    };
    this.dests.set(key.toString("latin1"), st);
    return st;
  }
}
