import { StatsError, validateName } from './errors.js';
import type { Exposure } from './exposure.js';
import { customType, HISTOGRAM_TYPE, TYPES, type CustomType, type StandardTypeName, type ValueType } from './types.js';

/**
 * Every aggregation; its position is its code in the producer protocol and `.snapshot.bin` (as TYPE_CODES,
 * types.ts, whose comment says who else keeps this list and what checks it).
 */
export const AGGREGATIONS = ['none', 'sum', 'min', 'max', 'count_zero', 'avg'] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];

/** What a producer writes to describe one value; a Schema turns a list of them into definitions. */
export interface ValueSpec {
  name: string;
  /** 'histogram': a distribution fed by observe(), shown as a directory (README, "Histograms"). */
  type: StandardTypeName | 'histogram' | CustomType<any>; // eslint-disable-line @typescript-eslint/no-explicit-any
  /**
   * How an aggregate of this definition combines the subordinates' values (default 'none'). Histograms
   * take 'sum' (merge every subordinate's buckets) or 'none'.
   */
  aggr?: Aggregation;
  /** A level rather than a count (the original's STATS_FS_FLOATING_VALUE): read-only, 0444. */
  floating?: boolean;
  /** Explicit file mode (permission bits only); by default 0444 when floating or not clearable, else 0644. */
  mode?: number;
  /** Text shown instead of the number, e.g. enum names. */
  show?: (value: bigint) => string;
  unit?: string;
  description?: string;
  /** Property of an object base that holds this value (default: the name), the original's offset. */
  field?: string;
  /**
   * Histograms only: appended to the names of the files that carry the unit (sum, min, max, avg and the
   * percentiles), as StatsD timings' `sum_us`; count and buckets keep their names. Default ''.
   */
  suffix?: string;
  /** How exports name it (src/model/exposure.ts); false leaves it out of them. Default: inferred. */
  expose?: Exposure | false;
}

/** One value definition. Identity matters: an aggregate combines exactly the values of its own definition. */
export class ValueDef {
  readonly name: string;
  readonly type: ValueType;
  readonly aggr: Aggregation;
  readonly floating: boolean;
  readonly mode: number;
  readonly show: ((value: bigint) => string) | null;
  readonly unit: string;
  readonly description: string;
  readonly field: string;
  /** A distribution (type 'histogram'): observed, not set; a directory of files in the filesystem. */
  readonly histogram: boolean;
  /** Histograms: the suffix of the file names that carry the unit (see ValueSpec.suffix). */
  readonly suffix: string;
  readonly expose: Exposure | false | null;

  constructor(
    spec: ValueSpec,
    /** Position in its schema: storage slot and aggregation key. */
    readonly index: number,
  ) {
    validateName(spec.name, 'value');
    const type =
      spec.type === 'histogram' ? HISTOGRAM_TYPE : typeof spec.type === 'string' ? TYPES[spec.type] : spec.type && customType(spec.type);
    if (!type) throw new StatsError('EINVAL', `value "${spec.name}": unknown type ${String(spec.type)}`);
    const aggr = spec.aggr ?? 'none';
    if (!AGGREGATIONS.includes(aggr)) throw new StatsError('EINVAL', `value "${spec.name}": unknown aggregation ${String(aggr)}`);
    if (spec.mode !== undefined && (!Number.isInteger(spec.mode) || spec.mode < 0 || spec.mode > 0o777)) {
      throw new StatsError('EINVAL', `value "${spec.name}": mode must be permission bits (0 to 0777)`);
    }
    this.histogram = type === HISTOGRAM_TYPE;
    if (this.histogram) {
      if (aggr !== 'none' && aggr !== 'sum') throw new StatsError('EINVAL', `histogram "${spec.name}": aggregation must be 'sum' (merge) or 'none', not ${aggr}`);
      if (spec.floating || spec.show) throw new StatsError('EINVAL', `histogram "${spec.name}" cannot be floating or have show()`);
      if (spec.suffix) validateName(`p999${spec.suffix}`, 'histogram file');
    } else if (spec.suffix) throw new StatsError('EINVAL', `value "${spec.name}": only a histogram has a file suffix`);
    this.name = spec.name;
    this.type = type;
    this.aggr = aggr;
    this.floating = spec.floating ?? false;
    this.show = spec.show ?? null;
    this.unit = spec.unit ?? '';
    this.description = spec.description ?? '';
    this.field = spec.field ?? spec.name;
    this.suffix = spec.suffix ?? '';
    this.expose = spec.expose ?? null;
    this.mode = spec.mode ?? (this.clearable ? 0o644 : 0o444);
    Object.freeze(this);
  }

  /** Floating values are levels: zeroing one would be a lie. Custom values clear only through their own clear. */
  get clearable(): boolean {
    return !this.floating && (this.type.custom === null || typeof this.type.custom.clear === 'function');
  }
}

/**
 * An ordered set of definitions added together to sources: the original's `struct stats_fs_value[]`.
 * One schema is typically shared by thousands of sources, so per-source cost is only the storage.
 */
export class Schema {
  readonly defs: readonly ValueDef[];
  private readonly byName = new Map<string, ValueDef>();

  constructor(specs: readonly ValueSpec[]) {
    this.defs = Object.freeze(specs.map((spec, i) => new ValueDef(spec, i)));
    // Duplicate names are allowed as in the original; lookup by name returns the first.
    for (const def of this.defs) if (!this.byName.has(def.name)) this.byName.set(def.name, def);
    this.hasDuplicateNames = this.byName.size !== this.defs.length;
    this.hasCustomTypes = this.defs.some((def) => def.type.custom !== null);
    this.hasHistograms = this.defs.some((def) => def.histogram);
  }

  /** True when some definition is a histogram (its buckets are not in slot storage). */
  readonly hasHistograms: boolean;

  /** True when some definition reads through a custom get() (its values are not in slot storage). */
  readonly hasCustomTypes: boolean;

  /** True when two definitions share a name (only the first is visible). */
  readonly hasDuplicateNames: boolean;

  get size(): number {
    return this.defs.length;
  }

  find(name: string): ValueDef | undefined {
    return this.byName.get(name);
  }
}
