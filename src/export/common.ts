/**
 * What the snapshot renderers share: slicing work so that no slice holds the event loop for long, and the
 * octal escapes of the text format.
 *
 * A renderer is written once, as a synchronous generator that yields after every small batch of values.
 * Driven straight through it renders in one go (renderText, renderJson, renderBinary); driven by a clock
 * it gives the event loop back with setImmediate whenever a slice has run for maxSliceMs, so a snapshot of
 * a million values never blocks a request for long (renderTextChunks, renderJsonChunks, renderBinaryStream).
 */
import { performance } from 'node:perf_hooks';
import type { Snapshot } from '../model/snapshot.js';
import { formatWord, TWO32 } from '../model/word.js';

/** Default longest stretch of rendering between two turns of the event loop. */
export const DEFAULT_SLICE_MS = 10;

/** Values rendered between two looks at the clock. */
export const BATCH = 1024;

export interface SliceOptions {
  /** Longest stretch of rendering before the event loop gets a turn (default 10 ms). */
  maxSliceMs?: number;
}

/** Lets every pending I/O callback and timer run before the next slice. */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Drives a generator to its end without pausing. */
export function runSync<T>(work: Generator<unknown, T>): T {
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
  }
}

/**
 * What a generator yields to have runSliced give the event loop a turn now, whatever the clock: after a
 * large allocation outside V8's heap, so that V8 marks in steps between turns rather than all at once.
 */
export const TURN = Symbol('turn');

/** Drives a generator to its end, giving the event loop a turn whenever a slice has used its time (or the generator yields TURN). */
export async function runSliced<T>(work: Generator<unknown, T>, options: SliceOptions = {}): Promise<T> {
  const sliceMs = options.maxSliceMs ?? DEFAULT_SLICE_MS;
  let deadline = performance.now() + sliceMs;
  for (;;) {
    const step = work.next();
    if (step.done) return step.value;
    if (step.value === TURN || performance.now() >= deadline) {
      await yieldToEventLoop();
      deadline = performance.now() + sliceMs;
    }
  }
}

/** Where rendered bytes go: 1 MiB chunks, handed out as they fill or whenever a slice ends. */
export class ByteWriter {
  /** The current chunk; write at `pos` after ensure(). */
  buf: Uint8Array;
  pos = 0;
  /** Start of what has not been handed out yet in the current chunk. */
  private start = 0;
  private ready: Buffer[] = [];

  constructor(private readonly chunkSize = 1 << 20) {
    this.buf = Buffer.allocUnsafe(chunkSize);
  }

  /** Makes room for n more bytes. */
  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    this.cut();
    this.buf = Buffer.allocUnsafe(Math.max(n, this.chunkSize));
    this.pos = 0;
    this.start = 0;
  }

  /** Copies bytes (call ensure first). */
  bytes(src: Uint8Array): void {
    const n = src.length;
    if (n > 32) this.buf.set(src, this.pos);
    else for (let k = 0; k < n; k++) this.buf[this.pos + k] = src[k];
    this.pos += n;
  }

  /** Copies a range of a pool of bytes (call ensure first). */
  range(pool: Uint8Array, from: number, to: number): void {
    const buf = this.buf;
    let p = this.pos;
    if (to - from > 32) {
      buf.set(pool.subarray(from, to), p);
      p += to - from;
    } else for (let k = from; k < to; k++) buf[p++] = pool[k];
    this.pos = p;
  }

  /** Encodes a string of any length, across as many chunks as it needs. */
  string(s: string): void {
    const bytes = Buffer.from(s, 'utf8');
    for (let at = 0; at < bytes.length; ) {
      this.ensure(1);
      const n = Math.min(bytes.length - at, this.buf.length - this.pos);
      this.buf.set(bytes.subarray(at, at + n), this.pos);
      this.pos += n;
      at += n;
    }
  }

  private cut(): void {
    if (this.pos > this.start) this.ready.push(Buffer.from(this.buf.buffer, this.buf.byteOffset + this.start, this.pos - this.start));
    this.start = this.pos;
  }

  /** Everything written since the last take(). */
  take(): Buffer[] {
    this.cut();
    const out = this.ready;
    this.ready = [];
    return out;
  }
}

/** Renders in one go. */
export function renderSync(work: (out: ByteWriter) => Generator<void, void>): Buffer {
  const out = new ByteWriter();
  runSync(work(out));
  const chunks = out.take();
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
}

/** Renders in slices of at most maxSliceMs, yielding what each slice wrote and then a turn of the event loop. */
export async function* renderStream(work: (out: ByteWriter) => Generator<void, void>, options: SliceOptions = {}): AsyncGenerator<Buffer, void> {
  const sliceMs = options.maxSliceMs ?? DEFAULT_SLICE_MS;
  const out = new ByteWriter();
  const steps = work(out);
  let deadline = performance.now() + sliceMs;
  for (;;) {
    const step = steps.next();
    if (step.done || performance.now() >= deadline) {
      for (const chunk of out.take()) yield chunk;
      if (step.done) return;
      await yieldToEventLoop();
      deadline = performance.now() + sliceMs;
    }
  }
}

/** The chunks of a stream, in order, not joined (a snapshot file's contents: see SnapshotRenderer). */
export async function gatherChunks(chunks: AsyncIterable<Buffer>): Promise<Buffer[]> {
  const all: Buffer[] = [];
  for await (const chunk of chunks) all.push(chunk);
  return all;
}

const TWO21 = 2097152;

/** Writes the decimal digits of a non-negative integer below 2^32. */
function writeU32(out: ByteWriter, n: number): void {
  const buf = out.buf;
  let digits = 1;
  for (let m = n; m >= 10; m = Math.floor(m / 10)) digits++;
  let p = out.pos + digits;
  out.pos = p;
  do {
    const q = Math.floor(n / 10);
    buf[--p] = 48 + (n - q * 10);
    n = q;
  } while (n !== 0);
}

/** Writes a non-negative integer below 2^53 held in a double. */
function writeSafe(out: ByteWriter, v: number): void {
  if (v < TWO32) return writeU32(out, v);
  const high = Math.floor(v / 1e8);
  writeU32(out, high);
  let low = v - high * 1e8;
  const buf = out.buf;
  let p = out.pos + 8;
  out.pos = p;
  for (let k = 0; k < 8; k++) {
    const q = Math.floor(low / 10);
    buf[--p] = 48 + (low - q * 10);
    low = q;
  }
}

/**
 * Writes a 64-bit word in decimal as "%llu" or "%lld" would (call ensure(20) first). Magnitudes beyond
 * 2^53 go through BigInt; everything else is done on doubles, exactly.
 */
export function writeWord(out: ByteWriter, lo: number, hi: number, signed: boolean): void {
  if (hi === 0) return writeU32(out, lo);
  if (signed && hi >= 0x80000000) {
    // two's complement negation of (hi, lo) gives the magnitude
    const mlo = (~lo + 1) >>> 0;
    const mhi = (~hi + (mlo === 0 ? 1 : 0)) >>> 0;
    if (mhi < TWO21) {
      out.buf[out.pos++] = 45; // '-'
      return writeSafe(out, mhi * TWO32 + mlo);
    }
  } else if (hi < TWO21) return writeSafe(out, hi * TWO32 + lo);
  const text = formatWord(lo, hi, signed);
  for (let k = 0; k < text.length; k++) out.buf[out.pos + k] = text.charCodeAt(k);
  out.pos += text.length;
}

/**
 * How encodeDirs writes each directory: 'path' as `a/b` (the top ''), 'prefix' as `a/b/` (the top ''), for a
 * renderer that puts a name after it. `escape` maps each name before it is encoded (null: as it is).
 */
export interface DirForm {
  trailingSlash: boolean;
  escape: ((name: string) => string) | null;
}

const SLASH = 47;

/** UTF-8 length of a string as Buffer.from encodes it (a lone surrogate becomes U+FFFD, 3 bytes). */
function utf8Length(s: string): number {
  let n = s.length;
  for (let k = 0; k < s.length; k++) {
    const c = s.charCodeAt(k);
    if (c < 0x80) continue;
    if (c < 0x800) n += 1;
    else if (c >= 0xd800 && c <= 0xdbff && k + 1 < s.length && (s.charCodeAt(k + 1) & 0xfc00) === 0xdc00) {
      n += 2; // a pair: 4 bytes for 2 units
      k++;
    } else n += 2;
  }
  return n;
}

/** Writes `s` at [from, to), its UTF-8 length measured by utf8Length. */
function putString(into: Buffer, s: string, from: number, to: number): void {
  if (to - from === s.length) for (let k = 0; k < s.length; k++) into[from + k] = s.charCodeAt(k); // ASCII
  else into.write(s, from, to - from, 'utf8');
}

/**
 * Each directory's path, back to back (string d is directory d): starts[d] is where it begins, starts[d + 1]
 * where it ends. Measured in batches that yield; writeDirs puts the bytes down. A path is encoded from its
 * parent's bytes and its own name, so no string is made per directory: a million of them were a quarter
 * of a second of joining, encoding and collecting in one go.
 */
export function* measureDirs(snapshot: Snapshot, form: DirForm): Generator<void, Uint32Array> {
  const n = snapshot.dirCount;
  const starts = new Uint32Array(n + 1);
  const { trailingSlash, escape } = form;
  let at = 0;
  for (let from = 0; from < n; from += BATCH) {
    const to = Math.min(n, from + BATCH);
    for (let d = from; d < to; d++) {
      starts[d] = at;
      const parent = snapshot.dirParentOf(d);
      if (parent < 0) continue; // the top: ''
      const name = snapshot.dirNameOf(d);
      // the parent's bytes ('a/b/' or, below the top, 'a/b' and a slash), then the name
      const above = starts[parent + 1] - starts[parent] + (trailingSlash || snapshot.dirParentOf(parent) < 0 ? 0 : 1);
      at += above + utf8Length(escape === null ? name : escape(name)) + (trailingSlash ? 1 : 0);
    }
    yield;
  }
  starts[n] = at;
  return starts;
}

/** Writes the paths measureDirs measured into `into` from `offset`, in batches that yield. */
export function* writeDirs(snapshot: Snapshot, form: DirForm, starts: Uint32Array, into: Buffer, offset: number): Generator<void, void> {
  const n = snapshot.dirCount;
  const { trailingSlash, escape } = form;
  for (let from = 0; from < n; from += BATCH) {
    const to = Math.min(n, from + BATCH);
    for (let d = from; d < to; d++) {
      const parent = snapshot.dirParentOf(d);
      if (parent < 0) continue;
      let p = offset + starts[d];
      // a parent is numbered (so written) before its subordinates
      const pFrom = offset + starts[parent];
      const pTo = offset + starts[parent + 1];
      if (pTo - pFrom > 32) into.copyWithin(p, pFrom, pTo);
      else for (let k = pFrom; k < pTo; k++) into[p + k - pFrom] = into[k];
      p += pTo - pFrom;
      if (!trailingSlash && snapshot.dirParentOf(parent) >= 0) into[p++] = SLASH;
      const end = offset + starts[d + 1] - (trailingSlash ? 1 : 0);
      putString(into, escape === null ? snapshot.dirNameOf(d) : escape(snapshot.dirNameOf(d)), p, end);
      if (trailingSlash) into[end] = SLASH;
    }
    yield;
  }
}

/** measureDirs and writeDirs into a buffer of their own. */
export function* encodeDirs(snapshot: Snapshot, form: DirForm): Generator<void, { bytes: Buffer; starts: Uint32Array }> {
  const starts = yield* measureDirs(snapshot, form);
  // not zeroed: writeDirs writes every byte of it
  const bytes = Buffer.allocUnsafe(starts[starts.length - 1]);
  yield* writeDirs(snapshot, form, starts, bytes, 0);
  return { bytes, starts };
}

/**
 * Encodes strings back to back (each mapped first, when `map` is given), in batches that yield: the bytes
 * and where each one starts (starts[i + 1] is its end). Measured, then written into a buffer of the exact
 * size: no joined string, which for a million strings was one long step and much garbage.
 */
export function* encodeStrings(list: readonly string[], map: ((s: string) => string) | null = null): Generator<void, { bytes: Buffer; starts: Uint32Array }> {
  const n = list.length;
  const starts = new Uint32Array(n + 1);
  let at = 0;
  for (let from = 0; from < n; from += BATCH) {
    const to = Math.min(n, from + BATCH);
    for (let i = from; i < to; i++) {
      starts[i] = at;
      at += utf8Length(map === null ? list[i] : map(list[i]));
    }
    yield;
  }
  starts[n] = at;
  // not zeroed: every byte is written below
  const bytes = Buffer.allocUnsafe(at);
  for (let from = 0; from < n; from += BATCH) {
    const to = Math.min(n, from + BATCH);
    for (let i = from; i < to; i++) putString(bytes, map === null ? list[i] : map(list[i]), starts[i], starts[i + 1]);
    yield;
  }
  return { bytes, starts };
}

const OCTAL = (c: string): string => '\\' + c.charCodeAt(0).toString(8).padStart(3, '0');
const PATH_SPECIAL = /[ \\\u0000-\u001f\u007f]/;
const PATH_SPECIAL_ALL = /[ \\\u0000-\u001f\u007f]/g;
const VALUE_SPECIAL = /[\\\u0000-\u001f\u007f]/;
const VALUE_SPECIAL_ALL = /[\\\u0000-\u001f\u007f]/g;

/**
 * A path for the text format: space, backslash and control characters become three-digit octal escapes
 * (`\040`, `\134`, `\012`), as in /proc/self/mounts, so the first space on a line ends the path.
 */
export function escapePath(path: string): string {
  return PATH_SPECIAL.test(path) ? path.replace(PATH_SPECIAL_ALL, OCTAL) : path;
}

/** A value's text for the text format: backslash and control characters (newline, tab) as octal escapes. */
export function escapeValue(text: string): string {
  return VALUE_SPECIAL.test(text) ? text.replace(VALUE_SPECIAL_ALL, OCTAL) : text;
}

/** Undoes escapePath / escapeValue. */
export function unescapeText(text: string): string {
  return text.includes('\\') ? text.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))) : text;
}

/** The message of whatever a getter or show() threw. */
export function errorMessage(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
