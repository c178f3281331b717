/** Framing (the 12-byte header, FrameReader), the payload writer and reader, and 64-bit values on the wire. */
import { DEFAULT_MAX_FRAME_BYTES, HEADER_BYTES, MIN_LENGTH, PROTOCOL_VERSION, ProtocolError } from './codes.js';

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

  /**
   * Calls `onFrame` for every complete frame; frames reference `chunk` (or a concatenation), not copies. When
   * `onFrame` returns false the frames after that one are held back (counted in `buffered`) and push returns
   * true: a later push (of more bytes, or of none) goes on from them.
   */
  push(chunk: Buffer, onFrame: (frame: Frame) => boolean | void): boolean {
    let buf = chunk;
    if (this.pending !== null) {
      buf = chunk.length === 0 ? this.pending : Buffer.concat([this.pending, chunk]);
      this.pending = null;
    }
    let at = 0;
    let stopped = false;
    const total = buf.length;
    while (!stopped && total - at >= 4) {
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
      stopped = onFrame(frame) === false;
    }
    if (at < total) this.pending = at === 0 ? buf : buf.subarray(at);
    return stopped && at < total;
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
