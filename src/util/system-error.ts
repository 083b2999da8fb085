// Turns a Node system error into the words an operator acts on: "address already in use
// (EADDRINUSE)" rather than "listen EADDRINUSE: address already in use 127.0.0.1:9001", whose
// syscall and address the caller's message already names.

/**
 * Our words for the codes an operator meets most: Node's dgram messages carry none ("bind
 * EADDRNOTAVAIL 192.0.2.1:1") and the native socket's carry libc's ("Cannot assign requested
 * address"), so the same failure reads the same on tcp:// and udp://.
 */
const DESCRIPTIONS: Record<string, string> = {
  EACCES: "permission denied",
  EADDRINUSE: "address already in use",
  EADDRNOTAVAIL: "address not available",
  EAFNOSUPPORT: "address family not supported",
  EINVAL: "invalid argument",
  ENODEV: "no such device",
  ENOENT: "no such file or directory",
  EPERM: "operation not permitted",
};

export function systemErrorText(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  const message = e instanceof Error ? e.message : String(err);
  const code = e?.code;
  if (typeof code !== "string" || !/^E[A-Z0-9]+$/.test(code)) return message;
  const marker = `${code}: `;
  let text = message.includes(marker) ? message.slice(message.indexOf(marker) + marker.length) : "";
  const address = (e as { address?: unknown }).address;
  if (typeof address === "string" && address !== "" && text.includes(` ${address}`)) {
    text = text.slice(0, text.indexOf(` ${address}`));
  }
  return `${DESCRIPTIONS[code] || text.trim() || "failed"} (${code})`;
}
