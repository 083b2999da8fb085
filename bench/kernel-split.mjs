// bench/kernel-split.sh's report: `perf script -F comm,pid,ip,sym,dso` (with call chains) on stdin,
// `pid=role` arguments. Per process: its share of all samples, then by activity (user code, or the
// kernel entry the sample sat under), then for the three busiest kernel entries their leaf symbols.
import { createInterface } from "node:readline";

const roles = new Map(process.argv.slice(2).map((a) => a.split("=")));
// Kernel entries that say which of our operations the kernel was doing, outermost first.
const ENTRIES = [
  "tun_chr_write_iter",
  "tun_chr_read_iter",
  "tcp_sendmsg",
  "tcp_recvmsg",
  "udp_sendmsg",
  "udpv6_sendmsg",
  "udp_recvmsg",
  "udpv6_recvmsg",
  "do_epoll_wait",
  "do_select",
  "sock_read_iter",
];

function activity(frames) {
  if (!frames.some((f) => f.kernel)) {
    const leaf = frames[0]?.sym ?? "?";
    if (/chacha|poly1305|EVP_|crypto_|salsa/i.test(leaf)) return "user: crypto";
    if (/memmove|memcpy/.test(leaf)) return "user: memmove";
    return "user: other";
  }
  const syms = frames.map((f) => f.sym);
  for (const entry of ENTRIES) {
    const at = syms.indexOf(entry);
    if (at < 0) continue;
    const softirq = syms.slice(0, at).includes("handle_softirqs");
    return `kernel: ${entry}${softirq ? " (softirq)" : ""}`;
  }
  const syscall = syms.find((s) => /^__x64_sys_|^__do_sys_/.test(s));
  if (syscall) return `kernel: ${syscall}`;
  if (syms.some((s) => /exit_to_user_mode|irqentry_exit/.test(s)))
    return "kernel: scheduling on return to user";
  const irq = syms.find((s) => /^asm_(sysvec|common_interrupt|exc)/.test(s));
  return `kernel: ${irq ?? "other"}`;
}

const perProcess = new Map();
let total = 0;
let pid;
let frames = [];
function flush() {
  if (pid !== undefined && roles.has(pid)) {
    total++;
    const p = perProcess.get(pid) ?? { samples: 0, by: new Map(), leaves: new Map() };
    const what = activity(frames);
    p.samples++;
    p.by.set(what, (p.by.get(what) ?? 0) + 1);
    if (what.startsWith("kernel")) {
      const leaves = p.leaves.get(what) ?? new Map();
      leaves.set(frames[0].sym, (leaves.get(frames[0].sym) ?? 0) + 1);
      p.leaves.set(what, leaves);
    }
    perProcess.set(pid, p);
  }
  pid = undefined;
  frames = [];
}
const rl = createInterface({ input: process.stdin });
rl.on("line", (line) => {
  if (line === "") return flush();
  if (!/^\s/.test(line)) {
    flush();
    pid = /^\S+\s+(\d+)/.exec(line)?.[1];
    return;
  }
  const m = /^\s+[0-9a-f]+\s+(.+?)\s+\((.*)\)$/.exec(line);
  if (m) frames.push({ sym: m[1].replace(/\+0x[0-9a-f]+$/, ""), kernel: m[2].includes("kernel") });
});
rl.on("close", () => {
  flush();
  const pct = (n, of) => `${((100 * n) / of).toFixed(1).padStart(5)} %`;
  for (const [id, p] of [...perProcess].sort((a, b) => b[1].samples - a[1].samples)) {
    console.log(`\n${roles.get(id)} (pid ${id}): ${pct(p.samples, total)} of all samples`);
    const by = [...p.by].sort((a, b) => b[1] - a[1]);
    for (const [what, n] of by.slice(0, 12)) console.log(`  ${pct(n, p.samples)}  ${what}`);
    for (const [what] of by.filter(([w]) => w.startsWith("kernel")).slice(0, 3)) {
      const leaves = [...p.leaves.get(what)].sort((a, b) => b[1] - a[1]).slice(0, 5);
      const n = p.by.get(what);
      console.log(
        `  under ${what.slice(8)}: ${leaves.map(([s, k]) => `${s} ${((100 * k) / n).toFixed(0)}%`).join(", ")}`,
      );
    }
  }
});
