import { Accumulator } from './aggregate.js';
import { arena } from './arena.js';
import type { Schema, ValueDef } from './schema.js';
import { loadContributor, type Source, type ValueGroup } from './source.js';
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
    let to = 0;
    for (let from = 0; from < this.count; from++) {
      if (gone.has(from)) continue;
      this.dirIndex[to] = this.dirIndex[from];
      this.words[2 * to] = this.words[2 * from];
      this.words[2 * to + 1] = this.words[2 * from + 1];
      this.aggregate[to] = this.aggregate[from];
      this.defs[to] = this.defs[from];
      to++;
    }
    this.count = to;
    this.defs.length = to;
    return this;
  }

  /** Appends every value of a slot group whose run starts at `slot`, by copying the run. @internal */
  pushRun(dir: number, defs: readonly ValueDef[], slot: number): void {
    const n = defs.length;
    while (this.count + n > this.capacity) this.grow();
    // plain loops: runs are short, and a subarray view per run would cost more than the copy
    const u32 = arena.u32;
    const words = this.words;
    const defsOut = this.defs;
    for (let d = 0, at = this.count, from = slot * 2; d < n; d++, at++, from += 2) {
      words[2 * at] = u32[from];
      words[2 * at + 1] = u32[from + 1];
      this.dirIndex[at] = dir;
      this.aggregate[at] = 0;
      defsOut.push(defs[d]);
    }
    this.count += n;
  }

  private grow(): void {
    this.capacity *= 4; // fewer copies of large captures: growth is most of their garbage
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

/**
 * An aggregate group being computed during a capture: one accumulator per definition, fed by every simple
 * value of its schema met below its source, and the snapshot positions waiting for the results.
 */
interface OpenAggregate {
  group: ValueGroup;
  accs: Accumulator[];
  /** Snapshot index of each definition's placeholder, or -1 when not shown. */
  slots: Int32Array;
  failure: unknown;
}

/**
 * Captures every visible value below `top` in one walk: aggregates are not computed one subtree walk each
 * but fed on the way down, each simple value going to every open aggregate of its schema above it (hidden
 * sources are walked only while some aggregate above them is open).
 */
export function captureSnapshot(top: Source): Snapshot {
  const snapshot = new Snapshot();
  const open = new Map<Schema, OpenAggregate[]>();
  visit(top, '', true, snapshot, open);
  return snapshot.compact();
}

function visit(source: Source, dir: string, visible: boolean, snapshot: Snapshot, open: Map<Schema, OpenAggregate[]>): void {
  source.refresh();
  const groups = source.groupList;
  const opened: OpenAggregate[] = [];
  if (visible) {
    const dirNo = snapshot.dirs.push(dir) - 1;
    if (groups !== null) {
      for (const group of groups) {
        if (!group.isAggregate || group.hidden) continue;
        const defs = group.schema.defs;
        const agg: OpenAggregate = { group, accs: defs.map((d) => new Accumulator(d.type.signed, d.aggr)), slots: new Int32Array(defs.length).fill(-1), failure: undefined };
        opened.push(agg);
        const list = open.get(group.schema);
        if (list) list.push(agg);
        else open.set(group.schema, [agg]);
      }
    }
    const only = groups !== null && groups.length === 1 ? groups[0] : null;
    if (only !== null && !only.hidden && only.slotRun >= 0 && !only.schema.hasDuplicateNames && !source.shadowsValues) {
      snapshot.pushRun(dirNo, only.schema.defs, only.slotRun);
    } else source.forEachVisibleValue((group, def) => {
      if (group.isAggregate) {
        opened.find((agg) => agg.group === group)!.slots[def.index] = snapshot.count;
        word.lo = 0;
        word.hi = 0;
        snapshot.push(dirNo, def, true); // filled in once the subtree has been walked
        return;
      }
      try {
        group.load(def);
        snapshot.push(dirNo, def, false);
      } catch (error) {
        snapshot.failures.push({ path: dir === '' ? def.name : `${dir}/${def.name}`, error });
      }
    });
  }
  if (groups !== null && open.size > 0) contribute(groups, open);
  const subs = source.subordinateList;
  if (subs !== null) {
    for (const sub of subs) {
      const subVisible = visible && !sub.hidden;
      if (subVisible) visit(sub, dir === '' ? sub.name : `${dir}/${sub.name}`, true, snapshot, open);
      else if (open.size > 0) visit(sub, '', false, snapshot, open);
    }
  }
  for (const agg of opened) close(agg, dir, snapshot, open);
}

function contribute(groups: readonly ValueGroup[], open: Map<Schema, OpenAggregate[]>): void {
  for (const group of groups) {
    if (group.isAggregate) continue;
    const aggs = open.get(group.schema);
    if (aggs === undefined) continue;
    const slot = group.slotRun;
    if (slot >= 0) {
      // straight from the arena: nothing here can throw or be absent
      const u32 = arena.u32;
      for (let d = 0, at = slot * 2; d < group.schema.defs.length; d++, at += 2) {
        for (const agg of aggs) agg.accs[d].add(u32[at], u32[at + 1]);
      }
      continue;
    }
    for (const def of group.schema.defs) {
      let present: boolean;
      try {
        present = loadContributor(group, def);
      } catch (error) {
        for (const agg of aggs) agg.failure ??= error;
        continue;
      }
      if (!present) continue;
      for (const agg of aggs) agg.accs[def.index].add(word.lo, word.hi);
    }
  }
}

function close(agg: OpenAggregate, dir: string, snapshot: Snapshot, open: Map<Schema, OpenAggregate[]>): void {
  const list = open.get(agg.group.schema)!;
  list.splice(list.indexOf(agg), 1);
  if (list.length === 0) open.delete(agg.group.schema);
  agg.slots.forEach((at, d) => {
    if (at < 0) return;
    const name = agg.group.schema.defs[d].name;
    if (agg.failure !== undefined) {
      snapshot.failures.push({ path: dir === '' ? name : `${dir}/${name}`, error: agg.failure });
      snapshot.drop(at);
      return;
    }
    splitBigInt(agg.accs[d].result());
    snapshot.setWord(at);
  });
}
