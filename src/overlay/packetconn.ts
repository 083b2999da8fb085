// The PacketConn seam: what the overlay offers upward. Bytes to and from public keys, with the
// encrypted sessions underneath. The IPv6 adapter, nodeinfo and embedders sit on this.

export interface PacketConn {
  readonly publicKey: Buffer;
  /** Send one message end-to-end encrypted to `dest` (kind-1 traffic). */
  send(dest: Buffer, message: Uint8Array): void;
  /** Messages from peers, already decrypted; `message` is valid only during the call. */
  onMessage(handler: (source: Buffer, message: Buffer) => void): void;
  /** Unencrypted out-of-band messages (kind 2), used for key lookups; `dest` may be a partial key. */
  sendOutOfBand(dest: Buffer, payload: Uint8Array): void;
  onOutOfBand(handler: (source: Buffer, dest: Buffer, payload: Buffer) => void): void;
  /** Largest message `send` accepts. */
  readonly mtu: number;
}
