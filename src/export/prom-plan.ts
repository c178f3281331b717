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
  aggregateType,
  escapeLabelValue,
  labelText,
  metricType,
  sanitizeLabelName,
  sanitizeMetricName,
  unitOfName,
  withUnit,
  type MetricType,
} from './prom-naming.js';

export interface PlanOptions {
  /** Also export aggregates of inferred families, as <name>_aggregate{aggregation="sum"}; default false. */
  includeAggregates?: boolean;
  /** Prefix of every inferred name; default "statsfs_". */
  prefix?: string;
}

/** Label added to aggregates (with includeAggregates). */
export const AGGREGATION_LABEL = 'aggregation';
/** Label added to directories whose name and labels would repeat another's. */
export const DIR_LABEL = 'statsfs_dir';
/** Label name for instances directly below the exported top, which has no name of its own. */
export const TOP_FAMILY_LABEL = 'source';

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

/** Values between two yields. */
const STEP = 8192;
/** Directories between two yields. */
const DIR_STEP = 1024;

/** The distinct ordered lists of (definition, aggregate?) keys that directories capture, as a trie. */
class Kinds {
  readonly defs: ValueDef[] = [];
  private readonly defId = new Map<ValueDef, number>();
  private readonly next: Map<number, number>[] = [new Map()];
  private readonly parent: number[] = [-1];
  private readonly key: number[] = [-1];
  readonly depth: number[] = [0];
  /** The step last taken from a node: directories of one schema repeat it. */
  private readonly lastKey: number[] = [-1];
  private readonly lastNext: number[] = [0];

  idOf(def: ValueDef): number {
    let id = this.defId.get(def);
    if (id === undefined) {
      id = this.defs.push(def) - 1;
      this.defId.set(def, id);
    }
    return id;
  }

  step(node: number, def: ValueDef, aggregate: boolean): number {
    const key = 2 * this.idOf(def) + (aggregate ? 1 : 0);
    if (this.lastKey[node] === key) return this.lastNext[node];
    let found = this.next[node].get(key);
    if (found === undefined) {
      found = this.next.push(new Map()) - 1;
      this.parent.push(node);
      this.key.push(key);
      this.depth.push(this.depth[node] + 1);
      this.lastKey.push(-1);
      this.lastNext.push(0);
      this.next[node].set(key, found);
    }
    this.lastKey[node] = key;
    this.lastNext[node] = found;
    return found;
  }

  /** The keys of a node, in capture order: 2 * definition id + 1 for an aggregate. */
  keys(node: number): number[] {
    const keys: number[] = [];
    for (let t = node; t > 0; t = this.parent[t]) keys.push(this.key[t]);
    return keys.reverse();
  }
}

/** Interned sets of definition ids (0 is the empty set), with memoised unions. */
class DefSets {
  readonly lists: number[][] = [[]];
  private readonly members: (Set<number> | null)[] = [null];
  private readonly index = new Map<string, number>([['', 0]]);
  private readonly unions = new Map<string, number>();

  of(ids: Iterable<number>): number {
    const list = [...new Set(ids)].sort((a, b) => a - b);
    const key = list.join(',');
    let id = this.index.get(key);
    if (id === undefined) {
      id = this.lists.push(list) - 1;
      this.members.push(null);
      this.index.set(key, id);
    }
    return id;
  }

  union(a: number, b: number): number {
    if (a === b || b === 0) return a;
    if (a === 0) return b;
    const key = a < b ? `${a},${b}` : `${b},${a}`;
    let id = this.unions.get(key);
    if (id === undefined) {
      id = this.of([...this.lists[a], ...this.lists[b]]);
      this.unions.set(key, id);
    }
    return id;
  }

  has(set: number, id: number): boolean {
    const m = (this.members[set] ??= new Set(this.lists[set]));
    return m.has(id);
  }
}

/** Every value's position in its directory, and every directory's kind (trie node; 0: no values). */
function* scanValues(snapshot: Snapshot, kinds: Kinds): Generator<void, { kindOf: Int32Array; posOf: Uint32Array }> {
  const kindOf = new Int32Array(snapshot.dirCount);
  const posOf = new Uint32Array(snapshot.count);
  let dir = -1;
  let node = 0;
  for (let i = 0; i < snapshot.count; i++) {
    const d = snapshot.dirNumber(i);
    if (d !== dir) {
      // a directory's values are contiguous; one seen again would continue where it stopped
      if (dir >= 0) kindOf[dir] = node;
      dir = d;
      node = kindOf[d];
    }
    posOf[i] = kinds.depth[node];
    node = kinds.step(node, snapshot.def(i), snapshot.isAggregate(i));
    if ((i & (STEP - 1)) === STEP - 1) yield;
  }
  if (dir >= 0) kindOf[dir] = node;
  return { kindOf, posOf };
}

/** The definitions each directory captures itself (own) and at or below it (below), as set ids. */
function* definitionSets(snapshot: Snapshot, kinds: Kinds, kindOf: Int32Array, sets: DefSets): Generator<void, { own: Int32Array; below: Int32Array }> {
  const D = snapshot.dirCount;
  const own = new Int32Array(D);
  const ofKind = new Map<number, number>();
  for (let d = 0; d < D; d++) {
    const k = kindOf[d];
    let set = ofKind.get(k);
    if (set === undefined) ofKind.set(k, (set = sets.of(kinds.keys(k).map((key) => key >> 1))));
    own[d] = set;
    if ((d & (DIR_STEP - 1)) === DIR_STEP - 1) yield;
  }
  const below = own.slice();
  for (let d = D - 1; d > 0; d--) {
    const p = snapshot.dirParentOf(d);
    below[p] = sets.union(below[p], below[d]);
    if ((d & (DIR_STEP - 1)) === 0) yield;
  }
  return { own, below };
}

/** Marks the instance directories (rules 1 and 2), by groups of siblings with equal subtree sets. */
function* findInstances(snapshot: Snapshot, sets: DefSets, own: Int32Array, below: Int32Array): Generator<void, Uint8Array> {
  const D = snapshot.dirCount;
  const groups: (Map<number, number> | undefined)[] = new Array(D);
  for (let d = 1; d < D; d++) {
    if (below[d] === 0) continue; // nothing captured: nothing to label
    const p = snapshot.dirParentOf(d);
    const g = (groups[p] ??= new Map());
    g.set(below[d], (g.get(below[d]) ?? 0) + 1);
    if ((d & (DIR_STEP - 1)) === 0) yield;
  }
  const instanceSets: (Set<number> | undefined)[] = new Array(D);
  for (let p = 0; p < D; p++) {
    const g = groups[p];
    if (g === undefined) continue;
    const count = new Map<number, number>();
    for (const [set, n] of g) for (const id of sets.lists[set]) count.set(id, (count.get(id) ?? 0) + n);
    const instances = new Set<number>();
    for (const set of g.keys()) {
      if (sets.lists[set].some((id) => count.get(id)! >= 2 || sets.has(own[p], id))) instances.add(set);
    }
    instanceSets[p] = instances;
    if ((p & (DIR_STEP - 1)) === DIR_STEP - 1) yield;
  }
  const instance = new Uint8Array(D);
  for (let d = 1; d < D; d++) {
    if (below[d] !== 0 && instanceSets[snapshot.dirParentOf(d)]?.has(below[d])) instance[d] = 1;
    if ((d & (DIR_STEP - 1)) === 0) yield;
  }
  return instance;
}

interface DirNames {
  /** Name prefix of each directory's inferred families ("statsfs_net_"). */
  prefix: string[];
  labels: string[];
}

/** Name prefix and label text of every directory, top-down. */
function* nameDirectories(snapshot: Snapshot, instance: Uint8Array, kindOf: Int32Array, top: string): Generator<void, DirNames> {
  const D = snapshot.dirCount;
  const prefix: string[] = new Array(D);
  const labels: string[] = new Array(D);
  /** The label an instance run defines, its value so far, and the labels above the run. */
  const runLabel: string[] = new Array(D);
  const runValue: string[] = new Array(D);
  const head: string[] = new Array(D);
  const labelOfChildren = new Map<number, string>();
  prefix[0] = top;
  labels[0] = '';
  for (let d = 1; d < D; d++) {
    const p = snapshot.dirParentOf(d);
    const name = snapshot.dirNameOf(d);
    if (!instance[d]) {
      const component = sanitizeMetricName(name);
      prefix[d] = p === 0 && top === component + '_' ? top : `${prefix[p]}${component}_`;
      labels[d] = labels[p];
    } else {
      prefix[d] = prefix[p];
      if (instance[p]) {
        runLabel[d] = runLabel[p];
        runValue[d] = `${runValue[p]}/${name}`;
        head[d] = head[p];
      } else {
        let label = labelOfChildren.get(p);
        if (label === undefined) {
          label = instanceLabelOf(snapshot, p, instance, runLabel);
          labelOfChildren.set(p, label);
        }
        runLabel[d] = label;
        runValue[d] = name;
        head[d] = labels[p];
      }
      labels[d] = `${head[d]}${head[d] === '' ? '' : ','}${runLabel[d]}="${escapeLabelValue(runValue[d])}"`;
    }
    if ((d & (DIR_STEP - 1)) === DIR_STEP - 1) yield;
  }
  // Sanitising can merge names ("a.b" and "a_b"): a directory whose prefix and labels repeat another's
  // gets its path as a label.
  const seen = new Set<string>();
  for (let d = 0; d < D; d++) {
    if (kindOf[d] === 0) continue;
    const key = `${prefix[d]}\u0000${labels[d]}`;
    if (seen.has(key)) labels[d] = `${labels[d]}${labels[d] === '' ? '' : ','}${DIR_LABEL}="${escapeLabelValue(snapshot.dirs[d])}"`;
    else seen.add(key);
    if ((d & (DIR_STEP - 1)) === DIR_STEP - 1) yield;
  }
  return { prefix, labels };
}

/** The label a family directory's instances get: declared, else its own name (source at the top), unused above. */
function instanceLabelOf(snapshot: Snapshot, p: number, instance: Uint8Array, runLabel: string[]): string {
  const declared = snapshot.dirExposeOf(p)?.instanceLabel;
  const wanted = declared !== undefined ? sanitizeLabelName(declared) : p === 0 ? TOP_FAMILY_LABEL : sanitizeLabelName(snapshot.dirNameOf(p));
  const used = [AGGREGATION_LABEL, DIR_LABEL];
  for (let a = p; a > 0; a = snapshot.dirParentOf(a)) if (instance[a]) used.push(runLabel[a]);
  let label = wanted;
  for (let k = 2; used.includes(label); k++) label = `${wanted}_${k}`;
  return label;
}

/** "net/<net>": a directory's path with instances replaced by their label, for a HELP text. */
function pattern(snapshot: Snapshot, d: number, instance: Uint8Array): string {
  const parts: string[] = [];
  for (let a = d; a > 0; a = snapshot.dirParentOf(a)) {
    const p = snapshot.dirParentOf(a);
    if (!instance[a]) parts.push(snapshot.dirNameOf(a));
    else if (!instance[p]) parts.push(`<${p === 0 ? TOP_FAMILY_LABEL : snapshot.dirNameOf(p)}>`);
  }
  return parts.reverse().join('/');
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
      // OpenMetrics reserves <counter>_total and <counter>_created; the text format needs distinct samples.
      const names = wanted.type === 'counter' ? [name, `${name}_total`, `${name}_created`] : [name];
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
