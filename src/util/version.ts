// Build identity reported by getSelf (build_name, build_version) and by nodeinfo (spec 7).
import { readFileSync } from "node:fs";

export const BUILD_NAME = "planetd";

function readVersion(): string {
  try {
    // src/admin/ and dist/admin/ are both two levels below the package root.
    const text = readFileSync(new URL("../../package.json", import.meta.url), "utf8");
    const version: unknown = JSON.parse(text).version;
    return typeof version === "string" ? version : "unknown";
  } catch {
    return "unknown";
  }
}

export const BUILD_VERSION = readVersion();

const GO_ARCH: Record<string, string> = {
  x64: "amd64",
  ia32: "386",
  arm64: "arm64",
  arm: "arm",
  ppc64: "ppc64le",
  s390x: "s390x",
  riscv64: "riscv64",
  mips: "mips",
  mipsel: "mipsle",
  loong64: "loong64",
};

/** Go's GOOS name for this platform (nodeinfo `buildplatform`). */
export function goPlatform(platform: string = process.platform): string {
  return platform === "win32" ? "windows" : platform;
}

/** Go's GOARCH name for this architecture (nodeinfo `buildarch`). */
export function goArch(arch: string = process.arch): string {
  return GO_ARCH[arch] ?? arch;
}
