/**
 * What `statsfs top` shows, read from the mount: one `.snapshot.bin` of the shown source per refresh (one
 * open, one instant; while the tree keeps its shape only the data block is read again), turned into rows
 * with rates and histories. Knows nothing of terminals.
 *
 * Histories are kept by path from the mount's root, so moving into a source or back up keeps every row's
 * rate and sparkline going: a source's values were in its parent's snapshot too.
 */
import { join } from 'node:path';
import { histogramQuantile, openBinarySnapshot, type BinarySnapshot, type BinarySnapshotFile, type SnapshotAggregation } from '../client/snapshot-reader.js';
import { counterStep, History, perSecond } from './rates.js';

/**
 * How a row is read and drawn. A counter (a cumulative value) is shown as a rate, a level as it is, a
 * histogram by its p50/p99 and the rate of its count, a source by what is below it. A new kind adds a name
 * here, a case where the model classifies descriptors, and an entry in the renderer's CELLS table.
 */
export type RowKind = 'source' | 'counter' | 'level' | 'histogram';

/** A histogram's median and 99th percentile at the last capture, in its unit. */
export interface Quantiles {
  p50: number;
  p99: number;
}

export interface Row {
  kind: RowKind;
  name: string;
  /** From the mount's root ('' is the root). */
  path: string;
  /** The aggregation of an aggregate (computed over the subordinates); null for a value of its own or a source. */
  aggregate: SnapshotAggregation | null;
  unit: string;
  description: string;
  /** Permission bits of the value's file (a source: 0). */
  mode: number;
  /** The exact reading, as `cat` shows it; for a source, what is below it. */
  text: string;
  /** The reading as a number: a value's, or the number of values below a source. */
  value: number;
  /** Per second over the last interval (counters; null after a reset or before a second capture); for a source, how many values below it changed in the last interval. */
  rate: number | null;
  /** Rates (counters), readings (levels) or changed values (sources), oldest first. */
  history: History;
  /** Sources below a source (at any depth). */
  sources: number;
  /** A histogram's percentiles; null for every other kind. */
  quantiles: Quantiles | null;
}

interface Series {
  raw: bigint | null;
  /** Capture time of `raw`, ms since the epoch. */
  at: number;
  rate: number | null;
  history: History;
}

/** A descriptor of the current layout, with what every refresh needs of it worked out once. */
interface Slot extends Pick<Row, 'name' | 'path' | 'aggregate' | 'unit' | 'description' | 'mode'> {
  kind: Exclude<RowKind, 'source'>;
  show: boolean;
  /** Index of the child source this value is below, or -1 for a value of the shown source itself. */
  child: number;
  series: Series;
}

interface Child {
  name: string;
  path: string;
  values: number;
  sources: number;
  changed: number;
  series: Series;
}

/** Series not seen for this long are forgotten (after moving away from them). */
const FORGET_MS = 10 * 60_000;

function join2(base: string, rel: string): string {
  return base === '' ? rel : rel === '' ? base : `${base}/${rel}`;
}

/** The parent's path from the root; '' for a top-level source and for the root. */
export function parentPath(path: string): string {
  const cut = path.lastIndexOf('/');
  return cut < 0 ? '' : path.slice(0, cut);
}

export class TopModel {
  private file: BinarySnapshotFile | null = null;
  private shown: string;
  private readonly series = new Map<string, Series>();
  private slots: Slot[] = [];
  private children: Child[] = [];
  /** Capture time of the last refresh. */
  takenAt: Date | null = null;

  constructor(
    readonly mount: string,
    path: string,
    readonly historyLength = 120,
  ) {
    this.shown = path;
  }

  /** The source shown, from the mount's root. */
  get path(): string {
    return this.shown;
  }

  /** Whether the shown source has been read since it was chosen. */
  get loaded(): boolean {
    return this.file !== null;
  }

  /** Values in the shown subtree at the last refresh. */
  get valueCount(): number {
    return this.slots.length;
  }

  /** Values whose getter failed in the last capture (they are left out of it). */
  get failures(): readonly { path: string; error: string }[] {
    return this.file?.snapshot.failures ?? [];
  }

  /** Shows another source; the next refresh opens its snapshot. */
  show(path: string): void {
    if (path === this.shown) return;
    this.shown = path;
    this.file = null;
  }

  /** The snapshot file of the shown source. */
  get snapshotPath(): string {
    return join(this.mount, this.shown, '.snapshot.bin');
  }

  /** Takes a new capture of the shown source: exactly one open of its `.snapshot.bin`. */
  async refresh(): Promise<void> {
    let reshaped: boolean;
    if (this.file === null) {
      this.file = await openBinarySnapshot(this.snapshotPath);
      this.layOut(this.file.snapshot);
      reshaped = false; // another file, not another shape: rates carry on from the last capture
    } else {
      reshaped = await this.file.refresh();
      if (reshaped) this.layOut(this.file.snapshot);
    }
    this.sample(this.file.snapshot, reshaped);
  }

  /** Works out, once per layout, what each descriptor is and where its history lives. */
  private layOut(snap: BinarySnapshot): void {
    const at = Number(snap.header.takenAtNs / 1_000_000n);
    for (const [key, s] of this.series) if (s.at < at - FORGET_MS) this.series.delete(key);
    const children = new Map<string, Child>();
    const childOf = (dir: string): Child => {
      const name = dir.split('/', 1)[0];
      let child = children.get(name);
      if (!child) {
        const path = join2(this.shown, name);
        child = { name, path, values: 0, sources: 0, changed: 0, series: this.seriesAt(path + '/') };
        children.set(name, child);
      }
      return child;
    };
    for (const dir of snap.dirs) if (dir !== '' && dir.includes('/')) childOf(dir).sources++;
    for (const dir of snap.dirs) if (dir !== '') childOf(dir);
    const order = [...children.values()];
    const index = new Map(order.map((c, k) => [c, k]));
    this.slots = snap.descriptors.map((d) => {
      const path = join2(this.shown, d.path);
      let child = -1;
      if (d.dir !== '') {
        const c = childOf(d.dir);
        c.values++;
        child = index.get(c)!;
      }
      const counter = d.kind === 'cumulative' && d.type !== 'bool' && !(d.aggregate && d.aggregation === 'count_zero');
      return {
        kind: d.type === 'histogram' ? 'histogram' : counter ? 'counter' : 'level',
        name: d.name,
        path,
        aggregate: d.aggregate ? d.aggregation : null,
        unit: d.unit,
        description: d.description,
        mode: d.mode,
        show: d.show,
        child,
        series: this.seriesAt(path),
      };
    });
    this.children = order;
  }

  private seriesAt(key: string): Series {
    let s = this.series.get(key);
    if (!s) {
      s = { raw: null, at: 0, rate: null, history: new History(this.historyLength) };
      this.series.set(key, s);
    }
    return s;
  }

  /** Reads every value of the capture into its series. */
  private sample(snap: BinarySnapshot, reshaped: boolean): void {
    const at = Number(snap.header.takenAtNs / 1_000_000n);
    this.takenAt = snap.takenAt;
    for (const c of this.children) c.changed = 0;
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i];
      const s = slot.series;
      if (s.at >= at) continue; // this instant is in the history already
      const raw = snap.value(i);
      if (slot.child >= 0 && s.raw !== null && raw !== s.raw) this.children[slot.child].changed++;
      if (slot.kind !== 'level') {
        // a counter's rate; a histogram's is its count's
        // a new shape may have added or dropped a subordinate under an aggregate: its step is no rate
        const stepKnown = s.raw !== null && !(reshaped && slot.aggregate !== null);
        s.rate = stepKnown ? perSecond(counterStep(s.raw!, raw), at - s.at) : null;
        s.history.push(s.rate ?? NaN);
      } else {
        s.history.push(Number(raw));
      }
      s.raw = raw;
      s.at = at;
    }
    for (const c of this.children) {
      const s = c.series;
      if (s.at >= at) continue;
      s.rate = s.at === 0 ? null : c.changed;
      s.history.push(s.rate ?? NaN);
      s.at = at;
    }
  }

  /** The shown source's subordinates and values, in capture order. */
  rows(): Row[] {
    const snap = this.file?.snapshot;
    if (!snap) return [];
    const rows: Row[] = this.children.map((c) => ({
      kind: 'source',
      name: c.name,
      path: c.path,
      aggregate: null,
      unit: '',
      description: '',
      mode: 0,
      text: `${c.values} values`,
      value: c.values,
      rate: c.series.rate,
      history: c.series.history,
      sources: c.sources,
      quantiles: null,
    }));
    for (let i = 0; i < this.slots.length; i++) {
      const slot = this.slots[i];
      if (slot.child >= 0) continue;
      const raw = snap.value(i);
      rows.push({
        kind: slot.kind,
        name: slot.name,
        path: slot.path,
        aggregate: slot.aggregate,
        unit: slot.unit,
        description: slot.description,
        mode: slot.mode,
        text: slot.show ? snap.text(i) : raw.toString(),
        value: Number(raw),
        rate: slot.series.rate,
        history: slot.series.history,
        sources: 0,
        quantiles: quantilesOf(snap, i, slot),
      });
    }
    return rows;
  }

  /** Every value of the shown subtree (paths from the shown source), for the plain-text output. */
  allRows(): Row[] {
    const snap = this.file?.snapshot;
    if (!snap) return [];
    const prefix = this.shown === '' ? 0 : this.shown.length + 1;
    return this.slots.map((slot, i) => ({
      kind: slot.kind,
      name: slot.path.slice(prefix),
      path: slot.path,
      aggregate: slot.aggregate,
      unit: slot.unit,
      description: slot.description,
      mode: slot.mode,
      text: slot.show ? snap.text(i) : snap.value(i).toString(),
      value: Number(snap.value(i)),
      rate: slot.series.rate,
      history: slot.series.history,
      sources: 0,
      quantiles: quantilesOf(snap, i, slot),
    }));
  }
}

function quantilesOf(snap: BinarySnapshot, i: number, slot: Slot): Quantiles | null {
  const h = slot.kind === 'histogram' ? snap.histogram(i) : null;
  return h === null ? null : { p50: histogramQuantile(h, 0.5), p99: histogramQuantile(h, 0.99) };
}
