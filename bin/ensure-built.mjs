// Rebuild dist/ with tsc when any file under src/ is newer than the last build, so `./bin/planetd`
// from a checkout always runs the current source. Installed copies ship dist/ and skip this.
// Many CLIs may start at once (tests spawn them in parallel): a lock directory lets one build
// while the others wait for it.
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const stamp = join(root, "dist", ".built");
const lock = join(root, "dist", ".building");
const LOCK_STALE_MS = 120_000;

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

function isFresh() {
  const built = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
  return built >= newestMtime(join(root, "src"));
}

function sleep(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

function takeLock() {
  mkdirSync(join(root, "dist"), { recursive: true });
  for (;;) {
    try {
      mkdirSync(lock);
      return true;
    } catch {
      // Someone else is building; a lock older than any sane build was left by a killed process.
      try {
        if (Date.now() - statSync(lock).mtimeMs > LOCK_STALE_MS)
          rmSync(lock, { recursive: true, force: true });
      } catch {}
      sleep(200);
      if (isFresh()) return false;
    }
  }
}

export function ensureBuilt() {
  if (!existsSync(join(root, "src")) || isFresh()) return;
  if (!takeLock()) return;
  try {
    if (isFresh()) return;
    const startedAt = Date.now();
    const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
    if (!existsSync(tsc)) {
      process.stderr.write(
        "planetd: dist/ is missing or older than src/ and TypeScript is not installed (run `npm ci`)\n",
      );
      process.exit(1);
    }
    process.stderr.write(
      "planetd: source checkout: compiling src/ to dist/ (installed packages ship dist/)\n",
    );
    try {
      execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
    } catch {
      rmSync(lock, { recursive: true, force: true });
      process.stderr.write("planetd: build failed (see the TypeScript errors above)\n");
      process.exit(1);
    }
    // Stamp with the build's start time so an edit made during the build triggers the next one.
    const t = new Date(startedAt);
    writeFileSync(stamp, `${t.toISOString()}\n`);
    utimesSync(stamp, t, t);
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}
