/**
 * The directory-tree steps of planning a Prometheus exposition (prom-plan.ts): which definitions each
 * directory captures, which directories are instances of a family, and the name prefix and labels of each.
 * Generators over the Snapshot's parent numbers, yielding every few thousand values or directories.
 */
import type { ValueDef } from '../model/schema.js';
import type { Snapshot } from '../model/snapshot.js';
import { AGGREGATION_LABEL, DIR_LABEL, escapeLabelValue, sanitizeLabelName, sanitizeMetricName, TOP_FAMILY_LABEL } from './prom-naming.js';

/** Values between two yields. */
export const STEP = 8192;
/** Directories between two yields. */
export const DIR_STEP = 1024;

/** The distinct ordered lists of (definition, aggregate?) keys that directories capture, as a trie. */
export class Kinds {
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
export class DefSets {
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
export function* scanValues(snapshot: Snapshot, kinds: Kinds): Generator<void, { kindOf: Int32Array; posOf: Uint32Array }> {
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
export function* definitionSets(snapshot: Snapshot, kinds: Kinds, kindOf: Int32Array, sets: DefSets): Generator<void, { own: Int32Array; below: Int32Array }> {
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
export function* findInstances(snapshot: Snapshot, sets: DefSets, own: Int32Array, below: Int32Array): Generator<void, Uint8Array> {
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

export interface DirNames {
  /** Name prefix of each directory's inferred families ("statsfs_net_"). */
  prefix: string[];
  labels: string[];
}

/** Name prefix and label text of every directory, top-down. */
export function* nameDirectories(snapshot: Snapshot, instance: Uint8Array, kindOf: Int32Array, top: string): Generator<void, DirNames> {
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
export function pattern(snapshot: Snapshot, d: number, instance: Uint8Array): string {
  const parts: string[] = [];
  for (let a = d; a > 0; a = snapshot.dirParentOf(a)) {
    const p = snapshot.dirParentOf(a);
    if (!instance[a]) parts.push(snapshot.dirNameOf(a));
    else if (!instance[p]) parts.push(`<${p === 0 ? TOP_FAMILY_LABEL : snapshot.dirNameOf(p)}>`);
  }
  return parts.reverse().join('/');
}
