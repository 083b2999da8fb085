// Where one of planetd's native addons is: build/Release/<file> at the package root, `depth` folders
// above the calling module in a checkout (src/…), one more when built (dist/src/… under tsc -p .).
import { existsSync } from "node:fs";

export function addonPath(file: string, moduleUrl: string, depth: number): string | undefined {
  for (const up of [depth, depth + 1]) {
    const url = new URL(`${"../".repeat(up)}build/Release/${file}`, moduleUrl);
    if (existsSync(url)) return url.pathname;
  }
  return undefined;
}
