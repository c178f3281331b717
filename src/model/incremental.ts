/**
 * Aggregation that costs what changed (the idea of the kernel's rstat): a source with subordinates keeps
 * the partial result of its subtree per aggregated definition, made on the first read of an aggregate
 * above it; a store into slot storage notes the group once until the next read (its words before the
 * change); a read first applies the noted changes to the partial results above each noted group, then
 * recomputes only what is not kept: subtrees changed in shape, min/max whose extreme may have left, and
 * subtrees that cannot be kept because something there is read at read time (getters, object bases,
 * refreshers). The full walk stays as walkAggregate(): the reference the tests and benchmarks compare with.
 */
import { Accumulator } from './aggregate.js';
import { arena } from './arena.js';
import { StatsError } from './errors.js';
import type { Schema, ValueDef } from './schema.js';
import type { Source } from './source.js';
import type { ValueGroup } from './value-group.js';
import { word } from './word.js';

/** The partial results kept at one source for one schema, by definition index (null: not kept). */
export interface KeptPartials {
  readonly schema: Schema;
  readonly epoch: number;
  readonly partials: (Accumulator | null)[];
  next: KeptPartials | null;
}

/** How many groups, and how many of their words, are noted at most before the notes are applied. */
const NOTES_MAX = 4096;
const NOTE_WORDS_MAX = 1 << 18;

/**
 * The groups stored into since the last read of an aggregate, with their words from before the first of
 * those stores. A group is noted once however often it is stored into, so the cost of a batch of updates
 * is one compare per value and one copy of the group's run per group.
 */
class ChangeLog {
  /** Whether stores are noted: from the first incremental read of an aggregate on. */
  active = false;
  /** Bumped to forget every kept result at once (the mode changed). */
  epoch = 0;
  incremental = process.env.STATSFS_AGGREGATION !== 'walk';
  private groups: ValueGroup[] = [];
  private old = new Uint32Array(1024);
  private used = 0;

  get pending(): number {
    return this.groups.length;
  }

  /** Notes `group` (slot storage at `slot`, not noted yet) before its first store; returns where its words went. */
  note(group: ValueGroup, slot: number, size: number): number {
    const words = size * 2;
    // stores outside a write (a library's own set()) are applied a bounded batch at a time, while still in
    // the CPU's caches; a group noted earlier and changed again after this starts over with a new note
    if (this.groups.length >= NOTES_MAX || (this.used > 0 && this.used + words > NOTE_WORDS_MAX)) this.flush();
    const at = this.used;
    if (at + words > this.old.length) {
      let length = this.old.length * 2;
      while (at + words > length) length *= 2;
      const grown = new Uint32Array(length);
      grown.set(this.old.subarray(0, at));
      this.old = grown;
    }
    const old = this.old;
    const u32 = arena.u32;
    for (let i = 0, from = slot * 2; i < words; i++) old[at + i] = u32[from + i];
    this.used = at + words;
    this.groups.push(group);
    return at;
  }

  /** Applies every noted change to the partial results kept above it, and forgets the notes. */
  flush(): void {
    const groups = this.groups;
    const old = this.old;
    const u32 = arena.u32;
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      const at = g.takeNote();
      const slot = g.slotRun;
      if (slot < 0) continue; // removed or revoked since: the shape changed, and with it what is kept above
      const schema = g.schema;
      const size = schema.size;
      for (let s: Source | null = g.source; s !== null; s = s.parent) {
        const kept = keptAt(s, schema);
        if (kept === null) continue;
        const partials = kept.partials;
        for (let d = 0; d < size; d++) {
          const p = partials[d];
          const o = at + d * 2;
          const n = (slot + d) * 2;
          if (p !== null && !p.replace(old[o], old[o + 1], u32[n], u32[n + 1])) partials[d] = null;
        }
      }
    }
    groups.length = 0;
    this.used = 0;
  }
}

/** @internal the one change log: stores anywhere note themselves here (ValueGroup's single store path). */
export const changes = new ChangeLog();

/**
 * Chooses the reference walk (false: no notes, nothing kept, every read walks its subtree, as before
 * incremental aggregation) or incremental aggregation (true, the default). For benchmarks and tests;
 * STATSFS_AGGREGATION=walk in the environment starts a process with the walk. @internal
 */
export function setIncrementalAggregation(on: boolean): void {
  if (changes.pending > 0) changes.flush();
  changes.incremental = on;
  changes.active = false;
  changes.epoch++;
}

function keptAt(source: Source, schema: Schema): KeptPartials | null {
  for (let k = source.keptPartials; k !== null; k = k.next) if (k.schema === schema) return k.epoch === changes.epoch ? k : null;
  return null;
}

/**
 * What is kept at `source` and above no longer holds: a subordinate or a group came or went, or a refresher
 * was set. Called by Source on every change of shape.
 */
export function forgetAbove(source: Source): void {
  for (let s: Source | null = source; s !== null; s = s.parent) s.keptPartials = null;
}

/**
 * The one failure rule of aggregation, shared by a read and a capture (capture.ts): loads a contributor of
 * `def` into `word`. false: it contributes nothing, because it is a live value whose owner vanished during
 * the read (ENOENT: an interface or CPU that went away before its source was removed). Any other error is
 * thrown and fails the aggregate of that definition only: a read of its file gets EIO; a capture leaves
 * that aggregate out and lists it in the snapshot's failures. README, "Aggregation".
 */
export function loadContributor(group: ValueGroup, def: ValueDef): boolean {
  if (def.type.custom === null) {
    group.load(def);
    return true;
  }
  try {
    group.load(def);
    return true;
  } catch (err) {
    if (err instanceof StatsError && err.code === 'ENOENT') return false;
    throw err;
  }
}

/** The aggregate of `def` over `source` and everything below it: incremental, or the walk when so chosen. */
export function aggregateOf(source: Source, schema: Schema, def: ValueDef): bigint {
  if (!changes.incremental) return walkAggregate(source, schema, def);
  changes.active = true;
  if (changes.pending > 0) changes.flush();
  const subs = source.subordinateList;
  if (subs === null || subs.length === 0) {
    const acc = new Accumulator(def.type.signed, def.aggr);
    gather(source, schema, def, acc);
    return acc.result();
  }
  return partial(source, schema, def).result();
}

/** The reference: every contributor read now, self first, then subordinates depth-first. */
export function walkAggregate(source: Source, schema: Schema, def: ValueDef): bigint {
  const acc = new Accumulator(def.type.signed, def.aggr);
  walk(source, schema, def, acc);
  return acc.result();
}

function walk(source: Source, schema: Schema, def: ValueDef, into: Accumulator): void {
  source.refresh();
  addOwn(source, schema, def, into);
  const subs = source.subordinateList;
  if (subs !== null) for (let i = 0; i < subs.length; i++) walk(subs[i], schema, def, into);
}

/**
 * Adds the contributors of `source`'s own groups (hidden ones included; aggregates are skipped so that no
 * value is counted twice); returns whether all of them can be kept (slot storage, no getter).
 */
function addOwn(source: Source, schema: Schema, def: ValueDef, into: Accumulator): boolean {
  const groups = source.groupList;
  let keepable = true;
  if (groups !== null) {
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      if (g.schema !== schema || g.isAggregate) continue;
      if (g.slotRun < 0) keepable = false;
      if (loadContributor(g, def)) into.add(word.lo, word.hi);
    }
  }
  return keepable;
}

/** Set by partial(): whether the result it returned could be kept (read it right after the call). */
let lastKeepable = false;

/** The partial result of `source`'s subtree (a source with subordinates): the kept one, or computed and kept when it can be. */
function partial(source: Source, schema: Schema, def: ValueDef): Accumulator {
  const kept = keptAt(source, schema)?.partials[def.index];
  if (kept != null) {
    lastKeepable = true;
    return kept;
  }
  const acc = new Accumulator(def.type.signed, def.aggr);
  const keepable = gather(source, schema, def, acc);
  if (keepable) {
    let k = keptAt(source, schema);
    if (k === null) {
      const rest = source.keptPartials;
      k = { schema, epoch: changes.epoch, partials: new Array<Accumulator | null>(schema.size).fill(null), next: rest !== null && rest.epoch === changes.epoch ? rest : null };
      source.keptPartials = k;
    }
    k.partials[def.index] = acc;
  }
  lastKeepable = keepable;
  return acc;
}

/** Adds `source`'s subtree to `into` from what is kept below it; returns whether the result can be kept. */
function gather(source: Source, schema: Schema, def: ValueDef, into: Accumulator): boolean {
  source.refresh();
  // a refresher may have stored values: apply them now, so that what is kept below never misses a change
  if (changes.pending > 0) changes.flush();
  let keepable = addOwn(source, schema, def, into) && !source.refreshes;
  const subs = source.subordinateList;
  if (subs === null) return keepable;
  for (let i = 0; i < subs.length; i++) {
    const sub = subs[i];
    const below = sub.subordinateList;
    if (below !== null && below.length > 0) {
      into.merge(partial(sub, schema, def));
      keepable = lastKeepable && keepable;
    } else keepable = gather(sub, schema, def, into) && keepable;
  }
  return keepable;
}

/**
 * The kept results of every definition of `group`'s schema at its source, when all of them are kept
 * (a capture takes them instead of walking for them), else null. @internal
 */
export function keptResults(group: ValueGroup): bigint[] | null {
  if (!changes.incremental || group.schema.hasHistograms) return null;
  if (changes.pending > 0) changes.flush();
  const kept = keptAt(group.source, group.schema);
  if (kept === null) return null;
  const out: bigint[] = [];
  for (const p of kept.partials) {
    if (p === null) return null;
    out.push(p.result());
  }
  return out;
}
