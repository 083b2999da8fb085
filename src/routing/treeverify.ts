// Tree-info signature checking that skips hops already verified (spec 5.2.1). The signature of hop i
// covers root ‖ seq ‖ (next ‖ uv(port)) of hops 1..i and is made by the key before it, so a hop whose
// root, seq and every hop up to and including it (with signatures) equal an already verified info is
// the identical (key, message, signature) triple and needs no second check. Infos from neighbours
// share long prefixes with each other, so this removes most ed25519 verifications per tree frame.
import { verify } from "../crypto/identity.js";
import type { StoredInfo } from "./state.js";
import type { TreeInfo } from "./types.js";
import { uvarintSize, writeUvarint } from "./varint.js";

/** Number of leading hops of info that equal hops of some verified info with the same root and seq. */
function knownPrefix(info: TreeInfo, verified: Iterable<StoredInfo | undefined>): number {
  let best = 0;
  for (const s of verified) {
    if (s === undefined) continue;
    const v = s.info;
    if (v.seq !== info.seq || !v.root.equals(info.root)) continue;
    const max = Math.min(v.hops.length, info.hops.length);
    let k = 0;
    while (k < max) {
      const a = v.hops[k];
      const b = info.hops[k];
      if (a.port !== b.port || !a.sig.equals(b.sig) || !a.next.equals(b.next)) break;
      k++;
    }
    if (k > best) best = k;
  }
  return best;
}

/** True iff info has at least one hop and every hop signature verifies. */
export function verifyTreeIncremental(info: TreeInfo, verified: Iterable<StoredInfo | undefined>): boolean {
  const hops = info.hops;
  if (hops.length === 0) return false;
  const skip = knownPrefix(info, verified);
  if (skip === hops.length) return true;
  let size = 40;
  for (const hop of hops) size += 32 + uvarintSize(hop.port);
  const pre = Buffer.allocUnsafe(size);
  if (info.root.length !== 32) return false;
  info.root.copy(pre, 0);
  pre.writeBigUInt64BE(info.seq, 32);
  let o = 40;
  let key = info.root;
  for (let i = 0; i < hops.length; i++) {
    const hop = hops[i];
    if (hop.next.length !== 32 || hop.sig.length !== 64) return false;
    hop.next.copy(pre, o);
    o = writeUvarint(pre, o + 32, hop.port);
    if (i >= skip && !verify(key, pre.subarray(0, o), hop.sig)) return false;
    key = hop.next;
  }
  return true;
}
