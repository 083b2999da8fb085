// Build dist/ once before any test spawns ./bin/planetd, so parallel test files do not race to run tsc.
import { execFileSync } from "node:child_process";

export default function setup(): void {
  execFileSync(process.execPath, ["bin/planetd", "--version"], { stdio: "inherit" });
}
