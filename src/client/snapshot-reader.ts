/**
 * Reader of `.snapshot.bin` files (docs/snapshot-formats.md), written against the documented layout only:
 * it needs nothing from the daemon's code.
 *
 * One file, over 450 lines, by design: it is standalone (it imports nothing of the daemon or the rest of
 * client/; top/ and other tools use it alone), and the layout's constants, parser and refresh read as one.
 *
 *   const snap = parseBinarySnapshot(readFileSync('/run/statsfs/net/.snapshot.bin'));
 *   snap.path(0), snap.value(0), snap.descriptors[0].unit
 *
 * To follow values over time, parse once and re-read only the data block:
 *
 *   const file = await openBinarySnapshot('/run/statsfs/net/.snapshot.bin');
 *   … later: await file.refresh();   // opens again, checks the layout id, preads the data block
 *   file.snapshot.value(i)
 *
 * Histogram values (type "histogram") read as their count; snap.histogram(i) gives the buckets, and
 * histogramQuantile() the percentiles the filesystem shows.
 */
import { open, type FileHandle } from 'node:fs/promises';
import { endianness } from 'node:os';

const MAGIC = 'STFS';
const VERSION = 1;
const MIN_HEADER_SIZE = 160;
const MIN_DESC_SIZE = 16;
const MIN_DIR_SIZE = 8;
const MIN_DEF_SIZE = 32;
const LITTLE_ENDIAN_HOST = endianness() === 'LE';

/** Byte offsets of the header's fields. */
const HEADER_FIELDS = Object.freeze({
  magic: 0,
  version: 4,
  headerSize: 8,
  flags: 12,
  layoutId: 16,
  takenAtNs: 24,
  numDesc: 32,
  descSize: 36,
  descOffset: 40,
  numDirs: 48,
  dirSize: 52,
  dirsOffset: 56,
  numDefs: 64,
  defSize: 68,
  defsOffset: 72,
  stringsOffset: 80,
  stringsSize: 88,
  dataOffset: 96,
  dataSize: 104,
  textsOffset: 112,
  textsSize: 120,
  numTexts: 128,
  numFailures: 132,
  failuresOffset: 136,
  failuresSize: 144,
  histogramsOffset: 152,
});
const HEADER_FLAG_HISTOGRAMS = 1;
const HISTOGRAMS_HEADER_SIZE = 16;
const HISTOGRAM_RECORD_SIZE = 56;

/** A descriptor's flags. */
const FLAGS = Object.freeze({
  typeMask: 0xf,
  signed: 1 << 4,
  floating: 1 << 5,
  aggregate: 1 << 6,
  show: 1 << 7,
  aggrShift: 8,
  aggrMask: 0xf << 8,
  modeShift: 16,
  modeMask: 0x1ff << 16,
});
const TYPE_CUSTOM = 15;
/** A type's code is its position here, an aggregation's in AGGREGATIONS. */
const TYPE_NAMES = ['u8', 's8', 'u16', 's16', 'u32', 's32', 'u64', 's64', 'bool', 'histogram'] as const;
const TYPE_BITS: readonly number[] = [8, 8, 16, 16, 32, 32, 64, 64, 1, 64];
const AGGREGATIONS = ['none', 'sum', 'min', 'max', 'count_zero', 'avg'] as const;

/**
 * The format as this reader knows it, written from docs/snapshot-formats.md rather than imported from the
 * writer (export/binary.ts), so that the reader needs nothing of the daemon; test/unit/code-lists.test.ts
 * checks it against the writer's layout and the model's codes.
 */
export const BINARY_FORMAT = Object.freeze({
  magic: MAGIC,
  version: VERSION,
  headerSize: MIN_HEADER_SIZE,
  descSize: MIN_DESC_SIZE,
  dirSize: MIN_DIR_SIZE,
  defSize: MIN_DEF_SIZE,
  header: HEADER_FIELDS,
  headerFlagHistograms: HEADER_FLAG_HISTOGRAMS,
  histogramsHeaderSize: HISTOGRAMS_HEADER_SIZE,
  histogramRecordSize: HISTOGRAM_RECORD_SIZE,
  flags: FLAGS,
  typeCustom: TYPE_CUSTOM,
  typeNames: TYPE_NAMES,
  typeBits: TYPE_BITS,
  aggregations: AGGREGATIONS,
});

export type SnapshotAggregation = (typeof AGGREGATIONS)[number];

export interface BinarySnapshotHeader {
  version: number;
  headerSize: number;
  flags: number;
  /** Changes whenever the descriptors, directories, definitions or strings do. */
  layoutId: bigint;
  /** Capture time, nanoseconds since the Unix epoch (millisecond resolution). */
  takenAtNs: bigint;
  numDesc: number;
  descSize: number;
  descOffset: number;
  numDirs: number;
  dirSize: number;
  dirsOffset: number;
  numDefs: number;
  defSize: number;
  defsOffset: number;
  stringsOffset: number;
  stringsSize: number;
  dataOffset: number;
  dataSize: number;
  textsOffset: number;
  textsSize: number;
  numTexts: number;
  numFailures: number;
  failuresOffset: number;
  failuresSize: number;
  /** Where the histograms section starts; 0 when there is none (flag bit 0 unset). */
  histogramsOffset: number;
}

/** The distribution of a histogram value: base-2 exponential buckets (docs/snapshot-formats.md). */
export interface SnapshotHistogram {
  /** Bucket `offset + k` holds (2^((offset+k)/2^scale), 2^((offset+k+1)/2^scale)]. */
  scale: number;
  offset: number;
  /** Each bucket's own count (not cumulative), from bucket `offset` on. */
  buckets: BigUint64Array;
  count: bigint;
  /** Observations of exactly 0. */
  zeroCount: bigint;
  sum: number;
  /** 0 when empty. */
  min: number;
  max: number;
}

/**
 * The q-quantile (0 < q <= 1) as the filesystem's p50 … p999 files estimate it: the log-midpoint of the
 * bucket holding the nearest rank ceil(q × count), clamped to [min, max]; the first and last ranks are min
 * and max. Within (b-1)/(b+1) of the true value, b = 2^(2^-scale) (1.09 % at scale 5). 0 when empty.
 */
export function histogramQuantile(h: SnapshotHistogram, q: number): number {
  const n = Number(h.count);
  if (n === 0) return 0;
  const exact = q * n;
  const rank = Math.max(1, Math.ceil(exact - exact * 1e-12));
  if (rank >= n) return h.max;
  if (rank === 1) return h.min;
  let seen = Number(h.zeroCount);
  if (seen >= rank) return 0;
  const b = 2 ** (2 ** -h.scale);
  for (let k = 0; k < h.buckets.length; k++) {
    seen += Number(h.buckets[k]);
    if (seen >= rank) return Math.min(h.max, Math.max(h.min, (2 * 2 ** ((h.offset + k + 1) / 2 ** h.scale)) / (1 + b)));
  }
  return h.max;
}

export interface SnapshotDescriptor {
  /** Path relative to the directory whose .snapshot.bin this is. */
  path: string;
  /** Directory part of the path ('' for that directory itself) and the value's name. */
  dir: string;
  name: string;
  /** Type name: u8 … s64, bool, or a custom type's name. */
  type: string;
  signed: boolean;
  /** 1 for bool, else the width; 64 for custom types. */
  bits: number;
  kind: 'cumulative' | 'floating';
  aggregation: SnapshotAggregation;
  /** An aggregate computed over the subordinates, rather than a value of its own. */
  aggregate: boolean;
  /** Has a show() text (see BinarySnapshot.text). */
  show: boolean;
  /** Permission bits of the value's file. */
  mode: number;
  unit: string;
  description: string;
  /** Byte offset of the value within the data block. */
  offset: number;
  /** The raw descriptor flags. */
  flags: number;
}

/** What a fixed-offset re-read needs: where the data block is, how big, and which layout it belongs to. */
export interface SnapshotLayout {
  layoutId: bigint;
  dataOffset: number;
  dataSize: number;
}

export class BinarySnapshotFormatError extends Error {
  override readonly name = 'BinarySnapshotFormatError';
}

function fail(message: string): never {
  throw new BinarySnapshotFormatError(message);
}

function u64(view: DataView, at: number): number {
  const v = view.getBigUint64(at, true);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) fail(`field at ${at} is too large`);
  return Number(v);
}

/** Parses the header; `buf` needs only its first header_size bytes. */
export function parseHeader(buf: Uint8Array): BinarySnapshotHeader {
  if (buf.length < MIN_HEADER_SIZE) fail(`${buf.length} bytes is too short for a header`);
  const magic = String.fromCharCode(buf[0], buf[1], buf[2], buf[3]);
  if (magic !== MAGIC) fail(`not a statsfs binary snapshot (magic ${JSON.stringify(magic)})`);
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const field = HEADER_FIELDS;
  const u32 = (at: number): number => view.getUint32(at, true);
  const version = u32(field.version);
  if (version !== VERSION) fail(`version ${version} is not supported (this reader knows ${VERSION})`);
  const flags = u32(field.flags);
  const header: BinarySnapshotHeader = {
    version,
    headerSize: u32(field.headerSize),
    flags,
    layoutId: view.getBigUint64(field.layoutId, true),
    takenAtNs: view.getBigUint64(field.takenAtNs, true),
    numDesc: u32(field.numDesc),
    descSize: u32(field.descSize),
    descOffset: u64(view, field.descOffset),
    numDirs: u32(field.numDirs),
    dirSize: u32(field.dirSize),
    dirsOffset: u64(view, field.dirsOffset),
    numDefs: u32(field.numDefs),
    defSize: u32(field.defSize),
    defsOffset: u64(view, field.defsOffset),
    stringsOffset: u64(view, field.stringsOffset),
    stringsSize: u64(view, field.stringsSize),
    dataOffset: u64(view, field.dataOffset),
    dataSize: u64(view, field.dataSize),
    textsOffset: u64(view, field.textsOffset),
    textsSize: u64(view, field.textsSize),
    numTexts: u32(field.numTexts),
    numFailures: u32(field.numFailures),
    failuresOffset: u64(view, field.failuresOffset),
    failuresSize: u64(view, field.failuresSize),
    histogramsOffset: (flags & HEADER_FLAG_HISTOGRAMS) !== 0 ? u64(view, field.histogramsOffset) : 0,
  };
  if (header.headerSize < MIN_HEADER_SIZE) fail(`header_size ${header.headerSize} < ${MIN_HEADER_SIZE}`);
  if (header.descSize < MIN_DESC_SIZE || header.dirSize < MIN_DIR_SIZE || header.defSize < MIN_DEF_SIZE) fail('entry sizes are too small');
  if (header.dataSize < header.numDesc * 8) fail('data block is smaller than its descriptors need');
  return header;
}

/** The end of the file as the header describes it. */
export function fileSize(header: BinarySnapshotHeader): number {
  return Math.max(header.dataOffset + header.dataSize, header.textsOffset + header.textsSize, header.failuresOffset + header.failuresSize);
}

/**
 * Reads a data block (`data` holds exactly data_size bytes, as a pread at data_offset returns them): one
 * u64 per 8 bytes, two's complement, indexed by descriptor offset / 8. Shares `data`'s memory when it can.
 */
export function readValues(data: Uint8Array, layout: Pick<SnapshotLayout, 'dataSize'>): BigUint64Array {
  if (data.length < layout.dataSize) fail(`data block is ${data.length} bytes, expected ${layout.dataSize}`);
  const n = Math.floor(layout.dataSize / 8);
  if (LITTLE_ENDIAN_HOST) {
    if ((data.byteOffset & 7) === 0) return new BigUint64Array(data.buffer, data.byteOffset, n);
    const copy = new Uint8Array(n * 8);
    copy.set(data.subarray(0, n * 8));
    return new BigUint64Array(copy.buffer, 0, n);
  }
  const out = new BigUint64Array(n);
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  for (let i = 0; i < n; i++) out[i] = view.getBigUint64(i * 8, true);
  return out;
}

const utf8 = new TextDecoder('utf-8');

interface DefInfo {
  name: string;
  type: string;
  unit: string;
  description: string;
}

/** A parsed binary snapshot. Descriptors are parsed once; values, texts and failures can be replaced by refresh. */
export class BinarySnapshot {
  header: BinarySnapshotHeader;
  readonly dirs: readonly string[];
  private readonly defInfo: readonly DefInfo[];
  /** Raw descriptor columns. */
  private readonly descFlags: Uint32Array;
  private readonly descOffsets: Uint32Array;
  private readonly descDirs: Uint32Array;
  private readonly descDefs: Uint32Array;
  private descriptorList: SnapshotDescriptor[] | null = null;
  private data: BigUint64Array;
  private texts: (string | null)[];
  failures: { path: string; error: string }[];
  private histograms: Map<number, SnapshotHistogram>;

  constructor(buf: Uint8Array) {
    const header = parseHeader(buf);
    if (buf.length < fileSize(header)) fail(`file is ${buf.length} bytes, the header describes ${fileSize(header)}`);
    const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const strings = buf.subarray(header.stringsOffset, header.stringsOffset + header.stringsSize);
    const str = (at: number): string => {
      const off = view.getUint32(at, true);
      const len = view.getUint32(at + 4, true);
      if (off + len > strings.length) fail(`string at ${off}+${len} is outside the string table`);
      return utf8.decode(strings.subarray(off, off + len));
    };
    const dirs: string[] = [];
    for (let d = 0; d < header.numDirs; d++) dirs.push(str(header.dirsOffset + d * header.dirSize));
    const defs: DefInfo[] = [];
    for (let d = 0; d < header.numDefs; d++) {
      const at = header.defsOffset + d * header.defSize;
      defs.push({ name: str(at), type: str(at + 8), unit: str(at + 16), description: str(at + 24) });
    }
    const n = header.numDesc;
    this.descFlags = new Uint32Array(n);
    this.descOffsets = new Uint32Array(n);
    this.descDirs = new Uint32Array(n);
    this.descDefs = new Uint32Array(n);
    for (let i = 0; i < n; i++) {
      const at = header.descOffset + i * header.descSize;
      this.descFlags[i] = view.getUint32(at, true);
      const offset = view.getUint32(at + 4, true);
      const dir = view.getUint32(at + 8, true);
      const def = view.getUint32(at + 12, true);
      if (offset + 8 > header.dataSize || (offset & 7) !== 0) fail(`descriptor ${i}: offset ${offset} is outside the data block`);
      if (dir >= dirs.length || def >= defs.length) fail(`descriptor ${i}: directory or definition out of range`);
      this.descOffsets[i] = offset;
      this.descDirs[i] = dir;
      this.descDefs[i] = def;
    }
    this.header = header;
    this.dirs = dirs;
    this.defInfo = defs;
    this.data = readValues(buf.subarray(header.dataOffset, header.dataOffset + header.dataSize), header);
    this.texts = this.parseTexts(buf.subarray(header.textsOffset, header.textsOffset + header.textsSize), header);
    this.failures = parseFailures(buf.subarray(header.failuresOffset, header.failuresOffset + header.failuresSize));
    this.histograms = parseHistograms(header.histogramsOffset === 0 ? null : buf.subarray(header.histogramsOffset), header.numDesc);
  }

  /** The buckets of histogram value i; null for other values. */
  histogram(i: number): SnapshotHistogram | null {
    return this.histograms.get(i) ?? null;
  }

  /** The layout this snapshot was parsed with. */
  get layout(): SnapshotLayout {
    return { layoutId: this.header.layoutId, dataOffset: this.header.dataOffset, dataSize: this.header.dataSize };
  }

  get length(): number {
    return this.header.numDesc;
  }

  get takenAt(): Date {
    return new Date(Number(this.header.takenAtNs / 1_000_000n));
  }

  path(i: number): string {
    const dir = this.dirs[this.descDirs[i]];
    const name = this.defInfo[this.descDefs[i]].name;
    return dir === '' ? name : `${dir}/${name}`;
  }

  /** Every descriptor as an object (built on first use: a million of them take a moment). */
  get descriptors(): readonly SnapshotDescriptor[] {
    if (this.descriptorList === null) {
      const list: SnapshotDescriptor[] = new Array(this.length);
      for (let i = 0; i < this.length; i++) list[i] = this.descriptor(i);
      this.descriptorList = list;
    }
    return this.descriptorList;
  }

  descriptor(i: number): SnapshotDescriptor {
    const flags = this.descFlags[i];
    const def = this.defInfo[this.descDefs[i]];
    const code = flags & FLAGS.typeMask;
    return {
      path: this.path(i),
      dir: this.dirs[this.descDirs[i]],
      name: def.name,
      type: def.type,
      signed: (flags & FLAGS.signed) !== 0,
      bits: code === TYPE_CUSTOM ? 64 : (TYPE_BITS[code] ?? 64),
      kind: (flags & FLAGS.floating) !== 0 ? 'floating' : 'cumulative',
      aggregation: AGGREGATIONS[(flags & FLAGS.aggrMask) >>> FLAGS.aggrShift] ?? 'none',
      aggregate: (flags & FLAGS.aggregate) !== 0,
      show: (flags & FLAGS.show) !== 0,
      mode: (flags & FLAGS.modeMask) >>> FLAGS.modeShift,
      unit: def.unit,
      description: def.description,
      offset: this.descOffsets[i],
      flags,
    };
  }

  /** The data block: raw u64 words (two's complement), indexed by descriptor offset / 8. */
  values(): BigUint64Array {
    return this.data;
  }

  /** Value i as its type reads it: negative for signed types. */
  value(i: number): bigint {
    const raw = this.data[this.descOffsets[i] >>> 3];
    return (this.descFlags[i] & FLAGS.signed) !== 0 ? BigInt.asIntN(64, raw) : raw;
  }

  /** What reading the value's file shows, without the newline: its show() text, or the number. */
  text(i: number): string {
    return this.texts[i] ?? this.value(i).toString();
  }

  /** Type name of value i without building its descriptor (standard types by code, custom by definition). */
  typeName(i: number): string {
    const code = this.descFlags[i] & FLAGS.typeMask;
    return code < TYPE_NAMES.length ? TYPE_NAMES[code] : this.defInfo[this.descDefs[i]].type;
  }

  /** @internal replaces what a refresh read anew. */
  update(header: BinarySnapshotHeader, data: BigUint64Array, texts: Uint8Array, failures: Uint8Array, histograms: Uint8Array): void {
    this.header = header;
    this.data = data;
    this.texts = this.parseTexts(texts, header);
    this.failures = parseFailures(failures);
    this.histograms = parseHistograms(header.histogramsOffset === 0 ? null : histograms, header.numDesc);
  }

  /** The texts section: u32 starts[numTexts + 1], then UTF-8; text k belongs to the k-th descriptor with show. */
  private parseTexts(section: Uint8Array, header: BinarySnapshotHeader): (string | null)[] {
    const texts: (string | null)[] = new Array(this.length).fill(null);
    if (header.numTexts === 0) return texts;
    const view = new DataView(section.buffer, section.byteOffset, section.byteLength);
    const base = (header.numTexts + 1) * 4;
    if (section.length < base) fail('texts section is too short');
    let k = 0;
    for (let i = 0; i < this.length && k < header.numTexts; i++) {
      if ((this.descFlags[i] & FLAGS.show) === 0) continue;
      const start = view.getUint32(k * 4, true);
      const end = view.getUint32(k * 4 + 4, true);
      if (end < start || base + end > section.length) fail(`text ${k} is outside the texts section`);
      texts[i] = utf8.decode(section.subarray(base + start, base + end));
      k++;
    }
    if (k !== header.numTexts) fail(`${header.numTexts} texts for ${k} values with show()`);
    return texts;
  }
}

/** The histograms section (`section` starts with it; null when there is none), by descriptor number. */
function parseHistograms(section: Uint8Array | null, numDesc: number): Map<number, SnapshotHistogram> {
  const out = new Map<number, SnapshotHistogram>();
  if (section === null) return out;
  const view = new DataView(section.buffer, section.byteOffset, section.byteLength);
  if (HISTOGRAMS_HEADER_SIZE > section.length) fail('histograms section is outside the file');
  const count = view.getUint32(0, true);
  const end = u64(view, 8);
  if (end > section.length) fail('histograms section is outside the file');
  let at = HISTOGRAMS_HEADER_SIZE;
  for (let r = 0; r < count; r++) {
    if (at + HISTOGRAM_RECORD_SIZE > end) fail(`histogram ${r} is outside its section`);
    const value = view.getUint32(at, true);
    const n = view.getUint32(at + 12, true);
    if (value >= numDesc) fail(`histogram ${r}: value ${value} out of range`);
    if (at + HISTOGRAM_RECORD_SIZE + n * 8 > end) fail(`histogram ${r}: buckets outside its section`);
    const buckets = new BigUint64Array(n);
    for (let k = 0; k < n; k++) buckets[k] = view.getBigUint64(at + HISTOGRAM_RECORD_SIZE + k * 8, true);
    out.set(value, {
      scale: view.getInt32(at + 4, true),
      offset: view.getInt32(at + 8, true),
      buckets,
      count: view.getBigUint64(at + 16, true),
      zeroCount: view.getBigUint64(at + 24, true),
      sum: view.getFloat64(at + 32, true),
      min: view.getFloat64(at + 40, true),
      max: view.getFloat64(at + 48, true),
    });
    at += HISTOGRAM_RECORD_SIZE + n * 8;
  }
  return out;
}

function parseFailures(section: Uint8Array): { path: string; error: string }[] {
  if (section.length === 0) return [];
  try {
    return JSON.parse(utf8.decode(section)) as { path: string; error: string }[];
  } catch {
    return fail('failures section is not JSON');
  }
}

/** Parses a whole `.snapshot.bin` file. */
export function parseBinarySnapshot(buf: Uint8Array): BinarySnapshot {
  return new BinarySnapshot(buf);
}

/** Reads exactly `length` bytes at `position` (short reads retried; EOF before that is an error). */
async function pread(handle: FileHandle, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const { bytesRead } = await handle.read(buf, done, length - done, position + done);
    if (bytesRead === 0) fail(`file ended at ${position + done}, expected ${position + length}`);
    done += bytesRead;
  }
  return buf;
}

/**
 * A `.snapshot.bin` file followed over time. Every open of the file is a new snapshot; refresh() opens it
 * again, reads the header, and when the layout id, data offset and size are unchanged reads only the data
 * block (and the texts and failures behind it); otherwise it parses the whole file again.
 */
export class BinarySnapshotFile {
  private constructor(
    readonly path: string,
    public snapshot: BinarySnapshot,
  ) {}

  static async open(path: string): Promise<BinarySnapshotFile> {
    const handle = await open(path, 'r');
    try {
      return new BinarySnapshotFile(path, parseBinarySnapshot(await readWhole(handle)));
    } finally {
      await handle.close();
    }
  }

  /** Takes a new snapshot; returns true when the layout changed (the descriptors were parsed again). */
  async refresh(): Promise<boolean> {
    const handle = await open(this.path, 'r');
    try {
      const head = parseHeader(await pread(handle, 0, this.snapshot.header.headerSize));
      const old = this.snapshot.layout;
      if (head.layoutId !== old.layoutId || head.dataOffset !== old.dataOffset || head.dataSize !== old.dataSize) {
        this.snapshot = parseBinarySnapshot(await readWhole(handle));
        return true;
      }
      const data = await pread(handle, head.dataOffset, head.dataSize);
      const texts = await pread(handle, head.textsOffset, head.textsSize);
      const failures = await pread(handle, head.failuresOffset, head.failuresSize);
      const histograms = head.histogramsOffset === 0 ? new Uint8Array(0) : await readHistogramsSection(handle, head.histogramsOffset);
      this.snapshot.update(head, readValues(data, head), texts, failures, histograms);
      return false;
    } finally {
      await handle.close();
    }
  }
}

/** The header first, then exactly the bytes it describes (files on statsfs report size 0). */
async function readWhole(handle: FileHandle): Promise<Buffer> {
  const head = parseHeader(await pread(handle, 0, MIN_HEADER_SIZE));
  if (head.histogramsOffset === 0) return pread(handle, 0, fileSize(head));
  // the histograms section, last in the file, says its own size
  const size = (await pread(handle, head.histogramsOffset + 8, 8)).readBigUInt64LE(0);
  return pread(handle, 0, head.histogramsOffset + Number(size));
}

/** The histograms section at `offset` (its size is its third field). */
async function readHistogramsSection(handle: FileHandle, offset: number): Promise<Buffer> {
  const size = (await pread(handle, offset + 8, 8)).readBigUInt64LE(0);
  return pread(handle, offset, Number(size));
}

/** Opens and parses a `.snapshot.bin` file; refresh() re-reads only its data block while the layout holds. */
export function openBinarySnapshot(path: string): Promise<BinarySnapshotFile> {
  return BinarySnapshotFile.open(path);
}
