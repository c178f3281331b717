/**
 * Captures in slices: a large capture yields the event loop, writers that go through the tree's
 * WriteBarrier wait for it, and the result is the same instant a synchronous capture would have seen.
 */
import { describe, expect, it } from 'vitest';
import { renderText } from '../../../src/export/text.js';
import { arena, captureSnapshot, captureSnapshotSliced, Schema, SEQ, Source, StatsError, WriteBarrier, Writes, type CustomType, type Snapshot, type ValueGroup } from '../../../src/model/index.js';

const schema = new Schema([
  { name: 'n', type: 'u64', aggr: 'sum' },
  { name: 'm', type: 's32', aggr: 'min', floating: true },
]);

/** first/x, many/s0…s<n-1> with aggregates at many/, last/x: first and last are far apart in the walk. */
function tree(sources: number): { root: Source; first: ValueGroup; last: ValueGroup; some: ValueGroup } {
  const root = Source.root();
  const add = (parent: Source, name: string): Source => {
    const s = new Source(name);
    parent.addSubordinate(s);
    return s;
  };
  const first = add(root, 'first').addValues(schema);
  const many = add(root, 'many');
  many.addAggregates(schema);
  let some: ValueGroup | null = null;
  for (let i = 0; i < sources; i++) {
    const g = add(many, `s${i}`).addValues(schema);
    g.set('n', i);
    g.set('m', -i);
    some ??= g;
  }
  const last = add(root, 'last').addValues(schema);
  first.set('n', 500);
  last.set('n', 500);
  return { root, first, last, some: some! };
}

function valueAt(snap: Snapshot, path: string): bigint {
  for (let i = 0; i < snap.count; i++) if (snap.path(i) === path) return snap.value(i);
  throw new Error(`${path} is not in the snapshot`);
}

const ticks = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

describe('captureSnapshotSliced', () => {
  it('a small capture is taken at once and never holds the barrier', async () => {
    const { root } = tree(10);
    const barrier = WriteBarrier.of(root);
    const pending = captureSnapshotSliced(root);
    expect(barrier.held).toBe(false);
    const snap = await pending;
    expect(renderText(snap).toString()).toBe(renderText(captureSnapshot(root)).toString());
  });

  it('a large capture yields between slices; writes through the barrier wait, and it is one instant', async () => {
    const { root, first, last, some } = tree(100_000);
    const expected = renderText(captureSnapshot(root)).toString();
    const barrier = WriteBarrier.of(root);
    let turns = 0;
    let stop = false;
    const moved: number[] = [];
    // a writer that moves 1 from first/n to last/n on every turn (the two always sum to 1000)
    const writer = async (): Promise<void> => {
      while (!stop) {
        await ticks();
        turns++;
        barrier.defer(() => {
          first.add('n', -1);
          last.add('n', 1);
          some.set('n', 7);
          moved.push(turns);
        });
      }
    };
    const writing = writer();
    const snap = await captureSnapshotSliced(root, 1);
    stop = true;
    await writing;
    expect(turns).toBeGreaterThan(2); // the loop turned while the capture was under way
    expect(renderText(snap).toString()).toBe(expected); // nothing written during the capture is in it
    expect(barrier.held).toBe(false);
    expect(moved.length).toBe(turns); // and every held write ran afterwards, none lost
    expect(first.get('n') + last.get('n')).toBe(1000n);
  });

  it('run() returns the write result, at once when free and later when held', async () => {
    const { root, first } = tree(100_000);
    const barrier = WriteBarrier.of(root);
    expect(WriteBarrier.of(first.source)).toBe(barrier); // any source of the tree finds the same barrier
    expect(barrier.run(() => 41 + 1)).toBe(42);
    const capturing = captureSnapshotSliced(root, 1);
    const later = barrier.run(() => {
      first.set('n', 9);
      return 'done';
    });
    expect(later).toBeInstanceOf(Promise);
    expect(first.get('n')).toBe(500n);
    const snap = await capturing;
    expect(await later).toBe('done');
    expect(first.get('n')).toBe(9n);
    expect(valueAt(snap, 'first/n')).toBe(500n);
  });

  it('Writes waits behind the barrier in arrival order and applies each change as one arena write', async () => {
    const { root, first, last } = tree(100_000);
    const writes = Writes.of(last.source);
    const odd: boolean[] = [];
    const order: string[] = [];
    expect(writes.apply(() => (Atomics.load(arena.u32, SEQ) & 1) === 1)).toBe(true); // inside a batch
    expect(Atomics.load(arena.u32, SEQ) & 1).toBe(0);
    const capturing = captureSnapshotSliced(root, 1);
    writes.defer(() => {
      order.push('defer');
      first.set('n', 1);
      odd.push((Atomics.load(arena.u32, SEQ) & 1) === 1);
    });
    const applied = writes.apply(() => {
      order.push('apply');
      return first.get('n');
    });
    WriteBarrier.of(root).defer(() => order.push('barrier'));
    expect(order).toEqual([]); // all held by the capture
    const snap = await capturing;
    expect(await applied).toBe(1n);
    expect(order).toEqual(['defer', 'apply', 'barrier']);
    expect(odd).toEqual([true]);
    expect(valueAt(snap, 'first/n')).toBe(500n);
  });

  it('a capture that starts while writes are queued lets them in first (writers are not starved)', async () => {
    const { root, first } = tree(100_000);
    const barrier = WriteBarrier.of(root);
    const one = captureSnapshotSliced(root, 1);
    const written = barrier.run(() => first.set('n', 1));
    const two = captureSnapshotSliced(root, 1); // queued behind the write
    const [a, b] = await Promise.all([one, two, written]);
    expect(valueAt(a, 'first/n')).toBe(500n);
    expect(valueAt(b, 'first/n')).toBe(1n);
  });

  it('a first capture of a root, sized from the arena, moves into its own columns between slices and loses nothing', async () => {
    // another tree's values make the arena's count large: a first capture of a root expects that many
    // values, so it starts in smaller columns and moves into its own once they are allocated
    const wide = new Schema(Array.from({ length: 1000 }, (_, k) => ({ name: `v${k}`, type: 'u64' as const })));
    const other = Source.root();
    const groups = Array.from({ length: 2200 }, (_, i) => {
      const s = new Source(`o${i}`);
      other.addSubordinate(s);
      return s.addValues(wide);
    });
    try {
      expect(arena.usage.used).toBeGreaterThan(2 ** 21);
      const { root } = tree(100_000);
      const sliced = await captureSnapshotSliced(root, 1);
      expect(renderText(sliced).toString()).toBe(renderText(captureSnapshot(root)).toString());
    } finally {
      for (const g of groups) g.source.removeValues(g);
    }
  });

  it('an error thrown by a held write surfaces as an uncaught exception, the other writes still run', async () => {
    const { root, first } = tree(100_000);
    const barrier = WriteBarrier.of(root);
    const errors: unknown[] = [];
    const onUncaught = (err: unknown): void => void errors.push(err);
    const listeners = process.listeners('uncaughtException');
    process.removeAllListeners('uncaughtException');
    process.on('uncaughtException', onUncaught);
    try {
      const capturing = captureSnapshotSliced(root, 1);
      barrier.defer(() => {
        throw new Error('writer failed');
      });
      barrier.defer(() => first.set('n', 3));
      await capturing;
      await ticks();
      expect(first.get('n')).toBe(3n);
      expect(errors.map((e) => (e as Error).message)).toEqual(['writer failed']);
    } finally {
      process.off('uncaughtException', onUncaught);
      for (const l of listeners) process.on('uncaughtException', l);
    }
  });
});

describe('captured aggregates', () => {
  it('average from the exact sum, as a read does', () => {
    const avg = new Schema([
      { name: 'u', type: 'u64', aggr: 'avg' },
      { name: 's', type: 's64', aggr: 'avg' },
    ]);
    const root = Source.root();
    root.addAggregates(avg);
    for (const [name, u, s] of [
      ['a', 2n ** 64n - 1n, -(2n ** 63n)],
      ['b', 1n, -1n],
    ] as const) {
      const src = new Source(name);
      root.addSubordinate(src);
      const g = src.addValues(avg);
      g.set('u', u);
      g.set('s', s);
    }
    const snap = captureSnapshot(root);
    expect(valueAt(snap, 'u')).toBe(2n ** 63n);
    expect(valueAt(snap, 's')).toBe(-(2n ** 62n));
    expect(valueAt(snap, 'u')).toBe(root.getValue('u'));
    expect(valueAt(snap, 's')).toBe(root.getValue('s'));
  });

  it('the failure rule of a read: ENOENT contributes nothing, another error fails that definition only', () => {
    type Base = { gone: boolean; broken: boolean; n: number };
    const live: CustomType<Base> = {
      name: 'live',
      signed: false,
      get: (base, name) => {
        if (base.gone) throw new StatsError('ENOENT', 'its interface went away');
        if (base.broken && name === 'bad') throw new Error('getter failed');
        return base.n;
      },
    };
    const schema = new Schema([
      { name: 'good', type: live, aggr: 'sum' },
      { name: 'bad', type: live, aggr: 'sum' },
    ]);
    const root = Source.root();
    root.addAggregates(schema);
    for (const [name, base] of [
      ['a', { gone: false, broken: false, n: 2 }],
      ['b', { gone: true, broken: false, n: 100 }],
      ['c', { gone: false, broken: true, n: 5 }],
    ] as const) {
      const src = new Source(name);
      root.addSubordinate(src);
      src.addValues(schema, { base });
    }
    // a read
    expect(root.getValue('good')).toBe(7n);
    expect(() => root.getValue('bad')).toThrow('getter failed');
    // a capture: the same, value by value
    const snap = captureSnapshot(root);
    expect(valueAt(snap, 'good')).toBe(7n);
    expect(() => valueAt(snap, 'bad')).toThrow('not in the snapshot');
    expect(snap.failures.map((f) => f.path).sort()).toEqual(['b/bad', 'b/good', 'bad', 'c/bad']);
  });
});
