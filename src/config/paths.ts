// Where planetd keeps state when the operator does not say: the generated config (and with it the
// private key, so the address survives restarts) and the admin socket of a non-root daemon.
import { homedir } from "node:os";
import { join } from "node:path";

export function isRoot(): boolean {
  return typeof process.getuid === "function" && process.getuid() === 0;
}

/** $PLANETD_STATE_DIR, else /var/lib/planetd as root, else $XDG_STATE_HOME/planetd or ~/.local/state/planetd. */
export function stateDir(env: NodeJS.ProcessEnv = process.env, root: boolean = isRoot()): string {
  if (env.PLANETD_STATE_DIR) return env.PLANETD_STATE_DIR;
  if (root) return "/var/lib/planetd";
  if (env.XDG_STATE_HOME) return join(env.XDG_STATE_HOME, "planetd");
  return join(env.HOME || homedir(), ".local", "state", "planetd");
}

/** The system-wide config, used before the state directory's when it exists ($PLANETD_SYSTEM_CONFIG: packagers, tests). */
export function systemConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  return env.PLANETD_SYSTEM_CONFIG || "/etc/planetd/planetd.conf";
}

export function defaultConfigPath(env: NodeJS.ProcessEnv = process.env, root: boolean = isRoot()): string {
  return join(stateDir(env, root), "planetd.conf");
}

/** Debian-like socket path as root (its directory is created at start); a non-root daemon cannot write /var/run. */
export function defaultAdminListen(env: NodeJS.ProcessEnv = process.env, root: boolean = isRoot()): string {
  if (root && !env.PLANETD_STATE_DIR) return "unix:///var/run/planetd/planetd.sock";
  return `unix://${join(stateDir(env, root), "planetd.sock")}`;
}
