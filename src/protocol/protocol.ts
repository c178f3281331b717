/**
 * The producer wire protocol: framing and the encoding of every request and reply. Pure functions and
 * small stateful codecs over buffers, no I/O; docs/protocol.md is the normative description.
 *
 * Why binary and length-prefixed rather than a text line protocol: the target is a million updates a
 * second from one producer. A text line needs a scan for the newline, a split, a lookup of the value by
 * name and a decimal parse (with BigInt for anything beyond 2^53) per update. Here an update is a fixed
 * 16-byte record (u32 group handle, u16 value index, u8 op, u8 reserved, i64 value, little-endian) inside
 * one UPDATE frame carrying any number of them: the server reads four integers per update at fixed offsets
 * and never looks at a name after the definitions, which are sent once and referred to by small integer
 * handles the producer chooses itself (so definitions, sources and updates can be pipelined without
 * waiting for replies). A 4-byte length prefix makes framing one read: no escaping, no scanning, and a
 * frame that claims more than the limit is refused before a byte of it is buffered.
 *
 * Frame (all integers little-endian):
 *
 *   u32 length    bytes after this field (8 + payload)
 *   u8  version   PROTOCOL_VERSION (the negotiated one; HELLO always carries 1)
 *   u8  opcode    Op.* for requests, Reply.OK / Reply.ERROR for replies
 *   u16 flags     0 in version 1
 *   u32 id        chosen by the producer, echoed in the reply
 *   ...           payload
 */

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
// Requests as objects (everything but UPDATE's entries, which are read in place on the hot path)

export interface WireValueSpec {
  name: string;
  type: WireType;
  /** How aggregates of this definition combine values (default 'none'). */
  aggr?: WireAggregation;
  /** A level rather than a count: read-only (0444) in the filesystem. */
  floating?: boolean;
  /** File mode (permission bits). */
  mode?: number;
  unit?: string;
  description?: string;
  /** Names shown instead of the numbers 0, 1, 2, …: value i reads as enum[i], other values as the number. */
  enum?: string[];
}

export interface HelloRequest {
  op: typeof Op.HELLO;
  minVersion: number;
  maxVersion: number;
  keep: boolean;
  /** '' = anonymous: the connection is its own owner. */
  owner: string;
}
export interface DefineRequest {
  op: typeof Op.DEFINE;
  schema: number;
  values: WireValueSpec[];
}
export interface SourceRequest {
  op: typeof Op.SOURCE;
  handle: number;
  parent: number;
  hidden: boolean;
  detached: boolean;
  path: string;
}
export interface AttachRequest {
  op: typeof Op.ATTACH;
  parent: number;
  child: number;
}
export interface DetachRequest {
  op: typeof Op.DETACH;
  handle: number;
}
export interface ValuesRequest {
  op: typeof Op.VALUES;
  group: number;
  source: number;
  schema: number;
  hidden: boolean;
  aggregate: boolean;
}
export interface UpdateRequest {
  op: typeof Op.UPDATE;
  count: number;
  /** The frame's buffer; entry i starts at `offset + 16 * i`. */
  buf: Buffer;
  offset: number;
}
export interface RemoveRequest {
  op: typeof Op.REMOVE;
  kind: number;
  handle: number;
}
export interface RemovePathRequest {
  op: typeof Op.REMOVE_PATH;
  path: string;
}
export interface PingRequest {
  op: typeof Op.PING;
}
export type Request =
  | HelloRequest
  | DefineRequest
  | SourceRequest
  | AttachRequest
  | DetachRequest
  | ValuesRequest
  | UpdateRequest
  | RemoveRequest
  | RemovePathRequest
  | PingRequest;

export interface UpdateEntry {
  group: number;
  index: number;
  op: number;
  /** The i64 field; for OBSERVE, read it as a double with observedValue(). */
  value: bigint;
}

/** The double an OBSERVE entry's i64 field carries. */
export function observedValue(bits: bigint): number {
  const b = Buffer.allocUnsafe(8);
  b.writeBigInt64LE(BigInt.asIntN(64, bits));
  return b.readDoubleLE(0);
}

// ---------------------------------------------------------------------------------------------------------
// Framing

export interface Frame {
  version: number;
  op: number;
  flags: number;
  id: number;
  /** The buffer holding the frame and where its payload starts and ends (no copy). */
  buf: Buffer;
  start: number;
  end: number;
}

/**
 * Splits a byte stream into frames. Keeps at most one incomplete frame; a length below the header or above
 * `maxFrameBytes` (counting the length field itself) throws a fatal EMSGSIZE/EPROTO ProtocolError.
 */
export class FrameReader {
  private pending: Buffer | null = null;

  constructor(private readonly maxFrameBytes = DEFAULT_MAX_FRAME_BYTES) {}

  /** Bytes held back waiting for the rest of a frame. */
  get buffered(): number {
    return this.pending?.length ?? 0;
  }

  /** Calls `onFrame` for every complete frame; frames reference `chunk` (or a concatenation), not copies. */
  push(chunk: Buffer, onFrame: (frame: Frame) => void): void {
    let buf = chunk;
    if (this.pending !== null) {
      buf = Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let at = 0;
    const total = buf.length;
    while (total - at >= 4) {
      const length = buf.readUInt32LE(at);
      if (length < MIN_LENGTH) throw new ProtocolError('EPROTO', `frame length ${length} is below the ${MIN_LENGTH}-byte header`, true);
      if (length + 4 > this.maxFrameBytes) {
        throw new ProtocolError('EMSGSIZE', `frame of ${length + 4} bytes exceeds the limit of ${this.maxFrameBytes}`, true);
      }
      if (total - at < length + 4) break;
      const frame: Frame = {
        version: buf[at + 4],
        op: buf[at + 5],
        flags: buf.readUInt16LE(at + 6),
        id: buf.readUInt32LE(at + 8),
        buf,
        start: at + HEADER_BYTES,
        end: at + 4 + length,
      };
      at += 4 + length;
      onFrame(frame);
    }
    if (at < total) this.pending = at === 0 ? buf : buf.subarray(at);
  }
}

/** Writes a header at `at` for a payload of `payloadBytes`. */
export function writeHeader(buf: Buffer, at: number, op: number, id: number, payloadBytes: number, version = PROTOCOL_VERSION): void {
  buf.writeUInt32LE(MIN_LENGTH + payloadBytes, at);
  buf[at + 4] = version;
  buf[at + 5] = op;
  buf.writeUInt16LE(0, at + 6);
  buf.writeUInt32LE(id >>> 0, at + 8);
}

/** A whole frame around `payload`. */
export function encodeFrame(op: number, id: number, payload: Buffer = EMPTY, version = PROTOCOL_VERSION): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + payload.length);
  writeHeader(out, 0, op, id, payload.length, version);
  payload.copy(out, HEADER_BYTES);
  return out;
}

const EMPTY = Buffer.alloc(0);

// ---------------------------------------------------------------------------------------------------------
// Payload writer and reader

/** Builds a payload: u8/u16/u32/i64 little-endian and strings as u16 byte length + UTF-8. */
export class PayloadWriter {
  private buf = Buffer.allocUnsafe(256);
  private at = 0;

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.at + n) size *= 2;
    const grown = Buffer.allocUnsafe(size);
    this.buf.copy(grown, 0, 0, this.at);
    this.buf = grown;
  }

  u8(v: number): this {
    this.room(1);
    this.buf[this.at++] = v & 0xff;
    return this;
  }

  u16(v: number): this {
    this.room(2);
    this.buf.writeUInt16LE(v & 0xffff, this.at);
    this.at += 2;
    return this;
  }

  u32(v: number): this {
    this.room(4);
    this.buf.writeUInt32LE(v >>> 0, this.at);
    this.at += 4;
    return this;
  }

  i64(v: number | bigint): this {
    this.room(8);
    writeInt64(this.buf, this.at, v);
    this.at += 8;
    return this;
  }

  str(s: string): this {
    const n = Buffer.byteLength(s, 'utf8');
    if (n > 0xffff) throw new ProtocolError('EINVAL', `string of ${n} bytes is longer than 65535`);
    this.u16(n);
    this.room(n);
    this.buf.write(s, this.at, 'utf8');
    this.at += n;
    return this;
  }

  bytes(b: Buffer): this {
    this.room(b.length);
    b.copy(this.buf, this.at);
    this.at += b.length;
    return this;
  }

  /** The payload framed as a request or reply. */
  frame(op: number, id: number, version = PROTOCOL_VERSION): Buffer {
    const out = Buffer.allocUnsafe(HEADER_BYTES + this.at);
    writeHeader(out, 0, op, id, this.at, version);
    this.buf.copy(out, HEADER_BYTES, 0, this.at);
    return out;
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Reads a payload; any overrun or invalid UTF-8 is EINVAL (the frame is bad, the framing is not). */
export class PayloadReader {
  constructor(
    private readonly buf: Buffer,
    private at: number,
    private readonly end: number,
  ) {}

  private need(n: number, what: string): void {
    if (this.at + n > this.end) throw new ProtocolError('EINVAL', `payload ends inside ${what}`);
  }

  u8(what = 'a u8'): number {
    this.need(1, what);
    return this.buf[this.at++];
  }

  u16(what = 'a u16'): number {
    this.need(2, what);
    const v = this.buf.readUInt16LE(this.at);
    this.at += 2;
    return v;
  }

  u32(what = 'a u32'): number {
    this.need(4, what);
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }

  i64(what = 'an i64'): bigint {
    this.need(8, what);
    const v = this.buf.readBigInt64LE(this.at);
    this.at += 8;
    return v;
  }

  str(what = 'a string'): string {
    const n = this.u16(what);
    this.need(n, what);
    let s: string;
    try {
      s = utf8.decode(this.buf.subarray(this.at, this.at + n));
    } catch {
      throw new ProtocolError('EINVAL', `${what} is not valid UTF-8`);
    }
    this.at += n;
    return s;
  }

  get remaining(): number {
    return this.end - this.at;
  }

  get offset(): number {
    return this.at;
  }

  done(what: string): void {
    if (this.at !== this.end) throw new ProtocolError('EINVAL', `${this.end - this.at} bytes left over after ${what}`);
  }
}

// ---------------------------------------------------------------------------------------------------------
// 64-bit values

// The protocol, like the client that shares it, depends on nothing of the model (docs/architecture.md), so it
// keeps this one constant of its own (the model's is model/word.ts).
const TWO32 = 4294967296;

/** Writes v as a little-endian 64-bit two's complement integer (wrapping bigints modulo 2^64). */
export function writeInt64(buf: Buffer, at: number, v: number | bigint): void {
  if (typeof v === 'number') {
    if (v >= 0 && v < TWO32 && Number.isInteger(v)) {
      buf.writeUInt32LE(v, at);
      buf.writeUInt32LE(0, at + 4);
      return;
    }
    if (!Number.isSafeInteger(v)) throw new ProtocolError('EINVAL', `${v} is not a safe integer: pass 64-bit quantities as bigint`);
    const hi = Math.floor(v / TWO32);
    buf.writeUInt32LE(v - hi * TWO32, at);
    buf.writeUInt32LE(hi >>> 0, at + 4);
    return;
  }
  buf.writeBigUInt64LE(BigInt.asUintN(64, v), at);
}

/**
 * The JS value for a 64-bit pattern given as halves: a number when it is exact as one (as two's complement),
 * else a bigint. The model accepts either; numbers avoid a BigInt per update.
 */
export function wordValue(lo: number, hi: number): number | bigint {
  if (hi === 0) return lo;
  if (hi === 0xffffffff) return lo - TWO32;
  if (hi < 0x200000) return hi * TWO32 + lo;
  // -(2^53 - 1) is the last safe one; -(2^53) is exact as a double but not safe, and the model refuses it
  if (hi > 0xffe00000 || (hi === 0xffe00000 && lo !== 0)) return (hi - TWO32) * TWO32 + lo;
  return BigInt.asIntN(64, (BigInt(hi) << 32n) | BigInt(lo));
}

// ---------------------------------------------------------------------------------------------------------
// Request encoders (producer side)

export function encodeHello(id: number, options: { owner?: string; keep?: boolean; minVersion?: number; maxVersion?: number } = {}): Buffer {
  return new PayloadWriter()
    .u8(options.minVersion ?? MIN_PROTOCOL_VERSION)
    .u8(options.maxVersion ?? PROTOCOL_VERSION)
    .u8(options.keep ? HelloFlag.KEEP : 0)
    .str(options.owner ?? '')
    .frame(Op.HELLO, id, 1);
}

export function encodeDefine(id: number, schema: number, values: readonly WireValueSpec[]): Buffer {
  if (values.length > 0xffff) throw new ProtocolError('EINVAL', 'at most 65535 values per definition');
  const w = new PayloadWriter().u32(schema).u16(values.length);
  for (const v of values) {
    const type = TYPE_CODES.indexOf(v.type);
    const aggr = AGGR_CODES.indexOf(v.aggr ?? 'none');
    if (type < 0) throw new ProtocolError('EINVAL', `value "${v.name}": unknown type ${String(v.type)}`);
    if (aggr < 0) throw new ProtocolError('EINVAL', `value "${v.name}": unknown aggregation ${String(v.aggr)}`);
    w.str(v.name)
      .u8(type)
      .u8(aggr)
      .u8((v.floating ? DefFlag.FLOATING : 0) | (v.mode !== undefined ? DefFlag.MODE : 0))
      .u16(v.mode ?? 0)
      .str(v.unit ?? '')
      .str(v.description ?? '');
    const names = v.enum ?? [];
    w.u16(names.length);
    for (const n of names) w.str(n);
  }
  return w.frame(Op.DEFINE, id);
}

export function encodeSource(id: number, handle: number, parent: number, path: string, options: { hidden?: boolean; detached?: boolean } = {}): Buffer {
  return new PayloadWriter()
    .u32(handle)
    .u32(parent)
    .u8((options.hidden ? SourceFlag.HIDDEN : 0) | (options.detached ? SourceFlag.DETACHED : 0))
    .str(path)
    .frame(Op.SOURCE, id);
}

export function encodeAttach(id: number, parent: number, child: number): Buffer {
  return new PayloadWriter().u32(parent).u32(child).frame(Op.ATTACH, id);
}

export function encodeDetach(id: number, handle: number): Buffer {
  return new PayloadWriter().u32(handle).frame(Op.DETACH, id);
}

export function encodeValues(id: number, group: number, source: number, schema: number, options: { hidden?: boolean; aggregate?: boolean } = {}): Buffer {
  return new PayloadWriter()
    .u32(group)
    .u32(source)
    .u32(schema)
    .u8((options.hidden ? ValuesFlag.HIDDEN : 0) | (options.aggregate ? ValuesFlag.AGGREGATE : 0))
    .frame(Op.VALUES, id);
}

export function encodeUpdate(id: number, entries: readonly { group: number; index: number; op: number; value: number | bigint }[]): Buffer {
  const out = Buffer.allocUnsafe(HEADER_BYTES + 4 + UPDATE_ENTRY_BYTES * entries.length);
  writeHeader(out, 0, Op.UPDATE, id, 4 + UPDATE_ENTRY_BYTES * entries.length);
  out.writeUInt32LE(entries.length, HEADER_BYTES);
  let at = HEADER_BYTES + 4;
  for (const e of entries) {
    writeUpdateEntry(out, at, e.group, e.index, e.op, e.value);
    at += UPDATE_ENTRY_BYTES;
  }
  return out;
}

export function writeUpdateEntry(buf: Buffer, at: number, group: number, index: number, op: number, value: number | bigint): void {
  buf.writeUInt32LE(group >>> 0, at);
  buf.writeUInt32LE((index & 0xffff) | ((op & 0xff) << 16), at + 4);
  writeInt64(buf, at + 8, value);
}

/**
 * Accumulates update entries into one UPDATE frame without allocating per entry. `finish()` hands out a
 * copy of the frame, so it may be queued for writing while the next one is built in the same buffer.
 */
export class UpdateWriter {
  private buf: Buffer;
  private at = HEADER_BYTES + 4;
  count = 0;

  constructor(private entries: number) {
    this.buf = Buffer.allocUnsafe(HEADER_BYTES + 4 + UPDATE_ENTRY_BYTES * entries);
  }

  /** Entries one frame takes. */
  get capacity(): number {
    return this.entries;
  }

  get full(): boolean {
    return this.count >= this.capacity;
  }

  /** Changes the capacity for the next frames (the current one keeps its entries). */
  resize(capacity: number): void {
    if (capacity <= this.entries) {
      this.entries = Math.max(capacity, 1);
      return;
    }
    const grown = Buffer.allocUnsafe(HEADER_BYTES + 4 + UPDATE_ENTRY_BYTES * capacity);
    this.buf.copy(grown, 0, 0, this.at);
    this.buf = grown;
    this.entries = capacity;
  }

  /** Appends an OBSERVE entry: `value` as a double. */
  pushObserve(group: number, index: number, value: number): void {
    if (this.count >= this.capacity) throw new RangeError('update frame is full');
    const buf = this.buf;
    const at = this.at;
    buf.writeUInt32LE(group, at);
    buf.writeUInt32LE(index | (UpdateOp.OBSERVE << 16), at + 4);
    buf.writeDoubleLE(value, at + 8);
    this.at = at + UPDATE_ENTRY_BYTES;
    this.count++;
  }

  push(group: number, index: number, op: number, value: number | bigint): void {
    if (this.count >= this.capacity) throw new RangeError('update frame is full');
    const buf = this.buf;
    const at = this.at;
    buf.writeUInt32LE(group, at);
    buf.writeUInt32LE(index | (op << 16), at + 4);
    if (typeof value === 'number' && value >= 0 && value <= 0x7fffffff && (value | 0) === value) {
      buf.writeUInt32LE(value, at + 8);
      buf.writeUInt32LE(0, at + 12);
    } else writeInt64(buf, at + 8, value);
    this.at = at + UPDATE_ENTRY_BYTES;
    this.count++;
  }

  /** The frame with every entry pushed since the last finish(), or null when there is none. */
  finish(id: number): Buffer | null {
    if (this.count === 0) return null;
    const payload = this.at - HEADER_BYTES;
    writeHeader(this.buf, 0, Op.UPDATE, id, payload);
    this.buf.writeUInt32LE(this.count, HEADER_BYTES);
    // a copy of what is used (small frames come from Node's pool); the large buffer is reused
    const out = Buffer.allocUnsafe(this.at);
    this.buf.copy(out, 0, 0, this.at);
    this.at = HEADER_BYTES + 4;
    this.count = 0;
    return out;
  }
}

export function encodeRemove(id: number, kind: number, handle: number): Buffer {
  return new PayloadWriter().u8(kind).u32(handle).frame(Op.REMOVE, id);
}

export function encodeRemovePath(id: number, path: string): Buffer {
  return new PayloadWriter().str(path).frame(Op.REMOVE_PATH, id);
}

export function encodePing(id: number): Buffer {
  return encodeFrame(Op.PING, id);
}

// ---------------------------------------------------------------------------------------------------------
// Request decoder (server side)

function readValueSpec(r: PayloadReader): WireValueSpec {
  const name = r.str('a value name');
  const typeCode = r.u8('a type');
  const aggrCode = r.u8('an aggregation');
  const flags = r.u8('value flags');
  const mode = r.u16('a mode');
  const unit = r.str('a unit');
  const description = r.str('a description');
  const enumCount = r.u16('an enum count');
  if (typeCode >= TYPE_CODES.length) throw new ProtocolError('EINVAL', `value ${JSON.stringify(name)}: unknown type code ${typeCode}`);
  if (aggrCode >= AGGR_CODES.length) throw new ProtocolError('EINVAL', `value ${JSON.stringify(name)}: unknown aggregation code ${aggrCode}`);
  if ((flags & ~(DefFlag.FLOATING | DefFlag.MODE)) !== 0) throw new ProtocolError('EINVAL', `value ${JSON.stringify(name)}: unknown flags ${flags}`);
  if (enumCount > ENUM_MAX) throw new ProtocolError('EINVAL', `value ${JSON.stringify(name)}: more than ${ENUM_MAX} enum names`);
  const spec: WireValueSpec = { name, type: TYPE_CODES[typeCode], aggr: AGGR_CODES[aggrCode] };
  if (flags & DefFlag.FLOATING) spec.floating = true;
  if (flags & DefFlag.MODE) spec.mode = mode;
  else if (mode !== 0) throw new ProtocolError('EINVAL', `value ${JSON.stringify(name)}: a mode without the MODE flag`);
  if (unit) spec.unit = unit;
  if (description) spec.description = description;
  if (enumCount > 0) {
    spec.enum = [];
    for (let i = 0; i < enumCount; i++) spec.enum.push(r.str('an enum name'));
  }
  return spec;
}

/** Decodes a frame's payload by opcode. Throws ProtocolError: EINVAL for a bad payload, ENOSYS for an unknown opcode. */
export function decodeRequest(frame: Frame): Request {
  const r = new PayloadReader(frame.buf, frame.start, frame.end);
  switch (frame.op) {
    case Op.HELLO: {
      const minVersion = r.u8('the minimum version');
      const maxVersion = r.u8('the maximum version');
      const flags = r.u8('hello flags');
      const owner = r.str('the owner');
      r.done('HELLO');
      if ((flags & ~HelloFlag.KEEP) !== 0) throw new ProtocolError('EINVAL', `unknown HELLO flags ${flags}`);
      return { op: Op.HELLO, minVersion, maxVersion, keep: (flags & HelloFlag.KEEP) !== 0, owner };
    }
    case Op.DEFINE: {
      const schema = r.u32('the schema handle');
      const count = r.u16('the value count');
      if (count === 0) throw new ProtocolError('EINVAL', 'a definition needs at least one value');
      // each value takes at least 11 bytes: refuse absurd counts before looping
      if (count * 11 > r.remaining) throw new ProtocolError('EINVAL', `payload too short for ${count} values`);
      const values: WireValueSpec[] = [];
      for (let i = 0; i < count; i++) values.push(readValueSpec(r));
      r.done('DEFINE');
      return { op: Op.DEFINE, schema, values };
    }
    case Op.SOURCE: {
      const handle = r.u32('the source handle');
      const parent = r.u32('the parent handle');
      const flags = r.u8('source flags');
      const path = r.str('the path');
      r.done('SOURCE');
      if ((flags & ~(SourceFlag.HIDDEN | SourceFlag.DETACHED)) !== 0) throw new ProtocolError('EINVAL', `unknown SOURCE flags ${flags}`);
      return { op: Op.SOURCE, handle, parent, hidden: (flags & SourceFlag.HIDDEN) !== 0, detached: (flags & SourceFlag.DETACHED) !== 0, path };
    }
    case Op.ATTACH: {
      const parent = r.u32('the parent handle');
      const child = r.u32('the child handle');
      r.done('ATTACH');
      return { op: Op.ATTACH, parent, child };
    }
    case Op.DETACH: {
      const handle = r.u32('the source handle');
      r.done('DETACH');
      return { op: Op.DETACH, handle };
    }
    case Op.VALUES: {
      const group = r.u32('the group handle');
      const source = r.u32('the source handle');
      const schema = r.u32('the schema handle');
      const flags = r.u8('values flags');
      r.done('VALUES');
      if ((flags & ~(ValuesFlag.HIDDEN | ValuesFlag.AGGREGATE)) !== 0) throw new ProtocolError('EINVAL', `unknown VALUES flags ${flags}`);
      return { op: Op.VALUES, group, source, schema, hidden: (flags & ValuesFlag.HIDDEN) !== 0, aggregate: (flags & ValuesFlag.AGGREGATE) !== 0 };
    }
    case Op.UPDATE: {
      const count = r.u32('the update count');
      if (r.remaining !== count * UPDATE_ENTRY_BYTES) {
        throw new ProtocolError('EINVAL', `UPDATE of ${count} entries needs ${count * UPDATE_ENTRY_BYTES} bytes, has ${r.remaining}`);
      }
      return { op: Op.UPDATE, count, buf: frame.buf, offset: r.offset };
    }
    case Op.REMOVE: {
      const kind = r.u8('the kind');
      const handle = r.u32('the handle');
      r.done('REMOVE');
      if (kind > RemoveKind.SCHEMA) throw new ProtocolError('EINVAL', `unknown REMOVE kind ${kind}`);
      return { op: Op.REMOVE, kind, handle };
    }
    case Op.REMOVE_PATH: {
      const path = r.str('the path');
      r.done('REMOVE_PATH');
      return { op: Op.REMOVE_PATH, path };
    }
    case Op.PING:
      r.done('PING');
      return { op: Op.PING };
    default:
      throw new ProtocolError('ENOSYS', `unknown opcode 0x${frame.op.toString(16).padStart(2, '0')}`);
  }
}

/** The entries of an UPDATE request as objects (tests and tools; the server reads them in place). */
export function updateEntries(req: UpdateRequest): UpdateEntry[] {
  const out: UpdateEntry[] = [];
  for (let i = 0, at = req.offset; i < req.count; i++, at += UPDATE_ENTRY_BYTES) {
    out.push({ group: req.buf.readUInt32LE(at), index: req.buf.readUInt16LE(at + 4), op: req.buf[at + 6], value: req.buf.readBigInt64LE(at + 8) });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------
// Replies

export interface HelloReply {
  version: number;
  maxFrameBytes: number;
  maxSources: number;
  maxHandles: number;
  connection: number;
}

export function encodeOk(id: number, version = PROTOCOL_VERSION): Buffer {
  return encodeFrame(Reply.OK, id, EMPTY, version);
}

export function encodeHelloOk(id: number, hello: HelloReply): Buffer {
  return new PayloadWriter()
    .u8(hello.version)
    .u32(hello.maxFrameBytes)
    .u32(hello.maxSources)
    .u32(hello.maxHandles)
    .u32(hello.connection)
    .frame(Reply.OK, id, hello.version);
}

export function encodeError(id: number, code: string, message: string, version = PROTOCOL_VERSION): Buffer {
  // messages are for people: keep them short enough that a reply never nears a frame limit
  const text = message.length > 1000 ? message.slice(0, 1000) + '…' : message;
  return new PayloadWriter().str(code).str(text).frame(Reply.ERROR, id, version);
}

export interface DecodedReply {
  id: number;
  ok: boolean;
  code: string;
  message: string;
  /** The OK payload (HELLO's parameters), empty otherwise. */
  payload: Buffer;
}

export function decodeReply(frame: Frame): DecodedReply {
  if (frame.op === Reply.OK) {
    return { id: frame.id, ok: true, code: '', message: '', payload: frame.buf.subarray(frame.start, frame.end) };
  }
  if (frame.op === Reply.ERROR) {
    const r = new PayloadReader(frame.buf, frame.start, frame.end);
    const code = r.str('the error code');
    const message = r.str('the error message');
    return { id: frame.id, ok: false, code, message, payload: EMPTY };
  }
  throw new ProtocolError('EPROTO', `unexpected reply opcode 0x${frame.op.toString(16)}`, true);
}

/** The VALUES reply (version 2): whether an existing group was adopted, and then its current values. */
export interface ValuesReply {
  adopted: boolean;
  /** The stored values of an adopted group of values, in definition order (empty otherwise). */
  values: bigint[];
}

export function encodeValuesOk(id: number, reply: ValuesReply, version = PROTOCOL_VERSION): Buffer {
  const w = new PayloadWriter().u8(reply.adopted ? 1 : 0).u16(reply.values.length);
  for (const v of reply.values) w.i64(v);
  return w.frame(Reply.OK, id, version);
}

export function decodeValuesOk(payload: Buffer): ValuesReply {
  const r = new PayloadReader(payload, 0, payload.length);
  const adopted = r.u8('adopted') !== 0;
  const count = r.u16('value count');
  const values: bigint[] = [];
  for (let i = 0; i < count; i++) values.push(r.i64());
  r.done('VALUES reply');
  return { adopted, values };
}

export function decodeHelloOk(payload: Buffer): HelloReply {
  const r = new PayloadReader(payload, 0, payload.length);
  return { version: r.u8(), maxFrameBytes: r.u32(), maxSources: r.u32(), maxHandles: r.u32(), connection: r.u32() };
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
