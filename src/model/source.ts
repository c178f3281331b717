/** A node of the statistics tree (Source) and who hears about its changes (TreeObserver); its value groups are value-group.ts. */
import { StatsError, validateName } from './errors.js';
import type { SourceExposure } from './exposure.js';
import { forgetAbove, type KeptPartials } from './incremental.js';
import type { Schema, ValueDef } from './schema.js';
import { ValueGroup, type AddValuesOptions, type Storage } from './value-group.js';

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
  /**
   * Whether readers of a viewer wait for the event loop (a mount's requests queued for this thread): a writer
   * that applies a backlog in slices (the producer socket) yields the loop between slices while they do.
   */
  readersWaiting?(): boolean;
}



export interface SourceOptions {
  /** Aggregated by the sources above it but not shown as a directory (the original's STATS_FS_HIDDEN). */
  hidden?: boolean;
  /** Labels and instance label name for exports (src/model/exposure.ts). */
  expose?: SourceExposure;
}

const NONE: readonly Source[] = Object.freeze([]);

/** What few sources have, kept apart so that the many leaves do not pay a field for each. */
interface Rare {
  expose: SourceExposure | null;
  /** Hidden subordinates by name; several may share one (producers' own). */
  hiddenByName: Map<string, Source[]> | null;
  observer: TreeObserver | null;
  refresher: ((source: Source) => void) | null;
}

/** Only Source.root() passes this: a root's empty name would fail validation. */
const AS_ROOT: SourceOptions = Object.freeze({});

/**
 * A node of the statistics tree: a directory of values and subordinate sources. Kept small, since a host
 * may have a hundred thousand of them: lists are allocated only when used.
 */
export class Source {
  readonly name: string;
  readonly hidden: boolean;
  private parentSource: Source | null = null;
  /**
   * Index in the parent's list when added. Removals only move later entries towards the front, so the
   * entry is at or before it: removal searches back from here instead of scanning from the start.
   */
  private position = 0;
  private subs: Source[] | null = null;
  private visibleByName: Map<string, Source> | null = null;
  private groups: ValueGroup[] | null = null;
  private rare: Rare | null = null;
  /** Partial aggregation results of this subtree (incremental.ts); null until an aggregate above is read. @internal */
  keptPartials: KeptPartials | null = null;

  constructor(name: string, options: SourceOptions = {}) {
    if (options !== AS_ROOT) validateName(name, 'source');
    this.name = name;
    this.hidden = options.hidden ?? false;
    if (options.expose !== undefined) this.extra().expose = options.expose;
  }

  private extra(): Rare {
    return (this.rare ??= { expose: null, hiddenByName: null, observer: null, refresher: null });
  }

  /** Labels and instance label name for exports (src/model/exposure.ts). */
  get expose(): SourceExposure | null {
    return this.rare?.expose ?? null;
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
    if (refresher !== null || this.rare !== null) this.extra().refresher = refresher;
    forgetAbove(this);
  }

  /** Whether a refresher is set (see setRefresher). @internal */
  get refreshes(): boolean {
    return (this.rare?.refresher ?? null) !== null;
  }

  /** Brings the subordinates up to date (see setRefresher). */
  refresh(): void {
    const refresher = this.rare?.refresher ?? null;
    if (refresher !== null) refresher(this);
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
    return this.rare?.hiddenByName?.get(name) ?? NONE;
  }

  observe(observer: TreeObserver | null): void {
    if (observer !== null || this.rare !== null) this.extra().observer = observer;
  }

  /** See TreeObserver.settled: null when the tree's observer has nothing pending (or there is none). */
  changesSettled(): Promise<void> | null {
    return this.treeObserver()?.settled?.() ?? null;
  }

  /** See TreeObserver.readersWaiting: false when the tree's observer has none waiting (or there is none). */
  readersWaiting(): boolean {
    return this.treeObserver()?.readersWaiting?.() ?? false;
  }

  private treeObserver(): TreeObserver | null {
    let s: Source = this;
    while (s.parentSource !== null) s = s.parentSource;
    return s.rare?.observer ?? null;
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
      const hidden = (this.extra().hiddenByName ??= new Map());
      const same = hidden.get(sub.name);
      if (same === undefined) hidden.set(sub.name, [sub]);
      else same.push(sub);
    }
    // a list of one to begin with: an empty one would reserve room for 17
    if (this.subs === null) {
      this.subs = [sub];
      sub.position = 0;
    } else sub.position = this.subs.push(sub) - 1;
    sub.parentSource = this;
    forgetAbove(this);
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
      const hiddenByName = this.rare!.hiddenByName!;
      const same = hiddenByName.get(sub.name)!;
      if (same.length === 1) hiddenByName.delete(sub.name);
      else same.splice(same.indexOf(sub), 1);
    }
    sub.parentSource = null;
    forgetAbove(this);
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
    if (this.groups === null) this.groups = [group];
    else this.groups.push(group);
    forgetAbove(this);
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
    forgetAbove(this);
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
    forgetAbove(this);
  }
}
