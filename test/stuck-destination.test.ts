// Issue 9, the stuck destination: after a long idle period on a lossy path, the first traffic to a
// node must get through within seconds. A line A–B–C of Routers and Sessions on a virtual clock;
// protocol frames (types 0-8) arrive reliably, as on udp:// links, and each traffic frame (9, 10)
// is lost with 10% probability per hop and direction, from a seeded generator. After 3 idle minutes
// (sessions, paths and buffers all expired), A pings C once a second for 30 s.
import { describe, expect, it } from "vitest";
import { loadBox } from "../src/crypto/box.js";
import { Identity } from "../src/crypto/identity.js";
import { Sessions } from "../src/overlay/sessions.js";
import { Router } from "../src/routing/router.js";
import { seededRandom } from "../src/routing/sim/sim.js";
import { FrameType, TrafficKind } from "../src/routing/types.js";

const HOP_DELAY_MS = 20;
const LOSS = 0.1;

interface Station {
  id: Identity;
  router: Router;
  sessions: Sessions;
  /** port -> [station, its port for us] */
  links: Map<number, [Station, number]>;
  received: string[];
}

class LossyLine {
  now = 1_800_000_000_000;
  readonly stations: Station[] = [];
  private readonly queue: Array<{ at: number; run: () => void }> = [];
  lossy = false;
  lostTraffic = 0;

  constructor(
    count: number,
    private readonly random: () => number,
  ) {
    const box = loadBox();
    for (let i = 0; i < count; i++) {
      const id = Identity.generate();
      const st = { id, links: new Map(), received: [] } as unknown as Station;
      st.router = new Router(
        id,
        {
          send: (port, frame) => this.carry(st, port, frame),
          deliver: (source, payload) => st.sessions.handle(source, payload, this.now),
          deliverOutOfBand: () => {},
          closePeer: () => {},
        },
        this.now,
        random,
      );
      st.sessions = new Sessions(
        id,
        {
          sendTraffic: (dest, payload, now) =>
            st.router.sendTraffic(dest, TrafficKind.Standard, payload, now),
          deliver: (source, message, now) => {
            const text = message.toString();
            st.received.push(text);
            // C answers pings like an echo responder.
            if (text.startsWith("ping")) st.sessions.send(source, Buffer.from(`pong${text.slice(4)}`), now);
          },
        },
        box,
      );
      this.stations.push(st);
    }
    for (let i = 0; i + 1 < count; i++) this.connect(this.stations[i], this.stations[i + 1]);
  }

  private connect(a: Station, b: Station): void {
    const pa = a.router.nextFreePort();
    const pb = b.router.nextFreePort();
    a.links.set(pa, [b, pb]);
    b.links.set(pb, [a, pa]);
    a.router.addPeer(b.id.publicKey, 0, this.now);
    b.router.addPeer(a.id.publicKey, 0, this.now);
  }

  private carry(from: Station, port: number, frame: Buffer): void {
    const link = from.links.get(port);
    if (link === undefined) return;
    const traffic = frame[0] === FrameType.DhtTraffic || frame[0] === FrameType.PathTraffic;
    if (traffic && this.lossy && this.random() < LOSS) {
      this.lostTraffic++;
      return;
    }
    const [to, toPort] = link;
    const copy = Buffer.from(frame);
    this.at(this.now + HOP_DELAY_MS, () => to.router.handleFrame(toPort, copy, this.now));
  }

  private at(at: number, run: () => void): void {
    let i = this.queue.length;
    while (i > 0 && this.queue[i - 1].at > at) i--;
    this.queue.splice(i, 0, { at, run });
  }

  /** Run frames and timers up to `until`. */
  runUntil(until: number): void {
    for (;;) {
      let next = this.queue.length > 0 ? this.queue[0].at : Number.POSITIVE_INFINITY;
      for (const st of this.stations) {
        const r = st.router.nextTimeout();
        const s = st.sessions.nextTimeout();
        if (r !== undefined && r < next) next = r;
        if (s !== undefined && s < next) next = s;
      }
      if (next > until) break;
      this.now = Math.max(this.now, next);
      if (this.queue.length > 0 && this.queue[0].at <= this.now) {
        (this.queue.shift() as { run: () => void }).run();
        continue;
      }
      for (const st of this.stations) {
        if ((st.router.nextTimeout() ?? Number.POSITIVE_INFINITY) <= this.now)
          st.router.handleTimeout(this.now);
        if ((st.sessions.nextTimeout() ?? Number.POSITIVE_INFINITY) <= this.now)
          st.sessions.handleTimeout(this.now);
      }
    }
    this.now = until;
  }

  /** `from` pings `to` once a second for `seconds`; returns the seconds whose ping was answered. */
  pings(from: Station, to: Station, seconds: number, tag: string): number[] {
    const answered: number[] = [];
    for (let s = 0; s < seconds; s++) {
      const before = from.received.length;
      from.sessions.send(to.id.publicKey, Buffer.from(`ping${tag}${s}`), this.now);
      this.runUntil(this.now + 1000);
      if (from.received.slice(before).includes(`pong${tag}${s}`)) answered.push(s);
    }
    return answered;
  }
}

/** Two Sessions joined directly; `dropNext` loses the next payload B sends to A. */
function pair(start: number) {
  const box = loadBox();
  const ids = [Identity.generate(), Identity.generate()];
  const queue: Array<{ to: number; payload: Buffer }> = [];
  const delivered: string[][] = [[], []];
  let dropNextFromB = 0;
  const ends = ids.map(
    (id, i) =>
      new Sessions(
        id,
        {
          sendTraffic: (_dest, payload) => {
            if (i === 1 && dropNextFromB > 0) {
              dropNextFromB--;
              return;
            }
            queue.push({ to: 1 - i, payload: Buffer.from(payload) });
          },
          deliver: (_source, message) => delivered[i].push(message.toString()),
        },
        box,
      ),
  );
  const [a, b] = ends;
  return {
    a,
    b,
    delivered,
    now: start,
    dropNextFromB: () => {
      dropNextFromB++;
    },
    /** A sends `text` to B at `at`; everything in flight is handled. */
    send(text: string, at: number) {
      this.now = at;
      a.send(ids[1].publicKey, Buffer.from(text), at);
      while (queue.length > 0) {
        const p = queue.shift() as { to: number; payload: Buffer };
        ends[p.to].handle(ids[1 - p.to].publicKey, p.payload, at);
      }
    },
  };
}

describe("issue 9: an init whose ack was lost", () => {
  const second = 1_800_000_000_000;

  it("is acked again when the sender repeats it within the same second (throttled)", () => {
    const p = pair(second);
    p.dropNextFromB(); // B's ack to A's first init
    p.send("one", second + 100);
    expect(p.a.stats().sessions).toBe(0);
    expect(p.b.stats().sessions).toBe(1);
    p.send("two", second + 300);
    expect(p.b.stats().acksResent).toBe(0); // within 500 ms of the last ack: not yet
    expect(p.a.stats().sessions).toBe(0);
    p.send("three", second + 700);
    expect(p.b.stats().acksResent).toBe(1);
    expect(p.a.stats().sessions).toBe(1);
    expect(p.delivered[1]).toEqual(["three"]);
  });

  it("is re-sent with the current second, so a receiver that ignores repeated seqs (Go) takes it", () => {
    const p = pair(second);
    p.dropNextFromB();
    p.send("one", second + 100);
    const acksBefore = p.b.stats().acksSent;
    p.send("two", second + 1100); // the next second: a newer init, an update and a fresh ack
    expect(p.b.stats().acksSent).toBe(acksBefore + 1);
    expect(p.b.stats().acksResent).toBe(0);
    expect(p.a.stats().sessions).toBe(1);
    expect(p.delivered[1]).toEqual(["two"]);
  });
});

describe("issue 9: a destination after long idleness on a lossy path", () => {
  it("answers within seconds in every trial (A–B–C, 10% traffic loss per hop and direction)", () => {
    const TRIALS = 40;
    const stuck: string[] = [];
    let firstAnswers = 0;
    for (let seed = 1; seed <= TRIALS; seed++) {
      const line = new LossyLine(3, seededRandom(seed));
      const [a, , c] = line.stations;
      line.runUntil(line.now + 20_000); // tree and DHT converge
      // Warm up without loss: a session and a source route exist, then go idle.
      expect(line.pings(a, c, 3, "w").length).toBeGreaterThan(0);
      line.lossy = true;
      line.runUntil(line.now + 180_000);
      expect(a.sessions.stats().sessions).toBe(0); // the idle period really expired the session
      const answered = line.pings(a, c, 30, "p");
      // Pings 10..29: a working path at 10% per hop answers ~66% of them; none answered is stuck.
      const late = answered.filter((s) => s >= 10).length;
      if (late === 0) {
        const sa = a.sessions.stats();
        const sc = c.sessions.stats();
        stuck.push(
          `seed ${seed}: A sessions ${sa.sessions} buffers ${sa.buffers} inits sent ${sa.initsSent}; C sessions ${sc.sessions} inits received ${sc.initsReceived} acks sent ${sc.acksSent}`,
        );
      }
      if (answered.length > 0) firstAnswers += answered[0];
    }
    console.log(
      `stuck trials: ${stuck.length}/${TRIALS}; mean first answer ${(firstAnswers / TRIALS).toFixed(1)} s`,
    );
    expect(stuck).toEqual([]);
  });
});
