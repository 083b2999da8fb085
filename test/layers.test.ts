// The layering DEVELOPERS.md promises, checked on the source: relative imports form no cycle, and
// nothing below the composition root (src/daemon) imports admin/, cli/, config/ or daemon/.
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join, normalize } from "node:path";
import { describe, expect, it } from "vitest";

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith(".ts") ? [join(dir, e.name)] : [],
  );
}

const graph = new Map<string, string[]>();
for (const file of sources("src")) {
  const deps = [...readFileSync(file, "utf8").matchAll(/from "(\.[^"]+)\.js"/g)].map((m) =>
    normalize(join(dirname(file), `${m[1]}.ts`)),
  );
  graph.set(file, deps);
}
const layerOf = (file: string) => file.split("/")[1] ?? "";
const LOWER = new Set(["crypto", "util", "routing", "overlay", "tun"]);
const UPPER = new Set(["admin", "cli", "config", "daemon"]);

describe("source layering", () => {
  it("reads the tree", () => {
    expect(graph.size).toBeGreaterThan(40);
    expect(graph.get("src/daemon/node.ts")).toContain("src/overlay/sessions.ts");
  });

  it("no layer below the daemon imports admin/, cli/, config/ or daemon/", () => {
    const bad = [...graph].flatMap(([file, deps]) =>
      LOWER.has(layerOf(file)) ? deps.filter((d) => UPPER.has(layerOf(d))).map((d) => `${file} -> ${d}`) : [],
    );
    expect(bad).toEqual([]);
  });

  it("relative imports form no cycle", () => {
    const state = new Map<string, 1 | 2>();
    const cycles: string[] = [];
    const path: string[] = [];
    const visit = (file: string) => {
      state.set(file, 1);
      path.push(file);
      for (const dep of graph.get(file) ?? []) {
        if (state.get(dep) === 1) cycles.push([...path.slice(path.indexOf(dep)), dep].join(" -> "));
        else if (!state.has(dep)) visit(dep);
      }
      path.pop();
      state.set(file, 2);
    };
    for (const file of graph.keys()) if (!state.has(file)) visit(file);
    expect(cycles).toEqual([]);
  });
});
