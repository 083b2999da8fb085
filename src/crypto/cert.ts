// A self-signed Ed25519 X.509 v3 certificate for the TLS listener, shaped like the one yggdrasil 0.4.7
// presents (spec 4.7). Nobody verifies it, but a well-formed certificate keeps OpenSSL and Go happy.
// Node cannot generate certificates, so this is a minimal DER writer covering only what we emit.
import type { Identity } from "./identity.js";

const OID_ED25519 = "1.3.101.112";
const OID_COMMON_NAME = "2.5.4.3";
const OID_KEY_USAGE = "2.5.29.15";
const OID_EXT_KEY_USAGE = "2.5.29.37";
const OID_BASIC_CONSTRAINTS = "2.5.29.19";
const OID_SERVER_AUTH = "1.3.6.1.5.5.7.3.1";

function derLength(n: number): Buffer {
  if (n < 0x80) return Buffer.from([n]);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Buffer.from([0x80 | bytes.length, ...bytes]);
}

function tlv(tag: number, ...content: Buffer[]): Buffer {
  const body = Buffer.concat(content);
  return Buffer.concat([Buffer.from([tag]), derLength(body.length), body]);
}

const seq = (...items: Buffer[]): Buffer => tlv(0x30, ...items);
const set = (...items: Buffer[]): Buffer => tlv(0x31, ...items);
const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner);
const octets = (b: Buffer): Buffer => tlv(0x04, b);
const bits = (b: Buffer, unused = 0): Buffer => tlv(0x03, Buffer.from([unused]), b);
const boolTrue = (): Buffer => tlv(0x01, Buffer.from([0xff]));

function integer(n: number): Buffer {
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  if (bytes.length === 0 || (bytes[0]! & 0x80) !== 0) bytes.unshift(0);
  return tlv(0x02, Buffer.from(bytes));
}

function oid(dotted: string): Buffer {
  const parts = dotted.split(".").map(Number);
  const out: number[] = [parts[0]! * 40 + parts[1]!];
  for (const part of parts.slice(2)) {
    const base128: number[] = [part & 0x7f];
    for (let v = Math.floor(part / 128); v > 0; v = Math.floor(v / 128)) base128.unshift(0x80 | (v & 0x7f));
    out.push(...base128);
  }
  return tlv(0x06, Buffer.from(out));
}

/** UTCTime before 2050, GeneralizedTime from 2050 on (RFC 5280 4.1.2.5). */
function time(date: Date): Buffer {
  const iso = date.toISOString().replace(/[-:T]/g, "").slice(0, 14); // YYYYMMDDHHMMSS
  const year = date.getUTCFullYear();
  if (year >= 1950 && year < 2050) return tlv(0x17, Buffer.from(`${iso.slice(2)}Z`, "ascii"));
  return tlv(0x18, Buffer.from(`${iso}Z`, "ascii"));
}

function extension(id: string, critical: boolean, value: Buffer): Buffer {
  return critical ? seq(oid(id), boolTrue(), octets(value)) : seq(oid(id), octets(value));
}

export interface TlsCredentials {
  /** PEM certificate. */
  cert: string;
  /** PEM PKCS#8 Ed25519 private key (what node:tls accepts). */
  key: string;
  /** The raw DER certificate, for tests and inspection. */
  der: Buffer;
}

/** Build the node's self-signed certificate; `notBefore` defaults to now (spec 4.7: start time). */
export function selfSignedCertificate(identity: Identity, notBefore: Date = new Date()): TlsCredentials {
  const algorithm = seq(oid(OID_ED25519));
  const name = seq(
    set(seq(oid(OID_COMMON_NAME), tlv(0x0c, Buffer.from(identity.publicKey.toString("hex"))))),
  );
  // digitalSignature (bit 0) + keyEncipherment (bit 2): 1010 0000, 5 unused bits.
  const keyUsage = bits(Buffer.from([0xa0]), 5);
  const extensions = seq(
    extension(OID_KEY_USAGE, true, keyUsage),
    extension(OID_EXT_KEY_USAGE, false, seq(oid(OID_SERVER_AUTH))),
    extension(OID_BASIC_CONSTRAINTS, true, seq()),
  );
  const tbs = seq(
    explicit(0, integer(2)),
    integer(1),
    algorithm,
    name,
    seq(
      time(new Date(Math.floor(notBefore.getTime() / 1000) * 1000)),
      time(new Date(Date.UTC(9999, 11, 31, 23, 59, 59))),
    ),
    name,
    seq(algorithm, bits(identity.publicKey)),
    explicit(3, extensions),
  );
  const der = seq(tbs, algorithm, bits(identity.sign(tbs)));
  // PKCS#8 PrivateKeyInfo: version 0, Ed25519 algorithm, OCTET STRING wrapping the 32-byte seed.
  const pkcs8 = seq(integer(0), algorithm, octets(octets(identity.seed)));
  return { cert: pem("CERTIFICATE", der), key: pem("PRIVATE KEY", pkcs8), der };
}

function pem(label: string, der: Buffer): string {
  const lines = der.toString("base64").match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join("\n")}\n-----END ${label}-----\n`;
}
