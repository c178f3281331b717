import type { ValueDef } from './schema.js';
import type { Source, ValueGroup } from './source.js';
import { formatWord, joinSigned, joinUnsigned, splitBigInt, word } from './word.js';

/**
 * Every visible value of a subtree, aggregates included, captured at one instant.
 *
 * Capture is one synchronous walk, so no producer update can land in the middle of it: a snapshot is
 * atomic across all its values, which one-file-per-value reads are not. It is stored in columns (a word
 * pair, a definition and a directory index per value) so that a million values cost about 20 bytes each
 * and can be formatted afterwards, in slices, without holding up the event loop.
 */
export class Snapshot {
  /** Directory of each captured source, relative to the top ('' for the top itself). */
  readonly dirs: string[] = [];
  /** Values whose getter threw: left out of the snapshot, reported here. */
  readonly failures: { path: string; error: unknown }[] = [];
  readonly takenAtMs = Date.now();
  private capacity = 1024;
  private dirIndex = new Uint32Array(this.capacity);
  private words = new Uint32Array(this.capacity * 2);
  private aggregate = new Uint8Array(this.capacity);
  readonly defs: ValueDef[] = [];
  count = 0;

  /** @internal */
  push(dir: number, def: ValueDef, isAggregate: boolean): void {
    if (this.count === this.capacity) this.grow();
    const i = this.count++;
    this.dirIndex[i] = dir;
    this.words[2 * i] = word.lo;
    this.words[2 * i + 1] = word.hi;
    this.aggregate[i] = isAggregate ? 1 : 0;
    this.defs.push(def);
  }

  private grow(): void {
    this.capacity *= 2;
    const dirIndex = new Uint32Array(this.capacity);
    dirIndex.set(this.dirIndex);
    const words = new Uint32Array(this.capacity * 2);
    words.set(this.words);
    const aggregate = new Uint8Array(this.capacity);
    aggregate.set(this.aggregate);
    this.dirIndex = dirIndex;
    this.words = words;
    this.aggregate = aggregate;
  }

  /** Path of value i relative to the top: "net/eth0/rx_bytes". */
  path(i: number): string {
    const dir = this.dirs[this.dirIndex[i]];
    return dir === '' ? this.defs[i].name : `${dir}/${this.defs[i].name}`;
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
    return this.defs[i].type.signed ? joinSigned(lo, hi) : joinUnsigned(lo, hi);
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
    return formatWord(this.words[2 * i], this.words[2 * i + 1], this.defs[i].type.signed);
  }

  /** What reading the file shows, without the newline: the show() text or the number. */
  text(i: number): string {
    const def = this.defs[i];
    return def.show ? def.show(this.value(i)) : this.number(i);
  }
}

/** Captures every visible value below `top` (which must be attached wherever its values read from). */
export function captureSnapshot(top: Source): Snapshot {
  const snapshot = new Snapshot();
  walk(top, '', snapshot, new Map());
  return snapshot;
}

/** Aggregate groups computed so far in this capture: all of a group's definitions come from one walk. */
type AggregateCache = Map<ValueGroup, bigint[] | Error>;

function walk(source: Source, dir: string, snapshot: Snapshot, aggregates: AggregateCache): void {
  const dirNo = snapshot.dirs.push(dir) - 1;
  source.forEachVisibleValue((group, def) => capture(group, def, dirNo, dir, snapshot, aggregates));
  for (const sub of source.visibleSubordinates()) walk(sub, dir === '' ? sub.name : `${dir}/${sub.name}`, snapshot, aggregates);
}

function capture(group: ValueGroup, def: ValueDef, dirNo: number, dir: string, snapshot: Snapshot, aggregates: AggregateCache): void {
  try {
    if (group.isAggregate) {
      let all = aggregates.get(group);
      if (all === undefined) {
        try {
          all = group.getAll();
        } catch (error) {
          all = error instanceof Error ? error : new Error(String(error));
        }
        aggregates.set(group, all);
      }
      if (all instanceof Error) throw all;
      splitBigInt(all[def.index]);
    } else group.load(def);
  } catch (error) {
    snapshot.failures.push({ path: dir === '' ? def.name : `${dir}/${def.name}`, error });
    return;
  }
  snapshot.push(dirNo, def, group.isAggregate);
}
