// LinkManagers on loopback for the link tests: a logger whose lines can be awaited, a node that
// hands out its links in order, and a frame collector for one link.
import pino from "pino";
import { Identity } from "../../src/crypto/identity.js";
import type { Link } from "../../src/overlay/links/link.js";
import { LinkManager, type LinkManagerConfig } from "../../src/overlay/links/manager.js";

export interface LogCapture {
  logger: pino.Logger;
  /** Every message logged so far. */
  logs: string[];
  /** The first message, logged already or later, that matches. */
  nextLog(pattern: RegExp): Promise<string>;
}

export function captureLogs(): LogCapture {
  const logs: string[] = [];
  const waiters: Array<{ re: RegExp; done: (s: string) => void }> = [];
  const logger = pino(
    { level: "info" },
    {
      write(line: string) {
        const msg = JSON.parse(line).msg as string;
        logs.push(msg);
        for (const w of waiters.filter((w) => w.re.test(msg))) {
          waiters.splice(waiters.indexOf(w), 1);
          w.done(msg);
        }
      },
    },
  );
  return {
    logger,
    logs,
    nextLog: (re) => {
      const found = logs.find((l) => re.test(l));
      return found ? Promise.resolve(found) : new Promise((done) => waiters.push({ re, done }));
    },
  };
}

export interface LinkNode {
  id: Identity;
  mgr: LinkManager;
  links: Link[];
  logs: string[];
  /** The next link this node brings up that no earlier call claimed. */
  nextLink(): Promise<Link>;
  nextLog(pattern: RegExp): Promise<string>;
}

const running: LinkManager[] = [];

/** For afterEach: stops every LinkManager started by startLinkNode. */
export async function stopLinkNodes(): Promise<void> {
  await Promise.all(running.splice(0).map((m) => m.stop()));
}

/** A started LinkManager with nothing configured but what `cfg` sets, and a fast redial. */
export async function startLinkNode(
  cfg: Partial<LinkManagerConfig> = {},
  id = Identity.generate(),
): Promise<LinkNode> {
  const links: Link[] = [];
  const linkWaiters: Array<(l: Link) => void> = [];
  const unclaimed: Link[] = [];
  const { logger, logs, nextLog } = captureLogs();
  const mgr = new LinkManager(
    {
      identity: id,
      listen: [],
      peers: [],
      interfacePeers: {},
      allowedPublicKeys: [],
      multicast: [],
      logger,
      redial: { initialMs: 50, maxMs: 200 },
      ...cfg,
    },
    {
      onLink(link) {
        links.push(link);
        const w = linkWaiters.shift();
        if (w) w(link);
        else unclaimed.push(link);
      },
    },
  );
  running.push(mgr);
  await mgr.start();
  return {
    id,
    mgr,
    links,
    logs,
    nextLink: () => {
      const ready = unclaimed.shift();
      return ready ? Promise.resolve(ready) : new Promise((resolve) => linkWaiters.push(resolve));
    },
    nextLog,
  };
}

export interface Collector {
  /** Copies of the frames received so far. */
  frames: Buffer[];
  closed: Promise<string>;
  /** Resolves once `pred` holds for the frames received so far. */
  until(pred: (frames: Buffer[]) => boolean): Promise<void>;
  /** Resolves with the frames once `count` have arrived. */
  received(count: number): Promise<Buffer[]>;
}

/** Becomes `link`'s handler and keeps what arrives. */
export function collect(link: Link): Collector {
  const frames: Buffer[] = [];
  const waiters: Array<{ pred: (f: Buffer[]) => boolean; done: () => void }> = [];
  let resolveClosed: (r: string) => void = () => {};
  const closed = new Promise<string>((r) => {
    resolveClosed = r;
  });
  link.setHandler({
    onFrame(frame) {
      frames.push(Buffer.from(frame));
      for (const w of waiters.filter((w) => w.pred(frames))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.done();
      }
    },
    onClose: resolveClosed,
  });
  const until = (pred: (f: Buffer[]) => boolean): Promise<void> =>
    pred(frames) ? Promise.resolve() : new Promise<void>((done) => waiters.push({ pred, done }));
  return {
    frames,
    closed,
    until,
    received: (count) => until((f) => f.length >= count).then(() => frames),
  };
}
