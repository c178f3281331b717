/**
 * Prometheus text format (0.0.4) and OpenMetrics 1.0.0 rendering of a Snapshot. Pure: no I/O, no clock.
 *
 * The mapping (docs/prometheus.md): a value's metric name comes from its place in the tree, its labels from
 * the names of the sources that are *instances* of a family (net/eth0 is one of many interfaces). A directory
 * D below the top is an instance when
 *   1. its parent captures (as a value or an aggregate) a definition that D or a directory below D also
 *      captures: the parent aggregates a family, or it is the same kind of thing one level up (cgroups); or
 *   2. one of its siblings, or a directory below one, captures a definition that D or a directory below D
 *      also captures: a family without an aggregate above it.
 * Definitions are compared by identity, as aggregation does. An instance becomes a label named after its
 * parent (net="eth0"); a run of nested instances becomes one label whose value is the joined path
 * (cgroup="system.slice/foo.service"). Every other component, then the value name, makes up the name:
 * statsfs_ + components joined by '_', each sanitised to [a-zA-Z0-9_].
 *
 * Rendering is a generator of UTF-8 chunks written byte by byte (no string per line); planning, which also
 * visits every value, yields empty chunks every few thousand values or directories, so a caller that runs
 * it in time slices never holds the event loop for long.
 */
import type { ValueDef } from '../model/schema.js';
import { histogramLines, leLadder, type LeLadder } from './prometheus-histogram.js';
import type { Snapshot } from '../model/snapshot.js';
import { formatWord } from '../model/word.js';

export interface RenderOptions {
  /** OpenMetrics 1.0.0 (counters' family name without _total, # UNIT, # EOF) instead of text 0.0.4. */
  openMetrics: boolean;
  /** Also export aggregates, as <name>_aggregate{aggregation="sum"}; default false (Prometheus aggregates). */
  includeAggregates?: boolean;
  /** Prefix of every metric name; default "statsfs_". */
  prefix?: string;
}

export const TEXT_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
export const OPENMETRICS_CONTENT_TYPE = 'application/openmetrics-text; version=1.0.0; charset=utf-8';

export type MetricType = 'counter' | 'gauge' | 'histogram';

/** Label added to aggregates (with includeAggregates) and to directories whose name and labels collide. */
export const AGGREGATION_LABEL = 'aggregation';
export const DIR_LABEL = 'statsfs_dir';
/** Label name for instances directly below the exported top, which has no name of its own. */
export const TOP_FAMILY_LABEL = 'source';

/** Characters outside [a-zA-Z0-9_] become '_' (colons are reserved for recording rules); no leading digit. */
export function sanitizeMetricName(name: string): string {
  const s = name.replace(/[^a-zA-Z0-9_]/g, '_');
  return /^[0-9]/.test(s) ? '_' + s : s;
}

/** As metric names, and a leading "__" (reserved by Prometheus) is reduced to one '_'. */
export function sanitizeLabelName(name: string): string {
  return sanitizeMetricName(name).replace(/^__+/, '_');
}

/** Label values: backslash, double quote and line feed escaped (the same in both formats). */
export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : value;
}

/** HELP text: backslash and line feed escaped; OpenMetrics also escapes the double quote. */
export function escapeHelp(text: string, openMetrics: boolean): string {
  let s = text.replace(/\\/g, '\\\\').replace(/\n/g, '\\n');
  if (openMetrics) s = s.replace(/"/g, '\\"');
  return s;
}

/**
 * A cumulative (non-floating) value is a counter, a floating one a gauge. Exceptions, since a Prometheus
 * counter can neither be negative nor a flag: signed and bool cumulative values are gauges.
 */
export function metricType(def: ValueDef): MetricType {
  if (def.histogram) return 'histogram';
  return !def.floating && !def.type.signed && def.type.bits !== 1 ? 'counter' : 'gauge';
}

/** The type an exported aggregate has: a sum of counters is a counter, anything else a gauge. */
function aggregateType(def: ValueDef): MetricType {
  if (def.histogram) return 'histogram';
  return def.aggr === 'sum' && metricType(def) === 'counter' ? 'counter' : 'gauge';
}

/** Which format an Accept header asks for: OpenMetrics when it accepts it at least as much as the text format. */
export function negotiateFormat(accept: string | undefined): 'openmetrics' | 'text' {
  if (!accept) return 'text';
  let om = 0;
  let text = -1;
  for (const part of accept.split(',')) {
    const [type, ...params] = part.split(';').map((s) => s.trim().toLowerCase());
    let q = 1;
    let version: string | null = null;
    for (const p of params) {
      const eq = p.indexOf('=');
      const key = p.slice(0, eq).trim();
      const value = p.slice(eq + 1).trim();
      if (key === 'q') q = Number.isFinite(Number(value)) ? Number(value) : 0;
      else if (key === 'version') version = value;
    }
    if (type === 'application/openmetrics-text') {
      if (version === null || version === '1.0.0' || version === '0.0.1') om = Math.max(om, q);
    } else if (type === 'text/plain' || type === 'text/*' || type === '*/*') text = Math.max(text, q);
  }
  return om > 0 && om >= text ? 'openmetrics' : 'text';
}

/** One exported series, for tests and documentation. */
export interface SeriesInfo {
  /** The value's path in the snapshot: "net/eth0/rx_bytes". */
  path: string;
  /** The family name (OpenMetrics' MetricFamily, TYPE line): statsfs_net_rx_bytes. */
  family: string;
  /** The sample name, in both formats: statsfs_net_rx_bytes_total. */
  name: string;
  labels: Record<string, string>;
  type: MetricType;
  aggregate: boolean;
}

interface Family {
  /** Family name (OpenMetrics' MetricFamily; without _total). */
  base: string;
  /** Sample name: base + _total for counters. */
  sample: string;
  type: MetricType;
  help: string;
  unit: string;
  /** Extra label text (the aggregation label) or ''. */
  extra: string;
  count: number;
  /** Start of this family in the order array. */
  start: number;
  index: number;
  /** The first (prefix, definition) that feeds this family, and whether others do too. */
  contributor: string;
  multi: boolean;
}

/** How many values a planning step visits before yielding an empty chunk. */
const STEP = 8192;
/** How many directories a planning step visits before yielding. */
const DIR_STEP = 1024;
/** Size a text chunk reaches before it is yielded (small chunks are written, and collected, young). */
const CHUNK = 32768;
const TWO32 = 4294967296;

/**
 * The plan: for every captured value, its family and directory; for every directory, its labels. Built by
 * `build()`, a generator so that a caller can interleave it with other work. Per-directory data lives in
 * typed arrays and shared strings: a million values in 100,000 directories must not become 100,000 objects.
 */
class Plan {
  readonly families: Family[] = [];
  private readonly byName = new Map<string, Family>();
  private readonly defs: ValueDef[] = [];
  private readonly prefix: string;
  private readonly paths: readonly string[];

  // Per directory.
  private parent!: Int32Array;
  private childStart!: Uint32Array;
  private childList!: Int32Array;
  /** Definitions captured in a directory: a node of the key trie (0: none). */
  private node!: Int32Array;
  private instance!: Uint8Array;
  private names: string[] = [];
  private prefixes: string[] = [];
  /** 'net="eth0"', or '' for none. */
  labelTexts: string[] = [];
  /** Name and raw value of the label a directory's instance run defines. */
  private lastLabel: string[] = [];
  private lastValue: string[] = [];
  private dirLabelAdded!: Uint8Array;
  private familiesOfDir: (Int32Array | null)[] = [];

  // The trie of captured keys (2 * definition id + 1 for an aggregate): one node per distinct prefix of
  // the key sequences, so that directories capturing the same definitions share one node.
  private trieNext: Map<number, number>[] = [new Map()];
  private trieParent: number[] = [-1];
  private trieKey: number[] = [-1];
  private trieDepth: number[] = [0];
  /** The step last taken from a node, by definition and kind: directories of one schema repeat it. */
  private trieLastDef: (ValueDef | null)[] = [null];
  private trieLastAggregate: boolean[] = [false];
  private trieLastNext: number[] = [0];

  // The value scan, resumable.
  /** Directory numbers by path, built only if values are not in directory order. */
  private dirNo: Map<string, number> | null = null;
  private readonly defId = new Map<ValueDef, number>();
  private lastPath: string | null = null;
  private scanDir = 0;
  private scanNode = 0;

  // Per value.
  dirOf!: Uint32Array;
  private posOf!: Uint32Array;
  /** Values in output order: grouped by family, snapshot order within one. */
  order!: Uint32Array;
  /** Label text replacing a value's directory labels when two values would be the same series. */
  readonly override = new Map<number, string>();

  constructor(
    readonly snapshot: Snapshot,
    readonly options: RenderOptions,
  ) {
    this.prefix = options.prefix ?? 'statsfs_';
    this.paths = snapshot.dirs;
  }

  *build(): Generator<string> {
    yield* this.scan();
    yield* this.findInstances();
    yield* this.nameDirectories();
    yield* this.assignFamilies();
    yield* this.sort();
  }

  private keysOf(node: number): number[] {
    const keys: number[] = [];
    for (let t = node; t > 0; t = this.trieParent[t]) keys.push(this.trieKey[t]);
    return keys.reverse();
  }

  /** Directories and their parents, then every value: its directory, definition and position. */
  private *scan(): Generator<string> {
    const snap = this.snapshot;
    const paths = this.paths;
    const D = paths.length;
    this.parent = new Int32Array(D);
    const childCount = new Uint32Array(D);
    // The walk records every directory before those below it, intermediate ones included: the parent of
    // each is on a stack of the directories along the current path.
    const stack: number[] = [];
    for (let d = 0; d < D; d++) {
      const path = paths[d];
      let p = -1;
      if (path !== '') {
        while (stack.length > 0) {
          const top = paths[stack[stack.length - 1]];
          if (top === '' || (path.length > top.length && path.charCodeAt(top.length) === 47 && path.startsWith(top))) break;
          stack.pop();
        }
        p = stack.length > 0 ? stack[stack.length - 1] : -1;
      }
      stack.push(d);
      this.parent[d] = p;
      this.names.push(p < 0 ? path : path.slice(paths[p] === '' ? 0 : paths[p].length + 1));
      if (p >= 0) childCount[p]++;
      if ((d & (DIR_STEP - 1)) === DIR_STEP - 1) yield '';
    }
    this.childStart = new Uint32Array(D + 1);
    for (let d = 0; d < D; d++) this.childStart[d + 1] = this.childStart[d] + childCount[d];
    this.childList = new Int32Array(this.childStart[D]);
    const fill = this.childStart.slice(0, D);
    for (let d = 0; d < D; d++) if (this.parent[d] >= 0) this.childList[fill[this.parent[d]]++] = d;
    yield '';

    const n = snap.count;
    this.node = new Int32Array(D);
    this.dirOf = new Uint32Array(n);
    this.posOf = new Uint32Array(n);
    for (let from = 0; from < n; from += STEP) {
      this.scanValues(from, Math.min(n, from + STEP));
      yield '';
    }
    if (this.lastPath !== null) this.node[this.scanDir] = this.scanNode;
  }

  /** Directory, definition and position of values [from, to). */
  private scanValues(from: number, to: number): void {
    const snap = this.snapshot;
    const dirOf = this.dirOf;
    const posOf = this.posOf;
    const nodeOfDir = this.node;
    const depth = this.trieDepth;
    const lastDef = this.trieLastDef;
    const lastAggregate = this.trieLastAggregate;
    const lastNext = this.trieLastNext;
    let lastPath = this.lastPath;
    let dir = this.scanDir;
    let node = this.scanNode;
    for (let i = from; i < to; i++) {
      const path = snap.dir(i);
      if (path !== lastPath) {
        // values of one directory are contiguous; a directory seen again continues where it stopped
        if (lastPath !== null) nodeOfDir[dir] = node;
        lastPath = path;
        dir = this.findDir(dir, path);
        node = nodeOfDir[dir];
      }
      const def = snap.def(i);
      const aggregate = snap.isAggregate(i);
      let next: number;
      if (lastDef[node] === def && lastAggregate[node] === aggregate) next = lastNext[node];
      else next = this.step(node, def, aggregate);
      dirOf[i] = dir;
      posOf[i] = depth[node];
      node = next;
    }
    this.lastPath = lastPath;
    this.scanDir = dir;
    this.scanNode = node;
  }

  /** The directory of a path: usually the next ones in order (the walk's), else looked up. */
  private findDir(from: number, path: string): number {
    const paths = this.paths;
    for (let d = from; d < paths.length && d < from + 64; d++) if (paths[d] === path) return d;
    if (this.dirNo === null) {
      this.dirNo = new Map();
      paths.forEach((p, d) => this.dirNo!.set(p, d));
    }
    return this.dirNo.get(path)!;
  }

  /** The trie node after `node` for one more captured value. */
  private step(node: number, def: ValueDef, aggregate: boolean): number {
    let id = this.defId.get(def);
    if (id === undefined) {
      id = this.defs.push(def) - 1;
      this.defId.set(def, id);
    }
    const key = 2 * id + (aggregate ? 1 : 0);
    let found = this.trieNext[node].get(key);
    if (found === undefined) {
      found = this.trieNext.push(new Map()) - 1;
      this.trieParent.push(node);
      this.trieKey.push(key);
      this.trieDepth.push(this.trieDepth[node] + 1);
      this.trieLastDef.push(null);
      this.trieLastAggregate.push(false);
      this.trieLastNext.push(0);
      this.trieNext[node].set(key, found);
    }
    this.trieLastDef[node] = def;
    this.trieLastAggregate[node] = aggregate;
    this.trieLastNext[node] = found;
    return found;
  }

  /** Definition ids captured at and below every directory that has subdirectories. */
  private *below(): Generator<string, Map<number, Set<number>>> {
    const D = this.paths.length;
    const below = new Map<number, Set<number>>();
    const merged = new Map<number, Set<number>>(); // leaf nodes already merged into a parent
    for (let d = D - 1; d >= 0; d--) {
      const own = this.childStart[d + 1] > this.childStart[d] ? below.get(d) ?? new Set<number>() : null;
      if (own !== null) {
        below.set(d, own);
        for (const k of this.keysOf(this.node[d])) own.add(k >> 1);
      }
      const p = this.parent[d];
      if (p >= 0) {
        let target = below.get(p);
        if (target === undefined) below.set(p, (target = new Set()));
        if (own !== null) for (const id of own) target.add(id);
        else if (this.node[d] !== 0) {
          let seen = merged.get(p);
          if (seen === undefined) merged.set(p, (seen = new Set()));
          if (!seen.has(this.node[d])) {
            seen.add(this.node[d]);
            for (const k of this.keysOf(this.node[d])) target.add(k >> 1);
          }
        }
      }
      if ((d & (DIR_STEP - 1)) === 0) yield '';
    }
    return below;
  }

  /** Marks the instance directories (rules 1 and 2). Linear in the directories. */
  private *findInstances(): Generator<string> {
    const D = this.paths.length;
    this.instance = new Uint8Array(D);
    const below = yield* this.below();
    const idsOf = (d: number): Iterable<number> => below.get(d) ?? this.keysOf(this.node[d]).map((k) => k >> 1);
    let work = 0;
    for (let p = 0; p < D; p++) {
      const from = this.childStart[p];
      const to = this.childStart[p + 1];
      if (from === to) continue;
      // Children in groups: leaves by the definitions they capture (equal leaves share all), others alone.
      const groups = new Map<number, { rep: number; count: number; instance: boolean }>();
      for (let k = from; k < to; k++) {
        if (++work === DIR_STEP) {
          work = 0;
          yield '';
        }
        const c = this.childList[k];
        const leaf = !below.has(c);
        if (leaf && this.node[c] === 0) continue; // an empty leaf: nothing to label
        const key = leaf ? this.node[c] : -1 - c;
        const g = groups.get(key);
        if (g === undefined) groups.set(key, { rep: c, count: 1, instance: false });
        else g.count++;
      }
      // Rule 2: two equal leaves, or a definition shared between two groups.
      const owner = new Map<number, number>();
      for (const [key, g] of groups) {
        if (g.count > 1) g.instance = true;
        for (const id of idsOf(g.rep)) {
          const o = owner.get(id);
          if (o === undefined) owner.set(id, key);
          else if (o !== key) {
            g.instance = true;
            groups.get(o)!.instance = true;
          }
        }
      }
      // Rule 1: a definition the parent captures too.
      if (this.node[p] !== 0) {
        const parentOwn = new Set(this.keysOf(this.node[p]).map((k) => k >> 1));
        for (const g of groups.values()) {
          if (g.instance) continue;
          for (const id of idsOf(g.rep)) {
            if (parentOwn.has(id)) {
              g.instance = true;
              break;
            }
          }
        }
      }
      for (let k = from; k < to; k++) {
        if (++work === DIR_STEP) {
          work = 0;
          yield '';
        }
        const c = this.childList[k];
        const g = groups.get(below.has(c) ? -1 - c : this.node[c]);
        if (g !== undefined && g.instance) this.instance[c] = 1;
      }
    }
  }

  /** Metric name prefix and label text of every directory, top-down. */
  private *nameDirectories(): Generator<string> {
    const D = this.paths.length;
    const reserved = [AGGREGATION_LABEL, DIR_LABEL];
    this.dirLabelAdded = new Uint8Array(D);
    const labelOfChildren = new Map<number, string>();
    // Two directories can only end up with the same name prefix and labels when sanitising merges names
    // ("a.b" and "a_b"): instances then belong to two runs with the same prefix, head and label name, and a
    // plain directory repeats another's key. Both are checked per run and per plain directory, not per
    // instance; only when one is found are all directories compared.
    const runs = new Map<string, number>();
    const plain = new Set<string>();
    const plainBelowRuns: string[] = [];
    let clash = false;
    for (let d = 0; d < D; d++) {
      const p = this.parent[d];
      if (p < 0) {
        this.prefixes.push(this.prefix);
        this.labelTexts.push('');
        this.lastLabel.push('');
        this.lastValue.push('');
        continue;
      }
      const name = this.names[d];
      if (!this.instance[d]) {
        const prefix = this.prefixes[p] + sanitizeMetricName(name) + '_';
        this.prefixes.push(prefix);
        this.labelTexts.push(this.labelTexts[p]);
        this.lastLabel.push('');
        this.lastValue.push('');
        if (this.node[d] !== 0) {
          const key = `${prefix}\u0000${this.labelTexts[p]}`;
          if (plain.has(key)) clash = true;
          plain.add(key);
          let a = p;
          while (a >= 0 && !this.instance[a]) a = this.parent[a];
          if (a >= 0) plainBelowRuns.push(`${prefix}\u0000${this.labelHead(a)}\u0000${this.lastLabel[a]}`);
        }
      } else {
        this.prefixes.push(this.prefixes[p]);
        let head: string;
        let label: string;
        let value: string;
        if (this.instance[p]) {
          // a nested instance of the same run: extend the value of its label
          head = this.labelHead(p);
          label = this.lastLabel[p];
          value = `${this.lastValue[p]}/${name}`;
        } else {
          head = this.labelTexts[p];
          let known = labelOfChildren.get(p);
          if (known === undefined) {
            const wanted = this.parent[p] < 0 ? TOP_FAMILY_LABEL : sanitizeLabelName(this.names[p]);
            const used = this.labelNamesAbove(d);
            known = wanted;
            for (let k = 2; used.includes(known) || reserved.includes(known); k++) known = `${wanted}_${k}`;
            labelOfChildren.set(p, known);
            const run = `${this.prefixes[p]}\u0000${head}\u0000${known}`;
            if (runs.has(run)) clash = true;
            runs.set(run, p);
          }
          label = known;
          value = name;
        }
        this.lastLabel.push(label);
        this.lastValue.push(value);
        this.labelTexts.push(`${head}${head === '' ? '' : ','}${label}="${escapeLabelValue(value)}"`);
      }
      if ((d & (DIR_STEP - 1)) === DIR_STEP - 1) yield '';
    }
    if (plainBelowRuns.some((run) => runs.has(run))) clash = true;
    if (!clash) return;
    const seen = new Map<string, Set<string>>();
    for (let d = 0; d < D; d++) {
      if (this.node[d] === 0) continue;
      const text = this.labelTexts[d];
      let texts = seen.get(this.prefixes[d]);
      if (texts === undefined) seen.set(this.prefixes[d], (texts = new Set()));
      if (texts.has(text)) {
        this.labelTexts[d] = `${text}${text === '' ? '' : ','}${DIR_LABEL}="${escapeLabelValue(this.paths[d])}"`;
        this.dirLabelAdded[d] = 1;
      } else texts.add(text);
      if ((d & (DIR_STEP - 1)) === DIR_STEP - 1) yield '';
    }
  }

  /** The label text of an instance directory without the label its run defines. */
  private labelHead(d: number): string {
    let top = d;
    while (this.instance[this.parent[top]]) top = this.parent[top];
    return this.labelTexts[this.parent[top]];
  }

  private labelNamesAbove(d: number): string[] {
    const names: string[] = [];
    for (let a = this.parent[d]; a >= 0; a = this.parent[a]) if (this.instance[a]) names.push(this.lastLabel[a]);
    return names;
  }

  /** "net/<net>": a directory's path with instances replaced by their label, for HELP text. */
  private pattern(d: number): string {
    const parts: string[] = [];
    for (let a = d; this.parent[a] >= 0; a = this.parent[a]) {
      if (!this.instance[a]) parts.push(this.names[a]);
      else if (!this.instance[this.parent[a]]) parts.push(`<${this.lastLabel[a]}>`);
    }
    return parts.reverse().join('/');
  }

  /** Family of every (directory, position): computed once per distinct prefix and captured definitions. */
  private *assignFamilies(): Generator<string> {
    const D = this.paths.length;
    const memo = new Map<string, Map<number, Int32Array>>();
    const includeAggregates = this.options.includeAggregates ?? false;
    for (let d = 0; d < D; d++) {
      if ((d & (DIR_STEP - 1)) === DIR_STEP - 1) yield '';
      this.familiesOfDir.push(null);
      const node = this.node[d];
      if (node === 0) continue;
      const prefix = this.prefixes[d];
      let byNode = memo.get(prefix);
      if (byNode === undefined) memo.set(prefix, (byNode = new Map()));
      const known = byNode.get(node);
      if (known !== undefined) {
        this.familiesOfDir[d] = known;
        continue;
      }
      const keys = this.keysOf(node);
      const families = new Int32Array(keys.length);
      const taken = new Set<number>();
      keys.forEach((key, pos) => {
        const def = this.defs[key >> 1];
        const aggregate = (key & 1) === 1;
        if (aggregate && !includeAggregates) {
          families[pos] = -1;
          return;
        }
        const name = prefix + sanitizeMetricName(def.name) + (aggregate ? '_aggregate' : '');
        const type = aggregate ? aggregateType(def) : metricType(def);
        const base = type === 'counter' && name.endsWith('_total') ? name.slice(0, -'_total'.length) : name;
        const pattern = this.pattern(d);
        const help = (def.description || `statsfs value ${pattern === '' ? '' : pattern + '/'}${def.name}`) +
          (aggregate ? ` (${def.aggr} aggregate)` : '');
        const extra = aggregate ? `${AGGREGATION_LABEL}="${def.aggr}"` : '';
        const f = this.family(base, type, help, sanitizeMetricName(def.unit), extra, taken);
        taken.add(f.index);
        const contributor = `${prefix}\u0000${key}`;
        if (f.contributor === '') f.contributor = contributor;
        else if (f.contributor !== contributor) f.multi = true;
        families[pos] = f.index;
      });
      byNode.set(node, families);
      this.familiesOfDir[d] = families;
    }
  }

  /** The family named `base` (or `base_2`, … when that name is taken by another type or in this directory). */
  private family(base: string, type: MetricType, help: string, unit: string, extra: string, taken: Set<number>): Family {
    for (let k = 1; ; k++) {
      const name = k === 1 ? base : `${base}_${k}`;
      const existing = this.byName.get(name);
      if (existing !== undefined) {
        if (existing.base === name && existing.type === type && existing.extra === extra && !taken.has(existing.index)) {
          if (existing.unit !== unit) existing.unit = '';
          return existing;
        }
        continue;
      }
      // OpenMetrics reserves <counter>_total and <counter>_created, and a histogram's samples; the text
      // format needs distinct samples.
      const names =
        type === 'counter'
          ? [name, `${name}_total`, `${name}_created`]
          : type === 'histogram'
            ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`, `${name}_created`]
            : [name];
      if (names.some((x) => this.byName.has(x))) continue;
      const family: Family = {
        base: name,
        sample: type === 'counter' ? `${name}_total` : name,
        type,
        help,
        unit: unit !== '' && name.endsWith('_' + unit) ? unit : '',
        extra,
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

  /** Values grouped by family (a counting sort); series fed by several directories kinds checked for clashes. */
  private *sort(): Generator<string> {
    const n = this.snapshot.count;
    const famOf = new Int32Array(n);
    for (let from = 0; from < n; from += STEP) {
      this.familyOf(famOf, from, Math.min(n, from + STEP));
      yield '';
    }
    let total = 0;
    for (const f of this.families) {
      f.start = total;
      total += f.count;
    }
    const next = new Uint32Array(this.families.map((f) => f.start));
    this.order = new Uint32Array(total);
    for (let from = 0; from < n; from += STEP) {
      place(this.order, famOf, next, from, Math.min(n, from + STEP));
      yield '';
    }
    // Different definitions or prefixes feeding one family ("a" with "b_x" and "a_b" with "x") could repeat
    // a series: those families are checked value by value, and a repeat gets the directory label.
    for (const f of this.families) {
      if (!f.multi) continue;
      const texts = new Set<string>();
      for (let k = f.start; k < f.start + f.count; k++) {
        const i = this.order[k];
        const d = this.dirOf[i];
        const text = this.labelTexts[d];
        if (!texts.has(text)) texts.add(text);
        else if (!this.dirLabelAdded[d]) {
          this.override.set(i, `${text}${text === '' ? '' : ','}${DIR_LABEL}="${escapeLabelValue(this.paths[d])}"`);
        }
        if ((k & (STEP - 1)) === STEP - 1) yield '';
      }
    }
  }

  private familyOf(famOf: Int32Array, from: number, to: number): void {
    const dirOf = this.dirOf;
    const posOf = this.posOf;
    const familiesOfDir = this.familiesOfDir;
    const families = this.families;
    for (let i = from; i < to; i++) {
      const f = familiesOfDir[dirOf[i]]![posOf[i]];
      famOf[i] = f;
      if (f >= 0) families[f].count++;
    }
  }

  labelsOf(i: number, family: Family): Record<string, string> {
    const labels: Record<string, string> = {};
    const d = this.dirOf[i];
    const chain: [string, string][] = [];
    for (let a = d; a >= 0; a = this.parent[a]) {
      if (this.instance[a] && !chain.some(([name]) => name === this.lastLabel[a])) chain.push([this.lastLabel[a], this.lastValue[a]]);
    }
    for (const [name, value] of chain.reverse()) labels[name] = value;
    if (this.dirLabelAdded[d] || this.override.has(i)) labels[DIR_LABEL] = this.paths[d];
    if (family.extra !== '') labels[AGGREGATION_LABEL] = this.snapshot.def(i).aggr;
    return labels;
  }
}

/** The counting sort's second pass over values [from, to). */
function place(order: Uint32Array, famOf: Int32Array, next: Uint32Array, from: number, to: number): void {
  for (let i = from; i < to; i++) {
    const f = famOf[i];
    if (f >= 0) order[next[f]++] = i;
  }
}

const POW10 = [1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000];

/** Writes 0 <= v < 10^9 in decimal at pos; returns the end. */
function writeSmall(buf: Buffer, pos: number, v: number): number {
  let digits = 1;
  while (digits < 10 && v >= POW10[digits]) digits++;
  for (let k = pos + digits - 1; k >= pos; k--) {
    const q = (v / 10) | 0;
    buf[k] = 48 + v - q * 10;
    v = q;
  }
  return pos + digits;
}

/**
 * Writes a captured value in decimal at pos, exactly; returns the end. Below 2^53 the two 32-bit halves
 * combine exactly in a double (an integer that a double holds without rounding), written as two parts
 * below 10^9; beyond that, and for negative values, through BigInt.
 */
function writeValue(buf: Buffer, pos: number, snapshot: Snapshot, i: number): number {
  const hi = snapshot.hi(i);
  const lo = snapshot.lo(i);
  if (hi === 0 && lo < 1e9) return writeSmall(buf, pos, lo);
  if (hi >= 0x200000) return pos + buf.write(formatWord(lo, hi, snapshot.def(i).type.signed), pos, 'latin1');
  const v = hi * TWO32 + lo;
  let high = Math.floor(v / 1e9);
  let low = v - high * 1e9;
  // the division rounds: correct the quotient by one either way
  if (low < 0) {
    high--;
    low += 1e9;
  } else if (low >= 1e9) {
    high++;
    low -= 1e9;
  }
  pos = writeSmall(buf, pos, high);
  for (let k = pos + 8; k >= pos; k--) {
    const q = (low / 10) | 0;
    buf[k] = 48 + low - q * 10;
    low = q;
  }
  return pos + 9;
}

/** Longest decimal a value can take ("-9223372036854775808", "18446744073709551615") and a newline. */
const VALUE_MAX = 22;
const EMPTY = Buffer.alloc(0);

/** Writes the planned exposition chunk by chunk; plain methods, so that the hot loop is optimised. */
class Writer {
  private buf: Buffer = EMPTY;
  private pos = 0;
  /** Family being written, and the next value in it (-1: its header is next). */
  private fi = 0;
  private k = -1;
  private sample: Buffer = EMPTY;
  private finished = false;
  // '{labels}' of each directory, encoded once into a pool when first needed (length 0: no labels)
  private pool = Buffer.allocUnsafe(64 * 1024);
  private poolUsed = 0;
  private readonly labelAt: Int32Array;
  private readonly labelLength: Uint32Array;

  constructor(
    private readonly plan: Plan,
    private readonly snapshot: Snapshot,
    private readonly om: boolean,
  ) {
    this.labelAt = new Int32Array(plan.labelTexts.length).fill(-1);
    this.labelLength = new Uint32Array(plan.labelTexts.length);
  }

  /** The next chunk, or null when everything has been written. */
  next(): Buffer | null {
    if (this.finished) return null;
    this.buf = Buffer.allocUnsafe(CHUNK);
    this.pos = 0;
    const families = this.plan.families;
    while (this.fi < families.length) {
      const f = families[this.fi];
      if (this.k < 0) {
        const typeName = this.om ? f.base : f.sample;
        let header = `# HELP ${typeName} ${escapeHelp(f.help, this.om)}\n# TYPE ${typeName} ${f.type}\n`;
        if (this.om && f.unit !== '') header += `# UNIT ${f.base} ${f.unit}\n`;
        const length = Buffer.byteLength(header);
        if (this.pos + length > this.buf.length) {
          if (this.pos > 0) return this.buf.subarray(0, this.pos);
          this.buf = Buffer.allocUnsafe(length);
        }
        this.pos += this.buf.write(header, this.pos, 'utf8');
        this.sample = Buffer.from(f.sample, 'latin1'); // [a-zA-Z0-9_] only
        this.k = f.start;
      }
      if (f.type === 'histogram') this.histogramLines(f);
      else if (f.extra === '' && this.plan.override.size === 0) this.plainLines(f);
      else this.otherLines(f);
      if (this.k < f.start + f.count) return this.buf.subarray(0, this.pos);
      this.fi++;
      this.k = -1;
    }
    if (this.om) {
      if (this.pos + 6 > this.buf.length) return this.buf.subarray(0, this.pos);
      this.pos += this.buf.write('# EOF\n', this.pos, 'latin1');
    }
    this.finished = true;
    return this.buf.subarray(0, this.pos);
  }

  /** Lines of a family whose labels are its directories' (almost all): until the chunk is full. */
  private plainLines(f: Family): void {
    const order = this.plan.order;
    const dirOf = this.plan.dirOf;
    const labelAt = this.labelAt;
    const labelLength = this.labelLength;
    const sample = this.sample;
    const snapshot = this.snapshot;
    const end = f.start + f.count;
    let pool = this.pool;
    let buf = this.buf;
    let pos = this.pos;
    let k = this.k;
    for (; k < end; k++) {
      const i = order[k];
      const d = dirOf[i];
      if (labelAt[d] < 0) {
        this.encodeLabels(d);
        pool = this.pool;
      }
      const need = sample.length + labelLength[d] + 1 + VALUE_MAX;
      if (pos + need > buf.length) {
        if (pos > 0) break;
        buf = this.buf = Buffer.allocUnsafe(need); // one line longer than a chunk
      }
      // byte loops: Buffer.copy costs more than it moves for a few dozen bytes
      for (let j = 0; j < sample.length; j++) buf[pos++] = sample[j];
      const to = labelAt[d] + labelLength[d];
      for (let j = labelAt[d]; j < to; j++) buf[pos++] = pool[j];
      buf[pos++] = 32; // ' '
      pos = writeValue(buf, pos, snapshot, i);
      buf[pos++] = 10; // '\n'
    }
    this.pos = pos;
    this.k = k;
  }

  /** The `le` ladder of the histogram family being written (one for all its series). */
  private ladder: { family: Family; ladder: LeLadder | null } | null = null;

  /** The series of a histogram family: buckets, sum and count each (prometheus-histogram.ts). */
  private histogramLines(f: Family): void {
    const plan = this.plan;
    const end = f.start + f.count;
    if (this.ladder?.family !== f) {
      const histograms = [];
      for (let k = f.start; k < end; k++) histograms.push(this.snapshot.histogram(plan.order[k])!);
      this.ladder = { family: f, ladder: leLadder(histograms) };
    }
    for (; this.k < end; this.k++) {
      const i = plan.order[this.k];
      let t = plan.override.get(i) ?? plan.labelTexts[plan.dirOf[i]];
      if (f.extra !== '') t = t === '' ? f.extra : `${t},${f.extra}`;
      const lines = histogramLines(f.sample, t, this.snapshot.histogram(i)!, this.ladder.ladder);
      const need = Buffer.byteLength(lines);
      if (this.pos + need > this.buf.length) {
        if (this.pos > 0) return;
        this.buf = Buffer.allocUnsafe(need);
      }
      this.pos += this.buf.write(lines, this.pos, 'utf8');
    }
  }

  /** Lines with an extra label (aggregates) or in a family where a repeated series was told apart. */
  private otherLines(f: Family): void {
    const plan = this.plan;
    const end = f.start + f.count;
    for (; this.k < end; this.k++) {
      const i = plan.order[this.k];
      let t = plan.override.get(i) ?? plan.labelTexts[plan.dirOf[i]];
      if (f.extra !== '') t = t === '' ? f.extra : `${t},${f.extra}`;
      const line = `${f.sample}${t === '' ? '' : `{${t}}`} `;
      const need = Buffer.byteLength(line) + VALUE_MAX;
      if (this.pos + need > this.buf.length) {
        if (this.pos > 0) return;
        this.buf = Buffer.allocUnsafe(need);
      }
      this.pos += this.buf.write(line, this.pos, 'utf8');
      this.pos = writeValue(this.buf, this.pos, this.snapshot, i);
      this.buf[this.pos++] = 10;
    }
  }

  private encodeLabels(d: number): void {
    const text = this.plan.labelTexts[d];
    if (text === '') {
      this.labelAt[d] = 0;
      return;
    }
    const braced = `{${text}}`;
    const length = Buffer.byteLength(braced);
    if (this.poolUsed + length > this.pool.length) {
      const grown = Buffer.allocUnsafe(Math.max(this.pool.length * 2, this.poolUsed + length));
      this.pool.copy(grown, 0, 0, this.poolUsed);
      this.pool = grown;
    }
    this.pool.write(braced, this.poolUsed, 'utf8');
    this.labelAt[d] = this.poolUsed;
    this.labelLength[d] = length;
    this.poolUsed += length;
  }
}

/**
 * The exposition of a snapshot, as UTF-8 chunks of about 32 KiB written directly (no string per line);
 * empty chunks mark points where a caller may pause. Every captured value appears exactly once
 * (aggregates only with includeAggregates). Chunks are never reused: a caller may keep them.
 */
export function* renderPrometheus(snapshot: Snapshot, options: RenderOptions): Generator<Buffer> {
  const plan = new Plan(snapshot, options);
  for (const _ of plan.build()) yield EMPTY;
  const writer = new Writer(plan, snapshot, options.openMetrics);
  for (let chunk = writer.next(); chunk !== null; chunk = writer.next()) yield chunk;
}

/** The whole exposition as one string (tests, small trees). */
export function renderPrometheusText(snapshot: Snapshot, options: RenderOptions): string {
  return Buffer.concat([...renderPrometheus(snapshot, options)]).toString('utf8');
}

/** Where every exported value goes: name, labels and type, in output order. */
export function mapSeries(snapshot: Snapshot, options: Omit<RenderOptions, 'openMetrics'> = {}): SeriesInfo[] {
  const plan = new Plan(snapshot, { ...options, openMetrics: false });
  for (const _ of plan.build()) {
    // planning only
  }
  const out: SeriesInfo[] = [];
  for (const f of plan.families) {
    for (let k = f.start; k < f.start + f.count; k++) {
      const i = plan.order[k];
      out.push({
        path: snapshot.path(i),
        family: f.base,
        name: f.sample,
        labels: plan.labelsOf(i, f),
        type: f.type,
        aggregate: snapshot.isAggregate(i),
      });
    }
  }
  return out;
}
