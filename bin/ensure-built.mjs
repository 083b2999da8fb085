// Rebuild dist/ with tsc when any file under src/ is newer than the last build, so `./bin/planetd`
// from a checkout always runs the current source. Installed copies ship dist/ and skip this.
import { execFileSync } from "node:child_process";
import { existsSync, readdirSync, statSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const stamp = join(root, "dist", ".built");

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(p));
    else if (entry.name.endsWith(".ts")) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

export function ensureBuilt() {
  if (!existsSync(join(root, "src"))) return;
  const built = existsSync(stamp) ? statSync(stamp).mtimeMs : 0;
  if (built >= newestMtime(join(root, "src"))) return;
  const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
  try {
    execFileSync(process.execPath, [tsc, "-p", join(root, "tsconfig.build.json")], { stdio: "inherit" });
  } catch {
    process.stderr.write("planetd: build failed (see the TypeScript errors above)\n");
    process.exit(1);
  }
  writeFileSync(stamp, `${new Date().toISOString()}\n`);
}
