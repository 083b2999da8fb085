// Identity and signature verification with Go's acceptance rules.
import { describe, expect, it } from "vitest";
import { Identity, verify } from "../src/crypto/identity.js";

describe("verify", () => {
  it("accepts a real signature and refuses a flipped bit", () => {
    const id = Identity.generate();
    const msg = Buffer.from("tree hop");
    const sig = id.sign(msg);
    expect(verify(id.publicKey, msg, sig)).toBe(true);
    sig[10]! ^= 1;
    expect(verify(id.publicKey, msg, sig)).toBe(false);
  });

  it("accepts what Go's crypto/ed25519 accepts for a small-order key (libsodium alone refuses it)", () => {
    // The identity point as key and R, S = 0: [S]B = R + [k]A holds for every message, and Go
    // checks only that equation and S < L. A Go peer relays such signatures, so we must too.
    const identityPoint = Buffer.alloc(32);
    identityPoint[0] = 1;
    const sig = Buffer.alloc(64);
    sig[0] = 1;
    expect(verify(identityPoint, Buffer.from("anything"), sig)).toBe(true);
  });

  it("refuses S >= L and keys that are not points", () => {
    const id = Identity.generate();
    const msg = Buffer.from("m");
    const sig = id.sign(msg);
    sig.fill(0xff, 32, 64); // S far above the group order
    expect(verify(id.publicKey, msg, sig)).toBe(false);
    expect(verify(Buffer.alloc(32, 0xff), msg, id.sign(msg))).toBe(false);
    expect(verify(Buffer.alloc(31), msg, id.sign(msg))).toBe(false);
  });
});
