/**
 * A value group (one schema added to one source); aggregates are computed by incremental.ts.
 * Source (source.ts) creates the groups; this module needs it only as a type, so the two form no cycle at run time.
 */
import { arena } from './arena.js';
import { StatsError } from './errors.js';
import { Histogram } from './histogram.js';
import { aggregateOf, changes } from './incremental.js';
import type { Schema, ValueDef } from './schema.js';
import type { Source } from './source.js';
import { narrow } from './types.js';
import { formatWord, joinSigned, joinUnsigned, splitValue, word } from './word.js';

/** Where a group's values live. 'aggregate' groups have no storage: they are computed at read time. */
export type Storage = 'slots' | 'object' | 'aggregate';

export interface AddValuesOptions {
  /** Object whose fields hold the values (the original's base pointer); default: compact storage of our own. */
  base?: object;
  /** Aggregated from above but not shown (the original's STATS_FS_HIDDEN on a group). */
  hidden?: boolean;
}

type Key = number | string;

/**
 * One schema added to one source: simple values with storage, or aggregates without (the original's
 * stats_fs_value_source). Reads and writes go by definition index or name.
 */
export class ValueGroup {
  /** Clears asked of any group since the start (a state keeper checkpoints when this moves). */
  static clears = 0;
  /** Called at each clear (a state keeper journals it). */
  static onClear: (() => void) | null = null;
  /** First storage slot when storage is 'slots'. */
  private slot: number;
  /**
   * The histograms of histogram definitions, by definition index (null elsewhere), whatever the storage:
   * an object base holds numbers, not distributions. Null for aggregates and once released.
   */
  private histograms: (Histogram | null)[] | null;
  /** Where the change log keeps this group's words from before its first store since the last read; -1: not noted. */
  private noted = -1;

  constructor(
    readonly source: Source,
    readonly schema: Schema,
    private storageKind: Storage,
    private base: Record<string, unknown> | null,
    readonly hidden: boolean,
  ) {
    this.slot = storageKind === 'slots' ? arena.alloc(schema.size) : -1;
    this.histograms = storageKind !== 'aggregate' && schema.hasHistograms ? schema.defs.map((d) => (d.histogram ? new Histogram() : null)) : null;
  }

  /**
   * First arena slot of this group's words, when every value of it lives there (slot storage, no custom
   * types), else -1: bulk readers (snapshots) copy the run instead of loading value by value. @internal
   */
  get slotRun(): number {
    return this.storageKind === 'slots' && !this.schema.hasCustomTypes && !this.schema.hasHistograms ? this.slot : -1;
  }

  /**
   * The arena slot holding `def`'s word when a reader may format it as "%llu"/"%lld" straight from the
   * arena (slot storage, no custom type, no show()), else -1. @internal
   */
  storedSlot(def: ValueDef): number {
    return this.storageKind === 'slots' && this.slot >= 0 && def.type.custom === null && def.show === null && !def.histogram ? this.slot + def.index : -1;
  }

  /** The object base the values are read from (a LiveValues, a producer's object), or null. @internal */
  get objectBase(): object | null {
    return this.base;
  }

  get storage(): Storage {
    return this.storageKind;
  }

  get isAggregate(): boolean {
    return this.storageKind === 'aggregate';
  }

  def(key: Key): ValueDef {
    const def = typeof key === 'number' ? this.schema.defs[key] : this.schema.find(key);
    if (!def) throw new StatsError('ENOENT', `no value ${JSON.stringify(key)} in this schema`);
    return def;
  }

  /**
   * The value as its type reads it (signed types as negative bigints); aggregates are computed now. A
   * histogram reads as its observation count (see histogram()).
   */
  get(key: Key): bigint {
    const def = this.def(key);
    if (def.histogram) return this.histogram(def.index).count;
    if (this.storageKind === 'aggregate') return aggregateOf(this.source, this.schema, def);
    this.load(def);
    return def.type.signed ? joinSigned(word.lo, word.hi) : joinUnsigned(word.lo, word.hi);
  }

  /** The text a reader sees: the show() text or "%llu"/"%lld", with a newline. */
  render(key: Key): string {
    const def = this.def(key);
    if (this.storageKind === 'aggregate' || def.show || def.histogram) {
      const v = this.get(def.index);
      return (def.show ? def.show(v) : v.toString()) + '\n';
    }
    this.load(def);
    return formatWord(word.lo, word.hi, def.type.signed) + '\n';
  }

  set(key: Key, value: number | bigint | boolean): void {
    const def = this.writable(key);
    splitValue(value);
    this.storeWord(def, word.lo, word.hi);
  }

  /**
   * set() of a 64-bit word given as its (lo, hi) halves, as the producer protocol carries it: no number or
   * bigint on the way. @internal
   */
  setWord(index: number, lo: number, hi: number): void {
    this.storeWord(this.writable(index), lo, hi);
  }

  /** add() of a 64-bit word given as its (lo, hi) halves (a negative delta is its two's complement). @internal */
  addWord(index: number, lo: number, hi: number): void {
    this.addToWord(this.writable(index), lo, hi);
  }

  /**
   * Records `value` `count` times in a histogram value (EINVAL for other values, for a negative or
   * non-finite value or count; EPERM on an aggregate).
   */
  observe(key: Key, value: number, count: number | bigint = 1): void {
    const def = this.def(key);
    if (!def.histogram) throw new StatsError('EINVAL', `${this.source.path}/${def.name} is not a histogram: set() or add() it`);
    if (this.storageKind === 'aggregate') throw new StatsError('EPERM', `${this.source.path}/${def.name} is an aggregate`);
    this.ownHistogram(def).observe(value, count);
  }

  /**
   * The distribution of a histogram value: the stored one (read it, do not change it: observe() does), or
   * for an aggregate, a new merge of every subordinate's (hidden ones included, other aggregates not).
   */
  histogram(key: Key): Histogram {
    const def = this.def(key);
    if (!def.histogram) throw new StatsError('EINVAL', `${this.source.path}/${def.name} is not a histogram`);
    if (this.storageKind !== 'aggregate') return this.ownHistogram(def);
    const merged = new Histogram();
    if (def.aggr === 'sum') mergeBelow(this.source, this.schema, def, merged);
    return merged;
  }

  /** The stored histogram of `def` (a histogram definition of this group with storage). @internal */
  ownHistogram(def: ValueDef): Histogram {
    const h = this.histograms?.[def.index];
    if (h == null) throw new StatsError('ENOENT', `${this.source.path}/${def.name} was removed`);
    return h;
  }

  /** Adds with the wrap-around of the C type; a negative delta subtracts. */
  add(key: Key, delta: number | bigint): void {
    const def = this.writable(key);
    splitValue(delta);
    this.addToWord(def, word.lo, word.hi);
  }

  /** Stores (lo, hi) narrowed to the type, as storing into the C type would. */
  private storeWord(def: ValueDef, lo: number, hi: number): void {
    word.lo = lo;
    word.hi = hi;
    narrow(def.type);
    this.store(def);
  }

  /** Adds (lo, hi) to the stored word with the 64-bit wrap-around, then narrows to the type. */
  private addToWord(def: ValueDef, lo: number, hi: number): void {
    this.load(def);
    const sumLo = word.lo + lo;
    word.lo = sumLo >>> 0;
    word.hi = (word.hi + hi + (sumLo >= 0x100000000 ? 1 : 0)) >>> 0;
    narrow(def.type);
    this.store(def);
  }

  /**
   * Clears the value; for an aggregate, every simple value of the same definition below it, hidden ones
   * included, as the original did. Floating values and custom values without clear() are EPERM.
   */
  clear(key: Key): void {
    const def = this.def(key);
    if (!def.clearable) throw new StatsError('EPERM', `${this.source.path}/${def.name} cannot be cleared`);
    // a refused clear changes nothing: no checkpoint nor journal record for it
    ValueGroup.clears++;
    ValueGroup.onClear?.();
    if (this.storageKind === 'aggregate') clearBelow(this.source, this.schema, def);
    else this.clearOwn(def);
  }

  /** @internal used by clearBelow */
  clearOwn(def: ValueDef): void {
    const custom = def.type.custom;
    if (def.histogram) this.histograms?.[def.index]?.clear();
    else if (custom) custom.clear!(this.base, def.name);
    else {
      word.lo = 0;
      word.hi = 0;
      this.store(def);
    }
  }

  /** Loads the stored word of a simple value into `word`. @internal */
  load(def: ValueDef): void {
    const custom = def.type.custom;
    if (def.histogram) {
      const h = this.histograms?.[def.index];
      word.lo = h == null ? 0 : h.countLo;
      word.hi = h == null ? 0 : h.countHi;
    } else if (custom) {
      splitValue(custom.get(this.base, def.name));
    } else if (this.storageKind === 'slots') {
      if (this.slot < 0) {
        // removed: the run now belongs to another group, so a stale handle reads 0 as revoked values do
        word.lo = 0;
        word.hi = 0;
        return;
      }
      const at = (this.slot + def.index) * 2;
      const u32 = arena.u32;
      word.lo = u32[at];
      word.hi = u32[at + 1];
    } else {
      const v = this.base![def.field];
      if (typeof v === 'number' || typeof v === 'bigint' || typeof v === 'boolean') splitValue(v);
      else {
        word.lo = 0;
        word.hi = 0;
      }
      narrow(def.type);
    }
  }

  private writable(key: Key): ValueDef {
    const def = this.def(key);
    if (this.storageKind === 'aggregate') throw new StatsError('EPERM', `${this.source.path}/${def.name} is an aggregate`);
    if (def.type.custom) throw new StatsError('EPERM', `${this.source.path}/${def.name} has a custom type: it is read through its get()`);
    if (def.histogram) throw new StatsError('EINVAL', `${this.source.path}/${def.name} is a histogram: observe() it`);
    return def;
  }

  private store(def: ValueDef): void {
    if (this.storageKind === 'slots') {
      if (this.slot < 0) throw new StatsError('ENOENT', `${this.source.path}/${def.name} was removed`);
      // every store of a word passes here, so no change can escape the aggregates that keep results
      if (this.noted < 0 && changes.active) this.noted = changes.note(this, this.slot, this.schema.size);
      arena.store(this.slot + def.index, word.lo, word.hi);
      return;
    }
    // An object base keeps the JS type its owner chose; numbers only while exact.
    const base = this.base!;
    const old = base[def.field];
    const value = def.type.signed ? joinSigned(word.lo, word.hi) : joinUnsigned(word.lo, word.hi);
    if (typeof old === 'bigint') base[def.field] = value;
    else if (typeof old === 'boolean') base[def.field] = value !== 0n;
    else if (value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)) base[def.field] = Number(value);
    else base[def.field] = value;
  }

  /** Drops storage: the group then reads as an aggregate, as the original's revoke left it. @internal */
  revoke(): void {
    this.releaseStorage();
    this.storageKind = 'aggregate';
    this.base = null;
  }

  /** Where the change log keeps this group's words from before its changes, and forgets it. @internal */
  takeNote(): number {
    const at = this.noted;
    this.noted = -1;
    return at;
  }

  /** @internal */
  releaseStorage(): void {
    if (this.slot >= 0) arena.release(this.slot, this.schema.size);
    this.slot = -1;
    this.histograms = null;
  }

  /** @internal identity of the storage for the EEXIST check: same schema and same base */
  sameAs(schema: Schema, base: object | null, storage: Storage): boolean {
    if (this.schema !== schema) return false;
    if (storage === 'object') return this.base === base;
    return this.storageKind === storage;
  }
}

/** Merges every stored histogram of `def` at and below `source` into `into` (self first, then subordinates depth-first). */
function mergeBelow(source: Source, schema: Schema, def: ValueDef, into: Histogram): void {
  source.refresh();
  const groups = source.groupList;
  if (groups !== null) {
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      if (g.schema === schema && !g.isAggregate) into.merge(g.ownHistogram(def));
    }
  }
  const subs = source.subordinateList;
  if (subs !== null) for (let i = 0; i < subs.length; i++) mergeBelow(subs[i], schema, def, into);
}

function clearBelow(source: Source, schema: Schema, def: ValueDef): void {
  source.refresh();
  const groups = source.groupList;
  if (groups !== null) for (const g of groups) if (g.schema === schema && !g.isAggregate) g.clearOwn(def);
  const subs = source.subordinateList;
  if (subs !== null) for (const sub of subs) clearBelow(sub, schema, def);
}
