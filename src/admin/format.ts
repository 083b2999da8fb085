// Human-readable output for planetctl, in the spirit of yggdrasilctl's tables.

/** Left-aligned columns separated by two spaces, no trailing whitespace. */
export function renderTable(header: string[] | null, rows: string[][]): string {
  const all = header ? [header, ...rows] : rows;
  if (all.length === 0) return "";
  const columns = Math.max(...all.map((r) => r.length));
  const widths = Array.from({ length: columns }, (_, c) => Math.max(...all.map((r) => (r[c] ?? "").length)));
  return all
    .map((row) =>
      row
        .map((cell, c) => cell.padEnd(widths[c]))
        .join("  ")
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join("");
}

/** Go's time.Duration String for whole seconds: 0s, 8s, 1m30s, 2h3m4s. */
export function formatUptime(seconds: number): string {
  let s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  s -= h * 3600;
  const m = Math.floor(s / 60);
  s -= m * 60;
  if (h > 0) return `${h}h${m}m${s}s`;
  if (m > 0) return `${m}m${s}s`;
  return `${s}s`;
}

export function formatBytes(bytes: number): string {
  const units = ["KiB", "MiB", "GiB", "TiB"];
  if (bytes < 1024) return `${bytes} B`;
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit]}`;
}

export function formatCoords(coords: unknown): string {
  return Array.isArray(coords) ? `[${coords.join(" ")}]` : String(coords);
}

type Json = Record<string, unknown>;
const str = (v: unknown) => (v === undefined || v === null ? "" : String(v));
/** getUdp's { job, inline } counts as "3 by a job, 40 inline" (0s for a daemon without them). */
function jobInline(v: unknown, tail = ""): string {
  const c = (v ?? {}) as Record<string, unknown>;
  return `${str(c.job ?? 0)} by a job, ${str(c.inline ?? 0)} inline${tail}`;
}
/** getUdp's udp:// handshake, reset and datagram refusals (absent from an older daemon's answer). */
function udpRefusalRows(r: Json): string[][] {
  if (!r.resets_refused) return [];
  const resets = r.resets_refused as Json;
  const confirms = (r.confirms_refused ?? {}) as Json;
  const datagrams = (r.link_datagrams_refused ?? {}) as Json;
  const answers = (r.dial_answers_refused ?? {}) as Json;
  const stray = (r.stray_datagrams ?? {}) as Json;
  const reassembly = (r.reassembly_refused ?? {}) as Json;
  return [
    [
      "RESETs refused:",
      `${str(resets.send ?? 0)} withheld (cookie may be live), ${str(resets.receive ?? 0)} received without the link's token`,
    ],
    [
      "CONFIRMs refused:",
      `${str(confirms.replayed ?? 0)} replayed (${str(r.spent_cookies_evicted ?? 0)} closed links' cookies forgotten early), ${str(confirms.stale ?? 0)} stale, ${str(confirms.signature ?? 0)} bad signature, ${str(confirms.not_allowed ?? 0)} key not allowed, ${str(confirms.malformed ?? 0)} malformed`,
    ],
    [
      "Dial answers refused:",
      `${str(answers.unsolicited ?? 0)} unsolicited, ${str(answers.forged ?? 0)} forged, ${str(answers.not_allowed ?? 0)} key not allowed, ${str(answers.malformed ?? 0)} malformed`,
    ],
    [
      "Stray datagrams:",
      `${str(stray.short ?? 0)} short, ${str(stray.type ?? 0)} unknown type, ${str(stray.size ?? 0)} wrong size, ${str(stray.cookie ?? 0)} naming no link`,
    ],
    [
      "Link datagrams refused:",
      `${str(datagrams.forged ?? 0)} forged (did not open), ${str(datagrams.replayed ?? 0)} replayed`,
    ],
    [
      "Fragments:",
      `${str(reassembly.fragment ?? 0)} refused, ${str(reassembly.evicted ?? 0)} frames evicted, ${str(reassembly.abandoned ?? 0)} abandoned`,
    ],
  ];
}
const list = (v: unknown): Json[] => (Array.isArray(v) ? (v as Json[]) : []);

/** The human form of one command's response; commands without a table fall back to JSON. */
export function formatResponse(command: string, response: unknown): string {
  const r = (response ?? {}) as Json;
  switch (command) {
    case "list":
      return renderTable(
        ["Command", "Arguments", "Description"],
        list(r.list).map((e) => [
          str(e.command),
          list(e.fields)
            .map((f) => `${f}=...`)
            .join(", "),
          str(e.description),
        ]),
      );
    case "getself":
      return renderTable(null, [
        ["Build name:", str(r.build_name)],
        ["Build version:", str(r.build_version)],
        ["IPv6 address:", str(r.address)],
        ["IPv6 subnet:", str(r.subnet)],
        ["Coordinates:", formatCoords(r.coords)],
        ["Public key:", str(r.key)],
      ]);
    case "getpeers":
      return renderTable(
        ["Port", "Public Key", "IP Address", "Uptime", "RX", "TX", "Pr", "URI"],
        list(r.peers).map((p) => [
          str(p.port),
          str(p.key),
          str(p.address),
          formatUptime(Number(p.uptime)),
          formatBytes(Number(p.bytes_recvd)),
          formatBytes(Number(p.bytes_sent)),
          str(p.priority),
          p.punched === true ? `${str(p.remote)} (punched)` : str(p.remote),
        ]),
      );
    case "getdht":
      return renderTable(
        ["Public Key", "IP Address", "Port", "Rest"],
        list(r.dht).map((d) => [str(d.key), str(d.address), str(d.port), str(d.rest)]),
      );
    case "getpaths":
      return renderTable(
        ["Public Key", "IP Address", "Path"],
        list(r.paths).map((p) => [str(p.key), str(p.address), formatCoords(p.path)]),
      );
    case "getsessions": {
      // planetd reports the session cipher (src/overlay/sessions/aead.ts); Yggdrasil does not.
      const cipher = (s: Record<string, unknown>) =>
        s.cipher_out === s.cipher_in ? str(s.cipher_out) : `${str(s.cipher_out)} out, ${str(s.cipher_in)} in`;
      const withCipher = list(r.sessions).some((s) => s.cipher_out !== undefined);
      return renderTable(
        ["Public Key", "IP Address", "Uptime", "RX", "TX", ...(withCipher ? ["Cipher"] : [])],
        list(r.sessions).map((s) => [
          str(s.key),
          str(s.address),
          formatUptime(Number(s.uptime)),
          formatBytes(Number(s.bytes_recvd)),
          formatBytes(Number(s.bytes_sent)),
          ...(withCipher ? [cipher(s)] : []),
        ]),
      );
    }
    case "gettun":
      return renderTable(
        null,
        r.enabled
          ? [
              ["TUN enabled:", "true"],
              ["Interface name:", str(r.name)],
              ["Interface MTU:", str(r.mtu)],
            ]
          : [["TUN enabled:", "false"]],
      );
    case "getmulticastinterfaces":
      return renderTable(
        ["Interface"],
        (Array.isArray(r.multicast_interfaces) ? r.multicast_interfaces : []).map((i) => [str(i)]),
      );
    case "getfirewall": {
      if (!r.enabled) return "Firewall: off (no Planetd.Firewall in the config)\n";
      const rows: string[][] = [];
      for (const direction of ["inbound", "outbound"]) {
        const d = (r[direction] ?? {}) as Json;
        for (const rule of list(d.rules))
          rows.push([
            direction,
            str(rule.index),
            str(rule.name),
            str(rule.action),
            str(rule.match),
            str(rule.hits),
          ]);
        rows.push([direction, "-", "default", str(d.default), "", str(d.default_hits)]);
        rows.push([
          direction,
          "-",
          "established",
          "accept",
          "tracked flows and related errors",
          str(d.established),
        ]);
      }
      return `${renderTable(["Direction", "#", "Name", "Action", "Match", "Hits"], rows)}\nFlows: ${str(r.flows)} of ${str(r.max_flows)} (expired ${str(r.flows_expired)}, evicted ${str(r.flows_evicted)}, revoked by reloads ${str(r.flows_revoked)})\nRejects: ${str(r.rejects_sent)} answered, ${str(r.rejects_rate_limited)} over the rate limit\n`;
    }
    case "getnat": {
      const relayed = `Relayed for others: ${str(r.forwarded_frames)} frames, ${str(r.forwarded_bytes)} bytes\n`;
      if (!r.enabled) return `NAT traversal: off (Planetd.NatTraversal is false)\n${relayed}`;
      const d = (r.destinations ?? {}) as Json;
      const head = renderTable(null, [
        ["Mapping:", str(r.mapping)],
        ["Reflexive:", list(r.reflexive).map(str).join(", ") || "-"],
        [
          "Punches:",
          `${str(r.punch_attempts)} attempted, ${str(r.punch_successes)} linked, ${str(r.punch_failures)} failed, ${str(r.punch_skipped)} skipped (both endpoint-dependent)`,
        ],
        [
          "Signalling:",
          `${str(r.offers_sent)} offers, ${str(r.answers_sent)} answers, ${str(r.offers_ignored)} offers ignored, ${str(r.signals_malformed)} malformed, ${str(r.table_full)} turned away (table full)`,
        ],
        [
          "Destinations:",
          `${str(d.offered)} offered, ${str(d.punching)} punching, ${str(d.direct)} direct, ${str(d.backing_off)} backing off`,
        ],
      ]);
      const peers = list(r.punched_peers).map((p) => [str(p.address), str(p.remote)]);
      const table = peers.length > 0 ? `\n${renderTable(["Punched peer", "Remote"], peers)}` : "";
      return `${head}${table}${relayed}`;
    }
    case "getudp": {
      const d = (r.dropped ?? {}) as Json;
      const k = (r.keys_refused ?? {}) as Json;
      const h = (r.icmp_hints ?? {}) as Json;
      return renderTable(null, [
        ["Native sockets:", str(r.sockets)],
        [
          "Dropped:",
          `${str(d.send ?? 0)} send, ${str(d.seal_failed ?? 0)} seal failed, ${str(d.truncated ?? 0)} truncated, ${str(d.open_failed ?? 0)} did not open`,
        ],
        [
          "Keys refused:",
          `${str(k.send ?? 0)} send, ${str(k.receive ?? 0)} receive (sealed or opened in JS)`,
        ],
        [
          "Datagrams:",
          `${str(r.sent ?? 0)} sent (${str(r.gso_messages ?? 0)} GSO sends), ${str(r.opened ?? 0)} opened (${str(r.gro_buffers ?? 0)} GRO buffers)`,
        ],
        ["Receive batches:", jobInline(r.receive_batches, ` (opened ${jobInline(r.opened_by)})`)],
        ["Frames joined:", `${str(r.frames_joined ?? 0)} (whole from one read's fragment datagrams)`],
        ["Send batches:", jobInline(r.send_batches)],
        [
          "ICMP hints:",
          `${str(h.received ?? 0)} received: ${str(h.probed ?? 0)} probed (${str(h.closed ?? 0)} closed, ${str(h.cancelled ?? 0)} cancelled), ${str(h.repeated ?? 0)} repeated, ${str(h.held_off ?? 0)} held off, ${str(h.no_link ?? 0)} no link`,
        ],
        [
          "Flushes deferred:",
          `${str(r.end_of_input_overflows ?? 0)} (end-of-input list full: sent a tick later)`,
        ],
        ...udpRefusalRows(r),
      ]);
    }
    case "getnodeinfo": {
      const first = Object.values(r)[0];
      return `${JSON.stringify(first ?? {}, null, 2)}\n`;
    }
    default:
      return `${JSON.stringify(response, null, 2)}\n`;
  }
}
