// `planetctl help <command>` and `planetctl <command> --help`: answered here, without a daemon, so an
// operator can read the usage before planetd runs. The table must name every command the admin
// socket serves (test/admin-planetctl.test.ts checks it against COMMANDS).

export interface CommandHelp {
  /** The spelling yggdrasilctl prints; commands match case-insensitively. */
  name: string;
  /** Arguments as they are typed, e.g. "uri=URI [interface=NAME]". */
  args: string;
  /** One line for planetctl -help's list. */
  summary: string;
  text: string;
}

const KEY = "key=KEY          the remote node's public key, 64 hex characters";

export const COMMAND_HELP: CommandHelp[] = [
  {
    name: "addPeer",
    summary: "add a peer until the node stops",
    args: "uri=URI [interface=NAME]",
    text: `Adds a peer to the running node until it stops (the config file is not changed).
  uri=URI          tcp://host:port, tls://host:port, udp://host:port or unix:///path
  interface=NAME   dial out through this interface (as InterfacePeers)
Example: planetctl addPeer uri=tls://192.0.2.1:443`,
  },
  {
    name: "debug_remoteGetDHT",
    summary: "a remote node's DHT keys (debugging)",
    args: "key=KEY",
    text: `Asks a remote node for the keys in its DHT (debugging).\n  ${KEY}`,
  },
  {
    name: "debug_remoteGetPeers",
    summary: "a remote node's peer keys (debugging)",
    args: "key=KEY",
    text: `Asks a remote node for its peers' keys (debugging).\n  ${KEY}`,
  },
  {
    name: "debug_remoteGetSelf",
    summary: "a remote node's self-description (debugging)",
    args: "key=KEY",
    text: `Asks a remote node for its build, coordinates and key (debugging).\n  ${KEY}`,
  },
  {
    name: "getDHT",
    args: "",
    summary: "DHT entries this node knows",
    text: "Shows the DHT entries this node knows: address, key, port, rest.",
  },
  {
    name: "getMulticastInterfaces",
    summary: "interfaces multicast discovery runs on",
    args: "",
    text: "Shows the interfaces multicast peer discovery runs on.",
  },
  {
    name: "getNodeInfo",
    summary: "a remote node's NodeInfo",
    args: "key=KEY",
    text: `Asks a remote node for its NodeInfo (the node answers within 6 s or not at all).\n  ${KEY}`,
  },
  {
    name: "getPaths",
    args: "",
    summary: "paths established through this node",
    text: "Shows the source-routed paths established through this node.",
  },
  {
    name: "getPeers",
    summary: "directly connected peers",
    args: "",
    text: "Shows the directly connected peers: address, key, port, priority, coords, remote URI,\nbytes received and sent, uptime.",
  },
  {
    name: "getSelf",
    summary: "this node's key, address, subnet and coords",
    args: "",
    text: "Shows this node: build name and version, public key, IPv6 address, coords, subnet.",
  },
  {
    name: "getSessions",
    summary: "traffic sessions with remote nodes",
    args: "",
    text: "Shows the end-to-end traffic sessions with remote nodes: address, key, bytes, uptime, and the cipher (box as Yggdrasil, or chacha20-poly1305 between planetd nodes).",
  },
  {
    name: "getFirewall",
    args: "",
    summary: "planetd: firewall rules with hit counts, and the flow table",
    text: `planetd only: lists the Planetd.Firewall rules of each direction in order, with the packets
each rule decided, the defaults, the established flows, and the flow table's size and removals.
Answers enabled: false when no firewall is configured.`,
  },
  {
    name: "getNat",
    args: "",
    summary: "planetd: NAT traversal's punches and punched links, and traffic relayed",
    text: `planetd only: shows the NAT mapping type udp:// peers report (unknown, independent,
dependent), our reflexive addresses, punch attempts, successes, failures and skips (both sides
endpoint-dependent), the signalling counters, the udp:// peers that are punched links, and the
traffic frames and bytes this node relayed between two peers. Answers enabled: false (with the
relayed traffic) when Planetd.NatTraversal is false.`,
  },
  {
    name: "getUdp",
    args: "",
    summary: "planetd: the native udp sockets' drops and refused keys, what udp:// links refused",
    text: `planetd only: the counters of the native udp sockets (the planetd_udp addon), summed over
every socket the daemon opened: datagrams dropped on send (queue full, the kernel refused), not
sealed, truncated on receive, or not opened under their link's key; keys the sockets' tables had no
room for (the links then seal or open in JS); datagrams sent and opened; and where the work ran:
receive batches, opened datagrams and send batches done by a threadpool job or inline on the main
thread (an idle link reads, opens and seals inline, a busy one hands batches to jobs). All zero
when the addon is not built (udp:// links use node:dgram then). With or without the addon, what
the udp:// receive path refused: RESETs withheld (a stray datagram named a cookie of a listener's
life that may be live, so its token is not handed out), RESETs received without the link's reset
token (ignored); CONFIRMs refused as replayed after their link closed, stale (a cookie of neither
this minute nor the last), with a bad signature, from a key not allowed (AllowedPublicKeys) or
malformed; closed links' cookies forgotten early (4,096 are kept for two minutes; a replay of an
evicted one gets through); CHALLENGEs and ACCEPTs a dialer refused (unsolicited, forged, a key the
key= pin refuses, malformed); stray datagrams (short, unknown type, wrong size, naming no link);
datagrams naming a link that it dropped: forged (did not open under its key) or replayed; and
fragments refused, incomplete frames evicted (16 per link) and abandoned after 4 repair requests.`,
  },
  {
    name: "getTun",
    args: "",
    summary: "the TUN interface's name and MTU",
    text: "Shows the TUN interface: its name and MTU, or that it is disabled.",
  },
  {
    name: "list",
    args: "",
    summary: "the commands the daemon serves",
    text: "Lists the commands the daemon at the endpoint serves, with their arguments.",
  },
  {
    name: "reload",
    summary: "planetd: re-read the config file (as SIGHUP)",
    args: "",
    text: `planetd only: re-reads the config file and applies Peers, InterfacePeers, Listen,
AllowedPublicKeys, MulticastInterfaces, NodeInfo, NodeInfoPrivacy and the log level without
restarting (as SIGHUP does), and the firewall rules. A config that fails validation is refused and
the running one stays; a changed PrivateKey, IfName, IfMTU, AdminListen or MetricsListen needs a restart.`,
  },
  {
    name: "removePeer",
    summary: "remove a peer",
    args: "uri=URI [interface=NAME]",
    text: `Removes a peer that the config or addPeer added; its link closes.
  uri=URI          the peer's URI as it was added
  interface=NAME   the interface it was added with, if any`,
  },
];

export function findCommandHelp(command: string): CommandHelp | undefined {
  const wanted = command.toLowerCase();
  return COMMAND_HELP.find((c) => c.name.toLowerCase() === wanted);
}

export function formatCommandHelp(help: CommandHelp): string {
  const usage = `Usage: planetctl [options] ${help.name}${help.args ? ` ${help.args}` : ""}`;
  return `${usage}\n\n${help.text}\n\nOptions before the command: see planetctl -help.\n`;
}

/** The command list of planetctl -help, two columns. */
export function commandSummary(): string {
  const width = Math.max(...COMMAND_HELP.map((c) => c.name.length + (c.args ? c.args.length + 1 : 0)));
  return COMMAND_HELP.map((c) => {
    const left = c.args ? `${c.name} ${c.args}` : c.name;
    return `  ${left.padEnd(width)}  ${c.summary}`;
  }).join("\n");
}
