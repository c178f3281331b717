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
import type { Snapshot, SnapshotStream } from '../model/snapshot.js';
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
 * The file is written front to back in pieces of this many bytes, each handed to its reader (see
 * SnapshotStream: the binding copies it into the open file's memory) as soon as it is finished and then
 * reused, so a render keeps three pieces or so outside V8's heap, not the whole file: V8 answers a few
 * hundred MB allocated outside its heap within a second by marking the whole heap, in one pause of
 * 100-250 ms for the 300 MB heap of a ten-million-value tree (measured in-process). The first piece, with
 * the header, goes last: the header's layout id hashes what follows it.
 */
export const BINARY_CHUNK_SIZE = 8 << 20;

export interface BinaryOptions extends SliceOptions {
  /** Bytes per piece, a multiple of 16 and at least the header's 160 (default BINARY_CHUNK_SIZE). */
  chunkSize?: number;
}

/** The whole file in one go, in one Buffer. */
export function renderBinary(snapshot: Snapshot, options: BinaryOptions = {}): Buffer {
  const prepared = runSync(prepareBinary(snapshot));
  const file = Buffer.allocUnsafe(prepared.layout.total);
  runSync(writeBinary(prepared, options.chunkSize ?? BINARY_CHUNK_SIZE, (at, bytes) => (bytes.copy(file, at), true)));
  return file;
}

/**
 * The same bytes as a SnapshotStream (a snapshot file's contents): measured, then written piece by piece
 * into the reader's memory, in slices of at most maxSliceMs (default 10) with the event loop running between.
 */
export async function renderBinaryStream(snapshot: Snapshot, options: BinaryOptions = {}): Promise<SnapshotStream> {
  const prepared = await runSliced(prepareBinary(snapshot), options);
  return {
    size: prepared.layout.total,
    fill: async (put) => {
      try {
        await runSliced(writeBinary(prepared, options.chunkSize ?? BINARY_CHUNK_SIZE, put), options);
      } catch (error) {
        if (!(error instanceof Abandoned)) throw error;
      }
    },
  };
}

/** Thrown out of the writer when the reader wants no more pieces (put returned false). */
class Abandoned extends Error {}

/**
 * The file's bytes in pieces of `chunkSize`, written in order: each piece is allocated (not zeroed) or
 * reused when the writing reaches it, and handed out once the writing is past it (release), its part of
 * the layout id's range hashed first. Every field the format has is at most 8 bytes and aligned to its
 * size, and a piece is a multiple of 16 bytes, so a field never straddles two pieces; byte runs may.
 */
class PieceWriter {
  private readonly chunks: Buffer[] = [];
  private readonly views: DataView[] = [];
  /** Full-size pieces handed out, for reuse. */
  private readonly spare: Buffer[] = [];
  /** Pieces below this number are finished (all but the first handed out). */
  private finished = 0;
  /** Pieces allocated since the last turn(). */
  private fresh = 0;
  /** The layout id's hash: the header's layout fields, then [layout.descOffset, layout.dataOffset). */
  private readonly hash = createHash('sha256');
  private hashedTo: number;
  private readonly count: number;

  constructor(readonly layout: Layout, readonly chunkSize: number, private readonly put: (at: number, bytes: Buffer) => boolean) {
    if (chunkSize % 16 !== 0 || chunkSize < HEADER_SIZE) throw new RangeError(`chunk size ${chunkSize}: not a multiple of 16 of at least ${HEADER_SIZE}`);
    this.hashedTo = layout.descOffset;
    this.count = Math.ceil(layout.total / chunkSize);
  }

  /** Piece k, allocated (or reused) on first use. */
  chunk(k: number): Buffer {
    let chunk = this.chunks[k];
    if (chunk === undefined) {
      if (k < this.finished) throw new Error(`piece ${k} of .snapshot.bin written after it was handed out`);
      const length = Math.min(this.chunkSize, this.layout.total - k * this.chunkSize);
      // not zeroed (zeroing 257 MB for ten million values would be one long step): every byte is
      // written before the piece leaves, each section by its writer and the alignment padding by zero()
      const spare = length === this.chunkSize ? this.spare.pop() : undefined;
      if (spare === undefined) this.fresh++;
      chunk = spare ?? Buffer.allocUnsafeSlow(length);
      this.chunks[k] = chunk;
      this.views[k] = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    }
    return chunk;
  }

  /** The view of piece k, allocated on first use. */
  view(k: number): DataView {
    return this.views[k] ?? (this.chunk(k), this.views[k]);
  }

  /** What a writer yields: TURN when a piece was allocated since the last yield (see TURN), else nothing. */
  turn(): typeof TURN | void {
    if (this.fresh === 0) return undefined;
    this.fresh = 0;
    return TURN;
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

  /** Calls `each(piece, offset in the piece, length, offset in [from, to))` for the parts of [from, to) in each piece. */
  private span(from: number, to: number, each: (chunk: Buffer, at: number, length: number, done: number) => void): void {
    for (let at = from; at < to; ) {
      const k = Math.floor(at / this.chunkSize);
      const off = at - k * this.chunkSize;
      const n = Math.min(to - at, this.chunkSize - off);
      each(this.chunk(k), off, n, at - from);
      at += n;
    }
  }

  /** Copies `bytes` to `at`. */
  write(bytes: Uint8Array, at: number): void {
    this.span(at, at + bytes.length, (chunk, off, n, done) => chunk.set(bytes.subarray(done, done + n), off));
  }

  zero(from: number, to: number): void {
    this.span(from, to, (chunk, off, n) => chunk.fill(0, off, off + n));
  }

  /** Once the header is written: its layout fields open the layout id's hash. */
  hashHeader(): void {
    this.hash.update(this.chunk(0).subarray(LAYOUT_FIELDS_START, LAYOUT_FIELDS_END));
  }

  /** Hands out the pieces that end at or before `upTo` (all of them from the file's end), hashing them first. */
  *release(upTo: number): Generator<void, void> {
    const upToPiece = upTo >= this.layout.total ? this.count : Math.floor(upTo / this.chunkSize);
    for (; this.finished < upToPiece; this.finished++) {
      const k = this.finished;
      const chunk = this.chunk(k);
      const start = k * this.chunkSize;
      const end = Math.min(start + chunk.length, this.layout.dataOffset);
      for (; this.hashedTo < end; this.hashedTo = Math.min(end, this.hashedTo + STEP_BYTES)) {
        this.hash.update(chunk.subarray(this.hashedTo - start, Math.min(end, this.hashedTo + STEP_BYTES) - start));
        yield;
      }
      if (k === 0) continue; // the header's piece goes last, with the layout id
      if (!this.put(start, chunk)) throw new Abandoned();
      delete this.chunks[k];
      delete this.views[k];
      if (chunk.length === this.chunkSize) this.spare.push(chunk);
    }
  }

  /** After release(total): the layout id into the header, and the header's piece out. */
  finish(): void {
    const header = this.chunk(0);
    this.hash.digest().copy(header, HEADER_FIELDS.layoutId, 0, 8);
    if (!this.put(0, header)) throw new Abandoned();
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

/** What the file holds, measured and encoded, before a byte of it is written. */
interface Prepared {
  snapshot: Snapshot;
  defs: Definitions;
  tables: StringTables;
  text: { bytes: Buffer; starts: Uint32Array };
  failureBytes: Buffer;
  layout: Layout;
}

/**
 * The file's contents and layout, yielding every few thousand values (or directories) so that a driver
 * can pause it; writeBinary then puts the bytes down.
 */
export function* prepareBinary(snapshot: Snapshot): Generator<void, Prepared> {
  const defs = yield* collectDefinitions(snapshot);
  const tables = yield* encodeTables(snapshot, defs.defList);
  const text = yield* encodeStrings(defs.texts);
  const failureBytes = Buffer.from(JSON.stringify(defs.failures), 'utf8');
  yield;
  const layout = computeLayout(snapshot, defs, tables.size, text.bytes.length, failureBytes.length);
  return { snapshot, defs, tables, text, failureBytes, layout };
}

/**
 * Writes the file front to back in pieces of `chunkSize`, handing each to `put` once finished (the first,
 * with the header, last); yields every few thousand values, directories or hashed megabytes, and TURN
 * after allocating a piece. `put` has the piece only during the call; false: stop (Abandoned).
 */
export function* writeBinary(prepared: Prepared, chunkSize: number, put: (at: number, bytes: Buffer) => boolean): Generator<typeof TURN | void, void> {
  const { snapshot, defs, layout } = prepared;
  const file = new PieceWriter(layout, chunkSize, put);
  writeHeader(file, snapshot, layout, defs);
  file.hashHeader();
  yield* writeDescriptors(file, snapshot, layout, defs);
  yield* writeTables(file, prepared);
  yield* writeData(file, snapshot, layout);
  writeTail(file, prepared);
  yield* file.release(layout.total);
  file.finish();
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
function writeHeader(file: PieceWriter, snapshot: Snapshot, layout: Layout, defs: Definitions): void {
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

/** Descriptors { u32 flags, u32 offset in the data block, u32 directory, u32 definition }, in order. */
function* writeDescriptors(file: PieceWriter, snapshot: Snapshot, layout: Layout, defs: Definitions): Generator<typeof TURN | void, void> {
  // locals, not property reads, in the loop that runs once per value
  const count = snapshot.count;
  const size = file.chunkSize;
  const descOffset = layout.descOffset;
  const { defNoOfEntry, defFlagList } = defs;
  for (let from = 0; from < count; from += STEP_VALUES) {
    const to = Math.min(count, from + STEP_VALUES);
    // in runs of values whose descriptors share a piece (a piece holds whole descriptors)
    for (let i = from; i < to; ) {
      const k = Math.floor((descOffset + i * DESC_SIZE) / size);
      const desc = file.view(k);
      let at = descOffset + i * DESC_SIZE - k * size;
      const end = Math.min(to, i + (size - at) / DESC_SIZE);
      for (; i < end; i++, at += DESC_SIZE) {
        const no = defNoOfEntry[snapshot.defEntry(i)];
        desc.setUint32(at, snapshot.isAggregate(i) ? (defFlagList[no] | FLAG_AGGREGATE) >>> 0 : defFlagList[no], true);
        desc.setUint32(at + 4, i * 8, true);
        desc.setUint32(at + 8, snapshot.dirNumber(i), true);
        desc.setUint32(at + 12, no, true);
      }
    }
    yield* file.release(descOffset + to * DESC_SIZE);
    yield file.turn();
  }
}

/** The data block: each value's word, in order. */
function* writeData(file: PieceWriter, snapshot: Snapshot, layout: Layout): Generator<typeof TURN | void, void> {
  const count = snapshot.count;
  const size = file.chunkSize;
  const dataOffset = layout.dataOffset;
  for (let from = 0; from < count; from += STEP_VALUES) {
    const to = Math.min(count, from + STEP_VALUES);
    for (let i = from; i < to; ) {
      const k = Math.floor((dataOffset + i * 8) / size);
      const data = file.view(k);
      let at = dataOffset + i * 8 - k * size;
      const end = Math.min(to, i + (size - at) / 8);
      for (; i < end; i++, at += 8) {
        data.setUint32(at, snapshot.lo(i), true);
        data.setUint32(at + 4, snapshot.hi(i), true);
      }
    }
    yield* file.release(dataOffset + to * 8);
    yield file.turn();
  }
}

/**
 * Directories { u32 string offset, u32 length }, definitions { name, type, unit, description as
 * offset/length pairs }, strings, and the padding up to the data block; the per-directory parts in batches.
 */
function* writeTables(file: PieceWriter, prepared: Prepared): Generator<typeof TURN | void, void> {
  const { layout, tables } = prepared;
  const { dirsOffset, defsOffset, stringsOffset, numDirs } = layout;
  const dirStarts = tables.dirStarts;
  for (let from = 0; from < numDirs; from += BATCH) {
    const to = Math.min(numDirs, from + BATCH);
    for (let d = from; d < to; d++) {
      file.u32(dirsOffset + d * DIR_SIZE, dirStarts[d]);
      file.u32(dirsOffset + d * DIR_SIZE + 4, dirStarts[d + 1] - dirStarts[d]);
    }
    yield* file.release(dirsOffset + to * DIR_SIZE);
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
    file.write(tables.dirBytes.subarray(from, from + STEP_BYTES), stringsOffset + from);
    yield* file.release(stringsOffset + from);
    yield file.turn();
  }
  file.write(tables.others.bytes, stringsOffset + dirStarts[numDirs]);
  // the alignment padding: zero (pieces are allocated without zeroing)
  file.zero(stringsOffset + layout.stringsSize, layout.dataOffset);
}

/** Texts { u32 starts[numTexts + 1], bytes }, failures, histograms, and the padding between them. */
function writeTail(file: PieceWriter, prepared: Prepared): void {
  const { layout, text, defs } = prepared;
  const numTexts = defs.texts.length;
  for (let k = 0; k <= numTexts; k++) file.u32(layout.textsOffset + k * 4, text.starts[k]);
  file.write(text.bytes, layout.textsOffset + (numTexts + 1) * 4);
  file.zero(layout.textsOffset + layout.textsSize, layout.failuresOffset);
  file.write(prepared.failureBytes, layout.failuresOffset);
  if (layout.histogramsOffset === 0) return;
  file.zero(layout.failuresOffset + layout.failuresSize, layout.histogramsOffset);
  writeHistograms(file, layout.histogramsOffset, layout.histogramsSize, defs.histograms, prepared.snapshot);
}

/** The histograms section (see HISTOGRAM_RECORD_SIZE) at `at`. */
function writeHistograms(file: PieceWriter, at: number, size: number, values: readonly number[], snapshot: Snapshot): void {
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
