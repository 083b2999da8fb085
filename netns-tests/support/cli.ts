// Shared by the helper processes of the hostile-peer suite (attacker.ts, replay-forwarder.ts): their
// `key=value` arguments. They run under vite-node outside vitest, so they cannot import the harness.

export type Args = Map<string, string>;

/** `key=value` words (a bare `--` is skipped); anything else is an error. */
export function parseArgs(words: string[]): Args {
  const args: Args = new Map();
  for (const w of words) {
    if (w === "--") continue;
    const eq = w.indexOf("=");
    if (eq <= 0) throw new Error(`argument "${w}" is not key=value`);
    args.set(w.slice(0, eq), w.slice(eq + 1));
  }
  return args;
}

export function arg(args: Args, name: string): string {
  const v = args.get(name);
  if (v === undefined) throw new Error(`missing ${name}=…`);
  return v;
}

export function num(args: Args, name: string): number {
  const v = Number(arg(args, name));
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${name}= must be a positive number`);
  return v;
}

/** `host:port` or `[v6]:port`. */
export function hostPort(s: string): { host: string; port: number } {
  const i = s.lastIndexOf(":");
  const port = Number(s.slice(i + 1));
  if (i <= 0 || !Number.isInteger(port) || port <= 0 || port > 65535)
    throw new Error(`"${s}" is not host:port`);
  return { host: s.slice(0, i).replace(/^\[|\]$/g, ""), port };
}
