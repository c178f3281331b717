/**
 * Incremental aggregation (src/model/incremental.ts) against the reference walk: random trees under random
 * stores, batches, clears, moves, removals, revokes, hidden sources, nested aggregates, object bases and
 * getters, every aggregation × every type, with a fixed seed. Every result must equal the walk's to the bit,
 * through get(), through a snapshot capture, and after the mode changes.
 */
import { describe, expect, it } from 'vitest';
import {
  AGGREGATIONS,
  arena,
  captureSnapshot,
  Schema,
  Source,
  TYPES,
  Writes,
  type CustomType,
  type StandardTypeName,
  type ValueGroup,
  type ValueSpec,
} from '../../../src/model/index.js';
import { changes, setIncrementalAggregation, walkAggregate } from '../../../src/model/incremental.js';
import { rng } from '../../helpers/rng.js';

const TYPE_NAMES = Object.keys(TYPES) as StandardTypeName[];
const AGGRS = AGGREGATIONS.filter((a) => a !== 'none');
const EDGES = [0n, 1n, -1n, 2n ** 63n - 1n, -(2n ** 63n), 2n ** 64n - 1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 53n + 1n, 127n, -128n, 255n, 65535n];

/** A getter whose values the test changes behind the tree's back, as a collector's kernel counters change. */
const live = new Map<string, bigint>();
const liveType: CustomType<{ id: string }> = { name: 'live', signed: true, get: (base, name) => live.get(`${base.id}/${name}`) ?? 0n };

/** A source named `name` under `parent` with `count` subordinates s0.. of one group of `schema` each, value 0 set to `first + i`. */
function sourcesUnder(parent: Source, name: string, schema: Schema, count: number, first: number): ValueGroup[] {
  const mid = new Source(name);
  parent.addSubordinate(mid);
  return Array.from({ length: count }, (_, i) => {
    const s = new Source(`s${i}`);
    mid.addSubordinate(s);
    const values = s.addValues(schema);
    values.set(0, first + i);
    return values;
  });
}

describe('incremental aggregation equals the walk', () => {
  it('on random trees under random changes (fixed seed, every aggregation × type)', () => {
    const random = rng(0x5eed18);
    const pick = <T,>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)];
    const word = (): bigint => (random() < 0.5 ? pick(EDGES) : BigInt.asIntN(64, (BigInt(Math.floor(random() * 2 ** 32)) << 32n) | BigInt(Math.floor(random() * 2 ** 32))));

    // every aggregation × every standard type in one schema; a second schema of few values; one with a getter
    const specs: ValueSpec[] = [];
    for (const t of TYPE_NAMES) for (const a of AGGRS) specs.push({ name: `${t}_${a}`, type: t, aggr: a });
    const wide = new Schema(specs);
    const narrow = new Schema([
      { name: 'a', type: 'u64', aggr: 'sum' },
      { name: 'b', type: 's32', aggr: 'min' },
      { name: 'c', type: 'u8', aggr: 'max' },
    ]);
    const withGetter = new Schema([
      { name: 'g', type: liveType, aggr: 'sum' },
      { name: 'h', type: 's64', aggr: 'max' },
    ]);
    const schemas = [wide, narrow, withGetter];

    let rounds = 0;
    let compared = 0;
    for (let tree = 0; tree < 12; tree++) {
      const root = Source.root();
      const all: Source[] = [root];
      const groups: ValueGroup[] = [];
      const aggregates: ValueGroup[] = [];
      let n = 0;
      const bases: Record<string, unknown>[] = [];

      const addGroup = (src: Source): void => {
        const schema = random() < 0.6 ? wide : random() < 0.7 ? narrow : withGetter;
        const hidden = random() < 0.2;
        try {
          if (schema === withGetter) {
            const id = `b${n++}`;
            groups.push(src.addValues(schema, { hidden, base: { id } }));
          } else if (random() < 0.1) {
            const base: Record<string, unknown> = {};
            for (const d of schema.defs) base[d.name] = 0n;
            bases.push(base);
            groups.push(src.addValues(schema, { hidden, base }));
          } else groups.push(src.addValues(schema, { hidden }));
        } catch {
          // EEXIST: that schema is there already
        }
      };
      const addSource = (parent: Source): void => {
        const src = new Source(`s${n++}`, { hidden: random() < 0.15 });
        parent.addSubordinate(src);
        all.push(src);
        if (random() < 0.8) addGroup(src);
        if (random() < 0.3) {
          try {
            aggregates.push(src.addAggregates(pick(schemas), { hidden: random() < 0.2 }));
          } catch {
            // EEXIST
          }
        }
      };
      for (const s of schemas) aggregates.push(root.addAggregates(s));
      const size = 20 + Math.floor(random() * 60);
      for (let i = 0; i < size; i++) addSource(pick(all));

      const attached = (s: Source): boolean => {
        let t: Source | null = s;
        while (t.parent !== null) t = t.parent;
        return t === root;
      };
      const setRandom = (g: ValueGroup): void => {
        const def = pick(g.schema.defs);
        if (def.type.custom) {
          live.set(`${(g as unknown as { base: { id: string } }).base.id}/${def.name}`, word());
          return;
        }
        const v = word();
        const op = random();
        if (op < 0.5) g.set(def.index, v);
        else if (op < 0.8) g.add(def.index, v);
        else if (op < 0.9) g.clear(def.index);
        else g.setWord(def.index, Number(BigInt.asUintN(64, v) & 0xffffffffn), Number(BigInt.asUintN(64, v) >> 32n));
      };

      for (let r = 0; r < 150; r++, rounds++) {
        const steps = 1 + Math.floor(random() * 12);
        for (let k = 0; k < steps; k++) {
          const live = groups.filter((g) => !g.isAggregate && attached(g.source) && g.source.valueGroups.includes(g));
          const x = random();
          if (x < 0.45 && live.length > 0) setRandom(pick(live));
          else if (x < 0.55 && live.length > 0) {
            // a producer's batch: many stores as one write
            Writes.of(root).apply(() => {
              for (let j = 0; j < 20; j++) setRandom(pick(live));
            });
          } else if (x < 0.6 && bases.length > 0) {
            const base = pick(bases);
            base[pick(Object.keys(base))] = BigInt.asUintN(8, word()); // an object base changes behind the tree's back
          } else if (x < 0.67) addSource(pick(all.filter(attached)));
          else if (x < 0.72) {
            const s = pick(all);
            if (s !== root && s.parent !== null) s.parent.removeSubordinate(s);
          } else if (x < 0.77) {
            // a move: detach and attach elsewhere (not below itself)
            const s = pick(all);
            const to = pick(all.filter(attached));
            if (s !== root && s.parent !== null) {
              let below = false;
              for (let t: Source | null = to; t !== null; t = t.parent) if (t === s) below = true;
              if (!below) {
                s.parent.removeSubordinate(s);
                try {
                  to.addSubordinate(s);
                } catch {
                  // a visible name taken there
                }
              }
            }
          } else if (x < 0.8 && live.length > 0) {
            const g = pick(live);
            g.source.removeValues(g);
          } else if (x < 0.82) {
            const s = pick(all);
            if (s !== root) s.revoke();
          } else if (x < 0.86) addGroup(pick(all));
          else if (x < 0.9) {
            // clearing an aggregate clears every value of its definition below it
            const a = pick(aggregates);
            const def = pick(a.schema.defs);
            if (def.clearable && a.isAggregate) a.clear(def.index);
          } else if (x < 0.92) {
            // a detached subtree changes, then comes back
            const s = pick(all);
            if (s !== root && s.parent !== null) {
              const parent = s.parent;
              parent.removeSubordinate(s);
              const inside = groups.filter((g) => !g.isAggregate && g.source === s && s.valueGroups.includes(g));
              for (const g of inside) setRandom(g);
              parent.addSubordinate(s);
            }
          } else {
            // reads in between, so that some results are kept and later changed
            const a = pick(aggregates);
            if (attached(a.source)) a.get(pick(a.schema.defs).index);
          }
        }
        // compare a random half of the aggregates each round (so that what is kept ages), all of them every 10th
        for (const a of aggregates) {
          if (!a.isAggregate || !a.source.valueGroups.includes(a)) continue;
          if (r % 10 !== 9 && random() < 0.5) continue;
          for (const def of a.schema.defs) {
            const expected = walkAggregate(a.source, a.schema, def);
            const got = a.get(def.index);
            if (got !== expected) throw new Error(`tree ${tree} round ${r}: ${a.source.path || '/'} ${def.name} is ${got}, the walk gives ${expected}`);
            compared++;
          }
        }
        if (r % 25 === 24) {
          // a snapshot takes kept results where every one of a group is kept: the same numbers as the walk
          const snap = captureSnapshot(root);
          for (let i = 0; i < snap.count; i++) {
            if (!snap.isAggregate(i)) continue;
            const path = snap.path(i);
            const slash = path.lastIndexOf('/');
            let src: Source | undefined = root;
            if (slash >= 0) for (const part of path.slice(0, slash).split('/')) src = src?.subordinate(part);
            const found = src?.findValue(path.slice(slash + 1), true);
            expect(found, path).toBeDefined();
            expect(snap.value(i), path).toBe(walkAggregate(src!, found!.group.schema, found!.def));
          }
        }
      }
    }
    expect(rounds).toBe(12 * 150);
    expect(compared).toBeGreaterThan(50_000);
  });

  it('keeps results above unchanged subtrees, notes the stores of a write once per group and applies them at its end', () => {
    const schema = new Schema([{ name: 'v', type: 'u64', aggr: 'sum' }]);
    const root = Source.root();
    const agg = root.addAggregates(schema);
    const leaves = [0, 1, 2].flatMap((g) => sourcesUnder(root, `g${g}`, schema, 4, 0));
    // 3 × (0 + 1 + 2 + 3)
    expect(agg.get(0)).toBe(18n);
    // the subtrees are kept: their results are at their sources
    expect(root.subordinates.every((mid) => mid.keptPartials?.partials[0] != null)).toBe(true);
    let inside = -1;
    Writes.of(root).apply(() => {
      for (let i = 0; i < 100; i++) leaves[0].add(0, 1);
      leaves[5].set(0, 10);
      inside = changes.pending;
    });
    expect(inside).toBe(2);
    // the end of the write applied them to what is kept: nothing is left for the read
    expect(changes.pending).toBe(0);
    // leaves[5] (g1/s1) went from 1 to 10
    expect(root.keptPartials?.partials[0]?.result()).toBe(18n + 100n + 9n);
    expect(agg.get(0)).toBe(18n + 100n + 9n);
    // a store outside a write (a library user's set()) waits for the next read
    leaves[11].add(0, 5);
    expect(changes.pending).toBe(1);
    expect(agg.get(0)).toBe(18n + 100n + 9n + 5n);
    expect(changes.pending).toBe(0);
  });

  it('applies stores outside a write a bounded batch at a time, and a group changed again after is noted again', () => {
    const schema = new Schema([
      { name: 'n', type: 'u32', aggr: 'sum' },
      { name: 'lo', type: 'u32', aggr: 'min' },
    ]);
    const root = Source.root();
    const agg = root.addAggregates(schema);
    const values = sourcesUnder(root, 'many', schema, 10_000, 0);
    expect(agg.get(0)).toBe(BigInt((10_000 * 9_999) / 2));
    expect(agg.get(1)).toBe(0n);
    const mirror = values.map((_, i) => i);
    let most = 0;
    for (const [i, v] of values.entries()) {
      v.set(0, 1); // half of a group's change, then the rest after other groups were noted
      mirror[i] = 1;
      most = Math.max(most, changes.pending);
      if (i % 3 === 0) {
        values[(i * 7) % values.length].add(0, 2);
        mirror[(i * 7) % values.length] += 2;
      }
      v.set(1, 5 + (i % 11));
    }
    expect(most).toBeLessThanOrEqual(4096);
    expect(agg.get(0)).toBe(BigInt(mirror.reduce((a, b) => a + b, 0)));
    expect(agg.get(0)).toBe(walkAggregate(root, schema, schema.defs[0]));
    expect(agg.get(1)).toBe(5n);
  });

  it('runs refreshers at every read and counts what they change, even in subtrees that are kept', () => {
    const schema = new Schema([
      { name: 'n', type: 'u64', aggr: 'sum' },
      { name: 'm', type: 's8', aggr: 'max' },
    ]);
    const root = Source.root();
    const agg = root.addAggregates(schema);
    // `live` comes first: its refresher changes a value in `kept` (walked after it) and adds sources below itself
    const live = new Source('live');
    root.addSubordinate(live);
    const keptValues = sourcesUnder(root, 'kept', schema, 3, 10);
    const kept = keptValues[0].source.parent!;
    let calls = 0;
    live.setRefresher((self) => {
      calls++;
      keptValues[0].add(0, 1);
      keptValues[1].set(1, calls % 4 === 0 ? 100 : -5);
      const s = new Source(`r${calls}`);
      self.addSubordinate(s);
      s.addValues(schema).set(0, 1000);
    });
    for (let read = 1; read <= 6; read++) {
      // every read refreshes once: 10 + 11 + 12, + 1 per refresh so far, + 1000 per source the refresher added
      const n = agg.get(0);
      expect(n).toBe(33n + BigInt(calls) * 1001n);
      // k1's m was just set to 100 (every 4th refresh) or -5; the other values' m are 0
      const m = agg.get(1);
      expect(m).toBe(calls % 4 === 0 ? 100n : 0n);
    }
    expect(calls).toBe(12);
    // the subtree without a refresher is kept; the one with it is never
    expect(kept.keptPartials?.partials[0]?.result()).toBe(33n + BigInt(calls));
    expect(live.keptPartials).toBeNull();
    expect(root.keptPartials).toBeNull();
  });

  it('gives the walk\'s results when switched to the walk and back', () => {
    const schema = new Schema([{ name: 'v', type: 's16', aggr: 'min' }]);
    const root = Source.root();
    const agg = root.addAggregates(schema);
    const vals = sourcesUnder(root, 'm', schema, 5, 10);
    expect(agg.get(0)).toBe(10n);
    setIncrementalAggregation(false);
    try {
      vals[0].set(0, 50); // not noted: the walk reads everything anyway
      expect(agg.get(0)).toBe(11n);
    } finally {
      setIncrementalAggregation(true);
    }
    // nothing kept from before the switch is trusted
    expect(agg.get(0)).toBe(11n);
    vals[1].set(0, -3);
    expect(agg.get(0)).toBe(-3n);
    vals[1].set(0, 100); // the extreme left: recomputed from the subordinates
    expect(agg.get(0)).toBe(12n);
    expect(arena.usage.used).toBeGreaterThan(0);
  });
});
