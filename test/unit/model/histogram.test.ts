import { describe, expect, it } from 'vitest';
import { captureSnapshot, Histogram, HISTOGRAM_QUANTILES, relativeError, Schema, Source, StatsError } from '../../../src/model/index.js';
import { rng } from '../../helpers/rng.js';

function normal(rand: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
}

const DATA: Record<string, (rand: () => number) => number> = {
  uniform: (rand) => 1 + rand() * 999,
  'log-normal': (rand) => Math.exp(3 + 1.5 * normal(rand)),
  bimodal: (rand) => (rand() < 0.7 ? Math.abs(5 + normal(rand)) : Math.abs(500 + 50 * normal(rand))),
};

/** The nearest-rank quantile of sorted samples: the definition Histogram.quantile() estimates. */
function exactQuantile(sorted: readonly number[], q: number): number {
  const x = q * sorted.length;
  return sorted[Math.max(1, Math.ceil(x - x * 1e-12)) - 1];
}

function state(h: Histogram): unknown {
  const buckets: string[] = [];
  h.forEachBucket((i, lo, hi) => buckets.push(`${i}:${hi * 2 ** 32 + lo}`));
  return { scale: h.scale, count: h.count, zero: h.zeroCount, min: h.min, max: h.max, buckets };
}

function filled(values: readonly number[]): Histogram {
  const h = new Histogram();
  for (const v of values) h.observe(v);
  return h;
}

describe('Histogram', () => {
  it('scale 5 bounds the relative error by 1.09 %, within the 2 % asked for', () => {
    expect(relativeError(5)).toBeLessThan(0.0109);
    expect(relativeError(4)).toBeGreaterThan(0.02);
  });

  for (const [name, draw] of Object.entries(DATA)) {
    it(`every percentile of ${name} data is within the bound of the exact one`, () => {
      const rand = rng(name.length * 7919);
      const samples = Array.from({ length: 50_000 }, () => draw(rand));
      const h = filled(samples);
      const sorted = samples.slice().sort((a, b) => a - b);
      const bound = relativeError(h.scale);
      for (const q of [0.001, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 0.999, 1]) {
        const exact = exactQuantile(sorted, q);
        expect(Math.abs(h.quantile(q) - exact) / exact, `q=${q}`).toBeLessThanOrEqual(bound);
      }
      expect(h.count).toBe(50_000n);
      expect(h.min).toBe(sorted[0]);
      expect(h.max).toBe(sorted[sorted.length - 1]);
      expect(h.sum).toBeCloseTo(samples.reduce((a, b) => a + b, 0), 3);
    });
  }

  it('merge is commutative and associative, also across scales', () => {
    const rand = rng(42);
    const a = filled(Array.from({ length: 1000 }, () => Math.exp(10 * normal(rand))));
    const b = filled(Array.from({ length: 1000 }, () => rand() * 100));
    // spans more than 2^64: downscaled on its own
    const c = filled([1e-12, 1, 1e12, 0, 0, 3]);
    expect(c.scale).toBeLessThan(5);
    const merge = (...hs: Histogram[]): Histogram => {
      const out = new Histogram();
      for (const h of hs) out.merge(h);
      return out;
    };
    const ab = merge(a, b);
    expect(state(ab)).toEqual(state(merge(b, a)));
    const abThenC = merge(merge(a, b), c);
    const aThenBc = merge(a, merge(b, c));
    const cab = merge(c, b, a);
    expect(state(abThenC)).toEqual(state(aThenBc));
    expect(state(abThenC)).toEqual(state(cab));
    expect(abThenC.count).toBe(2006n);
    expect(abThenC.zeroCount).toBe(2n);
  });

  it('merging the parts equals observing everything in one', () => {
    const rand = rng(7);
    const values = Array.from({ length: 3000 }, () => Math.exp(3 * normal(rand)));
    const parts = [filled(values.slice(0, 1000)), filled(values.slice(1000, 2000)), filled(values.slice(2000))];
    const merged = new Histogram();
    for (const p of parts) merged.merge(p);
    expect(state(merged)).toEqual(state(filled(values)));
  });

  it('counts are exact u64 words beyond 2^53, and wrap at 2^64', () => {
    const h = new Histogram();
    h.observe(3, 2n ** 53n + 1n);
    h.observe(3, 2 ** 32 - 1);
    h.observe(0, 2n ** 60n);
    expect(h.count).toBe(2n ** 53n + 1n + 2n ** 32n - 1n + 2n ** 60n);
    expect(h.zeroCount).toBe(2n ** 60n);
    let bucket = -1n;
    h.forEachBucket((_, lo, hi) => (bucket = (BigInt(hi) << 32n) | BigInt(lo)));
    expect(bucket).toBe(2n ** 53n + 2n ** 32n);
    const merged = new Histogram();
    merged.merge(h);
    merged.merge(h);
    expect(merged.count).toBe(BigInt.asUintN(64, 2n * h.count));
    h.observe(5, 2n ** 64n - 1n); // one short of a full turn: the count goes back by one
    expect(h.count).toBe(2n ** 53n + 2n ** 32n + 2n ** 60n - 1n);
  });

  it('clear empties it; refuses negative, NaN and infinite values', () => {
    const h = filled([1, 2, 3, 1e9]);
    h.clear();
    expect(state(h)).toEqual(state(new Histogram()));
    expect([h.quantile(0.5), h.mean, h.sum]).toEqual([0, 0, 0]);
    for (const bad of [-1, NaN, Infinity]) expect(() => h.observe(bad)).toThrow(StatsError);
    expect(() => h.observe(1, -1)).toThrow(StatsError);
    expect(h.count).toBe(0n);
  });
});

describe('histogram values', () => {
  const schema = new Schema([
    { name: 'requests', type: 'u64', aggr: 'sum' },
    { name: 'latency', type: 'histogram', unit: 'ms', aggr: 'sum' },
  ]);

  it('an aggregate merges every subordinate, hidden ones included, nested aggregates once', () => {
    const root = Source.root();
    const api = new Source('api');
    root.addSubordinate(api);
    const top = root.addAggregates(schema);
    const agg = api.addAggregates(schema);
    const a = new Source('a');
    const b = new Source('b', { hidden: true });
    api.addSubordinate(a);
    api.addSubordinate(b);
    const ga = a.addValues(schema);
    const gb = b.addValues(schema);
    const all: number[] = [];
    for (let i = 1; i <= 100; i++) {
      ga.observe('latency', i);
      gb.observe('latency', i * 10, 2);
      all.push(i, i * 10, i * 10);
    }
    ga.add('requests', 5);
    const sorted = all.sort((x, y) => x - y);
    for (const g of [agg, top]) {
      const h = g.histogram('latency');
      expect(g.get('latency')).toBe(300n);
      expect(h.max).toBe(1000);
      expect(h.min).toBe(1);
      for (const [, q] of HISTOGRAM_QUANTILES) {
        const exact = exactQuantile(sorted, q);
        expect(Math.abs(h.quantile(q) - exact) / exact).toBeLessThanOrEqual(relativeError(5));
      }
    }
    expect(top.get('requests')).toBe(5n);

    const snap = captureSnapshot(root);
    const at = (path: string) => [...Array(snap.count).keys()].find((i) => snap.path(i) === path)!;
    expect(snap.value(at('api/latency'))).toBe(300n);
    expect(snap.histogram(at('api/latency'))!.quantile(0.99)).toBe(agg.histogram('latency').quantile(0.99));
    expect(snap.histogram(at('latency'))!.count).toBe(300n);
    expect(snap.histogram(at('api/a/latency'))!.count).toBe(100n);
    expect(snap.histogram(at('api/a/requests'))).toBeNull();
    // the snapshot keeps its own copy
    ga.observe('latency', 1);
    expect(snap.histogram(at('api/a/latency'))!.count).toBe(100n);

    // clearing the aggregate clears every histogram below
    agg.clear('latency');
    expect([ga.get('latency'), gb.get('latency'), top.get('latency')]).toEqual([0n, 0n, 0n]);
    expect(top.get('requests')).toBe(5n);
  });

  it('refuses set/add on a histogram and observe elsewhere', () => {
    const s = new Source('x');
    const g = s.addValues(schema);
    expect(() => g.set('latency', 1)).toThrow(/observe/);
    expect(() => g.observe('requests', 1)).toThrow(/not a histogram/);
    expect(() => s.addAggregates(schema).observe('latency', 1)).toThrow(expect.objectContaining({ code: 'EPERM' }));
    expect(() => new Schema([{ name: 'h', type: 'histogram', aggr: 'max' }])).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(schema.defs[1].mode).toBe(0o644);
    s.removeValues(g);
    expect(() => g.observe('latency', 1)).toThrow(expect.objectContaining({ code: 'ENOENT' }));
  });
});
