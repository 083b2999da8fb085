// Dialling a udp:// listener: a connected socket of its own, the INIT/CONFIRM exchange resent until
// answered or the handshake deadline, then a UdpLink on that socket. The wire format is in udp.ts.
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { encodeMetadata } from "./stream.js";
import { type UdpCommonOptions, linkSettings } from "./udp-common.js";
import { answersDial, provenAccept } from "./udp-dial-answers.js";
import { challengeKey, confirmPacket, handshakePacket, resetCommitment } from "./udp-handshake.js";
import {
  DATA_HEADER,
  PKT_ACCEPT,
  PKT_CHALLENGE,
  PKT_CLOSE,
  PKT_INIT,
  PKT_RESET,
  UdpLink,
  isLinkPacket,
} from "./udp-link.js";
import { udpRefusals } from "./udp-refusals.js";
import { randomEphemeral } from "./udp-seal.js";
import { type UdpErrorHandler, type UdpSocket, openUdpSocket } from "./udp-socket.js";

const HELLO_RETRY_MS = 1000;
const ZERO_COOKIE = Buffer.alloc(8);

export interface UdpDialOptions extends UdpCommonOptions {
  /** Literal IP (with a zone for link-local IPv6). */
  address: string;
  port: number;
  localAddress?: string;
  /** Shown by getPeers: the dial URI without its query. */
  remote: string;
  /** Pins and the self-key check: a string is the reason to give up. */
  check(remoteKey: Buffer): string | undefined;
}

export interface UdpDial {
  link: Promise<UdpLink>;
  /** True once the peer answered (for the manager's handshake-failure count). */
  readonly answered: boolean;
  cancel(reason: string): void;
}

/** Dial a UDP listener; the returned promise settles when the link is up or the handshake failed. */
export function dialUdp(o: UdpDialOptions): UdpDial {
  const family = isIP(o.address.split("%")[0]!);
  let socket: UdpSocket | undefined;
  const dialerCookie = randomBytes(8);
  const meta = encodeMetadata(o.localKey);
  const eph = randomEphemeral();
  const init = handshakePacket(PKT_INIT, dialerCookie, ZERO_COOKIE, meta, eph.publicKey);
  let confirm: Buffer | undefined;
  let listenerCookie: Buffer | undefined;
  let remoteKey: Buffer | undefined;
  let settled = false;
  const state = { answered: false };
  let ready = false;
  const retry = setInterval(() => hello(), HELLO_RETRY_MS);
  const deadline = setTimeout(
    () => fail(state.answered ? "handshake timed out" : "no answer (handshake timed out)"),
    o.timeouts.handshakeMs,
  );
  let resolveLink: (l: UdpLink) => void = () => {};
  let rejectLink: (e: Error) => void = () => {};
  const link = new Promise<UdpLink>((resolve, reject) => {
    resolveLink = resolve;
    rejectLink = reject;
  });

  const stopTimers = (): void => {
    clearInterval(retry);
    clearTimeout(deadline);
  };
  const fail = (message: string): void => {
    if (settled) return;
    settled = true;
    stopTimers();
    socket?.onMessage(undefined);
    void socket?.close();
    rejectLink(new Error(message));
  };
  const hello = (): void => {
    if (!ready || settled) return;
    socket?.send(confirm ?? init);
  };
  const up = (keys: { d2l: Buffer; l2d: Buffer; resetToken: Buffer }): void => {
    settled = true;
    stopTimers();
    const linkSocket = socket!;
    const udpLink = new UdpLink({
      socket: linkSocket,
      address: o.address,
      port: o.port,
      connected: true,
      localCookie: dialerCookie,
      remoteCookie: listenerCookie!,
      remoteKey: remoteKey!,
      remote: o.remote,
      outbound: true,
      ...linkSettings(o),
      keys: { tx: keys.d2l, rx: keys.l2d },
      dialPriority: o.priority,
      resetCommitment: resetCommitment(keys.resetToken),
      release: () => {
        setImmediate(() => void linkSocket.close());
      },
    });
    // The native socket reads its ICMP errors (udp-icmp-hints.ts): unauthenticated, so each is a
    // hint, a port unreachable too. dgram reports only receive errors here: an ICMP port
    // unreachable (ECONNREFUSED) means the listener is gone (as before the hints); other errors
    // (e.g. a transient ENOBUFS) do not end the link, silence does.
    const hinted = linkSocket.onUnreachable?.((_to, errno) => udpLink.unreachable(errno)) ?? false;
    linkSocket.onError((e) => {
      if (e.code === "ECONNREFUSED" && !hinted) udpLink.close("connection refused", false);
    });
    const stray = udpRefusals.strayDatagrams;
    linkSocket.onMessage((msg, _from, opened) => {
      if (msg.length < DATA_HEADER) {
        stray.short++;
        return;
      }
      const type = msg[0];
      if (isLinkPacket(type)) {
        if (udpLink.matches(msg)) udpLink.receive(msg, undefined, undefined, opened);
        else stray.cookie++;
      } else if (type === PKT_CLOSE) {
        if (udpLink.matches(msg)) udpLink.receiveClose(msg, opened);
        else stray.cookie++;
      } else if (type === PKT_RESET) {
        udpLink.receiveReset(msg);
      } else {
        stray.type++;
      }
    });
    resolveLink(udpLink);
  };
  const handshakeError: UdpErrorHandler = (e) =>
    fail(e.code === "ECONNREFUSED" ? "connection refused" : `udp: ${e.message}`);
  const handshakeMessage = (msg: Buffer): void => {
    if (settled) return;
    if (msg.length < DATA_HEADER) {
      udpRefusals.strayDatagrams.short++;
      return;
    }
    if (!answersDial(msg, dialerCookie, listenerCookie !== undefined)) return;
    const type = msg[0];
    if (type === PKT_CHALLENGE) {
      if (listenerCookie) return; // the answer to a repeated INIT
      state.answered = true;
      const key = challengeKey(msg);
      if (!key) {
        udpRefusals.dialAnswersRefused.malformed++;
        fail("malformed challenge metadata");
        return;
      }
      // Checked now to fail fast; the key is only proven by the ACCEPT's signature.
      const refused = o.check(key);
      if (refused !== undefined) {
        udpRefusals.dialAnswersRefused.not_allowed++;
        fail(refused);
        return;
      }
      remoteKey = key;
      listenerCookie = Buffer.from(msg.subarray(9, 17));
      confirm = confirmPacket(dialerCookie, listenerCookie, meta, o.localKey, key, eph, o.sign, o.priority);
      hello();
    } else if (type === PKT_ACCEPT) {
      const keys = provenAccept(msg, listenerCookie!, remoteKey!, o.localKey, eph);
      if (keys) up(keys); // otherwise forged or corrupted: keep waiting for the real one
    } else {
      state.answered = true;
      fail("refused by the peer");
    }
  };

  const start = async (): Promise<void> => {
    const opened = await openUdpSocket({ family: family === 6 ? 6 : 4, address: o.localAddress, port: 0 });
    if (settled) {
      void opened.close();
      return;
    }
    socket = opened;
    opened.onError(handshakeError);
    opened.onMessage(handshakeMessage);
    await opened.connect(o.port, o.address);
    ready = true;
    hello();
  };
  start().catch(handshakeError);

  return {
    link,
    get answered() {
      return state.answered;
    },
    cancel: (reason: string) => fail(reason),
  };
}
