/**
 * The capture of a snapshot: one depth-first walk of a subtree, whole (captureSnapshot) or in time slices
 * (captureSnapshotSliced), feeding the aggregates on the way down.
 */
import { Accumulator } from './aggregate.js';
import { WriteBarrier } from './barrier.js';
import { arena } from './arena.js';
import { Histogram } from './histogram.js';
import type { Schema, ValueDef } from './schema.js';
import type { Source } from './source.js';
import { keptResults, loadContributor } from './incremental.js';
import type { ValueGroup } from './value-group.js';
import { splitBigInt, word } from './word.js';
import { Snapshot, snapshotColumns } from './snapshot.js';

/**
 * An aggregate group being computed during a capture: one accumulator per definition, fed by every simple
 * value of its schema met below its source, and the snapshot positions waiting for the results.
 */
interface OpenAggregate {
  group: ValueGroup;
  accs: Accumulator[];
  /** The merge of each histogram definition (null for other definitions). */
  histograms: (Histogram | null)[];
  /** Snapshot index of each definition's placeholder, or -1 when not shown. */
  slots: Int32Array;
  /** The first error of each definition's contributors (undefined while none failed): see loadContributor. */
  failures: unknown[];
}

/**
 * Which values a capture takes (an exporter's): a value read through its getter, or an aggregate, is
 * read only when `keep` says so (a source's values in slot storage are copied as a run all the same: they
 * cost nothing to read, and a renderer leaves out what it does not show). The default takes every visible
 * value. An aggregate left out costs nothing, where it would otherwise read every value below it.
 */
export type CaptureFilter = (def: ValueDef, aggregate: boolean) => boolean;

/** Size of the last capture of each top, so the next one allocates its columns once. */
const lastCount = new WeakMap<Source, number>();

/**
 * How many values a capture of `top` is given room for: the last capture's count, or for a first capture
 * of a root every value in slot storage (the arena's count, other trees' included), with a margin for
 * aggregates and getters. Growing a ten-million-value capture by copying held the loop ~80 ms. Below a
 * root nothing is known, and a subtree is usually small: it grows.
 */
function expectedCount(top: Source): number {
  const last = lastCount.get(top) ?? (top.parent === null ? Math.max(1000, arena.usage.used) : 1000);
  return Math.ceil(last * 1.05);
}

/** Captures expected to take more values than this start in columns of this size and move into theirs. */
const SPREAD_COLUMNS = 1 << 21;

/** A source whose subordinates are still being walked. */
interface Frame {
  dirNo: number;
  visible: boolean;
  /** A copy: collectors may change the live list between slices. */
  subs: readonly Source[] | null;
  next: number;
  opened: OpenAggregate[] | null;
}

/**
 * One capture: a depth-first walk with its own stack, so that it can stop at a slice boundary and go on
 * later. Aggregates are not computed one subtree walk each but fed on the way down, each simple value going
 * to every open aggregate of its schema above it (hidden sources are walked only while one is open).
 */
class Capture {
  readonly snapshot: Snapshot;
  private readonly open = new Map<Schema, OpenAggregate[]>();
  private readonly stack: Frame[] = [];

  constructor(
    private readonly top: Source,
    private readonly keep: CaptureFilter | null = null,
    capacity = expectedCount(top),
  ) {
    this.snapshot = new Snapshot(capacity);
    this.enter(top, -1, true);
  }

  /** Walks until done (true) or until `deadline` (performance.now() milliseconds) has passed (false). */
  step(deadline: number): boolean {
    const stack = this.stack;
    let entered = 0;
    while (stack.length > 0) {
      const frame = stack[stack.length - 1];
      if (frame.subs !== null && frame.next < frame.subs.length) {
        const sub = frame.subs[frame.next++];
        if (frame.visible && !sub.hidden) this.enter(sub, frame.dirNo, true);
        else if (this.open.size > 0) this.enter(sub, -1, false);
        if ((++entered & 255) === 0 && performance.now() >= deadline) return false;
        continue;
      }
      stack.pop();
      if (frame.opened !== null) for (const agg of frame.opened) close(agg, frame.dirNo, this.snapshot, this.open);
    }
    return true;
  }

  finish(): Snapshot {
    this.snapshot.compact();
    lastCount.set(this.top, this.snapshot.count);
    return this.snapshot;
  }

  /** Captures `source`'s own values (as a directory below `parent` when visible) and opens its aggregates. */
  private enter(source: Source, parent: number, visible: boolean): void {
    const snapshot = this.snapshot;
    const open = this.open;
    source.refresh();
    const groups = source.groupList;
    let opened: OpenAggregate[] | null = null;
    /** Aggregate groups whose every result is kept (incremental.ts): taken as they are, not computed. */
    let kept: Map<ValueGroup, bigint[]> | null = null;
    let dirNo = -1;
    if (visible) {
      dirNo = snapshot.addDir(parent, parent < 0 ? '' : source.name, source.expose);
      if (groups !== null) {
        for (const group of groups) {
          if (!group.isAggregate || group.hidden) continue;
          const defs = group.schema.defs;
          if (this.keep !== null && !defs.some((def) => this.keep!(def, true))) continue;
          const results = keptResults(group);
          if (results !== null) {
            (kept ??= new Map()).set(group, results);
            continue;
          }
          const agg: OpenAggregate = {
            group,
            accs: defs.map((d) => new Accumulator(d.type.signed, d.aggr)),
            histograms: defs.map((d) => (d.histogram ? new Histogram() : null)),
            slots: new Int32Array(defs.length).fill(-1),
            failures: new Array<unknown>(defs.length).fill(undefined),
          };
          (opened ??= []).push(agg);
          const list = open.get(group.schema);
          if (list) list.push(agg);
          else open.set(group.schema, [agg]);
        }
      }
      const only = groups !== null && groups.length === 1 ? groups[0] : null;
      if (only !== null && !only.hidden && only.slotRun >= 0 && !only.schema.hasDuplicateNames && !source.shadowsValues) {
        snapshot.pushRun(dirNo, only.schema.defs, only.slotRun);
      } else if (groups !== null) {
        const keep = this.keep;
        source.forEachVisibleValue((group, def) => {
          if (keep !== null && !keep(def, group.isAggregate)) return;
          if (group.isAggregate) {
            const results = kept?.get(group);
            if (results !== undefined) {
              splitBigInt(results[def.index]);
              snapshot.push(dirNo, group.schema.defs, def.index, true);
              return;
            }
            const agg = opened?.find((a) => a.group === group);
            if (agg === undefined) return; // its schema has nothing to keep
            agg.slots[def.index] = snapshot.count;
            word.lo = 0;
            word.hi = 0;
            snapshot.push(dirNo, group.schema.defs, def.index, true); // filled in once the subtree has been walked
            return;
          }
          try {
            group.load(def);
            snapshot.push(dirNo, group.schema.defs, def.index, false);
            if (def.histogram) snapshot.setHistogram(snapshot.count - 1, group.ownHistogram(def).copy());
          } catch (error) {
            snapshot.failures.push({ path: joinPath(snapshot.dirPath(dirNo), def.name), error });
          }
        });
      }
    }
    if (groups !== null && open.size > 0) contribute(groups, open);
    const subs = source.subordinateList;
    if (subs !== null || opened !== null) this.stack.push({ dirNo, visible, subs: subs === null ? null : subs.slice(), next: 0, opened });
  }
}

/** Captures every visible value below `top` (or those `keep` takes) in one synchronous walk: atomic by construction. */
export function captureSnapshot(top: Source, keep: CaptureFilter | null = null): Snapshot {
  const capture = new Capture(top, keep);
  capture.step(Infinity);
  return capture.finish();
}

/** How long a slice of a capture may hold the event loop. */
export const CAPTURE_SLICE_MS = 10;

/**
 * Captures like captureSnapshot() without holding the event loop for more than about `sliceMs` at a time.
 * A capture that fits in one slice is taken as it is; a longer one holds the tree's WriteBarrier from the
 * end of its first slice to its last, so the daemon's writers wait and the snapshot is still one instant.
 */
export async function captureSnapshotSliced(top: Source, sliceMs = CAPTURE_SLICE_MS, keep: CaptureFilter | null = null): Promise<Snapshot> {
  const barrier = WriteBarrier.of(top);
  if (barrier.waiting > 0) await barrier.drained(); // writers first: back-to-back captures must not starve them
  const expected = expectedCount(top);
  const capture = new Capture(top, keep, Math.min(expected, SPREAD_COLUMNS));
  if (capture.step(performance.now() + sliceMs)) return capture.finish();
  // V8 answers a jump in memory outside its heap by marking the whole heap: ~180 MB of columns for ten
  // million values allocated in one go had it mark a 300 MB heap in one pause of 100-250 ms, where with
  // turns of the loop between the allocations it marked in steps (measured in-process). So a large
  // capture starts in columns for SPREAD_COLUMNS values and moves into its own, allocated between slices.
  let allocating = expected > SPREAD_COLUMNS ? snapshotColumns(expected) : null;
  barrier.hold();
  try {
    do {
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (allocating !== null) {
        const step = allocating.next();
        if (step.done === true) {
          capture.snapshot.adopt(step.value);
          allocating = null;
        }
      }
    } while (!capture.step(performance.now() + sliceMs));
  } finally {
    barrier.release();
  }
  return capture.finish();
}

function joinPath(dir: string, name: string): string {
  return dir === '' ? name : `${dir}/${name}`;
}

function contribute(groups: readonly ValueGroup[], open: Map<Schema, OpenAggregate[]>): void {
  for (const group of groups) {
    if (group.isAggregate) continue;
    const aggs = open.get(group.schema);
    if (aggs === undefined) continue;
    const slot = group.slotRun;
    if (slot >= 0) {
      // straight from the arena: nothing here can throw or be absent
      const u32 = arena.u32;
      for (let d = 0, at = slot * 2; d < group.schema.defs.length; d++, at += 2) {
        for (const agg of aggs) agg.accs[d].add(u32[at], u32[at + 1]);
      }
      continue;
    }
    for (const def of group.schema.defs) {
      if (def.histogram) {
        if (def.aggr !== 'sum') continue;
        const own = group.ownHistogram(def);
        for (const agg of aggs) agg.histograms[def.index]!.merge(own);
        continue;
      }
      let present: boolean;
      try {
        present = loadContributor(group, def);
      } catch (error) {
        for (const agg of aggs) agg.failures[def.index] ??= error;
        continue;
      }
      if (!present) continue;
      for (const agg of aggs) agg.accs[def.index].add(word.lo, word.hi);
    }
  }
}

function close(agg: OpenAggregate, dirNo: number, snapshot: Snapshot, open: Map<Schema, OpenAggregate[]>): void {
  const list = open.get(agg.group.schema)!;
  list.splice(list.indexOf(agg), 1);
  if (list.length === 0) open.delete(agg.group.schema);
  agg.slots.forEach((at, d) => {
    if (at < 0) return;
    const name = agg.group.schema.defs[d].name;
    const failure = agg.failures[d];
    if (failure !== undefined) {
      snapshot.failures.push({ path: joinPath(snapshot.dirPath(dirNo), name), error: failure });
      snapshot.drop(at);
      return;
    }
    const histogram = agg.histograms[d];
    if (histogram !== null) {
      word.lo = histogram.countLo;
      word.hi = histogram.countHi;
      snapshot.setHistogram(at, histogram);
    } else splitBigInt(agg.accs[d].result());
    snapshot.setWord(at);
  });
}
