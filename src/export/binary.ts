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
import { BATCH, encodeStrings, errorMessage, measureDirs, runSliced, runSync, writeDirs, type DirForm, type SliceOptions } from './common.js';

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
/** Bytes hashed between two yields. */
const STEP_HASH_BYTES = 1 << 20;
/** Directory paths as the strings section holds them: `a/b`, unescaped. */
const DIR_PATHS: DirForm = { trailingSlash: false, escape: null };

/** The whole file in one go. */
export function renderBinary(snapshot: Snapshot): Buffer {
  return runSync(binaryWork(snapshot));
}

/** The same bytes, rendered in slices of at most maxSliceMs (default 10) with the event loop running between. */
export function renderBinaryAsync(snapshot: Snapshot, options: SliceOptions = {}): Promise<Buffer> {
  return runSliced(binaryWork(snapshot), options);
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
export function* binaryWork(snapshot: Snapshot): Generator<void, Buffer> {
  const defs = yield* collectDefinitions(snapshot);
  const tables = yield* measureTables(snapshot, defs.defList);
  const text = yield* encodeStrings(defs.texts);
  const failureBytes = Buffer.from(JSON.stringify(defs.failures), 'utf8');
  yield;
  const layout = computeLayout(snapshot, defs, tables.size, text.bytes.length, failureBytes.length);
  // Not zeroed (zeroing 257 MB for ten million values would be one long step): every byte is written
  // below, each section by its writer and the alignment padding by zeroPadding, before the file leaves.
  const file = Buffer.allocUnsafeSlow(layout.total);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  zeroPadding(file, layout);
  writeHeader(file, view, snapshot, layout, defs);
  yield* writeDescriptorsAndData(view, snapshot, layout, defs);
  yield* writeTables(file, view, snapshot, layout, defs, tables, text, failureBytes);
  yield* writeLayoutId(file, layout);
  return file;
}

/** What one pass over the values finds: the definitions, each value's definition, show() texts, histograms. */
interface Definitions {
  /** Each distinct ValueDef once, in order of first use, and its descriptor flags. */
  defList: ValueDef[];
  defFlagList: number[];
  /** Value i's position in defList. */
  defNo: Uint32Array;
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
  const defNo = new Uint32Array(count);
  const texts: string[] = [];
  const histograms: number[] = [];
  const failures = snapshot.failures.map(({ path, error }) => ({ path, error: errorMessage(error) }));
  // neighbours mostly share a definition: remembering the last one skips most map lookups
  let lastDef: ValueDef | null = null;
  let lastNo = 0;
  for (let from = 0; from < count; from += STEP_VALUES) {
    const to = Math.min(count, from + STEP_VALUES);
    for (let i = from; i < to; i++) {
      const def = snapshot.def(i);
      if (def !== lastDef) {
        let no = defIndex.get(def);
        if (no === undefined) {
          no = defList.push(def) - 1;
          defIndex.set(def, no);
          defFlagList.push(defFlags(def));
        }
        lastDef = def;
        lastNo = no;
      }
      defNo[i] = lastNo;
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
  return { defList, defFlagList, defNo, texts, histograms, failures };
}

/**
 * The strings section: every directory's path (string d is directory d), then each distinct name, type
 * name, unit and description once; and each definition's four string numbers (name, type, unit, description).
 */
interface StringTables {
  /** Where each directory's path starts in the section (dirStarts[d + 1] is its end). */
  dirStarts: Uint32Array;
  /** The other strings, after the directories. */
  others: { bytes: Buffer; starts: Uint32Array };
  defStrings: number[][];
  /** The section's size in bytes. */
  size: number;
}

/** Measures the directories' paths (in batches) and encodes the few other strings. */
function* measureTables(snapshot: Snapshot, defList: readonly ValueDef[]): Generator<void, StringTables> {
  const dirStarts = yield* measureDirs(snapshot, DIR_PATHS);
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
  return { dirStarts, others, defStrings, size: dirStarts[numDirs] + others.bytes.length };
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
function writeHeader(file: Buffer, view: DataView, snapshot: Snapshot, layout: Layout, defs: Definitions): void {
  const u64 = (at: number, v: number): void => view.setBigUint64(at, BigInt(v), true);
  file.write(BINARY_MAGIC, HEADER_FIELDS.magic, 'latin1');
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
function* writeDescriptorsAndData(view: DataView, snapshot: Snapshot, layout: Layout, defs: Definitions): Generator<void, void> {
  // locals, not property reads, in the loop that runs once per value
  const count = snapshot.count;
  const { descOffset, dataOffset } = layout;
  const { defNo, defFlagList } = defs;
  for (let from = 0; from < count; from += STEP_VALUES) {
    const to = Math.min(count, from + STEP_VALUES);
    for (let i = from; i < to; i++) {
      const at = descOffset + i * DESC_SIZE;
      const no = defNo[i];
      view.setUint32(at, snapshot.isAggregate(i) ? (defFlagList[no] | FLAG_AGGREGATE) >>> 0 : defFlagList[no], true);
      view.setUint32(at + 4, i * 8, true);
      view.setUint32(at + 8, snapshot.dirNumber(i), true);
      view.setUint32(at + 12, no, true);
      const data = dataOffset + i * 8;
      view.setUint32(data, snapshot.lo(i), true);
      view.setUint32(data + 4, snapshot.hi(i), true);
    }
    yield;
  }
}

/** The bytes between sections that alignment leaves: zero (the file is allocated without zeroing). */
function zeroPadding(file: Buffer, layout: Layout): void {
  file.fill(0, layout.stringsOffset + layout.stringsSize, layout.dataOffset);
  file.fill(0, layout.textsOffset + layout.textsSize, layout.failuresOffset);
  if (layout.histogramsOffset !== 0) file.fill(0, layout.failuresOffset + layout.failuresSize, layout.histogramsOffset);
}

/**
 * Directories { u32 string offset, u32 length }, definitions { name, type, unit, description as
 * offset/length pairs }, strings, texts { u32 starts[numTexts + 1], bytes }, failures, histograms; the
 * per-directory parts in batches.
 */
function* writeTables(
  file: Buffer, view: DataView, snapshot: Snapshot, layout: Layout, defs: Definitions, tables: StringTables,
  text: { bytes: Buffer; starts: Uint32Array }, failureBytes: Buffer,
): Generator<void, void> {
  const { dirsOffset, defsOffset, textsOffset, numDirs } = layout;
  const dirStarts = tables.dirStarts;
  for (let from = 0; from < numDirs; from += BATCH) {
    const to = Math.min(numDirs, from + BATCH);
    for (let d = from; d < to; d++) {
      view.setUint32(dirsOffset + d * DIR_SIZE, dirStarts[d], true);
      view.setUint32(dirsOffset + d * DIR_SIZE + 4, dirStarts[d + 1] - dirStarts[d], true);
    }
    yield;
  }
  tables.defStrings.forEach((nos, d) => {
    nos.forEach((no, k) => {
      const start = stringStart(tables, no);
      view.setUint32(defsOffset + d * DEF_SIZE + k * 8, start, true);
      view.setUint32(defsOffset + d * DEF_SIZE + k * 8 + 4, stringStart(tables, no + 1) - start, true);
    });
  });
  yield* writeDirs(snapshot, DIR_PATHS, dirStarts, file, layout.stringsOffset);
  tables.others.bytes.copy(file, layout.stringsOffset + dirStarts[numDirs]);
  const numTexts = defs.texts.length;
  for (let k = 0; k <= numTexts; k++) view.setUint32(textsOffset + k * 4, text.starts[k], true);
  text.bytes.copy(file, textsOffset + (numTexts + 1) * 4);
  failureBytes.copy(file, layout.failuresOffset);
  if (layout.histogramsOffset !== 0) writeHistograms(view, layout.histogramsOffset, layout.histogramsSize, defs.histograms, snapshot);
  yield;
}

/** The layout id: SHA-256 of the header's layout fields and the descriptors up to the data block, hashed in steps. */
function* writeLayoutId(file: Buffer, layout: Layout): Generator<void, void> {
  const { descOffset, dataOffset } = layout;
  const hash = createHash('sha256');
  hash.update(file.subarray(LAYOUT_FIELDS_START, LAYOUT_FIELDS_END));
  for (let at = descOffset; at < dataOffset; at += STEP_HASH_BYTES) {
    hash.update(file.subarray(at, Math.min(dataOffset, at + STEP_HASH_BYTES)));
    yield;
  }
  hash.digest().copy(file, HEADER_FIELDS.layoutId, 0, 8);
}

/** The histograms section (see HISTOGRAM_RECORD_SIZE) at `at`. */
function writeHistograms(view: DataView, at: number, size: number, values: readonly number[], snapshot: Snapshot): void {
  view.setUint32(at, values.length, true);
  view.setUint32(at + 4, 0, true);
  view.setBigUint64(at + 8, BigInt(size), true);
  at += HISTOGRAMS_HEADER_SIZE;
  for (const i of values) {
    const h: Histogram = snapshot.histogram(i)!;
    const { offset, counts } = h.bucketRange();
    const empty = h.countLo === 0 && h.countHi === 0;
    view.setUint32(at, i, true);
    view.setInt32(at + 4, h.scale, true);
    view.setInt32(at + 8, offset, true);
    view.setUint32(at + 12, counts.length / 2, true);
    view.setUint32(at + 16, h.countLo, true);
    view.setUint32(at + 20, h.countHi, true);
    view.setBigUint64(at + 24, h.zeroCount, true);
    view.setFloat64(at + 32, h.sum, true);
    view.setFloat64(at + 40, empty ? 0 : h.min, true);
    view.setFloat64(at + 48, empty ? 0 : h.max, true);
    at += HISTOGRAM_RECORD_SIZE;
    // (lo, hi) pairs are a little-endian u64 each
    for (let k = 0; k < counts.length; k++, at += 4) view.setUint32(at, counts[k], true);
  }
}
