/** The request encoders (producer side), UpdateWriter for UPDATE frames built in place included. */
import { AGGR_CODES, DefFlag, HEADER_BYTES, HelloFlag, MIN_PROTOCOL_VERSION, Op, PROTOCOL_VERSION, ProtocolError, SourceFlag, TYPE_CODES, UPDATE_ENTRY_BYTES, UpdateOp, ValuesFlag } from './codes.js';
import { PayloadWriter, encodeFrame, writeHeader, writeInt64 } from './frames.js';
import { type WireValueSpec } from './requests.js';

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
