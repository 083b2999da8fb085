// The part of sodium-native's API planetd uses (the package ships no type declarations).
declare module "sodium-native" {
  type Bytes = Uint8Array;
  const sodium: {
    crypto_sign_PUBLICKEYBYTES: number;
    crypto_sign_SECRETKEYBYTES: number;
    crypto_sign_seed_keypair(publicKey: Bytes, secretKey: Bytes, seed: Bytes): void;
    crypto_sign_detached(signature: Bytes, message: Bytes, secretKey: Bytes): void;
    crypto_sign_verify_detached(signature: Bytes, message: Bytes, publicKey: Bytes): boolean;
    crypto_sign_ed25519_pk_to_curve25519(curvePublic: Bytes, edPublic: Bytes): void;
    crypto_box_keypair(publicKey: Bytes, secretKey: Bytes): void;
    crypto_scalarmult(out: Bytes, secret: Bytes, publicKey: Bytes): void;
    crypto_secretbox_easy(out: Bytes, message: Bytes, nonce: Bytes, key: Bytes): void;
    crypto_secretbox_open_easy(out: Bytes, boxed: Bytes, nonce: Bytes, key: Bytes): boolean;
  };
  export default sodium;
}
