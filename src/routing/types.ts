// Decoded ironwood frames (spec 5.1–5.2). Keys are 32-byte Buffers; u64 fields are bigint; peer
// ports are numbers (they are small local integers; a decoder refuses ports above 2^53).

export const FrameType = {
  Dummy: 0,
  Tree: 1,
  DhtBootstrap: 2,
  DhtBootstrapAck: 3,
  DhtSetup: 4,
  DhtTeardown: 5,
  PathNotify: 6,
  PathLookup: 7,
  PathResponse: 8,
  DhtTraffic: 9,
  PathTraffic: 10,
} as const;
export type FrameType = (typeof FrameType)[keyof typeof FrameType];

export const TrafficKind = { Dummy: 0, Standard: 1, OutOfBand: 2 } as const;

export interface TreeHop {
  next: Buffer;
  port: number;
  sig: Buffer;
}

export interface TreeInfo {
  root: Buffer;
  seq: bigint;
  hops: TreeHop[];
}

export interface TreeLabel {
  sig: Buffer;
  key: Buffer;
  root: Buffer;
  seq: bigint;
  path: number[];
}

export interface SetupToken {
  sig: Buffer;
  source: Buffer;
  dest: TreeLabel;
}

export interface BootstrapAck {
  bootstrap: TreeLabel;
  token: SetupToken;
}

export interface DhtSetup {
  sig: Buffer;
  seq: bigint;
  token: SetupToken;
}

export interface DhtTeardown {
  seq: bigint;
  key: Buffer;
  root: Buffer;
  rootSeq: bigint;
}

export interface PathNotify {
  sig: Buffer;
  dest: Buffer;
  label: TreeLabel;
}

export interface PathLookup {
  notify: PathNotify;
  rpath: number[];
}

export interface PathResponse {
  from: Buffer;
  path: number[];
  rpath: number[];
}

export interface Traffic {
  source: Buffer;
  dest: Buffer;
  kind: number;
  payload: Buffer;
}

export interface PathTraffic {
  path: number[];
  traffic: Traffic;
}

/** A frame that failed to decode or verify. The link it came from is closed; nothing else. */
export class ProtocolError extends Error {
  override readonly name = "ProtocolError";
}
