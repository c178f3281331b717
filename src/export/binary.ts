/**
 * `.snapshot.bin`: a binary snapshot modelled on the KVM binary statistics fd. A reader parses the header
 * and descriptors once; after that it only needs the data block, which sits at the same offset with the
 * same size in every rendering of a tree of the same shape, and the header's layout id says whether it
 * still does. The byte layout is documented in docs/snapshot-formats.md; in short (little-endian, every
 * section 8-byte aligned):
 *
 *   header (160 bytes) | descriptors (16 bytes each) | directories (8 each) | definitions (32 each) |
 *   strings | data (one u64 per value) | texts (show() texts) | failures (JSON) | histograms
 *
 * A histogram value (type code 9) has its count in the data block and its buckets in the histograms
 * section, which header flag HISTOGRAMS announces and the header's last field locates (version 1 readers
 * that know neither see a u64 count).
 *
 * The data block holds each value's 64-bit word, two's complement: narrow signed types sign-extended,
 * bool 0 or 1. The layout id is the first 8 bytes of a SHA-256 over the header's layout fields (bytes 32
 * to 112) and everything from the descriptors up to the data block.
 */
import { createHash } from 'node:crypto';
import type { Histogram } from '../model/histogram.js';
import type { Snapshot } from '../model/snapshot.js';
import { AGGREGATIONS, type Aggregation, type ValueDef } from '../model/schema.js';
import { TYPE_CODES } from '../model/types.js';
import { BATCH, encodeDirs, encodeStrings, errorMessage, runSliced, runSync, TURN, type DirForm, type SliceOptions } from './common.js';

const BINARY_MAGIC = 'STFS';
const BINARY_VERSION = 1;
const HEADER_SIZE = 160;
const DESC_SIZE = 16;
const DIR_SIZE = 8;
const DEF_SIZE = 32;
/** The header bytes covered by the layout id: counts, sizes and offsets up to the data block. */
const LAYOUT_FIELDS_START = 32;
const LAYOUT_FIELDS_END = 112;

/** Header field offsets. */
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
  /** Offset of the histograms section; 0 when the snapshot has no histogram (HEADER_FLAG_HISTOGRAMS unset). */
  histogramsOffset: 152,
});

/** Header flags. */
const HEADER_FLAG_HISTOGRAMS = 1;
/** The histograms section: u32 count, u32 reserved, u64 section size, then the records. */
const HISTOGRAMS_HEADER_SIZE = 16;
/**
 * One histogram record, 8-byte aligned: u32 value (descriptor number), i32 scale, i32 offset (index of the
 * first bucket), u32 num_buckets, u64 count, u64 zero_count, f64 sum, f64 min, f64 max (0 when empty),
 * then u64 buckets[num_buckets]: bucket k holds (2^((offset+k)/2^scale), 2^((offset+k+1)/2^scale)].
 */
const HISTOGRAM_RECORD_SIZE = 56;

/** Descriptor flags. */
const FLAG_TYPE_MASK = 0xf;
const FLAG_SIGNED = 1 << 4;
const FLAG_FLOATING = 1 << 5;
const FLAG_AGGREGATE = 1 << 6;
const FLAG_SHOW = 1 << 7;
const FLAG_AGGR_SHIFT = 8;
const FLAG_AGGR_MASK = 0xf << FLAG_AGGR_SHIFT;
const FLAG_MODE_SHIFT = 16;
const FLAG_MODE_MASK = 0x1ff << FLAG_MODE_SHIFT;

/**
 * The type code in the low 4 bits of the flags is the type's position in the model's TYPE_CODES; a custom
 * type (64-bit, its own signedness) is 15. The aggregation code is its position in AGGREGATIONS.
 */
const TYPE_CODE = new Map<string, number>(TYPE_CODES.map((name, code) => [name, code]));
const TYPE_CUSTOM = 15;
const AGGREGATION_CODE = new Map<Aggregation, number>(AGGREGATIONS.map((aggr, code) => [aggr, code]));

/**
 * The layout in one object, for the test that checks the client's reader (written from the documentation,
 * not from this file) against it; this file uses the constants above.
 */
export const BINARY_LAYOUT = Object.freeze({
  magic: BINARY_MAGIC,
  version: BINARY_VERSION,
  headerSize: HEADER_SIZE,
  descSize: DESC_SIZE,
  dirSize: DIR_SIZE,
  defSize: DEF_SIZE,
  header: HEADER_FIELDS,
  headerFlagHistograms: HEADER_FLAG_HISTOGRAMS,
  histogramsHeaderSize: HISTOGRAMS_HEADER_SIZE,
  histogramRecordSize: HISTOGRAM_RECORD_SIZE,
  flags: Object.freeze({
    typeMask: FLAG_TYPE_MASK,
    signed: FLAG_SIGNED,
    floating: FLAG_FLOATING,
    aggregate: FLAG_AGGREGATE,
    show: FLAG_SHOW,
    aggrShift: FLAG_AGGR_SHIFT,
    aggrMask: FLAG_AGGR_MASK,
    modeShift: FLAG_MODE_SHIFT,
    modeMask: FLAG_MODE_MASK,
  }),
  typeCustom: TYPE_CUSTOM,
});

/** Values handled between two yields of the generator. */
const STEP_VALUES = 8192;
/** Bytes hashed or copied between two yields. */
const STEP_BYTES = 1 << 20;
/** Directory paths as the strings section holds them: `a/b`, unescaped. */
const DIR_PATHS: DirForm = { trailingSlash: false, escape: null };

/**
 * The file is rendered in pieces of this many bytes (the last one shorter), each allocated when the
 * writing first reaches it: V8 answers one jump of a few hundred MB outside its heap by marking the whole
 * heap in one pause (~170 ms behind a 257 MB file of ten million values, measured in-process), where pieces
 * that arrive a slice or so apart let it mark in steps. The binding takes large snapshots in pieces of the
 * same size (fs/native.ts), so the pieces go to it as they are.
 */
export const BINARY_CHUNK_SIZE = 8 << 20;

export interface BinaryOptions extends SliceOptions {
  /** Bytes per piece, a multiple of 16 and at least the header's 160 (default BINARY_CHUNK_SIZE). */
  chunkSize?: number;
}

/** The whole file in one go, in one Buffer. */
export function renderBinary(snapshot: Snapshot, options: BinaryOptions = {}): Buffer {
  const chunks = runSync(binaryWork(snapshot, options.chunkSize));
  return chunks.length === 1 ? chunks[0] : Buffer.concat(chunks);
}

/**
 * The same bytes as pieces of options.chunkSize (the last one shorter; a snapshot file's contents, see
 * SnapshotRenderer), rendered in slices of at most maxSliceMs (default 10) with the event loop running between.
 */
export function renderBinaryChunks(snapshot: Snapshot, options: BinaryOptions = {}): Promise<Buffer[]> {
  return runSliced(binaryWork(snapshot, options.chunkSize), options);
}

/**
 * The file's bytes in pieces of `chunkSize`, each allocated (not zeroed) when first written. Every field
 * the format has is at most 8 bytes and aligned to its size, and a piece is a multiple of 16 bytes, so a
 * field never straddles two pieces; byte runs (strings, texts) may.
 */
class ChunkedFile {
  private readonly chunks: Buffer[] = [];
  private readonly views: DataView[] = [];
  /** Pieces allocated since the last turn() */
  private fresh = 0;

  constructor(readonly size: number, readonly chunkSize: number) {
    if (chunkSize % 16 !== 0 || chunkSize < HEADER_SIZE) throw new RangeError(`chunk size ${chunkSize}: not a multiple of 16 of at least ${HEADER_SIZE}`);
  }

  /** Piece k, allocated on first use. */
  chunk(k: number): Buffer {
    let chunk = this.chunks[k];
    if (chunk === undefined) {
      // not zeroed (zeroing 257 MB for ten million values would be one long step): every byte is written
      // before the file leaves, each section by its writer and the alignment padding by zeroPadding
      chunk = Buffer.allocUnsafeSlow(Math.min(this.chunkSize, this.size - k * this.chunkSize));
      this.chunks[k] = chunk;
      this.views[k] = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      this.fresh++;
    }
    return chunk;
  }

  /** What a writer yields: TURN when a piece was allocated since the last yield (see TURN), else nothing. */
  turn(): typeof TURN | void {
    if (this.fresh === 0) return undefined;
    this.fresh = 0;
    return TURN;
  }

  /** The view of piece k, allocated on first use. */
  view(k: number): DataView {
    return this.views[k] ?? (this.chunk(k), this.views[k]);
  }

  /** Where byte `at` is: its piece, and its offset in that piece. */
  private at(at: number): [DataView, number] {
    const k = Math.floor(at / this.chunkSize);
    return [this.view(k), at - k * this.chunkSize];
  }

  u32(at: number, v: number): void {
    const [view, off] = this.at(at);
    view.setUint32(off, v, true);
  }

  i32(at: number, v: number): void {
    const [view, off] = this.at(at);
    view.setInt32(off, v, true);
  }

  u64(at: number, v: bigint): void {
    const [view, off] = this.at(at);
    view.setBigUint64(off, v, true);
  }

  f64(at: number, v: number): void {
    const [view, off] = this.at(at);
    view.setFloat64(off, v, true);
  }

  /** Calls `each(piece, offset in the piece, offset in [from, to))` for the parts of [from, to) in each piece. */
  private span(from: number, to: number, each: (chunk: Buffer, at: number, done: number) => void): void {
    for (let at = from; at < to; ) {
      const k = Math.floor(at / this.chunkSize);
      const off = at - k * this.chunkSize;
      const n = Math.min(to - at, this.chunkSize - off);
      each(this.chunk(k), off, at - from);
      at += n;
    }
  }

  /** Copies `bytes` to `at`. */
  write(bytes: Uint8Array, at: number): void {
    this.span(at, at + bytes.length, (chunk, off, done) => {
      chunk.set(bytes.subarray(done, done + chunk.length - off), off);
    });
  }

  zero(from: number, to: number): void {
    this.span(from, to, (chunk, off, done) => chunk.fill(0, off, off + Math.min(to - from - done, chunk.length - off)));
  }

  /** Bytes [from, to) as one Buffer (a view when they are in one piece). */
  read(from: number, to: number): Buffer {
    const parts: Buffer[] = [];
    this.span(from, to, (chunk, off, done) => parts.push(chunk.subarray(off, off + Math.min(to - from - done, chunk.length - off))));
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /** The pieces, every one written. */
  take(): Buffer[] {
    const n = Math.ceil(this.size / this.chunkSize);
    for (let k = 0; k < n; k++) this.chunk(k);
    return this.chunks;
  }
}

function defFlags(def: ValueDef): number {
  const type = def.type;
  let flags = type.custom !== null ? TYPE_CUSTOM : TYPE_CODE.get(type.name)!;
  if (type.signed) flags |= FLAG_SIGNED;
  if (def.floating) flags |= FLAG_FLOATING;
  if (def.show !== null) flags |= FLAG_SHOW;
  flags |= AGGREGATION_CODE.get(def.aggr)! << FLAG_AGGR_SHIFT;
  flags |= (def.mode & 0o777) << FLAG_MODE_SHIFT;
  return flags >>> 0;
}

const align8 = (n: number): number => (n + 7) & ~7;

/** Renders the file, yielding every few thousand values (or directories, or hashed megabytes) so that a driver can pause it. */
export function* binaryWork(snapshot: Snapshot, chunkSize = BINARY_CHUNK_SIZE): Generator<typeof TURN | void, Buffer[]> {
  const defs = yield* collectDefinitions(snapshot);
  const tables = yield* encodeTables(snapshot, defs.defList);
  const text = yield* encodeStrings(defs.texts);
  const failureBytes = Buffer.from(JSON.stringify(defs.failures), 'utf8');
  yield;
  const layout = computeLayout(snapshot, defs, tables.size, text.bytes.length, failureBytes.length);
  const file = new ChunkedFile(layout.total, chunkSize);
  writeHeader(file, snapshot, layout, defs);
  yield* writeDescriptorsAndData(file, snapshot, layout, defs);
  yield* writeTables(file, snapshot, layout, defs, tables, text, failureBytes);
  zeroPadding(file, layout);
  yield* writeLayoutId(file, layout);
  return file.take();
}

/** What one pass over the values finds: the definitions, each value's definition, show() texts, histograms. */
interface Definitions {
  /** Each distinct ValueDef once, in order of first use, and its descriptor flags. */
  defList: ValueDef[];
  defFlagList: number[];
  /** The position in defList of each entry of the snapshot's definition table that a value uses (see Snapshot.defEntry). */
  defNoOfEntry: number[];
  texts: string[];
  /** The values that are histograms. */
  histograms: number[];
  /** The snapshot's failures, then those of show() texts. */
  failures: { path: string; error: string }[];
}

/** Numbers the definitions and collects the show() texts; a show() that throws gives the number and a failure. */
function* collectDefinitions(snapshot: Snapshot): Generator<void, Definitions> {
  const count = snapshot.count;
  const defIndex = new Map<ValueDef, number>();
  const defList: ValueDef[] = [];
  const defFlagList: number[] = [];
  // per entry of the snapshot's definition table, not per value: ten million values made a 40 MB column
  const defNoOfEntry: number[] = [];
  const texts: string[] = [];
  const histograms: number[] = [];
  const failures = snapshot.failures.map(({ path, error }) => ({ path, error: errorMessage(error) }));
  for (let from = 0; from < count; from += STEP_VALUES) {
    const to = Math.min(count, from + STEP_VALUES);
    for (let i = from; i < to; i++) {
      const entry = snapshot.defEntry(i);
      const def = snapshot.def(i);
      if (defNoOfEntry[entry] === undefined) {
        let no = defIndex.get(def);
        if (no === undefined) {
          no = defList.push(def) - 1;
          defIndex.set(def, no);
          defFlagList.push(defFlags(def));
        }
        defNoOfEntry[entry] = no;
      }
      if (def.histogram) histograms.push(i);
      if (def.show !== null) {
        try {
          texts.push(snapshot.text(i));
        } catch (error) {
          texts.push(snapshot.number(i));
          failures.push({ path: snapshot.path(i), error: `show(): ${errorMessage(error)}` });
        }
      }
    }
    yield;
  }
  return { defList, defFlagList, defNoOfEntry, texts, histograms, failures };
}

/**
 * The strings section: every directory's path (string d is directory d), then each distinct name, type
 * name, unit and description once; and each definition's four string numbers (name, type, unit, description).
 */
interface StringTables {
  /** The directories' paths, back to back, and where each starts (dirStarts[d + 1] is its end). */
  dirBytes: Buffer;
  dirStarts: Uint32Array;
  /** The other strings, after the directories. */
  others: { bytes: Buffer; starts: Uint32Array };
  defStrings: number[][];
  /** The section's size in bytes. */
  size: number;
}

/** Encodes the directories' paths (in batches) and the few other strings. */
function* encodeTables(snapshot: Snapshot, defList: readonly ValueDef[]): Generator<void, StringTables> {
  // in a buffer of their own (about 9 MB for a million directories): a path is written from its parent's
  // bytes, which in the file's pieces could straddle two
  const { bytes: dirBytes, starts: dirStarts } = yield* encodeDirs(snapshot, DIR_PATHS);
  const numDirs = snapshot.dirCount;
  const stringList: string[] = [];
  const stringNo = new Map<string, number>();
  const intern = (s: string): number => {
    let no = stringNo.get(s);
    if (no === undefined) {
      no = numDirs + stringList.push(s) - 1;
      stringNo.set(s, no);
    }
    return no;
  };
  const defStrings = defList.map((def) => [intern(def.name), intern(def.type.name), intern(def.unit), intern(def.description)]);
  const others = yield* encodeStrings(stringList);
  return { dirBytes, dirStarts, others, defStrings, size: dirStarts[numDirs] + others.bytes.length };
}

/** Where string `no` starts in the strings section (stringStart(no + 1) is its end). */
function stringStart(tables: StringTables, no: number): number {
  const numDirs = tables.dirStarts.length - 1;
  return no < numDirs ? tables.dirStarts[no] : tables.dirStarts[numDirs] + tables.others.starts[no - numDirs];
}

/** Where each section goes, and the file's size. */
interface Layout {
  numDirs: number;
  descOffset: number;
  dirsOffset: number;
  defsOffset: number;
  stringsOffset: number;
  stringsSize: number;
  dataOffset: number;
  dataSize: number;
  textsOffset: number;
  textsSize: number;
  failuresOffset: number;
  failuresSize: number;
  /** 0 when there is no histogram (and so no section). */
  histogramsOffset: number;
  histogramsSize: number;
  total: number;
}

/** Sizes and offsets of the sections, in file order, each 8-byte aligned where the format says so. */
function computeLayout(snapshot: Snapshot, defs: Definitions, stringsSize: number, textBytes: number, failuresSize: number): Layout {
  const count = snapshot.count;
  const numDirs = snapshot.dirCount;
  const descOffset = HEADER_SIZE;
  const dirsOffset = descOffset + count * DESC_SIZE;
  const defsOffset = dirsOffset + numDirs * DIR_SIZE;
  const stringsOffset = defsOffset + defs.defList.length * DEF_SIZE;
  const dataOffset = align8(stringsOffset + stringsSize);
  const dataSize = count * 8;
  const textsOffset = dataOffset + dataSize;
  const textsSize = (defs.texts.length + 1) * 4 + textBytes;
  const failuresOffset = align8(textsOffset + textsSize);
  const histogramsOffset = defs.histograms.length === 0 ? 0 : align8(failuresOffset + failuresSize);
  let histogramsSize = HISTOGRAMS_HEADER_SIZE;
  for (const i of defs.histograms) histogramsSize += HISTOGRAM_RECORD_SIZE + snapshot.histogram(i)!.bucketRange().counts.length * 4;
  const total = histogramsOffset === 0 ? failuresOffset + failuresSize : histogramsOffset + histogramsSize;
  return {
    numDirs, descOffset, dirsOffset, defsOffset, stringsOffset, stringsSize, dataOffset, dataSize,
    textsOffset, textsSize, failuresOffset, failuresSize, histogramsOffset, histogramsSize, total,
  };
}

/** The header, all but the layout id (which hashes what the other writers put down). */
function writeHeader(file: ChunkedFile, snapshot: Snapshot, layout: Layout, defs: Definitions): void {
  // the header is in the first piece (at least HEADER_SIZE bytes)
  const header = file.chunk(0);
  const view = file.view(0);
  const u64 = (at: number, v: number): void => view.setBigUint64(at, BigInt(v), true);
  header.write(BINARY_MAGIC, HEADER_FIELDS.magic, 'latin1');
  view.setUint32(HEADER_FIELDS.version, BINARY_VERSION, true);
  view.setUint32(HEADER_FIELDS.headerSize, HEADER_SIZE, true);
  view.setUint32(HEADER_FIELDS.flags, layout.histogramsOffset === 0 ? 0 : HEADER_FLAG_HISTOGRAMS, true);
  view.setBigUint64(HEADER_FIELDS.takenAtNs, BigInt(snapshot.takenAtMs) * 1_000_000n, true);
  view.setUint32(HEADER_FIELDS.numDesc, snapshot.count, true);
  view.setUint32(HEADER_FIELDS.descSize, DESC_SIZE, true);
  u64(HEADER_FIELDS.descOffset, layout.descOffset);
  view.setUint32(HEADER_FIELDS.numDirs, layout.numDirs, true);
  view.setUint32(HEADER_FIELDS.dirSize, DIR_SIZE, true);
  u64(HEADER_FIELDS.dirsOffset, layout.dirsOffset);
  view.setUint32(HEADER_FIELDS.numDefs, defs.defList.length, true);
  view.setUint32(HEADER_FIELDS.defSize, DEF_SIZE, true);
  u64(HEADER_FIELDS.defsOffset, layout.defsOffset);
  u64(HEADER_FIELDS.stringsOffset, layout.stringsOffset);
  u64(HEADER_FIELDS.stringsSize, layout.stringsSize);
  u64(HEADER_FIELDS.dataOffset, layout.dataOffset);
  u64(HEADER_FIELDS.dataSize, layout.dataSize);
  u64(HEADER_FIELDS.textsOffset, layout.textsOffset);
  u64(HEADER_FIELDS.textsSize, layout.textsSize);
  view.setUint32(HEADER_FIELDS.numTexts, defs.texts.length, true);
  view.setUint32(HEADER_FIELDS.numFailures, defs.failures.length, true);
  u64(HEADER_FIELDS.failuresOffset, layout.failuresOffset);
  u64(HEADER_FIELDS.failuresSize, layout.failuresSize);
  u64(HEADER_FIELDS.histogramsOffset, layout.histogramsOffset);
}

/** Descriptors { u32 flags, u32 offset in the data block, u32 directory, u32 definition } and the data block. */
function* writeDescriptorsAndData(file: ChunkedFile, snapshot: Snapshot, layout: Layout, defs: Definitions): Generator<typeof TURN | void, void> {
  // locals, not property reads, in the loop that runs once per value
  const count = snapshot.count;
  const size = file.chunkSize;
  const { descOffset, dataOffset } = layout;
  const { defNoOfEntry, defFlagList } = defs;
  for (let from = 0; from < count; from += STEP_VALUES) {
    const to = Math.min(count, from + STEP_VALUES);
    // in runs of values whose descriptors share a piece and whose data words share a piece
    for (let i = from; i < to; ) {
      const descK = Math.floor((descOffset + i * DESC_SIZE) / size);
      const dataK = Math.floor((dataOffset + i * 8) / size);
      const desc = file.view(descK);
      const data = file.view(dataK);
      let at = descOffset + i * DESC_SIZE - descK * size;
      let word = dataOffset + i * 8 - dataK * size;
      const end = Math.min(to, i + (size - at) / DESC_SIZE, i + (size - word) / 8);
      for (; i < end; i++, at += DESC_SIZE, word += 8) {
        const no = defNoOfEntry[snapshot.defEntry(i)];
        desc.setUint32(at, snapshot.isAggregate(i) ? (defFlagList[no] | FLAG_AGGREGATE) >>> 0 : defFlagList[no], true);
        desc.setUint32(at + 4, i * 8, true);
        desc.setUint32(at + 8, snapshot.dirNumber(i), true);
        desc.setUint32(at + 12, no, true);
        data.setUint32(word, snapshot.lo(i), true);
        data.setUint32(word + 4, snapshot.hi(i), true);
      }
    }
    yield file.turn();
  }
}

/** The bytes between sections that alignment leaves: zero (the file is allocated without zeroing). */
function zeroPadding(file: ChunkedFile, layout: Layout): void {
  file.zero(layout.stringsOffset + layout.stringsSize, layout.dataOffset);
  file.zero(layout.textsOffset + layout.textsSize, layout.failuresOffset);
  if (layout.histogramsOffset !== 0) file.zero(layout.failuresOffset + layout.failuresSize, layout.histogramsOffset);
}

/**
 * Directories { u32 string offset, u32 length }, definitions { name, type, unit, description as
 * offset/length pairs }, strings, texts { u32 starts[numTexts + 1], bytes }, failures, histograms; the
 * per-directory parts in batches.
 */
function* writeTables(
  file: ChunkedFile, snapshot: Snapshot, layout: Layout, defs: Definitions, tables: StringTables,
  text: { bytes: Buffer; starts: Uint32Array }, failureBytes: Buffer,
): Generator<typeof TURN | void, void> {
  const { dirsOffset, defsOffset, textsOffset, numDirs } = layout;
  const dirStarts = tables.dirStarts;
  for (let from = 0; from < numDirs; from += BATCH) {
    const to = Math.min(numDirs, from + BATCH);
    for (let d = from; d < to; d++) {
      file.u32(dirsOffset + d * DIR_SIZE, dirStarts[d]);
      file.u32(dirsOffset + d * DIR_SIZE + 4, dirStarts[d + 1] - dirStarts[d]);
    }
    yield file.turn();
  }
  tables.defStrings.forEach((nos, d) => {
    nos.forEach((no, k) => {
      const start = stringStart(tables, no);
      file.u32(defsOffset + d * DEF_SIZE + k * 8, start);
      file.u32(defsOffset + d * DEF_SIZE + k * 8 + 4, stringStart(tables, no + 1) - start);
    });
  });
  for (let from = 0; from < tables.dirBytes.length; from += STEP_BYTES) {
    file.write(tables.dirBytes.subarray(from, from + STEP_BYTES), layout.stringsOffset + from);
    yield file.turn();
  }
  file.write(tables.others.bytes, layout.stringsOffset + dirStarts[numDirs]);
  const numTexts = defs.texts.length;
  for (let k = 0; k <= numTexts; k++) file.u32(textsOffset + k * 4, text.starts[k]);
  file.write(text.bytes, textsOffset + (numTexts + 1) * 4);
  file.write(failureBytes, layout.failuresOffset);
  if (layout.histogramsOffset !== 0) writeHistograms(file, layout.histogramsOffset, layout.histogramsSize, defs.histograms, snapshot);
  yield;
}

/** The layout id: SHA-256 of the header's layout fields and the descriptors up to the data block, hashed in steps. */
function* writeLayoutId(file: ChunkedFile, layout: Layout): Generator<void, void> {
  const { descOffset, dataOffset } = layout;
  const hash = createHash('sha256');
  hash.update(file.read(LAYOUT_FIELDS_START, LAYOUT_FIELDS_END));
  for (let at = descOffset; at < dataOffset; ) {
    // a step ends at the end of its piece too, so it is a view, not a copy
    const end = Math.min(dataOffset, at + STEP_BYTES, (Math.floor(at / file.chunkSize) + 1) * file.chunkSize);
    hash.update(file.read(at, end));
    at = end;
    yield;
  }
  file.write(hash.digest().subarray(0, 8), HEADER_FIELDS.layoutId);
}

/** The histograms section (see HISTOGRAM_RECORD_SIZE) at `at`. */
function writeHistograms(file: ChunkedFile, at: number, size: number, values: readonly number[], snapshot: Snapshot): void {
  file.u32(at, values.length);
  file.u32(at + 4, 0);
  file.u64(at + 8, BigInt(size));
  at += HISTOGRAMS_HEADER_SIZE;
  for (const i of values) {
    const h: Histogram = snapshot.histogram(i)!;
    const { offset, counts } = h.bucketRange();
    const empty = h.countLo === 0 && h.countHi === 0;
    file.u32(at, i);
    file.i32(at + 4, h.scale);
    file.i32(at + 8, offset);
    file.u32(at + 12, counts.length / 2);
    file.u32(at + 16, h.countLo);
    file.u32(at + 20, h.countHi);
    file.u64(at + 24, h.zeroCount);
    file.f64(at + 32, h.sum);
    file.f64(at + 40, empty ? 0 : h.min);
    file.f64(at + 48, empty ? 0 : h.max);
    at += HISTOGRAM_RECORD_SIZE;
    // (lo, hi) pairs are a little-endian u64 each
    for (let k = 0; k < counts.length; k++, at += 4) file.u32(at, counts[k]);
  }
}
