import { X509Certificate, createPrivateKey, createPublicKey } from "node:crypto";
import { describe, expect, it } from "vitest";
import { selfSignedCertificate } from "../src/crypto/cert.js";
import { Identity } from "../src/crypto/identity.js";

describe("self-signed TLS certificate", () => {
  const id = Identity.fromSeed(Buffer.alloc(32));
  const notBefore = new Date(Date.UTC(2024, 0, 2, 3, 4, 5));
  const creds = selfSignedCertificate(id, notBefore);
  const x509 = new X509Certificate(creds.cert);

  it("has subject = issuer = CN=<hex key>, serial 1 and the spec's validity", () => {
    const cn = `CN=${id.publicKey.toString("hex")}`;
    expect(x509.subject).toBe(cn);
    expect(x509.issuer).toBe(cn);
    expect(x509.serialNumber).toBe("01");
    expect(new Date(x509.validFrom).getTime()).toBe(notBefore.getTime());
    expect(new Date(x509.validTo).toISOString()).toBe("9999-12-31T23:59:59.000Z");
    expect(x509.ca).toBe(false);
    expect(x509.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"]);
  });

  it("carries the node's Ed25519 key and a valid self-signature", () => {
    expect(x509.publicKey.asymmetricKeyType).toBe("ed25519");
    const raw = x509.publicKey.export({ format: "der", type: "spki" }).subarray(-32);
    expect(Buffer.from(raw).equals(id.publicKey)).toBe(true);
    expect(x509.verify(x509.publicKey)).toBe(true);
    expect(x509.checkPrivateKey(createPrivateKey(creds.key))).toBe(true);
  });

  it("fails verification against another key", () => {
    const other = selfSignedCertificate(Identity.generate());
    expect(x509.verify(createPublicKey(other.cert))).toBe(false);
  });

  it("encodes dates from 2050 on as GeneralizedTime", () => {
    const late = new X509Certificate(selfSignedCertificate(id, new Date(Date.UTC(2051, 5, 6))).cert);
    expect(new Date(late.validFrom).getUTCFullYear()).toBe(2051);
  });
});
