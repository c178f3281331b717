/**
 * Where every captured value goes in a Prometheus exposition: its family (name, type, HELP, unit, scale)
 * and its labels. Built by small generator steps over the Snapshot's directory tree (parent numbers), each
 * yielding every few thousand values or directories so that a caller can slice the work.
 *
 * Two ways to a name:
 * - declared: the definition says how it is exposed (src/model/exposure.ts; the host collectors use
 *   node_exporter's names). Its labels are those declared by the sources above it and by the definition.
 * - inferred (producers, StatsD, the daemon's own values): from the value's place in the tree. A directory
 *   D is an *instance* of a family when (1) its parent captures a definition that D's subtree also
 *   captures, or (2) a sibling's subtree captures a definition that D's subtree captures. An instance
 *   becomes a label (named by the parent's `instanceLabel`, else after the parent; a run of nested
 *   instances joins its names with '/'); every other directory below the top, then the value name, makes
 *   up the name: prefix + components joined by '_'. A top-level directory named like the prefix
 *   (statsfs/) is not repeated.
 */
import type { Scale } from '../model/exposure.js';
import type { ValueDef } from '../model/schema.js';
import type { Snapshot } from '../model/snapshot.js';
import {
  AGGREGATION_LABEL,
  aggregateType,
  DIR_LABEL,
  escapeLabelValue,
  labelText,
  metricType,
  sanitizeMetricName,
  unitOfName,
  withUnit,
  type MetricType,
} from './prom-naming.js';
import { DefSets, definitionSets, DIR_STEP, findInstances, Kinds, nameDirectories, pattern, scanValues, STEP, type DirNames } from './prom-tree.js';

export interface PlanOptions {
  /** Also export aggregates of inferred families, as <name>_aggregate{aggregation="sum"}; default false. */
  includeAggregates?: boolean;
  /** Prefix of every inferred name; default "statsfs_". */
  prefix?: string;
}

export { AGGREGATION_LABEL, DIR_LABEL, TOP_FAMILY_LABEL } from './prom-naming.js';

export interface Family {
  /** Family name (OpenMetrics' MetricFamily; without _total). */
  base: string;
  /** Sample name: base + _total for counters. */
  sample: string;
  type: MetricType;
  help: string;
  /** OpenMetrics UNIT: 'seconds', 'bytes' or ''. */
  unit: string;
  /** Exact scaling of every value (ticks to seconds), or null. */
  scale: Scale | null;
  /** Extra label text (the aggregation label) or ''. */
  extra: string;
  /** Named by a definition's exposure rather than inferred. */
  declared: boolean;
  count: number;
  /** Start of this family in the order array. */
  start: number;
  index: number;
  /** The first (prefix, definition) that feeds this family, and whether others do too. */
  contributor: string;
  multi: boolean;
}

export interface Plan {
  families: Family[];
  /** Values in output order: grouped by family, snapshot order within one. */
  order: Uint32Array;
  /** Label text of every directory ('net="eth0"'), for inferred families. */
  dirLabels: string[];
  /** Label text of a value where it is not its directory's (declared families, repeats told apart). */
  override: Map<number, string>;
}

/** Families by name; a name taken by another type, another origin or the same directory gets _2, _3, … */
class FamilyTable {
  readonly families: Family[] = [];
  private readonly byName = new Map<string, Family>();

  get(wanted: Omit<Family, 'count' | 'start' | 'index' | 'contributor' | 'multi' | 'sample'>, taken: Set<number> | null): Family {
    for (let k = 1; ; k++) {
      const name = k === 1 ? wanted.base : `${wanted.base}_${k}`;
      const existing = this.byName.get(name);
      if (existing !== undefined) {
        const same = existing.base === name && existing.type === wanted.type && existing.extra === wanted.extra && existing.declared === wanted.declared;
        if (same && (taken === null || !taken.has(existing.index))) {
          if (existing.unit !== wanted.unit) existing.unit = '';
          return existing;
        }
        continue;
      }
      // OpenMetrics reserves <counter>_total and <counter>_created, and a histogram's samples; the text
      // format needs distinct samples.
      const names =
        wanted.type === 'counter'
          ? [name, `${name}_total`, `${name}_created`]
          : wanted.type === 'histogram'
            ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`, `${name}_created`]
            : [name];
      if (names.some((x) => this.byName.has(x))) continue;
      const family: Family = {
        base: name,
        sample: wanted.type === 'counter' ? `${name}_total` : name,
        type: wanted.type,
        help: wanted.help,
        unit: wanted.unit !== '' && name.endsWith('_' + wanted.unit) ? wanted.unit : '',
        scale: wanted.scale,
        extra: wanted.extra,
        declared: wanted.declared,
        count: 0,
        start: 0,
        index: this.families.length,
        contributor: '',
        multi: false,
      };
      for (const x of names) this.byName.set(x, family);
      this.families.push(family);
      return family;
    }
  }
}

/** The family of one key (definition, aggregate?) captured in a directory with this prefix, or -1. */
function familyOfKey(
  table: FamilyTable,
  def: ValueDef,
  aggregate: boolean,
  prefix: string,
  help: () => string,
  includeAggregates: boolean,
  taken: Set<number>,
): number {
  const expose = def.expose;
  if (expose === false) return -1;
  if (expose !== null && expose.name !== undefined) {
    if (aggregate) return -1; // Prometheus aggregates declared families itself
    const type = expose.type ?? (expose.name.endsWith('_total') ? 'counter' : 'gauge');
    const base = type === 'counter' && expose.name.endsWith('_total') ? expose.name.slice(0, -'_total'.length) : expose.name;
    const f = table.get({ base, type, help: expose.help ?? def.description, unit: unitOfName(base), scale: expose.scale ?? null, extra: '', declared: true }, null);
    return f.index;
  }
  if (aggregate && !includeAggregates) return -1;
  const type = aggregate ? aggregateType(def) : metricType(def);
  let name = prefix + sanitizeMetricName(def.name) + (aggregate ? '_aggregate' : '');
  if (type === 'counter' && name.endsWith('_total')) name = name.slice(0, -'_total'.length);
  const united = withUnit(name, def.unit);
  const text = (def.description || help()) + (aggregate ? ` (${def.aggr} aggregate)` : '');
  const extra = aggregate ? `${AGGREGATION_LABEL}="${def.aggr}"` : '';
  const scale = expose?.scale ?? united.scale;
  const f = table.get({ base: united.name, type, help: text, unit: united.unit, scale, extra, declared: false }, taken);
  taken.add(f.index);
  return f.index;
}

/** The family of every (directory, position): computed once per distinct prefix and kind. */
function* assignFamilies(
  snapshot: Snapshot,
  kinds: Kinds,
  kindOf: Int32Array,
  names: DirNames,
  instance: Uint8Array,
  table: FamilyTable,
  includeAggregates: boolean,
): Generator<void, (Int32Array | null)[]> {
  const D = snapshot.dirCount;
  const memo = new Map<string, Map<number, Int32Array>>();
  const familiesOfDir: (Int32Array | null)[] = new Array(D).fill(null);
  for (let d = 0; d < D; d++) {
    if ((d & (DIR_STEP - 1)) === DIR_STEP - 1) yield;
    const node = kindOf[d];
    if (node === 0) continue;
    const prefix = names.prefix[d];
    let byNode = memo.get(prefix);
    if (byNode === undefined) memo.set(prefix, (byNode = new Map()));
    let families = byNode.get(node);
    if (families === undefined) {
      const keys = kinds.keys(node);
      const taken = new Set<number>();
      families = new Int32Array(keys.length);
      keys.forEach((key, pos) => {
        const def = kinds.defs[key >> 1];
        const help = () => `statsfs value ${[pattern(snapshot, d, instance), def.name].filter((s) => s !== '').join('/')}`;
        const f = familyOfKey(table, def, (key & 1) === 1, prefix, help, includeAggregates, taken);
        families![pos] = f;
        if (f >= 0 && !table.families[f].declared) {
          const family = table.families[f];
          const contributor = `${prefix}\u0000${key}`;
          if (family.contributor === '') family.contributor = contributor;
          else if (family.contributor !== contributor) family.multi = true;
        }
      });
      byNode.set(node, families);
    }
    familiesOfDir[d] = families;
  }
  return familiesOfDir;
}

type Labels = Readonly<Record<string, string>>;
const NO_LABELS: Labels = Object.freeze({});

/**
 * Label texts of declared series, kept across scrapes: by the one label set of the sources above (the
 * usual case: a device, a CPU) and the definition. Entries go with the sources' and definitions' objects.
 */
const labelTexts = new WeakMap<Labels, WeakMap<ValueDef, string>>();

/** Labels of a declared series: the sources' from the top down (inner ones win), then the definition's. */
function declaredLabels(snapshot: Snapshot, d: number, def: ValueDef, cache: Map<number, Labels[]>): string {
  let chain = cache.get(d);
  if (chain === undefined) {
    chain = [];
    for (let a = d; a >= 0; a = snapshot.dirParentOf(a)) {
      const labels = snapshot.dirExposeOf(a)?.labels;
      if (labels !== undefined) chain.push(labels);
    }
    chain.reverse();
    cache.set(d, chain);
  }
  const own = def.expose ? def.expose.labels : undefined;
  const merged = (): string => labelText(Object.assign({}, ...chain, own ?? NO_LABELS) as Labels);
  if (chain.length > 1) return merged();
  const key = chain.length === 1 ? chain[0] : NO_LABELS;
  let byDef = labelTexts.get(key);
  if (byDef === undefined) labelTexts.set(key, (byDef = new WeakMap()));
  let text = byDef.get(def);
  if (text === undefined) byDef.set(def, (text = merged()));
  return text;
}

/** Values grouped by family (a counting sort); repeats within a family told apart or, if declared, dropped. */
function* sortValues(
  snapshot: Snapshot,
  posOf: Uint32Array,
  familiesOfDir: (Int32Array | null)[],
  table: FamilyTable,
  dirLabels: string[],
  override: Map<number, string>,
): Generator<void, Uint32Array> {
  const n = snapshot.count;
  const families = table.families;
  const famOf = new Int32Array(n);
  const declaredSeen = new Map<number, Set<string>>();
  const cache = new Map<number, Labels[]>();
  for (let i = 0; i < n; i++) {
    const d = snapshot.dirNumber(i);
    let f = familiesOfDir[d]![posOf[i]];
    if (f >= 0 && families[f].declared) {
      const text = declaredLabels(snapshot, d, snapshot.def(i), cache);
      let seen = declaredSeen.get(f);
      if (seen === undefined) declaredSeen.set(f, (seen = new Set()));
      if (seen.has(text)) f = -1; // the same series twice (two mounts of one device at one place): the first wins
      else {
        seen.add(text);
        override.set(i, text);
      }
    }
    famOf[i] = f;
    if (f >= 0) families[f].count++;
    if ((i & (STEP - 1)) === STEP - 1) yield;
  }
  let total = 0;
  for (const f of families) {
    f.start = total;
    total += f.count;
  }
  const next = new Uint32Array(families.map((f) => f.start));
  const order = new Uint32Array(total);
  for (let i = 0; i < n; i++) {
    const f = famOf[i];
    if (f >= 0) order[next[f]++] = i;
    if ((i & (STEP - 1)) === STEP - 1) yield;
  }
  // Different definitions or prefixes feeding one family ("a" with "b_x" and "a_b" with "x") could repeat
  // a series: those families are checked value by value, and a repeat gets the directory label.
  for (const f of families) {
    if (!f.multi) continue;
    const texts = new Set<string>();
    for (let k = f.start; k < f.start + f.count; k++) {
      const i = order[k];
      const d = snapshot.dirNumber(i);
      const text = dirLabels[d];
      if (!texts.has(text)) texts.add(text);
      else if (!text.includes(`${DIR_LABEL}="`)) override.set(i, `${text}${text === '' ? '' : ','}${DIR_LABEL}="${escapeLabelValue(snapshot.dirs[d])}"`);
    }
    yield;
  }
  return order;
}

/** Plans the exposition of a snapshot. */
export function* buildPlan(snapshot: Snapshot, options: PlanOptions = {}): Generator<void, Plan> {
  const kinds = new Kinds();
  const sets = new DefSets();
  const { kindOf, posOf } = yield* scanValues(snapshot, kinds);
  const { own, below } = yield* definitionSets(snapshot, kinds, kindOf, sets);
  const instance = yield* findInstances(snapshot, sets, own, below);
  const names = yield* nameDirectories(snapshot, instance, kindOf, options.prefix ?? 'statsfs_');
  const table = new FamilyTable();
  const familiesOfDir = yield* assignFamilies(snapshot, kinds, kindOf, names, instance, table, options.includeAggregates ?? false);
  const override = new Map<number, string>();
  const order = yield* sortValues(snapshot, posOf, familiesOfDir, table, names.labels, override);
  return { families: table.families, order, dirLabels: names.labels, override };
}
