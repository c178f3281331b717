import { Accumulator } from './aggregate.js';
import { arena } from './arena.js';
import { StatsError, validateName } from './errors.js';
import { Histogram } from './histogram.js';
import type { SourceExposure } from './exposure.js';
import type { Schema, ValueDef } from './schema.js';
import { narrow } from './types.js';
import { formatWord, joinSigned, joinUnsigned, splitValue, word } from './word.js';

/** Where a group's values live. 'aggregate' groups have no storage: they are computed at read time. */
export type Storage = 'slots' | 'object' | 'aggregate';

/**
 * Hears about changes that a mounted view must reflect (the filesystem adapter drops cached names).
 * Set on a root with Source.observe(); every source below reports to its root's observer.
 */
export interface TreeObserver {
  subordinateAdded?(parent: Source, sub: Source): void;
  subordinateRemoved?(parent: Source, sub: Source): void;
  /**
   * A value group was added to or removed from `source`, or its groups were revoked (group null). Removal
   * and revocation are reported just before the storage is released, while the group is already unlisted.
   */
  valuesChanged?(source: Source, group: ValueGroup | null, change: 'added' | 'removed' | 'revoked'): void;
  /**
   * Resolves once the changes reported so far have reached every viewer (a mount's kernel caches: a removed
   * name is forgotten); null when nothing is pending. Who answers for a change (a producer's OK) waits on it.
   */
  settled?(): Promise<void> | null;
}

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
  /** First storage slot when storage is 'slots'. */
  private slot: number;
  /**
   * The histograms of histogram definitions, by definition index (null elsewhere), whatever the storage:
   * an object base holds numbers, not distributions. Null for aggregates and once released.
   */
  private histograms: (Histogram | null)[] | null;

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

function aggregateOf(source: Source, schema: Schema, def: ValueDef): bigint {
  const acc = new Accumulator(def.type.signed, def.aggr);
  const accs: (Accumulator | null)[] = schema.defs.map((d) => (d === def ? acc : null));
  collect(source, schema, accs);
  return acc.result();
}

/**
 * The one failure rule of aggregation, shared by a read (collect, below) and a capture (snapshot.ts): loads
 * a contributor of `def` into `word`. false: it contributes nothing, because it is a live value whose owner
 * vanished during the read (ENOENT: an interface or CPU that went away before its source was removed). Any
 * other error is thrown and fails the aggregate of that definition only: a read of its file gets EIO; a
 * capture leaves that aggregate out and lists it in the snapshot's failures. README, "Aggregation".
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

// Self first, then subordinates depth-first, hidden ones included; other aggregates are skipped so no
// value is counted twice.
function collect(source: Source, schema: Schema, accs: readonly (Accumulator | null)[]): void {
  source.refresh();
  const groups = source.groupList;
  if (groups !== null) {
    for (let i = 0; i < groups.length; i++) {
      const g = groups[i];
      if (g.schema !== schema || g.isAggregate) continue;
      for (let d = 0; d < accs.length; d++) {
        const acc = accs[d];
        if (acc !== null && loadContributor(g, schema.defs[d])) acc.add(word.lo, word.hi);
      }
    }
  }
  const subs = source.subordinateList;
  if (subs !== null) for (let i = 0; i < subs.length; i++) collect(subs[i], schema, accs);
}

/** Merges every stored histogram of `def` at and below `source` into `into` (the order of collect()). */
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

export interface SourceOptions {
  /** Aggregated by the sources above it but not shown as a directory (the original's STATS_FS_HIDDEN). */
  hidden?: boolean;
  /** Labels and instance label name for exports (src/model/exposure.ts). */
  expose?: SourceExposure;
}

const NONE: readonly Source[] = Object.freeze([]);

/** Only Source.root() passes this: a root's empty name would fail validation. */
const AS_ROOT: SourceOptions = Object.freeze({});

/**
 * A node of the statistics tree: a directory of values and subordinate sources. Kept small, since a host
 * may have a hundred thousand of them: lists are allocated only when used.
 */
export class Source {
  readonly name: string;
  readonly hidden: boolean;
  readonly expose: SourceExposure | null;
  private parentSource: Source | null = null;
  /**
   * Index in the parent's list when added. Removals only move later entries towards the front, so the
   * entry is at or before it: removal searches back from here instead of scanning from the start.
   */
  private position = 0;
  private subs: Source[] | null = null;
  private visibleByName: Map<string, Source> | null = null;
  /** Hidden subordinates by name; several may share one (producers' own). Rare, so made when first needed. */
  private hiddenByName: Map<string, Source[]> | null = null;
  private groups: ValueGroup[] | null = null;
  private observer: TreeObserver | null = null;
  private refresher: ((source: Source) => void) | null = null;

  constructor(name: string, options: SourceOptions = {}) {
    if (options !== AS_ROOT) validateName(name, 'source');
    this.name = name;
    this.hidden = options.hidden ?? false;
    this.expose = options.expose ?? null;
  }

  /** A root: the top of a tree (a mount), whose empty name is not part of any path. */
  static root(): Source {
    return new Source('', AS_ROOT);
  }

  get parent(): Source | null {
    return this.parentSource;
  }

  /** Slash-separated path from the root, for messages and exports. */
  get path(): string {
    const parts: string[] = [];
    for (let s: Source | null = this; s !== null && s.parentSource !== null; s = s.parentSource) parts.push(s.name);
    return parts.reverse().join('/');
  }

  /** @internal the live list, for traversals that must not allocate */
  get subordinateList(): readonly Source[] | null {
    return this.subs;
  }

  /** @internal the live list, for traversals that must not allocate */
  get groupList(): readonly ValueGroup[] | null {
    return this.groups;
  }

  /**
   * Sources that mirror something outside (interfaces, CPUs, cgroups) follow it without a poller: the
   * refresher runs before this source's subordinates are listed, looked up, aggregated or cleared, and
   * adds or removes them. It should throttle itself; what it throws reaches the reader (EIO).
   */
  setRefresher(refresher: ((source: Source) => void) | null): void {
    this.refresher = refresher;
  }

  /** Whether a refresher is set (see setRefresher). @internal */
  get refreshes(): boolean {
    return this.refresher !== null;
  }

  /** Brings the subordinates up to date (see setRefresher). */
  refresh(): void {
    if (this.refresher !== null) this.refresher(this);
  }

  get subordinates(): readonly Source[] {
    return this.subs ?? [];
  }

  get valueGroups(): readonly ValueGroup[] {
    return this.groups ?? [];
  }

  /** The visible subordinate with this name. */
  subordinate(name: string): Source | undefined {
    this.refresh();
    return this.visibleByName?.get(name);
  }

  /** The hidden subordinates with this name (several owners may each have one), without a refresh. */
  hiddenSubordinates(name: string): readonly Source[] {
    return this.hiddenByName?.get(name) ?? NONE;
  }

  observe(observer: TreeObserver | null): void {
    this.observer = observer;
  }

  /** See TreeObserver.settled: null when the tree's observer has nothing pending (or there is none). */
  changesSettled(): Promise<void> | null {
    return this.treeObserver()?.settled?.() ?? null;
  }

  private treeObserver(): TreeObserver | null {
    let s: Source = this;
    while (s.parentSource !== null) s = s.parentSource;
    return s.observer;
  }

  addSubordinate(sub: Source): void {
    if (sub.parentSource !== null) {
      throw new StatsError('EEXIST', `source "${sub.name}" is already a subordinate of "${sub.parentSource.path || '/'}"`);
    }
    for (let s: Source | null = this; s !== null; s = s.parentSource) {
      if (s === sub) throw new StatsError('EINVAL', `adding "${sub.name}" under "${this.path}" would make a cycle`);
    }
    if (!sub.hidden) {
      if (this.visibleByName?.has(sub.name)) throw new StatsError('EEXIST', `"${this.path ? this.path + '/' : ''}${sub.name}" exists`);
      (this.visibleByName ??= new Map()).set(sub.name, sub);
    } else {
      const hidden = (this.hiddenByName ??= new Map());
      const same = hidden.get(sub.name);
      if (same === undefined) hidden.set(sub.name, [sub]);
      else same.push(sub);
    }
    sub.position = (this.subs ??= []).push(sub) - 1;
    sub.parentSource = this;
    this.treeObserver()?.subordinateAdded?.(this, sub);
  }

  removeSubordinate(sub: Source): void {
    const subs = this.subs;
    let i = sub.parentSource === this && subs !== null ? Math.min(sub.position, subs.length - 1) : -1;
    while (i >= 0 && subs![i] !== sub) i--;
    if (i < 0) throw new StatsError('ENOENT', `"${sub.name}" is not a subordinate of "${this.path || '/'}"`);
    const observer = this.treeObserver();
    subs!.splice(i, 1);
    if (this.visibleByName?.get(sub.name) === sub) this.visibleByName.delete(sub.name);
    else if (sub.hidden) {
      const same = this.hiddenByName!.get(sub.name)!;
      if (same.length === 1) this.hiddenByName!.delete(sub.name);
      else same.splice(same.indexOf(sub), 1);
    }
    sub.parentSource = null;
    observer?.subordinateRemoved?.(this, sub);
  }

  /** Simple values: storage of our own, or the fields of `options.base`. EEXIST for the same schema and base. */
  addValues(schema: Schema, options: AddValuesOptions = {}): ValueGroup {
    const base = options.base ?? null;
    return this.addGroup(schema, base === null ? 'slots' : 'object', base, options.hidden ?? false);
  }

  /** Aggregates over every simple value of the same schema in this source and all below. */
  addAggregates(schema: Schema, options: { hidden?: boolean } = {}): ValueGroup {
    return this.addGroup(schema, 'aggregate', null, options.hidden ?? false);
  }

  private addGroup(schema: Schema, storage: Storage, base: object | null, hidden: boolean): ValueGroup {
    if (this.groups?.some((g) => g.sameAs(schema, base, storage))) {
      throw new StatsError('EEXIST', `this schema is already added to "${this.path || '/'}" with the same ${storage === 'aggregate' ? 'aggregates' : 'storage'}`);
    }
    const group = new ValueGroup(this, schema, storage, base as Record<string, unknown> | null, hidden);
    (this.groups ??= []).push(group);
    this.treeObserver()?.valuesChanged?.(this, group, 'added');
    return group;
  }

  removeValues(group: ValueGroup): void {
    const i = this.groups?.indexOf(group) ?? -1;
    if (i < 0) throw new StatsError('ENOENT', `that value group is not in "${this.path || '/'}"`);
    this.groups!.splice(i, 1);
    // observers first: a view that reads storage from another thread stops before the slots are reused
    this.treeObserver()?.valuesChanged?.(this, group, 'removed');
    group.releaseStorage();
  }

  /**
   * The value named `name`: the most recently added group that has it wins, as in the original, whose
   * list_add put new groups first. With visibleOnly, hidden groups are passed over.
   */
  findValue(name: string, visibleOnly = false): { group: ValueGroup; def: ValueDef } | undefined {
    const groups = this.groups;
    if (groups === null) return undefined;
    for (let i = groups.length - 1; i >= 0; i--) {
      const g = groups[i];
      if (visibleOnly && g.hidden) continue;
      const def = g.schema.find(name);
      if (def) return { group: g, def };
    }
    return undefined;
  }

  /** The value (computing it if it is an aggregate); ENOENT when no group has that name. */
  getValue(name: string): bigint {
    const found = this.findValue(name);
    if (!found) throw new StatsError('ENOENT', `no value "${name}" in "${this.path || '/'}"`);
    return found.group.get(found.def.index);
  }

  clear(name: string): void {
    const found = this.findValue(name);
    if (!found) throw new StatsError('ENOENT', `no value "${name}" in "${this.path || '/'}"`);
    found.group.clear(found.def.index);
  }

  /** True when a visible subordinate hides a value of the same name. @internal */
  get shadowsValues(): boolean {
    const byName = this.visibleByName;
    if (byName === null || byName.size === 0 || this.groups === null) return false;
    for (const group of this.groups) for (const def of group.schema.defs) if (byName.has(def.name)) return true;
    return false;
  }

  /** The visible values in display order, one per name. */
  visibleValues(): { group: ValueGroup; def: ValueDef }[] {
    const out: { group: ValueGroup; def: ValueDef }[] = [];
    this.forEachVisibleValue((group, def) => out.push({ group, def }));
    return out;
  }

  /**
   * Calls fn for each visible value in display order, one per name: the newest group wins a name, and a
   * visible subordinate shadows a value of the same name. Allocation-free in the common case (one group,
   * no subordinates), which is what snapshots of large trees walk.
   */
  forEachVisibleValue(fn: (group: ValueGroup, def: ValueDef) => void): void {
    const groups = this.groups;
    if (groups === null) return;
    const shadowing = this.visibleByName !== null && this.visibleByName.size > 0 ? this.visibleByName : null;
    if (groups.length === 1 && shadowing === null && !groups[0].schema.hasDuplicateNames) {
      const group = groups[0];
      if (!group.hidden) for (const def of group.schema.defs) fn(group, def);
      return;
    }
    const seen = new Set<string>();
    for (let i = groups.length - 1; i >= 0; i--) {
      const group = groups[i];
      if (group.hidden) continue;
      for (const def of group.schema.defs) {
        if (seen.has(def.name) || shadowing?.has(def.name)) continue;
        seen.add(def.name);
        fn(group, def);
      }
    }
  }

  /** The visible subordinates, in the order they were added. */
  visibleSubordinates(): Source[] {
    this.refresh();
    return this.subs ? this.subs.filter((s) => !s.hidden) : [];
  }

  /**
   * The owner of the values is going away: stop reading its storage. As in the original, the groups then
   * behave as aggregates over what is below (usually nothing: 0, or the min/max sentinels).
   */
  revoke(): void {
    // observers first, as in removeValues
    this.treeObserver()?.valuesChanged?.(this, null, 'revoked');
    if (this.groups) for (const g of this.groups) g.revoke();
  }
}
