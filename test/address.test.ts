// Spec 3.4 vectors: key → address, key → subnet, and back to the partial keys, through both the
// pure functions of src/crypto/address.ts and the Identity built from the config's PrivateKey.
import { describe, expect, it } from "vitest";
import {
  addressForKey,
  formatIPv6,
  formatSubnet,
  isValidAddress,
  isValidSubnet,
  partialKeyFor,
  subnetForKey,
} from "../src/crypto/address.js";
import { Identity } from "../src/crypto/identity.js";

interface Vector {
  seed?: string;
  pub: string;
  ones: number;
  address: string;
  subnet: string;
  partialFromAddress: string;
  partialFromSubnet: string;
}

const VECTORS: Vector[] = [
  {
    seed: "00".repeat(32),
    pub: "3b6a27bcceb6a42d62a3a8d02a6f0d73653215771de243a63ac048a18b59da29",
    ones: 2,
    address: "202:24ae:c219:8a4a:de94:eae2:b97e:ac87",
    subnet: "302:24ae:c219:8a4a::/64",
    partialFromAddress: "3b6a27bcceb6a42d62a3a8d02a6f1fffffffffffffffffffffffffffffffffff",
    partialFromSubnet: "3b6a27bcceb6bfffffffffffffffffffffffffffffffffffffffffffffffffff",
  },
  {
    seed: "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
    pub: "79b5562e8fe654f94078b112e8a98ba7901f853ae695bed7e0e3910bad049664",
    ones: 1,
    address: "201:192a:a745:c066:ac1a:fe1d:3bb4:5d59",
    subnet: "301:192a:a745:c066::/64",
    partialFromAddress: "79b5562e8fe654f94078b112e8a9bfffffffffffffffffffffffffffffffffff",
    partialFromSubnet: "79b5562e8fe67fffffffffffffffffffffffffffffffffffffffffffffffffff",
  },
  {
    seed: "956f1d3c10dc9eebf64092e906636517f4b225a211be84f997a48962aa1c6a8f",
    pub: "00001fd629156b40f1e4193bbabbb5ed2e52b017ffd1a4b982553f65d852677e",
    ones: 19,
    address: "213:29d:6ea9:4bf0:e1be:6c44:5444:a12d",
    subnet: "313:29d:6ea9:4bf0::/64",
    partialFromAddress: "00001fd629156b40f1e4193bbabbb5ed2fffffffffffffffffffffffffffffff",
    partialFromSubnet: "00001fd629156b40ffffffffffffffffffffffffffffffffffffffffffffffff",
  },
  {
    seed: "86a30d306aff94a686a0bee721bbd8a80e6e902f309f5db0b71b1ee76219a37e",
    pub: "ee9cd3aa44a1d2341e71c3f7ccd0b6743716cbece9173c5bf143710a827a507d",
    ones: 0,
    address: "200:22c6:58ab:76bc:5b97:c31c:7810:665e",
    subnet: "300:22c6:58ab:76bc::/64",
    partialFromAddress: "ee9cd3aa44a1d2341e71c3f7ccd0ffffffffffffffffffffffffffffffffffff",
    partialFromSubnet: "ee9cd3aa44a1ffffffffffffffffffffffffffffffffffffffffffffffffffff",
  },
  {
    pub: "bdbacfd82240de3dcd123924cbb55256fb8dab08aa98e305528ab84f419e6efb",
    ones: 0,
    address: "200:848a:604f:bb7e:4384:65db:8db6:6895",
    subnet: "300:848a:604f:bb7e::/64",
    partialFromAddress: "bdbacfd82240de3dcd123924cbb57fffffffffffffffffffffffffffffffffff",
    partialFromSubnet: "bdbacfd82240ffffffffffffffffffffffffffffffffffffffffffffffffffff",
  },
];

describe("spec 3.4 vectors", () => {
  VECTORS.forEach((v, i) => {
    const pub = Buffer.from(v.pub, "hex");
    it(`vector ${i + 1}: key → address and subnet`, () => {
      const address = addressForKey(pub);
      expect(address[1]).toBe(v.ones);
      expect(formatIPv6(address)).toBe(v.address);
      expect(formatSubnet(subnetForKey(pub))).toBe(v.subnet);
      expect(isValidAddress(address)).toBe(true);
      expect(isValidSubnet(subnetForKey(pub))).toBe(true);
      expect(isValidSubnet(address)).toBe(false);
    });
    it(`vector ${i + 1}: address and subnet → partial key`, () => {
      const address = addressForKey(pub);
      expect(partialKeyFor(address).toString("hex")).toBe(v.partialFromAddress);
      expect(partialKeyFor(subnetForKey(pub)).toString("hex")).toBe(v.partialFromSubnet);
      // The partial key is never below the real key (spec 3.3): DHT lookups land on the owner.
      expect(Buffer.compare(partialKeyFor(address), pub)).toBeGreaterThanOrEqual(0);
    });
    if (v.seed !== undefined) {
      const seed = v.seed;
      it(`vector ${i + 1}: Identity from the config's PrivateKey`, () => {
        const id = Identity.fromPrivateKeyHex(seed + v.pub);
        expect(id.publicKey.toString("hex")).toBe(v.pub);
        expect(formatIPv6(id.address)).toBe(v.address);
        expect(formatSubnet(id.subnet)).toBe(v.subnet);
        expect(Identity.fromSeed(Buffer.from(seed, "hex")).privateKeyHex).toBe(seed + v.pub);
      });
    }
  });

  it("the address of a random key carries its bits: partial key keeps the known prefix", () => {
    for (let n = 0; n < 50; n++) {
      const id = Identity.generate();
      const partial = partialKeyFor(id.address);
      // ones + 1 + 112 bits are known; the first 13 bytes are always fully known.
      expect(partial.subarray(0, 13).equals(id.publicKey.subarray(0, 13))).toBe(true);
      expect(Buffer.compare(partial, id.publicKey)).toBeGreaterThanOrEqual(0);
    }
  });
});
