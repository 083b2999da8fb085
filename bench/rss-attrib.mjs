// Where one process's resident pages sit against another's (bench/idle-rss.sh ATTRIB=1; root):
//   node bench/rss-attrib.mjs BARE_PID PID
// By mapping (/proc/PID/smaps): node's text and read-only data, V8's heap and other anonymous memory,
// the C heap, the addons, the libraries. Node's own pages by ELF section (/proc/PID/pagemap, readelf),
// with TurboFan's code (v8::internal::compiler symbols, nm -C) apart from the rest of .text. Each
// figure is the process's MiB minus the bare one's. Page-level: a file page counts where it is mapped
// in, even though the kernel maps file pages in 64 KiB runs around each fault.
import { execFileSync } from "node:child_process";
import { closeSync, openSync, readFileSync, readSync, readlinkSync } from "node:fs";

const PAGE = 4096;
const [barePid, pid] = process.argv.slice(2);
if (!barePid || !pid) {
  console.error("usage: node bench/rss-attrib.mjs BARE_PID PID");
  process.exit(2);
}

/** smaps: [{ start, end, perms, offset, path, rss (KiB) }]. */
function mappings(p) {
  const out = [];
  for (const line of readFileSync(`/proc/${p}/smaps`, "utf8").split("\n")) {
    const m = /^([0-9a-f]+)-([0-9a-f]+) (\S+) ([0-9a-f]+) \S+ \S+\s*(.*)$/.exec(line);
    if (m) {
      out.push({
        start: Number.parseInt(m[1], 16),
        end: Number.parseInt(m[2], 16),
        perms: m[3],
        offset: Number.parseInt(m[4], 16),
        path: m[5],
        rss: 0,
      });
    } else if (line.startsWith("Rss:") && out.length > 0) out.at(-1).rss = Number(line.split(/\s+/)[1]);
  }
  return out;
}

function mappingClass(m, exe) {
  if (m.path === exe) return m.perms.includes("x") ? "node text" : "node read-only data and tables";
  if (m.path === "[heap]") return "C heap ([heap])";
  if (m.path.endsWith(".node")) return `addon ${m.path.split("/").pop()}`;
  if (m.path.includes(".so")) return "shared libraries";
  if (m.path === "" && m.perms.includes("x")) return "JIT code (anonymous rwx)";
  if (m.path === "") return "V8 heap and other anonymous";
  return m.path.startsWith("[") ? m.path : "other files";
}

/** ELF sections of the executable: [{ name, addr, off, size }]. */
function sections(exe) {
  const out = [];
  for (const line of execFileSync("readelf", ["-SW", exe], { encoding: "utf8" }).split("\n")) {
    const m = /\]\s+(\S+)\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)/.exec(line);
    if (m && Number.parseInt(m[2], 16) > 0) {
      out.push({
        name: m[1],
        addr: Number.parseInt(m[2], 16),
        off: Number.parseInt(m[3], 16),
        size: Number.parseInt(m[4], 16),
      });
    }
  }
  return out;
}

/** Start addresses of the text symbols, sorted, and whether each is TurboFan's. */
function textSymbols(exe) {
  const starts = [];
  const turbofan = [];
  const text = execFileSync("nm", ["-C", "-n", "--defined-only", exe], {
    encoding: "utf8",
    maxBuffer: 1 << 30,
  });
  for (const line of text.split("\n")) {
    const m = /^([0-9a-f]+) [tTwW] (.*)$/.exec(line);
    if (!m) continue;
    starts.push(Number.parseInt(m[1], 16));
    turbofan.push(m[2].split("(")[0].includes("v8::internal::compiler::"));
  }
  return { starts, turbofan };
}

/** File offsets of the executable's resident pages. */
function residentFileOffsets(p, exe) {
  const fd = openSync(`/proc/${p}/pagemap`, "r");
  const out = [];
  try {
    for (const m of mappings(p)) {
      if (m.path !== exe) continue;
      const pages = (m.end - m.start) / PAGE;
      const buf = Buffer.alloc(pages * 8);
      readSync(fd, buf, 0, buf.length, (m.start / PAGE) * 8);
      for (let i = 0; i < pages; i++) {
        if (buf.readBigUInt64LE(i * 8) >> 63n) out.push(m.offset + i * PAGE);
      }
    }
  } finally {
    closeSync(fd);
  }
  return out;
}

function byExeSection(p, exe, secs, syms) {
  const counts = new Map();
  const add = (k) => counts.set(k, (counts.get(k) ?? 0) + PAGE / 1024);
  for (const off of residentFileOffsets(p, exe)) {
    const sec = secs.find((s) => off + PAGE > s.off && off < s.off + s.size);
    if (!sec) {
      add("(headers, padding)");
      continue;
    }
    if (sec.name !== ".text") {
      add(sec.name);
      continue;
    }
    const addr = sec.addr + Math.max(0, off - sec.off);
    let lo = 0;
    let hi = syms.starts.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (syms.starts[mid] <= addr) lo = mid;
      else hi = mid - 1;
    }
    add(syms.turbofan[lo] ? ".text: TurboFan (v8::internal::compiler)" : ".text: the rest");
  }
  return counts;
}

function table(title, a, b) {
  console.log(`${title.padEnd(44)} ${"bare".padStart(7)} ${"this".padStart(7)} ${"diff".padStart(7)}`);
  const keys = [...new Set([...a.keys(), ...b.keys()])];
  keys.sort((x, y) => (b.get(y) ?? 0) - (a.get(y) ?? 0) - ((b.get(x) ?? 0) - (a.get(x) ?? 0)));
  let sumA = 0;
  let sumB = 0;
  for (const k of keys) {
    const ka = (a.get(k) ?? 0) / 1024;
    const kb = (b.get(k) ?? 0) / 1024;
    sumA += ka;
    sumB += kb;
    if (Math.abs(kb - ka) < 0.05 && kb < 0.5) continue;
    console.log(
      `  ${k.padEnd(42)} ${ka.toFixed(2).padStart(7)} ${kb.toFixed(2).padStart(7)} ${(kb - ka >= 0 ? "+" : "") + (kb - ka).toFixed(2).padStart(6)}`,
    );
  }
  console.log(
    `  ${"total".padEnd(42)} ${sumA.toFixed(2).padStart(7)} ${sumB.toFixed(2).padStart(7)} ${(sumB - sumA >= 0 ? "+" : "") + (sumB - sumA).toFixed(2).padStart(6)}`,
  );
}

const exe = readlinkSync(`/proc/${pid}/exe`);
const byMapping = (p) => {
  const counts = new Map();
  for (const m of mappings(p)) {
    const k = mappingClass(m, exe);
    counts.set(k, (counts.get(k) ?? 0) + m.rss);
  }
  return counts;
};
table("by mapping (MiB)", byMapping(barePid), byMapping(pid));
const secs = sections(exe);
const syms = textSymbols(exe);
table(`${exe} by section (MiB)`, byExeSection(barePid, exe, secs, syms), byExeSection(pid, exe, secs, syms));
