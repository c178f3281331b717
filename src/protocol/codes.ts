/** The protocol's version, sizes, opcodes, flags, type and aggregation codes, its error, and where the daemon listens. */

/**
 * The version this implementation speaks. HELLO offers a range; the server picks the highest common one.
 * Version 2 adds the VALUES reply's payload (whether the group was adopted, and its current values).
 * Version 3 adds histograms: the type code 9 in DEFINE and the OBSERVE and WEIGHT operations in UPDATE.
 */
export const PROTOCOL_VERSION = 3;
/** The first version with histograms. */
export const HISTOGRAM_PROTOCOL_VERSION = 3;
export const MIN_PROTOCOL_VERSION = 1;

export const HEADER_BYTES = 12;
/** The length field counts the bytes after itself: at least version, opcode, flags and id. */
export const MIN_LENGTH = HEADER_BYTES - 4;
export const UPDATE_ENTRY_BYTES = 16;
export const DEFAULT_MAX_FRAME_BYTES = 1 << 20;
/** Longest unit text and enum name; longest description. */
export const UNIT_MAX = 99;
export const DESCRIPTION_MAX = 1024;
export const ENUM_MAX = 4096;

export const Op = {
  HELLO: 0x01,
  DEFINE: 0x02,
  SOURCE: 0x03,
  ATTACH: 0x04,
  DETACH: 0x05,
  VALUES: 0x06,
  UPDATE: 0x07,
  REMOVE: 0x08,
  REMOVE_PATH: 0x09,
  PING: 0x0a,
} as const;
export type OpCode = (typeof Op)[keyof typeof Op];

export const Reply = { OK: 0x80, ERROR: 0x81 } as const;

/** HELLO flags. */
export const HelloFlag = { KEEP: 1 } as const;
/** SOURCE flags. */
export const SourceFlag = { HIDDEN: 1, DETACHED: 2 } as const;
/** VALUES flags. */
export const ValuesFlag = { HIDDEN: 1, AGGREGATE: 2 } as const;
/** DEFINE per-value flags. */
export const DefFlag = { FLOATING: 1, MODE: 2 } as const;
/**
 * UPDATE entry operations. OBSERVE (version 3) records the entry's 8 bytes, read as a little-endian IEEE 754
 * double, in a histogram value; WEIGHT (version 3) makes the next entry, an OBSERVE of the same value,
 * count its u64 times instead of once.
 */
export const UpdateOp = { SET: 0, ADD: 1, OBSERVE: 2, WEIGHT: 3 } as const;
/** REMOVE kinds. */
export const RemoveKind = { SOURCE: 0, GROUP: 1, SCHEMA: 2 } as const;

/**
 * Wire codes of the value types and aggregations (their order is part of the protocol). The model's lists
 * (TYPE_CODES in model/types.ts, AGGREGATIONS in model/schema.ts) are the definition; these are the client's
 * copies, checked equal to them by test/unit/code-lists.test.ts.
 */
export const TYPE_CODES = ['u8', 's8', 'u16', 's16', 'u32', 's32', 'u64', 's64', 'bool', 'histogram'] as const;
export type WireType = (typeof TYPE_CODES)[number];
/** Each type's width in bits, by code (bool is 1; a histogram's word is its 64-bit count), as the model's TYPES. */
export const TYPE_BITS: readonly number[] = [8, 8, 16, 16, 32, 32, 64, 64, 1, 64];
/** Whether a type is signed (s8 to s64). */
export const isSignedType = (type: WireType): boolean => type.startsWith('s');
export const AGGR_CODES = ['none', 'sum', 'min', 'max', 'count_zero', 'avg'] as const;
export type WireAggregation = (typeof AGGR_CODES)[number];

/** Error codes a reply may carry (errno names). */
export type ErrorCode =
  | 'EINVAL'
  | 'ENOENT'
  | 'EEXIST'
  | 'EPERM'
  | 'EPROTO'
  | 'EPROTONOSUPPORT'
  | 'ENOSYS'
  | 'EMSGSIZE'
  | 'EDQUOT'
  | 'EBUSY';

/** A request that cannot be decoded or applied; the server turns it into an ERROR reply. */
export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  constructor(
    readonly code: ErrorCode | string,
    message: string,
    /** The framing is lost or the peer must not go on: reply, then close the connection. */
    readonly fatal = false,
  ) {
    super(message);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Where the daemon listens

/**
 * The default socket: /run/statsfs.sock for root, else $XDG_RUNTIME_DIR/statsfs-<uid>.sock (or /tmp),
 * next to the default mountpoints.
 */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env, uid: number | undefined = process.getuid?.()): string {
  if (uid === 0) return '/run/statsfs.sock';
  const dir = env.XDG_RUNTIME_DIR || '/tmp';
  return `${dir.replace(/\/+$/, '')}/statsfs-${uid ?? 'user'}.sock`;
}
