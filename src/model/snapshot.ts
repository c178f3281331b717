/** Snapshots: a subtree's visible values captured at one instant (Snapshot); capture.ts takes them. */
import { arena } from './arena.js';
import { Histogram } from './histogram.js';
import type { SourceExposure } from './exposure.js';
import type { ValueDef } from './schema.js';
import { formatWord, joinSigned, joinUnsigned, word } from './word.js';

/**
 * A file's contents written straight into its reader's memory: `size` bytes, which fill() hands to `put`
 * piece by piece (in any order, each piece valid only during the call); put returns false when the reader
 * is gone, and fill() then stops. A render that keeps no copy of the whole file (.snapshot.bin).
 */
export interface SnapshotStream {
  readonly size: number;
  fill(put: (at: number, bytes: Buffer) => boolean): Promise<void>;
}

/** Renders a snapshot as a file's contents (the snapshot files every directory shows: src/export/snapshot-files.ts). */
export type SnapshotRenderer = (snapshot: Snapshot) => SnapshotContent | Promise<SnapshotContent>;
/** One Buffer or string, chunks in order (large renders are not joined), or a stream. */
export type SnapshotContent = Buffer | string | readonly Buffer[] | SnapshotStream;

/** The typed arrays a snapshot keeps its values in: 17 bytes per value. */
export interface SnapshotColumns {
  dirIndex: Uint32Array;
  words: Uint32Array;
  defIndex: Uint32Array;
  aggregate: Uint8Array;
}

/**
 * Allocates the columns for `capacity` values (at least 16), yielding between the four allocations: a
 * caller may give the event loop a turn there (captureSnapshotSliced does for large ones, then adopts them).
 */
export function* snapshotColumns(capacity: number): Generator<void, SnapshotColumns> {
  const n = Math.max(16, capacity);
  const dirIndex = new Uint32Array(n);
  yield;
  const words = new Uint32Array(n * 2);
  yield;
  const defIndex = new Uint32Array(n);
  yield;
  return { dirIndex, words, defIndex, aggregate: new Uint8Array(n) };
}

/** snapshotColumns() driven straight through. */
function allocated(allocating: Generator<void, SnapshotColumns>): SnapshotColumns {
  for (;;) {
    const step = allocating.next();
    if (step.done === true) return step.value;
  }
}

/**
 * Every visible value of a subtree, aggregates included, captured at one instant.
 *
 * Capture is one synchronous walk, so no producer update can land in the middle of it: a snapshot is
 * atomic across all its values, which one-file-per-value reads are not. The walk holds the event loop, so
 * it stores as little as it can: per value a word pair, a definition number and a directory number in
 * typed arrays (about 17 bytes, no object per value for the collector to trace), per directory its parent
 * and name. Paths are joined later, when the snapshot is formatted in slices.
 */
export class Snapshot {
  /** Values whose getter threw: left out of the snapshot, reported here. */
  readonly failures: { path: string; error: unknown }[] = [];
  readonly takenAtMs = Date.now();
  count = 0;
  private capacity: number;
  private dirIndex: Uint32Array;
  private words: Uint32Array;
  private defIndex: Uint32Array;
  private aggregate: Uint8Array;
  /** Each distinct definition once; values refer to it by number. */
  private readonly defTable: ValueDef[] = [];
  /** Number of a schema's first definition in defTable (its others follow). */
  private readonly defBase = new Map<readonly ValueDef[], number>();
  private nDirs = 0;
  private dirParent = new Int32Array(256);
  private readonly dirNames: string[] = [];
  private readonly dirExpose: (SourceExposure | null)[] = [];
  private dirPaths: string[] | null = null;
  /** The distribution of each histogram value, by value number (its word is the count). */
  private histograms: Map<number, Histogram> | null = null;

  constructor(expected = 1024) {
    ({ dirIndex: this.dirIndex, words: this.words, defIndex: this.defIndex, aggregate: this.aggregate } = allocated(snapshotColumns(expected)));
    this.capacity = this.dirIndex.length;
  }

  /** Directory of each captured source, relative to the top ('' for the top itself); joined on first use. */
  get dirs(): readonly string[] {
    if (this.dirPaths === null) {
      const paths = new Array<string>(this.nDirs);
      for (let n = 0; n < this.nDirs; n++) {
        const parent = this.dirParent[n];
        const parentPath = parent < 0 ? '' : paths[parent]; // a parent is always numbered before its children
        paths[n] = parent < 0 ? this.dirNames[n] : parentPath === '' ? this.dirNames[n] : `${parentPath}/${this.dirNames[n]}`;
      }
      this.dirPaths = paths;
    }
    return this.dirPaths;
  }

  /** Number of captured directories; the top is 0 and a parent is numbered before its subordinates. */
  get dirCount(): number {
    return this.nDirs;
  }

  /** Parent number of directory n (-1 for the top). */
  dirParentOf(n: number): number {
    return this.dirParent[n];
  }

  /** Name of directory n ('' for the top). */
  dirNameOf(n: number): string {
    return this.dirNames[n];
  }

  /** What the source of directory n declared for exports, or null. */
  dirExposeOf(n: number): SourceExposure | null {
    return this.dirExpose[n];
  }

  /** Numbers a captured directory: `name` below directory `parent` (-1 and '' for the top). @internal */
  addDir(parent: number, name: string, expose: SourceExposure | null = null): number {
    if (this.nDirs === this.dirParent.length) {
      const grown = new Int32Array(this.nDirs * 4);
      grown.set(this.dirParent);
      this.dirParent = grown;
    }
    this.dirParent[this.nDirs] = parent;
    this.dirNames.push(name);
    this.dirExpose.push(expose);
    this.dirPaths = null;
    return this.nDirs++;
  }

  /** Path of directory n, joined without materialising every directory (failures, single lookups). @internal */
  dirPath(n: number): string {
    if (this.dirPaths !== null) return this.dirPaths[n];
    const parts: string[] = [];
    for (let at = n; at >= 0 && this.dirParent[at] >= 0; at = this.dirParent[at]) parts.push(this.dirNames[at]);
    return parts.reverse().join('/');
  }

  private defNumber(defs: readonly ValueDef[]): number {
    let base = this.defBase.get(defs);
    if (base === undefined) {
      base = this.defTable.length;
      this.defTable.push(...defs);
      this.defBase.set(defs, base);
    }
    return base;
  }

  /** Appends one value whose word is in `word`. @internal */
  push(dir: number, defs: readonly ValueDef[], d: number, isAggregate: boolean): void {
    if (this.count === this.capacity) this.grow(this.count + 1);
    const i = this.count++;
    this.dirIndex[i] = dir;
    this.words[2 * i] = word.lo;
    this.words[2 * i + 1] = word.hi;
    this.defIndex[i] = this.defNumber(defs) + d;
    this.aggregate[i] = isAggregate ? 1 : 0;
  }

  /** Appends every value of a slot group whose run starts at `slot`, by copying the run. @internal */
  pushRun(dir: number, defs: readonly ValueDef[], slot: number): void {
    const n = defs.length;
    if (this.count + n > this.capacity) this.grow(this.count + n);
    const base = this.defNumber(defs);
    // plain loops: runs are short, and a subarray view per run would cost more than the copy
    const u32 = arena.u32;
    const words = this.words;
    for (let d = 0, at = this.count, from = slot * 2; d < n; d++, at++, from += 2) {
      words[2 * at] = u32[from];
      words[2 * at + 1] = u32[from + 1];
      this.dirIndex[at] = dir;
      this.defIndex[at] = base + d;
      this.aggregate[at] = 0;
    }
    this.count += n;
  }

  /** Attaches the distribution of histogram value i (a copy nothing else changes). @internal */
  setHistogram(i: number, histogram: Histogram): void {
    (this.histograms ??= new Map()).set(i, histogram);
  }

  /** The distribution of value i when it is a histogram (read only), else null. */
  histogram(i: number): Histogram | null {
    return this.histograms?.get(i) ?? null;
  }

  /** Overwrites value i with `word` (aggregates are filled in after their subtree). @internal */
  setWord(i: number): void {
    this.words[2 * i] = word.lo;
    this.words[2 * i + 1] = word.hi;
  }

  private dropped: number[] | null = null;

  /** Marks value i for removal by compact() (an aggregate whose contributors failed). @internal */
  drop(i: number): void {
    (this.dropped ??= []).push(i);
  }

  /** Removes dropped values, keeping the order of the rest. @internal */
  compact(): this {
    if (this.dropped === null) return this;
    const gone = new Set(this.dropped);
    this.dropped = null;
    const histograms = this.histograms;
    this.histograms = null;
    let to = 0;
    for (let from = 0; from < this.count; from++) {
      if (gone.has(from)) continue;
      const h = histograms?.get(from);
      if (h !== undefined) this.setHistogram(to, h);
      this.dirIndex[to] = this.dirIndex[from];
      this.words[2 * to] = this.words[2 * from];
      this.words[2 * to + 1] = this.words[2 * from + 1];
      this.defIndex[to] = this.defIndex[from];
      this.aggregate[to] = this.aggregate[from];
      to++;
    }
    this.count = to;
    return this;
  }

  private grow(needed: number): void {
    // fewer copies of large captures: growth is most of their garbage
    this.adopt(allocated(snapshotColumns(Math.max(needed, this.capacity * 4))));
  }

  /** Moves the values captured so far into larger columns (from snapshotColumns). @internal */
  adopt(columns: SnapshotColumns): void {
    if (columns.dirIndex.length <= this.capacity) return;
    const n = this.count;
    columns.dirIndex.set(this.dirIndex.subarray(0, n));
    columns.words.set(this.words.subarray(0, 2 * n));
    columns.defIndex.set(this.defIndex.subarray(0, n));
    columns.aggregate.set(this.aggregate.subarray(0, n));
    ({ dirIndex: this.dirIndex, words: this.words, defIndex: this.defIndex, aggregate: this.aggregate } = columns);
    this.capacity = columns.dirIndex.length;
  }

  /** The definition of value i. */
  def(i: number): ValueDef {
    return this.defTable[this.defIndex[i]];
  }

  /**
   * Value i's entry in the snapshot's table of definitions (the same number for every value of one
   * definition in one schema), so a format can number definitions without a column of its own.
   */
  defEntry(i: number): number {
    return this.defIndex[i];
  }

  /** Path of value i relative to the top: "net/eth0/rx_bytes". */
  path(i: number): string {
    const dir = this.dir(i);
    return dir === '' ? this.def(i).name : `${dir}/${this.def(i).name}`;
  }

  dir(i: number): string {
    return this.dirs[this.dirIndex[i]];
  }

  /** Index in `dirs` of value i's directory, for formats that store each directory once. */
  dirNumber(i: number): number {
    return this.dirIndex[i];
  }

  isAggregate(i: number): boolean {
    return this.aggregate[i] === 1;
  }

  /** The value as its type reads it (signed types negative). */
  value(i: number): bigint {
    const lo = this.words[2 * i];
    const hi = this.words[2 * i + 1];
    return this.def(i).type.signed ? joinSigned(lo, hi) : joinUnsigned(lo, hi);
  }

  /** The value's low and high 32 bits, for binary formats. */
  lo(i: number): number {
    return this.words[2 * i];
  }

  hi(i: number): number {
    return this.words[2 * i + 1];
  }

  /** The number as text ("%llu"/"%lld"), without show(). */
  number(i: number): string {
    return formatWord(this.words[2 * i], this.words[2 * i + 1], this.def(i).type.signed);
  }

  /** What reading the file shows, without the newline: the show() text or the number. */
  text(i: number): string {
    const def = this.def(i);
    return def.show ? def.show(this.value(i)) : this.number(i);
  }
}
