/** Requests as objects and their decoding (server side). */
import { AGGR_CODES, DefFlag, ENUM_MAX, HelloFlag, Op, ProtocolError, RemoveKind, SourceFlag, TYPE_CODES, UPDATE_ENTRY_BYTES, ValuesFlag, type WireAggregation, type WireType } from './codes.js';
import { type Frame, PayloadReader } from './frames.js';

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
