// Who may link, the same for every transport (spec 4.2): no link to ourselves, pins on outbound
// links, AllowedPublicKeys on inbound ones, and one connection per dedupe id (scheme+interface+remote).
import { isLinkLocal6 } from "./uri.js";

/** The remote answered and refused, or was refused: redialling sooner will not help. */
export class Refused extends Error {}

export class Admission {
  /** Dedupe ids (spec 4.2) of connections from accept/connect until close. */
  readonly ids = new Set<string>();
  /** AllowedPublicKeys as hex; empty admits every key. */
  private readonly allowed: Set<string>;
  private readonly localKey: Buffer;

  constructor(localKey: Buffer, allowedPublicKeys: Buffer[]) {
    this.localKey = localKey;
    this.allowed = new Set(allowedPublicKeys.map((k) => k.toString("hex")));
  }

  /** AllowedPublicKeys from a reloaded config; links already up are the caller's to recheck. */
  setAllowed(keys: Buffer[]): void {
    this.allowed.clear();
    for (const k of keys) this.allowed.add(k.toString("hex"));
  }

  /**
   * The admission rules every transport shares (spec 4.2): no link to ourselves, pins on outbound
   * links, AllowedPublicKeys on inbound ones (link-local sources exempt). Returns the reason to refuse.
   */
  refusal(remoteKey: Buffer, outbound: boolean, pins: Buffer[], ip: string): string | undefined {
    if (remoteKey.equals(this.localKey)) return "remote key is our own key";
    const keyHex = remoteKey.toString("hex");
    if (outbound) {
      if (pins.length > 0 && !pins.some((k) => k.equals(remoteKey))) {
        return `remote key ${keyHex} does not match the pinned key`;
      }
    } else if (this.allowed.size > 0 && !this.allowed.has(keyHex) && !isLinkLocal6(ip)) {
      return `key ${keyHex} is not in AllowedPublicKeys`;
    }
    return undefined;
  }
}
