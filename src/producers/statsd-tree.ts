/**
 * Where StatsD metrics live in the tree: a dotted name a.b.c is value c of source a/b. The prefix sources
 * are created with their first metric and go with their last; the caps (sources, entries per source) are
 * counted here, and names already taken by others are refused, never shadowed.
 */
import { Histogram, Schema, Source, StatsError, type HistogramState, type ValueGroup, type ValueSpec } from '../model/index.js';
import { parseStatsdName } from './statsd-line.js';
import type { StatsdKind, StatsdMetric } from './statsd-line.js';

/** One metric as a state file keeps it: name, kind, and its value (a decimal word) or histogram. */
export type SavedMetric = [name: string, kind: StatsdKind, value: string | HistogramState];

/**
 * The definition of each kind's value. A timing's histogram is in whole microseconds, its files named
 * with `_us` (count, sum_us, … p999_us, buckets), as timings were before they were histograms.
 */
const STATSD_SPECS: Readonly<Record<StatsdKind, (name: string) => ValueSpec>> = {
  counter: (name) => ({ name, type: 'u64', description: 'StatsD counter' }),
  gauge: (name) => ({ name, type: 's64', floating: true, description: 'StatsD gauge' }),
  timing: (name) => ({ name, type: 'histogram', unit: 'microseconds', suffix: '_us', description: 'StatsD timing (samples weighted by 1/rate)' }),
  histogram: (name) => ({ name, type: 'histogram', description: 'StatsD histogram (samples weighted by 1/rate)' }),
};

export interface Metric {
  kind: StatsdKind;
  /** The source that holds its value. */
  parent: Source;
  /** Its dotted parent prefix ('' for the root), the key of `parent` in `dirs`. */
  prefix: string;
  /** Its value group: one value (a histogram for timings and histograms). */
  group: ValueGroup;
  /** When a line last updated it (ms since the epoch). */
  touched: number;
}

/** The caps a tree enforces (StatsdOptions, defaults applied). */
export interface StatsdCaps {
  maxMetrics: number;
  maxSources: number;
  maxPerSource: number;
}

export class StatsdTree {
  /** Every metric kept, by dotted name. */
  readonly metrics = new Map<string, Metric>();
  /** Sources this tree created for name prefixes, by dotted prefix ('' is the root). */
  private readonly dirs = new Map<string, Source>();
  /** One schema per (kind, value name), shared by every source holding a metric of that kind and name. */
  private readonly schemas = new Map<string, Schema>();
  /** Entries (values and sources) this tree added to each source it added to. */
  private readonly entries = new Map<Source, number>();
  private sourcesCreated = 0;
  /** Value groups this tree added to the root. */
  private rootGroups = 0;

  constructor(
    readonly root: Source,
    private readonly caps: StatsdCaps,
  ) {
    this.dirs.set('', root);
  }

  /** Creates the metric's sources and values, or says why not (a cap or a conflict) without creating any. */
  create(metric: Pick<StatsdMetric, 'kind' | 'name' | 'parts'>, now: number): Metric | string {
    if (this.metrics.size >= this.caps.maxMetrics) return 'metric-cap';
    const parts = metric.parts;
    const leaf = parts[parts.length - 1];
    // Check everything first, so a refused line leaves no empty source behind.
    let prefix = '';
    let parent: Source = this.root;
    let firstMissing = -1;
    for (let i = 0; i < parts.length - 1; i++) {
      prefix = i === 0 ? parts[0] : `${prefix}.${parts[i]}`;
      if (this.metrics.has(prefix)) return `${prefix} is a ${this.metrics.get(prefix)!.kind}, not a source`;
      const dir = this.dirs.get(prefix);
      if (dir !== undefined) parent = dir;
      else {
        firstMissing = i;
        const clash = this.clashIn(parent, parts[i]);
        if (clash !== null) return clash;
        break;
      }
    }
    if (firstMissing < 0) {
      if (this.dirs.has(metric.name)) return `${metric.name} is a source`;
      const clash = this.clashIn(parent, leaf);
      if (clash !== null) return clash;
    }
    // only the deepest existing source gains an entry; the sources below it are new
    if ((this.entries.get(parent) ?? 0) >= this.caps.maxPerSource) return 'source-cap';
    const newSources = firstMissing < 0 ? 0 : parts.length - 1 - firstMissing;
    if (this.sourcesCreated + newSources > this.caps.maxSources) return 'source-cap';
    this.sourcesCreated += newSources;

    if (firstMissing >= 0) {
      for (let i = firstMissing; i < parts.length - 1; i++) {
        const sub = new Source(parts[i]);
        parent.addSubordinate(sub);
        this.counted(parent);
        this.dirs.set(parts.slice(0, i + 1).join('.'), sub);
        parent = sub;
      }
    }
    const m: Metric = { kind: metric.kind, parent, prefix: parts.slice(0, -1).join('.'), group: parent.addValues(this.schemaFor(metric.kind, leaf)), touched: now };
    if (parent === this.root) this.rootGroups++;
    this.counted(parent);
    this.metrics.set(metric.name, m);
    return m;
  }

  /**
   * Something not ours already has this name under `parent` (a source, or a value a reader would see).
   * Our own names are in `metrics` and `dirs`; only the root can hold someone else's, and its values are
   * searched only when someone else added some (findValue is linear: a flat namespace of 100,000 counters
   * at the root must not cost 100,000² lookups).
   */
  private clashIn(parent: Source, name: string): string | null {
    if (parent.subordinate(name) !== undefined) return `${pathOf(parent, name)} is already a source`;
    if (parent === this.root && this.root.valueGroups.length > this.rootGroups && parent.findValue(name) !== undefined) {
      return `${pathOf(parent, name)} is already a value`;
    }
    return null;
  }

  private counted(parent: Source): void {
    this.entries.set(parent, (this.entries.get(parent) ?? 0) + 1);
  }

  /**
   * Removes the metric, or the prefix source with every metric below it, at `path` ('/'-separated, relative
   * to the root), as `statsfs rm` asks through the producer socket. False when nothing there is this
   * server's (the caller answers for it); EPERM for one value of a timing or histogram, which goes only
   * with its metric. Prefix sources left empty go too: they exist only for the metrics below them. Returns
   * how many metrics went.
   */
  removePath(path: string): number | false {
    const parts = path.split('/');
    if (parts.some((p) => p === '' || p.includes('.'))) return false;
    const name = parts.join('.');
    const m = this.metrics.get(name);
    if (m !== undefined) {
      this.remove(name, m);
      return 1;
    }
    const dir = this.dirs.get(name);
    if (dir !== undefined && name !== '') {
      return this.removeDir(name, dir);
    }
    const owner = this.metrics.get(parts.slice(0, -1).join('.'));
    if (owner !== undefined && (owner.kind === 'timing' || owner.kind === 'histogram')) {
      throw new StatsError('EPERM', `"${path}" is one value of the StatsD ${owner.kind} ${parts.slice(0, -1).join('.')}: remove ${parts.slice(0, -1).join('/')} as a whole`);
    }
    return false;
  }

  /** Takes one metric out of the tree, with the prefix sources it leaves empty. */
  remove(name: string, m: Metric): void {
    this.removeMetric(name, m);
    this.prune(m.parent, m.prefix);
  }

  /** Takes one metric out of the tree and of the caps' counts (its prefix sources stay: see prune). */
  private removeMetric(name: string, m: Metric): void {
    this.metrics.delete(name);
    m.parent.removeValues(m.group);
    if (m.parent === this.root) this.rootGroups--;
    this.uncounted(m.parent);
  }

  /** Removes a prefix source and every metric and source below it; returns how many metrics went. */
  private removeDir(prefix: string, dir: Source): number {
    const below = `${prefix}.`;
    // detached first, so the mount sees the whole subtree go at once
    const parent = dir.parent!;
    parent.removeSubordinate(dir);
    let count = 0;
    for (const [name, m] of this.metrics) {
      if (!name.startsWith(below)) continue;
      this.metrics.delete(name);
      m.parent.removeValues(m.group); // frees its storage
      count++;
    }
    for (const [key, src] of this.dirs) {
      if (key !== prefix && !key.startsWith(below)) continue;
      this.dirs.delete(key);
      this.entries.delete(src);
      this.sourcesCreated--;
    }
    this.uncounted(parent);
    const dot = prefix.lastIndexOf('.');
    this.prune(parent, dot < 0 ? '' : prefix.slice(0, dot));
    return count;
  }

  /** Removes `dir` (a prefix source at `prefix`) and its parents while they hold nothing of ours. */
  private prune(dir: Source, prefix: string): void {
    while (dir !== this.root && (this.entries.get(dir) ?? 0) === 0) {
      const parent = dir.parent!;
      parent.removeSubordinate(dir);
      this.dirs.delete(prefix);
      this.entries.delete(dir);
      this.sourcesCreated--;
      this.uncounted(parent);
      dir = parent;
      const dot = prefix.lastIndexOf('.');
      prefix = dot < 0 ? '' : prefix.slice(0, dot);
    }
  }

  private uncounted(parent: Source): void {
    this.entries.set(parent, (this.entries.get(parent) ?? 1) - 1);
  }

  // --- state: what a restart finds again (the daemon's state directory) ---------------------------------------

  /** Every metric (or those named) and its value, for a checkpoint or a journal record. */
  save(names?: Iterable<string>): SavedMetric[] {
    const out: SavedMetric[] = [];
    const saved = (name: string, m: Metric): SavedMetric => [name, m.kind, m.kind === 'counter' || m.kind === 'gauge' ? m.group.get(0).toString() : m.group.histogram(0).toState()];
    if (names === undefined) for (const [name, m] of this.metrics) out.push(saved(name, m));
    else
      for (const name of names) {
        const m = this.metrics.get(name);
        if (m !== undefined) out.push(saved(name, m));
      }
    return out;
  }

  /** Removes every metric (a journal replay that replaces them all). */
  removeAll(): void {
    for (const [name, m] of [...this.metrics]) if (this.metrics.get(name) === m) this.remove(name, m);
  }

  /**
   * Creates the saved metrics again with their values (before any line arrives); returns how many could not
   * be (a bad name, a cap or a clash with what exists now), which are left out.
   */
  restore(saved: readonly SavedMetric[], now: number): number {
    let skipped = 0;
    for (const [name, kind, value] of saved) {
      // a metric there already (a journal record after the checkpoint) takes the value
      const parts = parseStatsdName(name);
      const m = this.metrics.get(name) ?? (typeof parts === 'string' ? 'bad name' : this.create({ kind, name, parts, delta: 0n } as StatsdMetric, now));
      if (typeof m === 'string' || m.kind !== kind) {
        skipped++;
        continue;
      }
      if (typeof value === 'string') m.group.set(0, BigInt(value));
      else {
        const h = m.group.histogram(0);
        h.clear();
        h.merge(Histogram.fromState(value));
      }
    }
    return skipped;
  }

  private schemaFor(kind: StatsdKind, name: string): Schema {
    const key = `${kind}:${name}`;
    let schema = this.schemas.get(key);
    if (schema === undefined) {
      schema = new Schema([STATSD_SPECS[kind](name)]);
      this.schemas.set(key, schema);
    }
    return schema;
  }
}

function pathOf(parent: Source, name: string): string {
  return parent.path ? `${parent.path}/${name}` : name;
}
