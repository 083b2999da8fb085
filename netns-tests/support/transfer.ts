// A sha256-checked TCP transfer through the overlay (tcp-transfer.mjs at both ends), shared by the
// namespace tests that move bulk data: the client retries its connect, so no wait is needed first.
import { join } from "node:path";
import { expect } from "vitest";
import { type DaemonNode, repoRoot } from "../harness.js";

const TRANSFER_SCRIPT = join(repoRoot, "netns-tests", "support", "tcp-transfer.mjs");

/**
 * Moves `mib` MiB from `from` to `to` over TCP (paced at `paceKiB` per 10 ms when given), checks the
 * byte count and the sha256 at both ends; returns the bytes and the client's duration.
 */
export async function checkedTransfer(
  from: DaemonNode,
  to: DaemonNode,
  mib: number,
  o: { label?: string; paceKiB?: number; timeoutMs?: number } = {},
): Promise<{ bytes: number; ms: number }> {
  const label = o.label ?? "transfer";
  const timeout = o.timeoutMs ?? 120_000;
  const port = String(5000 + Math.floor(Math.random() * 1000));
  const server = to.ns.exec(process.execPath, [TRANSFER_SCRIPT, "server", to.address, port], timeout);
  const client = await from.ns.exec(
    process.execPath,
    [TRANSFER_SCRIPT, "client", to.address, port, String(mib), ...(o.paceKiB ? [String(o.paceKiB)] : [])],
    timeout,
  );
  const got = await server;
  expect(client.code, `${label}: client ${client.stderr}`).toBe(0);
  expect(got.code, `${label}: server ${got.stderr}`).toBe(0);
  const sent = JSON.parse(client.stdout.trim()) as { bytes: number; sha: string; ms: number };
  const received = JSON.parse(got.stdout.trim()) as { bytes: number; sha: string };
  expect(received.bytes, label).toBe(mib * 1048576);
  expect(received.sha, label).toBe(sent.sha);
  return { bytes: received.bytes, ms: sent.ms };
}
